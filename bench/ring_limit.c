/*
 * ring_limit: the hardware limit of batchd's dispatch (make bench, workload
 * 1): one-item tasks through batchd's own shared-memory ring (service/ring.h,
 * service/shm.h, linked from build/libbatchd.a) with nothing else: no HTTP,
 * no JSON, no model, no job store.
 *
 * The parent plays the engine: it keeps every task slot of the group in
 * flight, writing one input record per task (the item's decimal text),
 * publishing it and waking the workers as the engine does, then collecting
 * DONE slots (checking each output) and releasing them. Two forked
 * consumers play workers: claim, copy the input record to an output record
 * (echo), complete, and sleep on the ring's futex when there is nothing to
 * claim. batchd's items/s over this one is the share of the machine's
 * dispatch rate that batchd's HTTP, engine and store leave.
 *
 * Usage: ring_limit [--items N] [--runs R] [--workers W] [--key KEY]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h.
 * Exit status 0, or 1 on a wrong or missing output, a consumer that died,
 * or a run that took longer than 120 s.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "service/ring/ring.h"
#include "service/ring/shm.h"

#define MAX_WORKERS 16
#define RUN_LIMIT_S 120.0

/* A consumer: batchd's worker loop without the model. Exits when the
 * header's shutting_down is set (the parent wakes it). */
static void consume(struct shm *shm, uint32_t w)
{
    struct shm_header *h = shm_header(shm);
    while (!atomic_load_explicit(&h->shutting_down, memory_order_acquire)) {
        uint32_t idx;
        if (ring_claim(shm, 0, w, &idx) != 0) {
            ring_wait_ready(shm, 0, w, 100);
            continue;
        }
        uint32_t pos = 0, len;
        const uint8_t *data;
        while (ring_next_input(shm, idx, &pos, &data, &len))
            if (ring_put_output(shm, idx, RING_OUT_OK, data, len) != 0)
                break;
        ring_complete(shm, idx, w);
    }
    _exit(0);
}

struct engine {
    struct shm *shm;
    uint32_t n_slots;
    uint32_t *inflight, n_inflight;
    uint64_t *item_of; /* per slot: the item it carries */
};

static bool any_done(void *arg)
{
    struct engine *e = arg;
    for (uint32_t k = 0; k < e->n_inflight; k++)
        if (ring_state_code(ring_slot_state(e->shm, e->inflight[k])) == RING_DONE)
            return true;
    return false;
}

/* Writes item i into the FREE slot idx and publishes it. */
static int publish(struct engine *e, uint32_t idx, uint64_t i)
{
    char text[24];
    uint32_t len = (uint32_t)snprintf(text, sizeof text, "%llu", (unsigned long long)i);
    uint8_t *in = ring_slot_in(e->shm, idx);
    memcpy(in, &len, 4);
    memcpy(in + 4, text, len);
    struct ring_slot *s = ring_slot(e->shm, idx);
    s->job_key = 1;
    s->first_index = i;
    s->n_items = 1;
    s->in_len = 4 + len;
    s->attempt = 0;
    s->item_timeout_ms = 0;
    s->kind = RING_TASK_ITEMS;
    s->target_pid = 0;
    e->item_of[idx] = i;
    return ring_publish(e->shm, idx);
}

/* Reads and checks the output of the DONE slot idx. */
static int collect(struct engine *e, uint32_t idx)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
    uint32_t pos = 0, kind, len;
    const uint8_t *data;
    char want[24];
    int n = snprintf(want, sizeof want, "%llu", (unsigned long long)e->item_of[idx]);
    if (!ring_next_output(e->shm, idx, limit, &pos, &kind, &data, &len) || kind != RING_OUT_OK ||
        len != (uint32_t)n || memcmp(data, want, len) != 0) {
        fprintf(stderr, "ring_limit: wrong output for item %s\n", want);
        return -1;
    }
    ring_release(e->shm, idx);
    return 0;
}

/* One run of n items. Returns 0 or -1. */
static int run_once(struct engine *e, uint64_t n)
{
    uint32_t *free_slots = malloc(e->n_slots * sizeof *free_slots);
    if (!free_slots)
        return -1;
    uint32_t n_free = 0;
    for (uint32_t i = 0; i < e->n_slots; i++)
        free_slots[n_free++] = i;
    uint64_t next = 0, done = 0;
    double deadline = bench_now_s() + RUN_LIMIT_S;
    int rc = 0;
    while (done < n) {
        int published = 0;
        while (n_free > 0 && next < n) {
            uint32_t idx = free_slots[n_free - 1];
            if (publish(e, idx, next) != 0)
                break;
            n_free--;
            e->inflight[e->n_inflight++] = idx;
            next++;
            published++;
        }
        if (published)
            ring_notify_workers(e->shm, 0, published);
        bool got = false;
        for (uint32_t k = 0; k < e->n_inflight;) {
            uint32_t idx = e->inflight[k];
            if (ring_state_code(ring_slot_state(e->shm, idx)) != RING_DONE) {
                k++;
                continue;
            }
            if (collect(e, idx) < 0) {
                rc = -1;
                goto out;
            }
            e->inflight[k] = e->inflight[--e->n_inflight];
            free_slots[n_free++] = idx;
            done++;
            got = true;
        }
        if (!got) {
            if (bench_now_s() > deadline) {
                fprintf(stderr, "ring_limit: %llu of %llu items after %.0f s\n",
                        (unsigned long long)done, (unsigned long long)n, RUN_LIMIT_S);
                rc = -1;
                goto out;
            }
            ring_wait_engine(e->shm, any_done, e, 100);
        }
    }
out:
    free(free_slots);
    return rc;
}

int main(int argc, char **argv)
{
    struct bench_args args = {.items = 1000000, .runs = 5, .key = "ring", .workers = 2};
    if (bench_parse_args(argc, argv, &args, MAX_WORKERS) != 0) {
        fprintf(stderr, "usage: ring_limit [--items N>=1] [--runs 1..100] [--workers 1..%d] "
                        "[--key K]\n", MAX_WORKERS);
        return 1;
    }
    uint64_t items = args.items;
    int runs = args.runs;
    uint32_t workers = (uint32_t)args.workers;
    const char *key = args.key;

    /* The layout batchd's supervisor uses: 8 task slots per worker. */
    const char *names[] = {"echo"};
    struct shm_layout lay = {1, &workers, names, 8, 4096, 4096};
    struct shm shm;
    int rc = shm_create(&shm, &lay);
    if (rc < 0) {
        fprintf(stderr, "ring_limit: shm_create: %s\n", strerror(-rc));
        return 1;
    }
    struct engine e = {&shm, shm_header(&shm)->n_slots, NULL, 0, NULL};
    e.inflight = calloc(e.n_slots, sizeof *e.inflight);
    e.item_of = calloc(e.n_slots, sizeof *e.item_of);
    if (!e.inflight || !e.item_of)
        return 1;

    pid_t pids[MAX_WORKERS];
    for (uint32_t w = 0; w < workers; w++) {
        pids[w] = fork();
        if (pids[w] < 0) {
            perror("ring_limit: fork");
            return 1;
        }
        if (pids[w] == 0)
            consume(&shm, w);
    }

    double secs[100];
    int status = 0;
    for (int r = 0; r < runs && status == 0; r++) {
        double t0 = bench_now_s();
        if (run_once(&e, items) < 0) {
            status = 1;
            break;
        }
        secs[r] = bench_now_s() - t0;
        fprintf(stderr, "ring run %d: %llu one-item tasks in %.3f s (%.0f items/s)\n", r + 1,
                (unsigned long long)items, secs[r], (double)items / secs[r]);
    }

    atomic_store_explicit(&shm_header(&shm)->shutting_down, 1, memory_order_release);
    ring_notify_workers(&shm, 0, (int)workers);
    for (uint32_t w = 0; w < workers; w++) {
        int ws;
        /* consumers wake within their 100 ms wait at the latest */
        if (waitpid(pids[w], &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            fprintf(stderr, "ring_limit: consumer %u did not exit cleanly\n", w);
            status = 1;
        }
    }
    if (status == 0)
        bench_print_result(key, (double)items, secs, runs);
    free(e.inflight);
    free(e.item_of);
    shm_destroy(&shm);
    return status;
}
