/*
 * coproc_worker.c: a worker that drives its coprocess child (coproc_worker.h
 * says what it is for; docs/coprocess.md is the protocol).
 */
#include "coproc_worker.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "host.h"
#include "log.h"
#include "model.h"
#include "ring.h"
#include "sanitizer.h"
#include "worker.h"

/* Adds the members a coprocess needs to read object references in place,
 * depth first. Returns 0 or -EINVAL / -ENOENT / -ENOTSUP with err. */
static int coproc_resolve(json_t *v, char *err, size_t errlen)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            int rc = coproc_resolve(e, err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!json_is_object(v))
        return 0;
    struct model_object obj;
    int r = host_worker()->object_ref(v, &obj, err, errlen);
    if (r < 0)
        return r;
    if (r == 1) {
        uint64_t off;
        if (host_object_offset(&obj, &off) != 0) {
            snprintf(err, errlen, "object %s is not in this worker's object store", obj.id);
            return -ENOTSUP;
        }
        json_t *shape = json_array();
        for (uint32_t d = 0; d < obj.ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)obj.shape[d]));
        json_object_set_new(v, "$offset", json_integer((json_int_t)off));
        json_object_set_new(v, "$dtype", json_string(model_dtype_name(obj.dtype)));
        json_object_set_new(v, "$shape", shape);
        json_object_set_new(v, "$bytes", json_integer((json_int_t)obj.bytes));
        return 0;
    }
    const char *key;
    json_t *e;
    json_object_foreach(v, key, e) {
        int rc = coproc_resolve(e, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

int coproc_worker_add_item(struct coproc_buf *b, const uint8_t *data, uint32_t len, char *err,
                           size_t errlen)
{
    static const char marker[] = "\"$object\"";
    if (!memmem(data, len, marker, sizeof marker - 1)) {
        int rc = coproc_buf_put_u32(b, len);
        return rc ? rc : coproc_buf_put(b, data, len);
    }
    json_error_t jerr;
    json_t *item = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!item) {
        snprintf(err, errlen, "item is not valid JSON: %s", jerr.text);
        return -EINVAL;
    }
    int rc = coproc_resolve(item, err, errlen);
    if (rc == 0) {
        char *text = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            rc = -ENOMEM;
        } else {
            size_t n = strlen(text);
            rc = n > UINT32_MAX ? -EMSGSIZE : coproc_buf_put_u32(b, (uint32_t)n);
            if (rc == 0)
                rc = coproc_buf_put(b, text, n);
            free(text);
        }
    }
    json_decref(item);
    return rc;
}

/* One worker's connection to its child. */
struct cw {
    struct shm *shm;
    uint32_t w;
    pid_t supervisor;
    struct coproc_reader rd;
    struct coproc_buf out;
};

__attribute__((noreturn)) static void cw_die(struct cw *c, const char *why, int rc)
{
    log_warn("worker %u: %s (%s): the worker exits and is replaced", c->w, why,
             rc == -EPIPE ? "its coprocess closed the socket" : strerror(-rc));
    _exit(WORKER_EXIT_COPROC);
}

/* The next frame from the child. Waits in rounds of a second so that a
 * supervisor that is gone is noticed (the item deadline is the engine's:
 * it kills this process). */
static void cw_read(struct cw *c, struct coproc_frame *f, const char *during)
{
    for (;;) {
        int rc = coproc_read(&c->rd, f, 1000);
        if (rc == 0)
            return;
        if (rc != -ETIMEDOUT)
            cw_die(c, during, rc);
        if (getppid() != c->supervisor)
            _exit(WORKER_EXIT_FATAL);
    }
}

/* Sends the BATCH in c->out (n items) and commits the results. *k counts
 * the records put into the slot so far; *committing turns false when the
 * slot's output area is full or the job was cancelled (the rest of the
 * results are then read and dropped: the engine re-queues or drops items
 * without a record). */
static void cw_round_trip(struct cw *c, uint32_t idx, uint32_t n, uint32_t *k, bool *committing,
                          uint64_t *run_ns)
{
    struct shm *shm = c->shm;
    struct shm_worker *me = shm_worker(shm, c->w);
    struct ring_slot *slot = ring_slot(shm, idx);
    coproc_le32_put(c->out.p + COPROC_HDR, n);
    coproc_buf_end(&c->out);
    uint64_t t = shm_now_mono_ns();
    atomic_store_explicit(&slot->item_started_ns, t, memory_order_relaxed);
    int rc = coproc_write_all(c->rd.fd, c->out.p, c->out.len);
    if (rc)
        cw_die(c, "cannot send a batch", rc);
    uint32_t got = 0;
    for (;;) {
        struct coproc_frame f;
        cw_read(c, &f, "reading results");
        if (f.type == COPROC_DONE) {
            uint32_t count;
            if (coproc_u32_parse(&f, &count) != 0 || count != n || got != n)
                cw_die(c, "a DONE frame that does not match the batch", -EPROTO);
            break;
        }
        uint32_t index, len;
        bool ok;
        const uint8_t *data;
        if (f.type != COPROC_RESULT || coproc_result_parse(&f, &index, &ok, &data, &len) != 0 ||
            index != got || got >= n)
            cw_die(c, "an unexpected frame instead of a result", -EPROTO);
        got++;
        uint64_t now = shm_now_mono_ns(), dt = now - t;
        t = now;
        /* The next item's clock starts now: the deadline is per item. */
        atomic_store_explicit(&slot->item_started_ns, got < n ? now : 0, memory_order_relaxed);
        *run_ns += dt;
        atomic_fetch_add_explicit(&me->hist[shm_hist_bucket(dt)], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&me->hist_sum_ns, dt, memory_order_relaxed);
        if (*committing && atomic_load_explicit(&slot->cancel, memory_order_relaxed))
            *committing = false;
        if (!*committing)
            continue;
        int put;
        if (ok) {
            /* A host in any language: what it calls JSON is checked. */
            json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (!v) {
                ok = false;
                put = worker_put_error(shm, idx, "the model's output is not valid JSON "
                                                 "(a bug in its coprocess host)");
            } else {
                json_decref(v);
                put = ring_put_output(shm, idx, RING_OUT_OK, data, len);
                if (put == -ENOSPC && *k == 0) {
                    char msg[160];
                    snprintf(msg, sizeof msg, "output too large: %u bytes, a task slot holds %u",
                             len, shm_header(shm)->out_cap - 5);
                    ok = false;
                    put = worker_put_error(shm, idx, msg);
                }
            }
        } else {
            char msg[512];
            snprintf(msg, sizeof msg, "%.*s", (int)(len < 511 ? len : 511), (const char *)data);
            if (!msg[0] || strlen(msg) != (len < 511 ? len : 511))
                snprintf(msg, sizeof msg, "the model failed (its error message was empty or "
                                          "held a NUL byte)");
            put = worker_put_error(shm, idx, msg);
        }
        if (put != 0) {
            *committing = false; /* output area full: the engine re-queues the rest */
            continue;
        }
        atomic_fetch_add_explicit(ok ? &me->items_done : &me->items_failed, 1,
                                  memory_order_relaxed);
        (*k)++;
    }
}

static void cw_run_task(struct cw *c, uint32_t idx)
{
    struct shm *shm = c->shm;
    struct shm_worker *me = shm_worker(shm, c->w);
    struct ring_slot *slot = ring_slot(shm, idx);
    worker_task_begin(shm, c->w, slot->job_key);
    uint32_t pos = 0, k = 0;
    uint64_t run_ns = 0;
    bool committing = true, more = true;
    /* Usually one round trip per task; an item that fails before it can
     * be sent (an unknown object) ends the batch, gets its error, and
     * the items after it go in the next one, in order. */
    while (more && committing) {
        if (atomic_load_explicit(&slot->cancel, memory_order_relaxed) || worker_stop_requested())
            break;
        if (coproc_buf_begin(&c->out, COPROC_BATCH) != 0 || coproc_buf_put_u32(&c->out, 0) != 0)
            cw_die(c, "out of memory for a batch", -ENOMEM);
        uint32_t n = 0;
        char err[512] = "";
        bool failed = false;
        const uint8_t *data;
        uint32_t len;
        more = false;
        while (ring_next_input(shm, idx, &pos, &data, &len)) {
            int rc = coproc_worker_add_item(&c->out, data, len, err, sizeof err);
            if (rc == -ENOMEM || rc == -EMSGSIZE)
                cw_die(c, "out of memory for a batch", rc);
            if (rc < 0) {
                failed = true;
                more = true;
                break;
            }
            n++;
        }
        if (n > 0)
            cw_round_trip(c, idx, n, &k, &committing, &run_ns);
        if (failed && committing) {
            if (worker_put_error(shm, idx, err) != 0)
                break;
            atomic_fetch_add_explicit(&me->items_failed, 1, memory_order_relaxed);
            k++;
        }
    }
    atomic_store_explicit(&slot->item_started_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->run_ns, run_ns, memory_order_relaxed);
    worker_task_done(shm, c->w, idx);
}

/* Has the child gone (or written something unasked) while this worker
 * was idle? Then the worker exits before it takes a task it could not run. */
static bool cw_child_gone(struct cw *c)
{
    struct pollfd pfd = { c->rd.fd, POLLIN | POLLRDHUP, 0 };
    return poll(&pfd, 1, 0) > 0;
}

void coproc_worker_main(struct shm *shm, uint32_t w, int fd, pid_t supervisor)
{
    worker_setup_process(w, supervisor);
    struct cw cw = { .shm = shm, .w = w, .supervisor = supervisor };
    struct cw *c = &cw;
    coproc_reader_init(&c->rd, fd, COPROC_MAX_FRAME);
    struct shm_worker *me = shm_worker(shm, w);
    uint32_t g = me->group;

    /* init() runs in the child; its READY (or ERROR) is this worker's. */
    uint64_t t0 = shm_now_mono_ns();
    struct coproc_frame f;
    int rc;
    do {
        rc = coproc_read(&c->rd, &f, 1000);
        if (getppid() != supervisor)
            _exit(WORKER_EXIT_FATAL);
        if (rc == -ETIMEDOUT && worker_stop_requested())
            _exit(0);
    } while (rc == -ETIMEDOUT);
    if (rc != 0 || f.type != COPROC_READY) {
        char err[SHM_ERR_LEN];
        if (rc == 0 && f.type == COPROC_ERROR)
            snprintf(err, sizeof err, "%.*s", (int)(f.len < sizeof err ? f.len : sizeof err - 1),
                     (const char *)f.data);
        else
            snprintf(err, sizeof err, "the coprocess ended before init() was done (%s)",
                     rc ? strerror(-rc) : "an unexpected frame");
        worker_utf8_repair(err);
        snprintf(me->init_error, sizeof me->init_error, "%s", err);
        atomic_store_explicit(&me->state, WORKER_FAILED, memory_order_release);
        _exit(WORKER_EXIT_INIT);
    }
    atomic_store_explicit(&me->init_ns, shm_now_mono_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->inits, 1, memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_IDLE, memory_order_release);
    log_debug("worker %u (coprocess, pid %d) ready", w,
              (int)atomic_load_explicit(&me->coproc_pid, memory_order_relaxed));

    while (!worker_stop_requested()) {
        if (cw_child_gone(c))
            cw_die(c, "its coprocess went away while the worker was idle", -EPIPE);
        uint32_t idx;
        if (ring_claim(shm, g, w, &idx) == 0) {
            atomic_store_explicit(&ring_slot(shm, idx)->worker_pid, (int32_t)getpid(),
                                  memory_order_relaxed);
            cw_run_task(c, idx);
            continue;
        }
        if (ring_poll_ready(shm, g, w, 50000u))
            continue;
        ring_wait_ready(shm, g, w, 1000);
        if (getppid() != supervisor)
            break;
    }
    atomic_store_explicit(&me->state, WORKER_STOPPING, memory_order_relaxed);
    /* STOP, then the child's fini() runs; closing the socket says the same
     * to a child that missed the frame. */
    coproc_send(fd, COPROC_STOP, "", 0, -1);
    coproc_reader_free(&c->rd);
    coproc_buf_free(&c->out);
    close(fd);
    san_leak_check();
    _exit(0);
}
