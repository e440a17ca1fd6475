/*
 * worker: the life of a worker process, from fork to exit.
 *
 * The supervisor forks one process per worker slot and calls worker_main()
 * in the child. The worker runs its model's init() once (the initializer),
 * then loops: claim a task from its group's ready queue (ring.h), run the
 * model on each item, commit each item's output to the slot, mark the task
 * DONE, and sleep on the group's futex when there is nothing to do.
 *
 * Process: worker only. Single-threaded unless the model starts threads.
 * Signals: SIGTERM asks the worker to stop after its current task; SIGINT is
 * ignored (a terminal's Ctrl-C reaches the whole process group, and the
 * supervisor decides the order of shutdown).
 *
 * Exit codes, read by the supervisor (supervisor.h classifies them):
 *   0                      orderly stop after SIGTERM
 *   WORKER_EXIT_FATAL      unusable setup (do not respawn)
 *   WORKER_EXIT_INIT       init() failed (respawn with back-off)
 *   WORKER_EXIT_COPROC     a coprocess model's child died (coproc_worker.h)
 * Anything else (a signal, another code) is a crash: its task is reclaimed.
 *
 * Ownership: everything passed in is borrowed and inherited from the
 * supervisor; the worker never frees the model's shared state.
 */
#ifndef BATCHD_WORKER_H
#define BATCHD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <batchd/model.h>
#include "service/ring/shm.h"

/* Workers run with this nice value (and SCHED_BATCH): the api process
 * stays responsive while every worker is busy. */
#define WORKER_NICE 10

#define WORKER_EXIT_FATAL 2
#define WORKER_EXIT_INIT 3
#define WORKER_EXIT_COPROC 4 /* its coprocess died or broke the protocol
                                (a crash: the task is reclaimed) */

/*
 * Makes the NUL-terminated s well-formed UTF-8 in place: each byte that
 * does not begin a well-formed sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF, no sequence cut short) becomes '?'.
 * The ring's error records are UTF-8 text (ring.h) and the engine copies
 * them into the results' JSON as they are, so every message a model
 * returns passes through here: a message its buffer cut in the middle of
 * a character, a plugin's raw bytes. Returns how many bytes were replaced
 * (0 for valid text, which is left exactly as it was).
 */
size_t worker_utf8_repair(char *s);

/* Puts an item's error message into slot idx, repaired to UTF-8 text and
 * cut at 511 bytes. Returns ring_put_output's result. */
int worker_put_error(struct shm *shm, uint32_t idx, const char *msg);

/* The process set-up every worker makes right after fork: its name, death
 * with the supervisor (exits WORKER_EXIT_FATAL if it is already gone),
 * signals (SIGTERM sets the stop flag), SCHED_BATCH and WORKER_NICE. */
void worker_setup_process(uint32_t w, pid_t supervisor);

/* The bookkeeping around every task: worker_task_begin() marks worker w
 * BUSY on job_key; worker_task_done() marks it IDLE, counts the task,
 * commits the objects its items made (host.h) and completes slot idx. */
void worker_task_begin(struct shm *shm, uint32_t w, uint64_t job_key);
void worker_task_done(struct shm *shm, uint32_t w, uint32_t idx);

/* True once SIGTERM asked this worker to stop. */
bool worker_stop_requested(void);

/* Runs worker slot w until told to stop; never returns. */
__attribute__((noreturn)) void worker_main(struct shm *shm, uint32_t w,
                                           const struct model_ops *ops, const void *shared,
                                           pid_t supervisor);

#endif
