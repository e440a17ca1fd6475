#include "workers/worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "workers/worker/host.h"
#include "workers/worker/worker_batch.h"
#include "service/core/jsonfmt.h"
#include "service/core/log.h"
#include "service/core/utf8.h"
#include "service/ring/ring.h"
#include "service/core/sanitizer.h"

static volatile sig_atomic_t worker_stop;

/* How long an idle worker looks for new work before it sleeps. */
#define WORKER_SPIN_NS 50000u

static void worker_on_term(int sig)
{
    (void)sig;
    worker_stop = 1;
}

/*
 * A stateful model's accumulators, one per job this process has run items
 * of (model.h: acc_run). Few at a time (jobs run side by side), so a small
 * array searched linearly. Keys are job keys (ring.h: ring_key_make): an
 * accumulator of an older api epoch (ring_key_epoch) belongs to a job of a
 * dead api process that will never export it, and is dropped.
 */
struct worker_acc {
    uint64_t key;
    void *acc;
};

struct worker_accs {
    struct worker_acc *a;
    size_t n, cap;
};

static void **worker_acc_slot(struct worker_accs *m, uint64_t key)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->a[i].key == key)
            return &m->a[i].acc;
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 8;
        struct worker_acc *a = realloc(m->a, nc * sizeof *a);
        if (!a)
            return NULL;
        m->a = a;
        m->cap = nc;
    }
    m->a[m->n] = (struct worker_acc){ key, NULL };
    return &m->a[m->n++].acc;
}

/* Frees the accumulator of `key` (if any) and forgets it. */
static void worker_acc_drop(struct worker_accs *m, const struct model_ops *ops, void *state,
                            uint64_t key)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->a[i].key != key)
            continue;
        if (m->a[i].acc)
            ops->acc_free(state, m->a[i].acc);
        m->a[i] = m->a[--m->n];
        return;
    }
}

static void worker_acc_drop_stale(struct worker_accs *m, const struct model_ops *ops, void *state,
                                  uint32_t epoch)
{
    for (size_t i = 0; i < m->n;) {
        if (ring_key_epoch(m->a[i].key) != epoch)
            worker_acc_drop(m, ops, state, m->a[i].key);
        else
            i++;
    }
}

/* Output encoding buffer, reused across items: one allocation per worker,
 * not per item, on the hot path. */
struct worker_buf {
    char *p;
    size_t cap;
};

/* json_dumpb's flags for every output of this worker: compact, any value,
 * and the JSON_REAL_PRECISION of its model (model_ops.real_digits), set once
 * in worker_main before the first item. */
static size_t worker_json_flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);

/* Encodes `v` into the buffer. Returns its length, or 0 on failure. */
static size_t worker_encode(struct worker_buf *b, const json_t *v)
{
    size_t n = json_dumpb(v, b->p, b->cap, worker_json_flags);
    if (n == 0)
        return 0;
    if (n > b->cap) {
        char *p = realloc(b->p, n);
        if (!p)
            return 0;
        b->p = p;
        b->cap = n;
        if (json_dumpb(v, b->p, b->cap, worker_json_flags) != n)
            return 0;
    }
    return jsonfmt_shorten(b->p, n);
}

size_t worker_utf8_repair(char *s)
{
    size_t replaced = 0;
    unsigned char *u = (unsigned char *)s;
    size_t left = strlen(s);
    while (*u) {
        size_t n = utf8_seq_len(u, left);
        if (n == 0) {
            *u = '?';
            replaced++;
            n = 1;
        }
        u += n;
        left -= n;
    }
    return replaced;
}

enum worker_recycle_reason worker_past_limit(uint64_t items, uint64_t max_items, uint64_t rss,
                                             uint64_t max_rss)
{
    if (max_items && items >= max_items)
        return WORKER_RECYCLE_ITEMS;
    if (max_rss && rss && rss >= max_rss)
        return WORKER_RECYCLE_RSS;
    return WORKER_RECYCLE_NONE;
}

const char *worker_recycle_reason_name(enum worker_recycle_reason r)
{
    switch (r) {
    case WORKER_RECYCLE_ITEMS: return "items";
    case WORKER_RECYCLE_RSS: return "rss";
    case WORKER_RECYCLE_NONE: break;
    }
    return "none";
}

uint64_t worker_rss_bytes(void) { return worker_rss_bytes_of(0); }

uint64_t worker_rss_bytes_of(pid_t pid)
{
    /* statm, not status or smaps_rollup: two numbers, no text to scan,
     * and the kernel computes it without walking the page tables. */
    char path[48] = "/proc/self/statm";
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

void worker_recycle_leave(struct shm_worker *me, enum worker_recycle_reason r, uint64_t t0)
{
    /* Read by the supervisor when it reaps WORKER_EXIT_RECYCLE, and by the
     * replacement once it is ready: relaxed is enough, this process's exit
     * and the supervisor's waitpid() order them. */
    atomic_store_explicit(&me->recycle_reason, (uint32_t)r, memory_order_relaxed);
    atomic_store_explicit(&me->recycle_at_ns, t0, memory_order_relaxed);
}

void worker_recycle_ready(struct shm_worker *me, uint32_t w, const char *model)
{
    uint64_t recycled_at = atomic_exchange_explicit(&me->recycle_at_ns, 0, memory_order_relaxed);
    if (!recycled_at)
        return;
    uint64_t gap = shm_now_mono_ns() - recycled_at;
    atomic_store_explicit(&me->last_recycle_ns, gap ? gap : 1, memory_order_relaxed);
    log_debug("worker %u (model %s): replacement ready %.3f ms after the recycle", w, model,
              (double)gap / 1e6);
}

/* Puts an item's error message, repaired to UTF-8 text (models write at
 * most 511 bytes into their err buffer; a longer message is cut here). */
int worker_put_error(struct shm *shm, uint32_t idx, const char *msg)
{
    char text[512];
    snprintf(text, sizeof text, "%s", msg);
    worker_utf8_repair(text);
    return ring_put_output(shm, idx, RING_OUT_ERROR, text, (uint32_t)strlen(text));
}

/* The bookkeeping around every task: the worker's visible state. */
void worker_task_begin(struct shm *shm, uint32_t w, uint64_t job_key)
{
    struct shm_worker *me = shm_worker(shm, w);
    atomic_store_explicit(&me->current_job, job_key, memory_order_relaxed);
    atomic_store_explicit(&me->task_started_ns, shm_now_mono_ns(), memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_BUSY, memory_order_relaxed);
}

void worker_task_done(struct shm *shm, uint32_t w, uint32_t idx)
{
    struct shm_worker *me = shm_worker(shm, w);
    atomic_store_explicit(&me->current_job, 0, memory_order_relaxed);
    atomic_store_explicit(&me->task_started_ns, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->tasks_done, 1, memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_IDLE, memory_order_relaxed);
    host_task_commit(); /* before complete: never READY for a task run again */
    ring_complete(shm, idx, w);
}

size_t worker_inline_max(const struct shm *shm)
{
    /* A quarter of the area: several large outputs still share a task, and
     * the first record of a task always fits, so that "no room" only ever
     * means "the rest goes in another task". */
    return (shm_header(shm)->out_cap - RING_OUT_HDR) / 4;
}

int worker_put_output(struct shm *shm, uint32_t idx, const char *json, size_t n, bool *ok)
{
    *ok = false;
    uint64_t max = shm_header(shm)->max_output;
    char msg[400];
    if ((max && n > max) || n > UINT32_MAX) {
        snprintf(msg, sizeof msg,
                 "output too large: %zu bytes, past the limit of %llu bytes (--max-output-size)",
                 n, (unsigned long long)(max && max < UINT32_MAX ? max : UINT32_MAX));
        return worker_put_error(shm, idx, msg);
    }
    if (n <= worker_inline_max(shm)) {
        int put = ring_put_output(shm, idx, RING_OUT_OK, json, (uint32_t)n);
        *ok = put == 0;
        return put;
    }
    /* Past a slot's share: the bytes go into an object that the engine
     * reads as the item's output and then deletes (the reduce path's
     * RING_OUT_OBJECT). It is committed with the task (host.h), so the
     * engine never reads one of a task that will run again. */
    const struct model_host *host = host_worker();
    struct model_object obj;
    void *data;
    char err[300] = "";
    uint64_t shape[1] = { n };
    if (host->object_new(MODEL_DTYPE_U8, 1, shape, &obj, &data, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "output of %zu bytes is larger than a task slot and cannot "
                 "go through an object: %s", n, err);
        return worker_put_error(shm, idx, msg);
    }
    memcpy(data, json, n);
    int put = ring_put_output(shm, idx, RING_OUT_OBJECT, obj.id, (uint32_t)strlen(obj.id));
    *ok = put == 0;
    return put; /* on -ENOSPC the caller's host_item_end(false) frees it */
}

/* Records one item's result in slot idx: rc == 0 with `out` (taken) or the
 * error message err. Settles the objects the item made (host.h) and counts
 * it. Returns ring_put_output's result: -ENOSPC = the output area is full,
 * nothing recorded (the engine re-queues the rest). */
static int worker_commit(struct shm *shm, uint32_t w, uint32_t idx, struct worker_buf *buf,
                         const struct model_ops *ops, int rc, json_t *out, const char *err)
{
    int put;
    bool ok = false;
    if (rc == 0) {
        size_t n = worker_encode(buf, out);
        if (n == 0)
            put = worker_put_error(shm, idx, "output could not be encoded as JSON");
        else
            put = worker_put_output(shm, idx, buf->p, n, &ok);
        if (!ok)
            host_drop_named(out); /* its objects go with its output */
        json_decref(out);
    } else if (err[0]) {
        put = worker_put_error(shm, idx, err);
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "model %s failed (%d)", ops->name, rc);
        put = worker_put_error(shm, idx, msg);
    }
    host_item_end(ok && put == 0); /* a re-queued item makes them anew */
    if (put == 0) {
        struct shm_worker *me = shm_worker(shm, w);
        atomic_fetch_add_explicit(ok ? &me->items_done : &me->items_failed, 1,
                                  memory_order_relaxed);
    }
    return put;
}

/* Times one model call of `n` items that took dt (the histogram is per
 * item: a batch's time is shared by its items). */
static void worker_time(struct shm_worker *me, uint64_t dt, size_t n)
{
    for (size_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&me->hist[shm_hist_bucket(dt / n)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->hist_sum_ns, dt, memory_order_relaxed);
}

/* Runs the batch b (items from record *k on) through run_batch and commits
 * each result. Returns false when the output area filled (the rest of the
 * task goes back to the engine). */
static bool worker_run_batch(struct shm *shm, uint32_t w, uint32_t idx,
                             const struct model_ops *ops, void *state, struct worker_buf *buf,
                             struct worker_batch *b, uint32_t *k, uint64_t *run_ns)
{
    struct ring_slot *slot = ring_slot(shm, idx);
    /* The engine reads batch_n if this process dies in the call: a crash
     * or a deadline inside a batch names no item (ring.h). */
    atomic_store_explicit(&slot->batch_n, (uint32_t)b->n, memory_order_relaxed);
    uint64_t t0 = shm_now_mono_ns();
    atomic_store_explicit(&slot->item_started_ns, t0, memory_order_relaxed);
    worker_batch_call(ops, state, b);
    uint64_t dt = shm_now_mono_ns() - t0;
    atomic_store_explicit(&slot->item_started_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->batch_n, 0, memory_order_relaxed);
    *run_ns += dt;
    worker_time(shm_worker(shm, w), dt, b->n);
    host_batch_settle(b->outputs, b->n);
    bool room = true;
    for (size_t i = 0; i < b->n; i++) {
        json_t *out = b->outputs[i];
        b->outputs[i] = NULL;
        if (!room) {
            host_drop_named(out); /* not recorded: made again when it reruns */
            json_decref(out);
            continue;
        }
        if (worker_commit(shm, w, idx, buf, ops, out ? 0 : -EINVAL, out, b->errors[i]) != 0)
            room = false;
        else
            (*k)++;
    }
    worker_batch_clear(b);
    return room;
}

/* Runs one item (NULL: it could not be read, and err says why; err is
 * empty otherwise) through run() or acc_run() and commits its result.
 * Returns false when the output area filled. */
static bool worker_run_one(struct shm *shm, uint32_t w, uint32_t idx, const struct model_ops *ops,
                           void *state, struct worker_buf *buf, void **acc, json_t *item,
                           char *err, uint32_t *k, uint64_t *run_ns)
{
    struct ring_slot *slot = ring_slot(shm, idx);
    json_t *out = NULL;
    int rc = -EINVAL;
    atomic_store_explicit(&slot->batch_n, 1, memory_order_relaxed);
    uint64_t t0 = shm_now_mono_ns();
    atomic_store_explicit(&slot->item_started_ns, t0, memory_order_relaxed);
    if (!item) {
        /* err says why */
    } else if (ops->acc_run && !acc) {
        snprintf(err, MODEL_ERR_LEN, "out of memory for the job's state");
        rc = -ENOMEM;
    } else {
        rc = worker_run_item(ops, state, acc, item, &out, err, MODEL_ERR_LEN);
    }
    uint64_t dt = shm_now_mono_ns() - t0;
    atomic_store_explicit(&slot->item_started_ns, 0, memory_order_relaxed);
    *run_ns += dt;
    json_decref(item);
    worker_time(shm_worker(shm, w), dt, 1);
    if (worker_commit(shm, w, idx, buf, ops, rc, out, err) != 0)
        return false;
    (*k)++;
    return true;
}

/* Runs every item of the claimed slot idx. Returns how many items it ran
 * to a recorded result (the count the recycle limit sees). A model with
 * run_batch gets the task's items in one call (cut where an item is not
 * valid JSON: the worker answers that one itself, in order); a batch of
 * one goes to run(). */
static uint32_t worker_run_task(struct shm *shm, uint32_t w, uint32_t idx,
                                const struct model_ops *ops, void *state, struct worker_buf *buf,
                                struct worker_accs *accs, struct worker_batch *batch)
{
    struct ring_slot *slot = ring_slot(shm, idx);
    worker_task_begin(shm, w, slot->job_key);

    uint32_t pos = 0, k = 0;
    const uint8_t *data;
    uint32_t len;
    uint64_t run_ns = 0;
    /* A stateful model's items add to this job's accumulator. */
    void **acc = ops->acc_run ? worker_acc_slot(accs, slot->job_key) : NULL;
    const bool batching = ops->run_batch && !ops->acc_run;
    bool more = true, room = true;
    while (more && room) {
        /* A hint from the engine (cancel); stopping early is always safe
         * because the engine re-queues or drops what has no output. */
        if (atomic_load_explicit(&slot->cancel, memory_order_relaxed) || worker_stop)
            break; /* a stop request is honoured between items too: the
                      grace period bounds one item, not a whole chunk */
        char err[MODEL_ERR_LEN] = "";
        json_t *item = NULL;
        more = false;
        /* Gather every item up to the end of the task or the first that
         * does not parse; without run_batch, one item. */
        while (ring_next_input(shm, idx, &pos, &data, &len)) {
            json_error_t jerr;
            item = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            if (!item)
                snprintf(err, sizeof err, "item is not valid JSON: %s", jerr.text);
            if (!item || !batching) {
                more = true;
                break;
            }
            if (worker_batch_add(batch, item) != 0) {
                snprintf(err, sizeof err, "out of memory for a batch");
                more = true;
                break;
            }
            item = NULL;
        }
        if (batch->n > 1) {
            room = worker_run_batch(shm, w, idx, ops, state, buf, batch, &k, &run_ns);
        } else if (batch->n == 1) {
            json_t *one = batch->items[0];
            char none[MODEL_ERR_LEN] = "";
            batch->n = 0;
            room = worker_run_one(shm, w, idx, ops, state, buf, acc, one, none, &k, &run_ns);
        }
        if (room && (item || err[0]))
            room = worker_run_one(shm, w, idx, ops, state, buf, acc, item, err, &k, &run_ns);
        else
            json_decref(item);
    }
    worker_batch_clear(batch);
    atomic_store_explicit(&slot->batch_n, 0, memory_order_relaxed);
    atomic_store_explicit(&slot->run_ns, run_ns, memory_order_relaxed);
    worker_task_done(shm, w, idx);
    return k;
}

int worker_run_item(const struct model_ops *ops, void *state, void **acc, const json_t *item,
                    json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = acc ? ops->acc_run(state, acc, item, out, err, errlen)
                 : ops->run(state, item, out, err, errlen);
    if (rc == 0 && !*out) {
        snprintf(err, errlen, "model %s returned no output", ops->name);
        return -EINVAL;
    }
    if (rc != 0 && *out) {
        /* model.h: a failing hook leaves *output NULL; one that did not
         * would leak it, once per failed item, for the life of the worker. */
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* Puts one JSON output record, or the error that it could not be. */
static void worker_put_json(struct shm *shm, uint32_t idx, struct worker_buf *buf, json_t *v,
                            const char *what)
{
    size_t n = worker_encode(buf, v);
    if (n == 0 || n > UINT32_MAX) {
        worker_put_error(shm, idx, "output could not be encoded as JSON");
        return;
    }
    if (ring_put_output(shm, idx, RING_OUT_OK, buf->p, (uint32_t)n) == -ENOSPC) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s too large: %zu bytes, a task slot holds %u", what, n,
                 shm_header(shm)->out_cap - RING_OUT_HDR);
        worker_put_error(shm, idx, msg);
    }
}

/* EXPORT: this process's state for the job, as one record; then drop it. */
static void worker_export(struct shm *shm, uint32_t w, uint32_t idx, const struct model_ops *ops,
                          void *state, struct worker_buf *buf, struct worker_accs *accs)
{
    struct ring_slot *slot = ring_slot(shm, idx);
    uint64_t key = slot->state_key;
    worker_task_begin(shm, w, key);
    void **acc = worker_acc_slot(accs, key);
    char err[512] = "";
    json_t *partial = NULL;
    int rc;
    if (!acc)
        rc = -ENOMEM;
    else if (!*acc)
        rc = 0, partial = json_null(); /* no item of the job succeeded here:
                                          nothing to hand over (the engine
                                          skips a null partial) */
    else
        rc = ops->acc_export(state, *acc, &partial, err, sizeof err);
    if (rc == 0 && partial) {
        worker_put_json(shm, idx, buf, partial, "partial state");
    } else {
        if (!err[0])
            snprintf(err, sizeof err, "model %s could not export its state (%d)", ops->name, rc);
        worker_put_error(shm, idx, err);
    }
    json_decref(partial);
    host_item_end(rc == 0); /* a failed export's objects go at once */
    worker_acc_drop(accs, ops, state, key);
    worker_task_done(shm, w, idx);
}

/* A job's reduced result can be far larger than an item's output (the
 * task slots are sized for items): past the output area it goes into an
 * object, committed with the task, and the record names it. */
static void worker_put_result(struct shm *shm, uint32_t idx, struct worker_buf *buf,
                              json_t *result)
{
    size_t n = worker_encode(buf, result);
    if (n == 0 || n > UINT32_MAX) {
        worker_put_error(shm, idx, "the reduced result could not be encoded as JSON");
        return;
    }
    if (ring_put_output(shm, idx, RING_OUT_OK, buf->p, (uint32_t)n) != -ENOSPC)
        return;
    const struct model_host *host = host_worker();
    struct model_object obj;
    void *data;
    char err[300];
    uint64_t shape[1] = { n };
    if (host->object_new(MODEL_DTYPE_U8, 1, shape, &obj, &data, err, sizeof err) != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "the reduced result (%zu bytes) fits no task slot nor object: %s",
                 n, err);
        worker_put_error(shm, idx, msg);
        return;
    }
    memcpy(data, buf->p, n);
    ring_put_output(shm, idx, RING_OUT_OBJECT, obj.id, (uint32_t)strlen(obj.id));
}

/* REDUCE: the one input record is the array of partials. */
static void worker_reduce(struct shm *shm, uint32_t w, uint32_t idx, const struct model_ops *ops,
                          const void *shared, struct worker_buf *buf)
{
    struct ring_slot *slot = ring_slot(shm, idx);
    worker_task_begin(shm, w, slot->job_key);
    uint32_t pos = 0, len;
    const uint8_t *data;
    char err[512] = "";
    json_t *partials = NULL, *result = NULL;
    int rc = -EINVAL;
    if (ring_next_input(shm, idx, &pos, &data, &len))
        partials = json_loadb((const char *)data, len, 0, NULL);
    if (!json_is_array(partials))
        snprintf(err, sizeof err, "the partial results are not a JSON array");
    else
        rc = ops->reduce(shared, partials, &result, err, sizeof err);
    if (rc == 0 && result) {
        worker_put_result(shm, idx, buf, result);
    } else {
        if (!err[0])
            snprintf(err, sizeof err, "model %s: reduce failed (%d)", ops->name, rc);
        worker_put_error(shm, idx, err);
    }
    json_decref(partials);
    json_decref(result);
    host_item_end(rc == 0);
    worker_task_done(shm, w, idx);
}

bool worker_stop_requested(void) { return worker_stop != 0; }

void worker_setup_process(uint32_t w, pid_t supervisor)
{
    log_set_proc("worker");
    proc_child_setup("batchd-worker", supervisor); /* die with the supervisor */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = worker_on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Workers are batch work: SCHED_BATCH and a lower priority let the
     * api process (status polls, submissions) have a core the moment it
     * needs one, even when every worker is busy. Throughput is unchanged:
     * the workers still get all the CPU nobody else wants. */
    struct sched_param sp = { .sched_priority = 0 };
    sched_setscheduler(0, SCHED_BATCH, &sp);
    if (setpriority(PRIO_PROCESS, 0, WORKER_NICE) != 0)
        log_debug("worker %u: cannot lower its priority: %s", w, strerror(errno));
}

void worker_main(struct shm *shm, uint32_t w, const struct model_ops *ops, const void *shared,
                 pid_t supervisor)
{
    worker_setup_process(w, supervisor);
    struct shm_worker *me = shm_worker(shm, w);
    uint32_t g = me->group;
    if (ops->real_digits >= 1 && ops->real_digits <= 17)
        worker_json_flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(ops->real_digits);
    void *state = NULL;
    char err[SHM_ERR_LEN] = "";
    uint64_t t0 = shm_now_mono_ns();
    int rc = ops->init ? ops->init(shared, host_worker(), &state, err, sizeof err) : 0;
    if (rc != 0) {
        if (!err[0])
            snprintf(err, sizeof err, "init() returned %d", rc);
        /* The supervisor logs it, once per attempt, with its back-off. */
        snprintf(me->init_error, sizeof me->init_error, "%s", err);
        atomic_store_explicit(&me->state, WORKER_FAILED, memory_order_release);
        _exit(WORKER_EXIT_INIT);
    }
    atomic_store_explicit(&me->init_ns, shm_now_mono_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->inits, 1, memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_IDLE, memory_order_release);
    log_debug("worker %u (model %s) ready", w, ops->name);
    /* The replacement of a recycled process: how long the slot was out of
     * service, from the old process's decision to now (its fini and exit,
     * the supervisor's reap and fork, this init). */
    worker_recycle_ready(me, w, ops->name);
    const struct shm_group *gr = shm_group(shm, g);
    const uint64_t max_items = gr->max_items, max_rss = gr->max_rss;
    if (max_rss) {
        uint64_t rss = worker_rss_bytes();
        if (rss >= max_rss)
            log_warn("worker %u (model %s): %" PRIu64 " bytes resident after init, already "
                     "past max_rss %" PRIu64 ": it will be replaced after every task",
                     w, ops->name, rss, max_rss);
    }
    uint64_t items_run = 0;
    enum worker_recycle_reason recycle = WORKER_RECYCLE_NONE;
    uint64_t recycle_t0 = 0;
    bool deferral_logged = false;

    struct worker_buf buf = { malloc(4096), 4096 };
    if (!buf.p)
        _exit(WORKER_EXIT_FATAL);
    struct worker_accs accs = { NULL, 0, 0 };
    struct worker_batch batch = { 0 };
    int32_t pid = (int32_t)getpid();
    while (!worker_stop) {
        uint32_t idx;
        /* Targeted tasks first: an export holds up its job's result. */
        if (ring_claim_mail(shm, w, pid, &idx) == 0 || ring_claim(shm, g, w, &idx) == 0) {
            struct ring_slot *slot = ring_slot(shm, idx);
            atomic_store_explicit(&slot->worker_pid, pid, memory_order_relaxed);
            if (ops->acc_run)
                worker_acc_drop_stale(&accs, ops, state,
                                      atomic_load_explicit(&shm_header(shm)->api_epoch,
                                                           memory_order_relaxed));
            switch (ops->acc_run ? slot->kind : RING_TASK_ITEMS) {
            case RING_TASK_EXPORT:
                worker_export(shm, w, idx, ops, state, &buf, &accs);
                break;
            case RING_TASK_DROP:
                worker_task_begin(shm, w, slot->state_key);
                worker_acc_drop(&accs, ops, state, slot->state_key);
                worker_task_done(shm, w, idx);
                break;
            case RING_TASK_REDUCE:
                worker_reduce(shm, w, idx, ops, shared, &buf);
                break;
            default:
                items_run += worker_run_task(shm, w, idx, ops, state, &buf, &accs, &batch);
                break;
            }
            /* The recycle check, between tasks: everything taken is
             * committed, nothing is held. RSS is read only when limited. */
            if ((max_items || max_rss) && !worker_stop) {
                uint64_t rss = max_rss ? worker_rss_bytes() : 0;
                enum worker_recycle_reason r = worker_past_limit(items_run, max_items, rss, max_rss);
                if (r != WORKER_RECYCLE_NONE && ops->acc_run)
                    worker_acc_drop_stale(&accs, ops, state,
                                          atomic_load_explicit(&shm_header(shm)->api_epoch,
                                                               memory_order_relaxed));
                if (r != WORKER_RECYCLE_NONE && accs.n == 0) {
                    log_debug("worker %u (model %s) leaves to be replaced: %" PRIu64
                              " items run (max_items %" PRIu64 "), %" PRIu64
                              " bytes resident (max_rss %" PRIu64 ")",
                              w, ops->name, items_run, max_items, rss, max_rss);
                    recycle = r;
                    recycle_t0 = shm_now_mono_ns();
                    break;
                }
                if (r != WORKER_RECYCLE_NONE && !deferral_logged) {
                    /* A stateful job's counts live in this process: leaving
                     * now would make the engine run their items again. */
                    log_info("worker %u (model %s) is past its %s limit but holds the state "
                             "of %zu job(s): it is replaced after exporting it",
                             w, ops->name, worker_recycle_reason_name(r), accs.n);
                    deferral_logged = true;
                }
            }
            continue;
        }
        /* Tiny tasks come in batches: the engine refills the queue a few
         * microseconds after it ran low. Looking again for a short while
         * before sleeping saves the engine a futex wake-up per worker per
         * batch (a sleeping worker costs a syscall and an IPI to wake; a
         * spinning one costs nothing to the engine, and little CPU: it is
         * niced below the api process). */
        if (ring_poll_ready(shm, g, w, WORKER_SPIN_NS))
            continue;
        /* A bounded sleep: the stop flag and a vanished parent are noticed
         * even if no wake-up ever comes. */
        ring_wait_ready(shm, g, w, 1000);
        if (getppid() != supervisor)
            break;
    }
    atomic_store_explicit(&me->state, WORKER_STOPPING, memory_order_relaxed);
    while (accs.n > 0)
        worker_acc_drop(&accs, ops, state, accs.a[0].key);
    free(accs.a);
    if (ops->fini)
        ops->fini(state);
    free(buf.p);
    worker_batch_free(&batch);
    if (recycle != WORKER_RECYCLE_NONE)
        worker_recycle_leave(me, recycle, recycle_t0);
    san_leak_check(); /* _exit skips LSan's own check */
    _exit(recycle != WORKER_RECYCLE_NONE ? WORKER_EXIT_RECYCLE : 0);
}
