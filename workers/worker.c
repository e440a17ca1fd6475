#include "worker.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "utf8.h"
#include "ring.h"
#include "sanitizer.h"

static volatile sig_atomic_t worker_stop;

static void worker_on_term(int sig)
{
    (void)sig;
    worker_stop = 1;
}

/* Output encoding buffer, reused across items: one allocation per worker,
 * not per item, on the hot path. */
struct worker_buf {
    char *p;
    size_t cap;
};

#define WORKER_JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

/* Encodes `v` into the buffer. Returns its length, or 0 on failure. */
static size_t worker_encode(struct worker_buf *b, const json_t *v)
{
    size_t n = json_dumpb(v, b->p, b->cap, WORKER_JSON_FLAGS);
    if (n == 0 || n <= b->cap)
        return n;
    char *p = realloc(b->p, n);
    if (!p)
        return 0;
    b->p = p;
    b->cap = n;
    return json_dumpb(v, b->p, b->cap, WORKER_JSON_FLAGS);
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

/* Puts an item's error message, repaired to UTF-8 text (models write at
 * most 511 bytes into their err buffer; a longer message is cut here). */
static int worker_put_error(struct shm *shm, uint32_t idx, const char *msg)
{
    char text[512];
    snprintf(text, sizeof text, "%s", msg);
    worker_utf8_repair(text);
    return ring_put_output(shm, idx, RING_OUT_ERROR, text, (uint32_t)strlen(text));
}

/* Runs every item of the claimed slot idx. */
static void worker_run_task(struct shm *shm, uint32_t w, uint32_t idx,
                            const struct model_ops *ops, void *state, struct worker_buf *buf)
{
    struct shm_worker *me = shm_worker(shm, w);
    struct ring_slot *slot = ring_slot(shm, idx);
    atomic_store_explicit(&me->current_job, slot->job_key, memory_order_relaxed);
    atomic_store_explicit(&me->task_started_ns, shm_now_mono_ns(), memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_BUSY, memory_order_relaxed);

    uint32_t pos = 0, k = 0;
    const uint8_t *data;
    uint32_t len;
    uint64_t run_ns = 0;
    while (ring_next_input(shm, idx, &pos, &data, &len)) {
        /* A hint from the engine (cancel); stopping early is always safe
         * because the engine re-queues or drops what has no output. */
        if (atomic_load_explicit(&slot->cancel, memory_order_relaxed) || worker_stop)
            break; /* a stop request is honoured between items too: the
                      grace period bounds one item, not a whole chunk */
        char err[512] = "";
        json_error_t jerr;
        json_t *item = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        json_t *out = NULL;
        int rc;
        uint64_t t0 = shm_now_mono_ns();
        atomic_store_explicit(&slot->item_started_ns, t0, memory_order_relaxed);
        if (!item) {
            snprintf(err, sizeof err, "item is not valid JSON: %s", jerr.text);
            rc = -EINVAL;
        } else {
            rc = ops->run(state, item, &out, err, sizeof err);
            if (rc == 0 && !out) {
                snprintf(err, sizeof err, "model %s returned no output", ops->name);
                rc = -EINVAL;
            }
        }
        uint64_t dt = shm_now_mono_ns() - t0;
        atomic_store_explicit(&slot->item_started_ns, 0, memory_order_relaxed);
        run_ns += dt;
        json_decref(item);
        atomic_fetch_add_explicit(&me->hist[shm_hist_bucket(dt)], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&me->hist_sum_ns, dt, memory_order_relaxed);

        int put;
        if (rc == 0) {
            size_t n = worker_encode(buf, out);
            json_decref(out);
            if (n == 0 || n > UINT32_MAX) {
                put = worker_put_error(shm, idx, "output could not be encoded as JSON");
            } else {
                put = ring_put_output(shm, idx, RING_OUT_OK, buf->p, (uint32_t)n);
                if (put == -ENOSPC && k == 0) {
                    /* Alone in the output area and still too big: that is
                     * the item's result, not a reason to retry. */
                    host_item_end(false); /* its objects go with its output */
                    char msg[160];
                    snprintf(msg, sizeof msg,
                             "output too large: %zu bytes, a task slot holds %u", n,
                             shm_header(shm)->out_cap - 5);
                    put = worker_put_error(shm, idx, msg);
                }
            }
        } else {
            if (!err[0])
                snprintf(err, sizeof err, "model %s failed (%d)", ops->name, rc);
            put = worker_put_error(shm, idx, err);
        }
        host_item_end(rc == 0 && put == 0); /* a re-queued item makes them anew */
        if (put != 0)
            break; /* output area full: the engine re-queues the rest */
        if (rc == 0)
            atomic_fetch_add_explicit(&me->items_done, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&me->items_failed, 1, memory_order_relaxed);
        k++;
    }
    atomic_store_explicit(&slot->run_ns, run_ns, memory_order_relaxed);
    atomic_store_explicit(&me->current_job, 0, memory_order_relaxed);
    atomic_store_explicit(&me->task_started_ns, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&me->tasks_done, 1, memory_order_relaxed);
    atomic_store_explicit(&me->state, WORKER_IDLE, memory_order_relaxed);
    host_task_commit(); /* before complete: never READY for a task run again */
    ring_complete(shm, idx, w);
}

void worker_main(struct shm *shm, uint32_t w, const struct model_ops *ops, const void *shared,
                 pid_t supervisor)
{
    log_set_proc("worker");
    prctl(PR_SET_NAME, "batchd-worker", 0, 0, 0);
    /* Die with the supervisor; the check after closes the race where it
     * died before the prctl. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != supervisor)
        _exit(WORKER_EXIT_FATAL);

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

    struct shm_worker *me = shm_worker(shm, w);
    uint32_t g = me->group;
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

    struct worker_buf buf = { malloc(4096), 4096 };
    if (!buf.p)
        _exit(WORKER_EXIT_FATAL);
    while (!worker_stop) {
        uint32_t idx;
        if (ring_claim(shm, g, w, &idx) == 0) {
            worker_run_task(shm, w, idx, ops, state, &buf);
            continue;
        }
        /* A bounded sleep: the stop flag and a vanished parent are noticed
         * even if no wake-up ever comes. */
        ring_wait_ready(shm, g, 1000);
        if (getppid() != supervisor)
            break;
    }
    atomic_store_explicit(&me->state, WORKER_STOPPING, memory_order_relaxed);
    if (ops->fini)
        ops->fini(state);
    free(buf.p);
    san_leak_check(); /* _exit skips LSan's own check */
    _exit(0);
}
