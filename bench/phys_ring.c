/*
 * phys_ring: the physical limit of a cross-process handoff on this machine
 * (make bench, workload 1), with nothing of batchd's: the smallest ring
 * that does what batchd's dispatch must do, so that batchd's ring
 * (ring_limit) and batchd end to end (bench_e2e, chunk_size 1) can be put
 * against it in the same round.
 *
 * The parent plays the engine; W forked consumers play workers. Each
 * consumer has two single-producer single-consumer rings of 8-byte
 * messages in one MAP_SHARED mapping: tasks (parent -> consumer) and
 * results (consumer -> parent). The parent keeps at most RING_CAP tasks in
 * flight per consumer (so neither ring can overflow and no producer ever
 * waits), publishes a batch with one store of the head, and wakes the
 * consumer only if it said it was going to sleep (coalesced futex wakes:
 * one FUTEX_WAKE per batch, none while the consumer is busy). A consumer
 * takes everything published, echoes each task into its results ring,
 * publishes the batch and wakes the parent the same way. A side with
 * nothing to do spins briefly, then sleeps on a futex (a sequence word:
 * a wake between its check and its sleep makes FUTEX_WAIT return at once).
 * The parent checks that every task comes back exactly once (the sum and
 * the count of the echoed values).
 *
 * Usage: phys_ring [--items N] [--runs R] [--workers W] [--key KEY]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h.
 * Exit status 0, or 1 on a lost or wrong message, a consumer that died, or
 * a run over 120 s.
 */
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_stats.h"

#define RING_CAP 4096u /* messages per ring, a power of two */
#define MAX_WORKERS 16
#define SPIN 2000
#define RUN_LIMIT_S 120.0

/* A sleeper: the side that may sleep sets `waiting`, the other side wakes
 * it (only then) by bumping `seq`. */
struct sleeper {
    _Alignas(64) _Atomic uint32_t waiting;
    _Atomic uint32_t seq;
};

struct spsc {
    _Alignas(64) _Atomic uint64_t head; /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
    _Alignas(64) uint64_t slot[RING_CAP];
};

struct lane {
    struct spsc task, result;
    struct sleeper worker; /* the consumer sleeps here */
    _Atomic uint32_t stop;  /* set by the parent at the end of a run */
};

struct shared {
    struct sleeper parent;
    struct lane lane[MAX_WORKERS];
};

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static void wake(struct sleeper *s)
{
    if (atomic_exchange(&s->waiting, 0)) {
        atomic_fetch_add(&s->seq, 1);
        futex(&s->seq, FUTEX_WAKE, 1);
    }
}

/* Sleeps unless ready() turns true after `waiting` is set (seq_cst: the
 * producer's head store and its `waiting` load cannot both miss). */
static void sleep_on(struct sleeper *s, int (*ready)(void *), void *arg)
{
    uint32_t seq = atomic_load(&s->seq);
    atomic_store(&s->waiting, 1);
    if (!ready(arg))
        futex(&s->seq, FUTEX_WAIT, seq);
    atomic_store(&s->waiting, 0);
}

static int has_task(void *arg)
{
    struct lane *l = arg;
    return atomic_load(&l->stop) ||
           atomic_load(&l->task.head) != atomic_load_explicit(&l->task.tail, memory_order_relaxed);
}

static void consume(struct shared *sh, struct lane *l)
{
    uint64_t tail = 0, rhead = 0;
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        uint64_t head = atomic_load_explicit(&l->task.head, memory_order_acquire);
        if (head == tail) {
            int spun = 0;
            while (spun < SPIN && atomic_load_explicit(&l->task.head, memory_order_acquire) == tail) {
                __builtin_ia32_pause();
                spun++;
            }
            if (spun == SPIN)
                sleep_on(&l->worker, has_task, l);
            continue;
        }
        for (; tail < head; tail++, rhead++)
            l->result.slot[rhead & (RING_CAP - 1)] = l->task.slot[tail & (RING_CAP - 1)];
        atomic_store_explicit(&l->task.tail, tail, memory_order_release);
        atomic_store(&l->result.head, rhead); /* seq_cst: pairs with sleep_on */
        wake(&sh->parent);
    }
    _exit(0);
}

struct engine {
    struct shared *sh;
    int workers;
    uint64_t rtail[MAX_WORKERS];
};

static int has_result(void *arg)
{
    struct engine *e = arg;
    for (int w = 0; w < e->workers; w++)
        if (atomic_load(&e->sh->lane[w].result.head) != e->rtail[w])
            return 1;
    return 0;
}

/* One run: n tasks through the workers; 0, or -1 on a wrong echo. */
static int run(struct engine *e, uint64_t n, uint64_t *thead)
{
    struct shared *sh = e->sh;
    uint64_t sent = 0, got = 0, sum = 0;
    double t0 = bench_now_s();
    while (got < n) {
        int progress = 0;
        for (int w = 0; w < e->workers; w++) {
            struct lane *l = &sh->lane[w];
            /* results first: they free room in flight */
            uint64_t rh = atomic_load_explicit(&l->result.head, memory_order_acquire);
            if (rh != e->rtail[w]) {
                for (; e->rtail[w] < rh; e->rtail[w]++)
                    sum += l->result.slot[e->rtail[w] & (RING_CAP - 1)];
                progress = 1;
            }
            atomic_store_explicit(&l->result.tail, e->rtail[w], memory_order_release);
            uint64_t in_flight = thead[w] - e->rtail[w];
            uint64_t room = RING_CAP - in_flight;
            if (room > n - sent)
                room = n - sent;
            if (room > 0) {
                for (uint64_t k = 0; k < room; k++)
                    l->task.slot[(thead[w] + k) & (RING_CAP - 1)] = sent + k + 1;
                thead[w] += room;
                sent += room;
                atomic_store(&l->task.head, thead[w]); /* seq_cst: pairs with sleep_on */
                wake(&l->worker);
                progress = 1;
            }
        }
        got = 0;
        for (int w = 0; w < e->workers; w++)
            got += e->rtail[w];
        if (!progress) {
            int spun = 0;
            while (spun < SPIN && !has_result(e)) {
                __builtin_ia32_pause();
                spun++;
            }
            if (spun == SPIN)
                sleep_on(&sh->parent, has_result, e);
            if (bench_now_s() - t0 > RUN_LIMIT_S) {
                fprintf(stderr, "phys_ring: a run took over %.0f s\n", RUN_LIMIT_S);
                return -1;
            }
        }
    }
    return sum == n * (n + 1) / 2 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct bench_args args = {.items = 20000000, .runs = 5, .key = "w1.phys", .workers = 2};
    if (bench_parse_args(argc, argv, &args, MAX_WORKERS) != 0) {
        fprintf(stderr, "usage: phys_ring [--items N>=1] [--runs 1..100] [--workers 1..%d] "
                        "[--key K]\n", MAX_WORKERS);
        return 1;
    }
    uint64_t items = args.items;
    int runs = args.runs, workers = args.workers;
    const char *key = args.key;
    double secs[100];
    int status = 0;
    for (int r = 0; r < runs && status == 0; r++) {
        /* a fresh mapping and fresh consumers per run: every run starts
         * from zeroed counters */
        struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED) {
            perror("phys_ring: mmap");
            return 1;
        }
        pid_t kids[MAX_WORKERS];
        for (int w = 0; w < workers; w++) {
            kids[w] = fork();
            if (kids[w] < 0) {
                perror("phys_ring: fork");
                return 1;
            }
            if (kids[w] == 0)
                consume(sh, &sh->lane[w]);
        }
        struct engine e = {.sh = sh, .workers = workers};
        uint64_t thead[MAX_WORKERS] = {0};
        double t0 = bench_now_s();
        if (run(&e, items, thead) != 0) {
            fprintf(stderr, "phys_ring: the echoed tasks do not add up\n");
            status = 1;
        }
        secs[r] = bench_now_s() - t0;
        for (int w = 0; w < workers; w++) {
            atomic_store(&sh->lane[w].stop, 1);
            atomic_store(&sh->lane[w].worker.waiting, 1);
            wake(&sh->lane[w].worker);
        }
        for (int w = 0; w < workers; w++) {
            int st;
            if (waitpid(kids[w], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "phys_ring: consumer %d did not exit cleanly\n", w);
                status = 1;
            }
        }
        munmap(sh, sizeof *sh);
        if (status == 0)
            fprintf(stderr, "phys_ring run %d: %llu items, %d consumers, %.3f s (%.0f items/s)\n",
                    r + 1, (unsigned long long)items, workers, secs[r], (double)items / secs[r]);
    }
    if (status == 0)
        bench_print_result(key, (double)items, secs, runs);
    return status;
}
