/*
 * respawn: how the supervisor classifies a child's exit, and when it
 * forks the replacement. Pure policy, no process is touched here, so that
 * it is tested apart from fork and signals (tests/unit/service/supervisor/
 * test_respawn.c); supervisor.c acts on the answers.
 *
 * The classes (nginx's rule, service/core/process.h's codes):
 *   ORDERLY   exit 0: asked to stop, or nothing wrong;
 *   FATAL     exit 2 (PROC_EXIT_FATAL): the same start would fail again:
 *             a worker is not respawned, the api process stops batchd;
 *   INIT      a worker's exit 3 (WORKER_EXIT_INIT): its model's init()
 *             failed: respawned with back-off, the error shown by /readyz;
 *   RECYCLED  a worker's exit 4 (WORKER_EXIT_RECYCLE): past its recycling
 *             limits (items, RSS): replaced at once, counted as no failure;
 *   CRASH     a signal, or any other code: the child's work is reclaimed
 *             and it is respawned (at once, unless it keeps dying young).
 *
 * Back-off: a child that dies "young" (before SUP_STABLE_MS) counts one
 * more failure in a row, one that lived longer starts the count again; the
 * delay is SUP_BACKOFF_MIN_MS doubled per failure after the first, capped
 * at SUP_BACKOFF_MAX_MS: a failure that will repeat is not retried in a
 * tight loop, and one that will not is retried at once.
 *
 * Process: supervisor only. Not thread-safe (the supervisor has one thread).
 * Ownership: no allocation.
 */
#ifndef BATCHD_RESPAWN_H
#define BATCHD_RESPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Respawn back-off for a child that keeps failing: 100 ms doubling to 30 s. */
#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 30000
/* A child that lived this long before dying is not crash-looping. */
#define SUP_STABLE_MS 10000

enum sup_child_kind { SUP_CHILD_WORKER, SUP_CHILD_API };

enum sup_exit_class {
    SUP_EXITED_ORDERLY = 0,
    SUP_EXITED_FATAL,
    SUP_EXITED_INIT,
    SUP_EXITED_CRASH,
    SUP_EXITED_RECYCLED,
};

/* One per child: its pid and respawn policy (nginx keeps the same). */
struct sup_child {
    pid_t pid;
    uint64_t started_ms;     /* monotonic */
    uint64_t respawn_at_ms;  /* 0 = not waiting to respawn */
    unsigned failures;       /* consecutive quick deaths */
};

/* The class of a child's exit from its wait status. INIT and RECYCLED only
 * for a worker (the api process has no init() and no recycling: its 3 or 4
 * is a crash). */
enum sup_exit_class sup_classify(enum sup_child_kind kind, int status);

/* "orderly", "fatal", "init failed", "crash", "recycled". Static string. */
const char *sup_exit_class_name(enum sup_exit_class c);

/* Counts a death at now_ms: `failed` (one that should back off) and young
 * (now_ms - started_ms <= SUP_STABLE_MS) adds one to c->failures; a late
 * failure sets it to 1; a death that is no failure resets it to 0. */
void sup_count_failure(struct sup_child *c, bool failed, uint64_t now_ms);

/* The delay before respawning a child with c->failures failures in a row:
 * SUP_BACKOFF_MIN_MS for 0 or 1, doubling per failure, at most
 * SUP_BACKOFF_MAX_MS. */
uint64_t sup_backoff(const struct sup_child *c);

#endif
