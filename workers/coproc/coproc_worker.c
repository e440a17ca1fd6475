/*
 * coproc_worker.c: a worker that drives its coprocess child (coproc_worker.h
 * says what it is for; docs/coprocess.md is the protocol).
 */
#include "workers/coproc/coproc_worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "workers/worker/host.h"
#include "service/core/log.h"
#include <batchd/model.h>
#include "service/ring/ring.h"
#include "service/core/sanitizer.h"
#include "workers/worker/worker.h"

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
    struct coproc_buf enc; /* one output re-encoded (RESULTS) */
    size_t json_flags;
    /* A stateful model: the child holds an accumulator per job; the
     * worker keeps only the jobs' keys, to drop those of a dead api
     * process (an older epoch) and to put off a recycle while it holds
     * any (leaving would lose their state and make the engine run their
     * items again). */
    bool stateful;
    uint64_t *keys;
    size_t n_keys, cap_keys;
    bool batch; /* READY said "batch": true (the child has run_batch) */
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

/* Commits one item's record: an output (JSON text, already checked) or
 * an error message. *k counts the records put so far; *committing turns
 * false when the slot's output area is full (the engine re-queues the
 * items without a record). */
static void cw_commit(struct cw *c, uint32_t idx, bool ok, const void *data, uint32_t len,
                      uint32_t *k, bool *committing)
{
    struct shm *shm = c->shm;
    struct shm_worker *me = shm_worker(shm, c->w);
    int put;
    if (ok) {
        /* Any size: past the slot's share it goes through an object. */
        put = worker_put_output(shm, idx, (const char *)data, len, &ok);
        host_item_end(ok && put == 0);
    } else {
        char msg[512];
        uint32_t n = len < 511 ? len : 511;
        snprintf(msg, sizeof msg, "%.*s", (int)n, (const char *)data);
        if (!msg[0] || strlen(msg) != n)
            snprintf(msg, sizeof msg, "the model failed (its error message was empty or "
                                      "held a NUL byte)");
        put = worker_put_error(shm, idx, msg);
    }
    if (put != 0) {
        *committing = false;
        return;
    }
    atomic_fetch_add_explicit(ok ? &me->items_done : &me->items_failed, 1, memory_order_relaxed);
    (*k)++;
}

/* How many outputs a RESULTS frame holds, for one that is dropped (its
 * job was cancelled): it is parsed all the same, so that a bad frame is
 * still a protocol error. */
static uint32_t cw_count_results(struct cw *c, const struct coproc_frame *f, uint32_t got,
                                 uint32_t n)
{
    json_t *arr = f->len >= 4 ? json_loadb((const char *)f->data + 4, f->len - 4,
                                           JSON_ALLOW_NUL, NULL)
                              : NULL;
    size_t m = json_array_size(arr);
    json_decref(arr);
    if (m == 0 || m > n - got || coproc_le32_get(f->data) != got)
        cw_die(c, "a RESULTS frame that is not a JSON array of the next outputs", -EPROTO);
    return (uint32_t)m;
}

/* A RESULTS frame: u32 first index, then a JSON array of that many
 * consecutive outputs. Each element is re-encoded here (compact) into its
 * own record: one parse in C instead of a frame per item in the host.
 * Returns how many outputs it held; dies on a malformed frame. */
static uint32_t cw_results(struct cw *c, uint32_t idx, const struct coproc_frame *f, uint32_t got,
                           uint32_t n, uint32_t *k, bool *committing)
{
    json_t *arr = f->len >= 4 ? json_loadb((const char *)f->data + 4, f->len - 4,
                                           JSON_ALLOW_NUL, NULL)
                              : NULL;
    if (!json_is_array(arr) || coproc_le32_get(f->data) != got ||
        json_array_size(arr) > n - got || json_array_size(arr) == 0) {
        json_decref(arr);
        cw_die(c, "a RESULTS frame that is not a JSON array of the next outputs", -EPROTO);
    }
    uint32_t m = (uint32_t)json_array_size(arr);
    for (uint32_t i = 0; i < m && *committing; i++) {
        size_t len = json_dumpb(json_array_get(arr, i), (char *)c->enc.p, c->enc.cap, c->json_flags);
        if (len > c->enc.cap) {
            if (coproc_buf_reserve_total(&c->enc, len) != 0)
                cw_die(c, "out of memory for an output", -ENOMEM);
            len = json_dumpb(json_array_get(arr, i), (char *)c->enc.p, c->enc.cap, c->json_flags);
        }
        if (len == 0 || len > UINT32_MAX)
            cw_commit(c, idx, false, "output could not be encoded as JSON", 35, k, committing);
        else
            cw_commit(c, idx, true, c->enc.p, (uint32_t)len, k, committing);
    }
    json_decref(arr);
    return m;
}

/* Sends the BATCH in c->out (n items) and commits the results as they
 * come (RESULT: one item; RESULTS: a run of outputs), until DONE. When the
 * job is cancelled or the output area is full, the rest is read and
 * dropped (the engine re-queues or drops items without a record). */
static void cw_round_trip(struct cw *c, uint32_t idx, uint32_t n, uint32_t *k, bool *committing,
                          uint64_t *run_ns)
{
    struct shm *shm = c->shm;
    struct shm_worker *me = shm_worker(shm, c->w);
    struct ring_slot *slot = ring_slot(shm, idx);
    coproc_le32_put(c->out.p + COPROC_HDR + (c->stateful ? 8 : 0), n);
    coproc_buf_end(&c->out);
    uint64_t t = shm_now_mono_ns();
    /* A child with run_batch answers the whole BATCH in one call: a death
     * or a deadline before its results names no item (ring.h: batch_n). */
    atomic_store_explicit(&slot->batch_n, c->batch ? n : 1, memory_order_relaxed);
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
        if (*committing && atomic_load_explicit(&slot->cancel, memory_order_relaxed))
            *committing = false;
        uint32_t m;
        if (f.type == COPROC_RESULTS) {
            m = *committing ? cw_results(c, idx, &f, got, n, k, committing) : 0;
            if (!*committing) /* dropped: count what the frame held */
                m = m ? m : cw_count_results(c, &f, got, n);
        } else {
            uint32_t index, len;
            bool ok;
            const uint8_t *data;
            if (f.type != COPROC_RESULT ||
                coproc_result_parse(&f, &index, &ok, &data, &len) != 0 || index != got ||
                got >= n)
                cw_die(c, "an unexpected frame instead of a result", -EPROTO);
            m = 1;
            if (*committing && ok) {
                /* A host in any language: what it calls JSON is checked. */
                json_t *v = json_loadb((const char *)data, len,
                                       JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!v) {
                    ok = false;
                    data = (const uint8_t *)"the model's output is not valid JSON (a bug in its "
                                            "coprocess host)";
                    len = (uint32_t)strlen((const char *)data);
                }
                json_decref(v);
            }
            if (*committing)
                cw_commit(c, idx, ok, data, len, k, committing);
        }
        got += m;
        uint64_t now = shm_now_mono_ns(), dt = now - t;
        t = now;
        /* The next item's clock starts now: the deadline is per item. */
        atomic_store_explicit(&slot->batch_n, c->batch && got < n ? n - got : 1,
                              memory_order_relaxed);
        atomic_store_explicit(&slot->item_started_ns, got < n ? now : 0, memory_order_relaxed);
        *run_ns += dt;
        for (uint32_t i = 0; i < m; i++)
            atomic_fetch_add_explicit(&me->hist[shm_hist_bucket(dt / m)], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&me->hist_sum_ns, dt, memory_order_relaxed);
    }
}

/* Notes that the child holds an accumulator for job `key`. */
static void cw_key_add(struct cw *c, uint64_t key)
{
    for (size_t i = 0; i < c->n_keys; i++)
        if (c->keys[i] == key)
            return;
    if (c->n_keys == c->cap_keys) {
        size_t nc = c->cap_keys ? c->cap_keys * 2 : 8;
        uint64_t *k = realloc(c->keys, nc * sizeof *k);
        if (!k)
            cw_die(c, "out of memory for the jobs' keys", -ENOMEM);
        c->keys = k;
        c->cap_keys = nc;
    }
    c->keys[c->n_keys++] = key;
}

/* Sends a frame whose payload is a job key (EXPORT, DROP). */
static void cw_send_key(struct cw *c, uint8_t type, uint64_t key)
{
    uint8_t k[8];
    coproc_le32_put(k, (uint32_t)key);
    coproc_le32_put(k + 4, (uint32_t)(key >> 32));
    int rc = coproc_send(c->rd.fd, type, k, sizeof k, -1);
    if (rc)
        cw_die(c, "cannot send a state request", rc);
}

/* Forgets job `key`'s accumulator, here and (DROP, unanswered) in the
 * child. */
static void cw_forget(struct cw *c, uint64_t key, bool tell_child)
{
    for (size_t i = 0; i < c->n_keys; i++) {
        if (c->keys[i] != key)
            continue;
        c->keys[i] = c->keys[--c->n_keys];
        if (tell_child)
            cw_send_key(c, COPROC_DROP, key);
        return;
    }
}

/* Drops the accumulators of an older api epoch: their jobs belong to a
 * dead api process that will never export them (worker.c does the same). */
static void cw_drop_stale(struct cw *c)
{
    uint32_t epoch = atomic_load_explicit(&shm_header(c->shm)->api_epoch, memory_order_relaxed);
    for (size_t i = 0; i < c->n_keys;) {
        if (ring_key_epoch(c->keys[i]) != epoch)
            cw_forget(c, c->keys[i], true);
        else
            i++;
    }
}

/* Reads the VALUE that answers EXPORT or REDUCE. */
static void cw_read_value(struct cw *c, const char *during, bool *ok, const uint8_t **data,
                          uint32_t *len)
{
    struct coproc_frame f;
    cw_read(c, &f, during);
    if (f.type != COPROC_VALUE || f.len < 1 || f.data[0] > 1)
        cw_die(c, "an unexpected frame instead of a VALUE", -EPROTO);
    *ok = f.data[0] == 1;
    *data = f.data + 1;
    *len = f.len - 1;
}

/* Puts a partial or a reduced result (JSON text from the child, checked
 * here), or the error it is. A result too large for the slot's output
 * area goes into an object when `object_ok` (a job's result can be far
 * larger than an item's output, as worker.c's reduce does); a partial
 * must fit. */
static void cw_put_value(struct cw *c, uint32_t idx, bool ok, const uint8_t *data, uint32_t len,
                         const char *what, bool object_ok)
{
    struct shm *shm = c->shm;
    char msg[600];
    if (!ok) {
        snprintf(msg, sizeof msg, "%.*s", (int)(len < 511 ? len : 511), (const char *)data);
        if (!msg[0] || strlen(msg) != (len < 511 ? len : 511))
            snprintf(msg, sizeof msg, "the model failed (its error message was empty or "
                                      "held a NUL byte)");
        worker_put_error(shm, idx, msg);
        return;
    }
    /* Checked, and re-encoded as a C model's would be (compact, the same
     * escapes): whatever the host's encoder wrote. */
    json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    size_t n = v ? json_dumpb(v, (char *)c->enc.p, c->enc.cap, c->json_flags) : 0;
    if (v && n > c->enc.cap) {
        if (coproc_buf_reserve_total(&c->enc, n) != 0)
            cw_die(c, "out of memory for a result", -ENOMEM);
        n = json_dumpb(v, (char *)c->enc.p, c->enc.cap, c->json_flags);
    }
    json_decref(v);
    if (n == 0 || n > UINT32_MAX) {
        snprintf(msg, sizeof msg, "the model's %s is not valid JSON (a bug in its coprocess host)",
                 what);
        worker_put_error(shm, idx, msg);
        return;
    }
    data = c->enc.p;
    len = (uint32_t)n;
    if (ring_put_output(shm, idx, RING_OUT_OK, data, len) != -ENOSPC)
        return;
    struct model_object obj;
    void *mem;
    char err[300] = "no room";
    uint64_t shape[1] = { len };
    if (object_ok &&
        host_worker()->object_new(MODEL_DTYPE_U8, 1, shape, &obj, &mem, err, sizeof err) == 0) {
        memcpy(mem, data, len);
        ring_put_output(shm, idx, RING_OUT_OBJECT, obj.id, (uint32_t)strlen(obj.id));
        return;
    }
    snprintf(msg, sizeof msg, "the %s takes %u bytes; a task slot holds %u%s%s", what, len,
             shm_header(shm)->out_cap - RING_OUT_HDR, object_ok ? ": " : "",
             object_ok ? err : "");
    worker_put_error(shm, idx, msg);
}

/* EXPORT: the child's partial for the job, as one record; the child
 * forgets the accumulator as it answers (none: null, which the engine
 * skips). */
static void cw_export(struct cw *c, uint32_t idx)
{
    struct ring_slot *slot = ring_slot(c->shm, idx);
    uint64_t key = slot->state_key;
    worker_task_begin(c->shm, c->w, key);
    bool held = false;
    for (size_t i = 0; i < c->n_keys && !held; i++)
        held = c->keys[i] == key;
    if (held) {
        cw_send_key(c, COPROC_EXPORT, key);
        bool ok;
        const uint8_t *data;
        uint32_t len;
        cw_read_value(c, "exporting a job's state", &ok, &data, &len);
        cw_put_value(c, idx, ok, data, len, "partial state", false);
        cw_forget(c, key, false);
    } else {
        ring_put_output(c->shm, idx, RING_OUT_OK, "null", 4);
    }
    host_item_end(true); /* a reduce's object is committed with its task */
    worker_task_done(c->shm, c->w, idx);
}

/* REDUCE: the one input record is the array of partials; the child calls
 * reduce(shared, partials). */
static void cw_reduce(struct cw *c, uint32_t idx)
{
    struct ring_slot *slot = ring_slot(c->shm, idx);
    worker_task_begin(c->shm, c->w, slot->job_key);
    uint32_t pos = 0, len = 0;
    const uint8_t *data = NULL;
    if (!ring_next_input(c->shm, idx, &pos, &data, &len)) {
        worker_put_error(c->shm, idx, "the partial results are missing");
    } else {
        int rc = coproc_send(c->rd.fd, COPROC_REDUCE, data, len, -1);
        if (rc)
            cw_die(c, "cannot send the partial results", rc);
        atomic_store_explicit(&slot->item_started_ns, shm_now_mono_ns(), memory_order_relaxed);
        bool ok;
        const uint8_t *out;
        uint32_t n;
        cw_read_value(c, "reducing a job's partials", &ok, &out, &n);
        atomic_store_explicit(&slot->item_started_ns, 0, memory_order_relaxed);
        cw_put_value(c, idx, ok, out, n, "reduced result", true);
    }
    host_item_end(true);
    worker_task_done(c->shm, c->w, idx);
}

/* Runs task idx; returns the items it recorded a result for (the count
 * the recycle limit sees, as worker.c's). */
static uint32_t cw_run_task(struct cw *c, uint32_t idx)
{
    struct shm *shm = c->shm;
    struct shm_worker *me = shm_worker(shm, c->w);
    struct ring_slot *slot = ring_slot(shm, idx);
    worker_task_begin(shm, c->w, slot->job_key);
    uint32_t pos = 0, k = 0;
    uint64_t run_ns = 0;
    bool committing = true, more = true;
    /* A stateful model's items go in ACC_BATCH frames: the job's key, then
     * the batch; its child adds them to the job's accumulator. */
    const uint8_t kind = c->stateful ? COPROC_ACC_BATCH : COPROC_BATCH;
    if (c->stateful)
        cw_key_add(c, slot->job_key);
    /* Usually one round trip per task; an item that fails before it can
     * be sent (an unknown object) ends the batch, gets its error, and
     * the items after it go in the next one, in order. */
    while (more && committing) {
        if (atomic_load_explicit(&slot->cancel, memory_order_relaxed) || worker_stop_requested())
            break;
        if (coproc_buf_begin(&c->out, kind) != 0 ||
            (c->stateful && (coproc_buf_put_u32(&c->out, (uint32_t)slot->job_key) != 0 ||
                             coproc_buf_put_u32(&c->out, (uint32_t)(slot->job_key >> 32)) != 0)) ||
            coproc_buf_put_u32(&c->out, 0) != 0)
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
    atomic_store_explicit(&slot->batch_n, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->run_ns, run_ns, memory_order_relaxed);
    worker_task_done(shm, c->w, idx);
    return k;
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
    struct cw cw = { .shm = shm, .w = w, .supervisor = supervisor, .keys = NULL,
                     .json_flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17) };
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
    json_t *ready = json_loadb((const char *)f.data, f.len, 0, NULL);
    c->batch = json_is_true(json_object_get(ready, "batch"));
    json_decref(ready);
    atomic_store_explicit(&me->init_ns, shm_now_mono_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->inits, 1, memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_IDLE, memory_order_release);
    const struct shm_group *gr = shm_group(shm, g);
    pid_t child = atomic_load_explicit(&me->coproc_pid, memory_order_relaxed);
    log_debug("worker %u (coprocess, pid %d) ready", w, (int)child);
    worker_recycle_ready(me, w, gr->name);

    /* Recycling (worker.h), as worker_main does it, after a task. The
     * memory that grows is the model's, so max_rss is the child's resident
     * set; the replacement gets a new child forked from the host, which
     * keeps what load() built: load() does not run again. */
    const uint64_t max_items = gr->max_items, max_rss = gr->max_rss;
    c->stateful = (gr->flags & SHM_GROUP_STATEFUL) != 0;
    /* A stateful child runs acc_run item by item (no batch form), so each
     * death names its item as for a per-item model. */
    if (c->stateful)
        c->batch = false;
    uint64_t items_run = 0, recycle_t0 = 0;
    enum worker_recycle_reason recycle = WORKER_RECYCLE_NONE;
    bool deferral_logged = false;
    const int32_t pid = (int32_t)getpid();
    while (!worker_stop_requested()) {
        if (cw_child_gone(c))
            cw_die(c, "its coprocess went away while the worker was idle", -EPIPE);
        uint32_t idx;
        /* Targeted tasks first: an export holds up its job's result. */
        if ((c->stateful && ring_claim_mail(shm, w, pid, &idx) == 0) ||
            ring_claim(shm, g, w, &idx) == 0) {
            struct ring_slot *slot = ring_slot(shm, idx);
            atomic_store_explicit(&slot->worker_pid, pid, memory_order_relaxed);
            if (c->stateful)
                cw_drop_stale(c);
            switch (c->stateful ? slot->kind : RING_TASK_ITEMS) {
            case RING_TASK_EXPORT:
                cw_export(c, idx);
                break;
            case RING_TASK_DROP:
                worker_task_begin(shm, w, slot->state_key);
                cw_forget(c, slot->state_key, true);
                worker_task_done(shm, w, idx);
                break;
            case RING_TASK_REDUCE:
                cw_reduce(c, idx);
                break;
            default:
                items_run += cw_run_task(c, idx);
                break;
            }
            if ((max_items || max_rss) && !worker_stop_requested()) {
                uint64_t rss = max_rss ? worker_rss_bytes_of(child) : 0;
                recycle = worker_past_limit(items_run, max_items, rss, max_rss);
                if (recycle != WORKER_RECYCLE_NONE && c->stateful)
                    cw_drop_stale(c);
                if (recycle != WORKER_RECYCLE_NONE && c->n_keys > 0) {
                    /* A stateful job's counts live in the child: leaving
                     * now would make the engine run their items again. */
                    if (!deferral_logged)
                        log_info("worker %u (model %s) is past its %s limit but its child "
                                 "holds the state of %zu job(s): it is replaced after "
                                 "exporting it",
                                 w, gr->name, worker_recycle_reason_name(recycle), c->n_keys);
                    deferral_logged = true;
                    recycle = WORKER_RECYCLE_NONE;
                }
                if (recycle != WORKER_RECYCLE_NONE) {
                    log_debug("worker %u (model %s) leaves to be replaced: %" PRIu64
                              " items run (max_items %" PRIu64 "), its child %" PRIu64
                              " bytes resident (max_rss %" PRIu64 ")",
                              w, gr->name, items_run, max_items, rss, max_rss);
                    recycle_t0 = shm_now_mono_ns();
                    break;
                }
            }
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
    coproc_buf_free(&c->enc);
    free(c->keys);
    close(fd);
    if (recycle != WORKER_RECYCLE_NONE)
        worker_recycle_leave(me, recycle, recycle_t0);
    san_leak_check();
    _exit(recycle != WORKER_RECYCLE_NONE ? WORKER_EXIT_RECYCLE : 0);
}
