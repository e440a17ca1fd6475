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
 * Exit codes (service/core/process.h), read by the supervisor:
 *   0                      orderly stop after SIGTERM
 *   WORKER_EXIT_FATAL      unusable setup (do not respawn)
 *   WORKER_EXIT_INIT       init() failed (respawn with back-off)
 *   WORKER_EXIT_RECYCLE    past its group's max_items or max_rss after a
 *                          task (replace at once; counted as a recycle)
 *   WORKER_EXIT_COPROC     a coprocess model's child died (coproc_worker.h)
 * Anything else (a signal, another code) is a crash: its task is reclaimed.
 *
 * Recycling (Celery's max_tasks_per_child and max_memory_per_child): a
 * model that leaks is replaced before it hurts. The check runs after each
 * task, never between items, so the process that leaves has committed every
 * item it took and holds no task; the limits are in its group
 * (shm_group.max_items, .max_rss). A worker of a stateful model that still
 * holds a job's accumulator (acc_run) does not leave: its counts would be
 * lost and their items run again; it leaves after its last export or drop.
 * The check is the model's business nowhere: any model, any host.
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
#include "service/core/process.h"
#include "service/ring/shm.h"

/* Workers run with this nice value (and SCHED_BATCH): the api process
 * stays responsive while every worker is busy. */
#define WORKER_NICE 10

/* WORKER_EXIT_FATAL, WORKER_EXIT_INIT, WORKER_EXIT_RECYCLE:
 * service/core/process.h. */

/* Why a worker left to be replaced (shm_worker.recycle_reason). */
enum worker_recycle_reason {
    WORKER_RECYCLE_NONE = 0,
    WORKER_RECYCLE_ITEMS, /* ran max_items items */
    WORKER_RECYCLE_RSS,   /* resident set past max_rss after a task */
};

/*
 * The recycle check after a task: a process that has run `items` items
 * and has `rss` bytes resident is past its limits when items >= max_items
 * or rss >= max_rss (a limit of 0 is no limit; an rss of 0, unknown, is
 * never past). The item limit is reported first when both hold. Pure.
 */
enum worker_recycle_reason worker_past_limit(uint64_t items, uint64_t max_items, uint64_t rss,
                                             uint64_t max_rss);

/* "items", "rss" (for logs, JSON and metric labels); "none" otherwise. */
const char *worker_recycle_reason_name(enum worker_recycle_reason r);

/*
 * This process's resident set in bytes, from /proc/self/statm (one read
 * of a short file: a few microseconds, done once per task, not per item).
 * Returns 0 when it cannot be read.
 */
uint64_t worker_rss_bytes(void);

/* The same for process pid (a coprocess worker's child, whose memory is
 * the model's); 0 when it cannot be read (the process is gone). */
uint64_t worker_rss_bytes_of(pid_t pid);

/*
 * The recycle bookkeeping in worker slot me, shared by both worker loops
 * (worker_main, coproc_worker_main). worker_recycle_leave: the process
 * that leaves records why (r) and when it decided (t0, CLOCK_MONOTONIC),
 * just before it exits WORKER_EXIT_RECYCLE. worker_recycle_ready: its
 * replacement, once ready, records how long the slot was out of service
 * (shm_worker.last_recycle_ns); a no-op for a worker that replaces none.
 */
void worker_recycle_leave(struct shm_worker *me, enum worker_recycle_reason r, uint64_t t0);
void worker_recycle_ready(struct shm_worker *me, uint32_t w, const char *model);

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

/*
 * Runs one item through the model: acc_run when `acc` is given (a stateful
 * model's accumulator slot), else run. The hook's contract is
 * include/batchd/model.h's; this is where batchd holds a model to it.
 * Returns 0 with *out a new reference (the caller releases it), or the
 * hook's negative errno (-EINVAL when it reported success but gave no
 * output) with *out NULL: an output a failing hook left behind is released
 * here, never used. `item` is borrowed.
 */
int worker_run_item(const struct model_ops *ops, void *state, void **acc, const json_t *item,
                    json_t **out, char *err, size_t errlen);

/* Puts an item's error message into slot idx, repaired to UTF-8 text and
 * cut at 511 bytes. Returns ring_put_output's result. */
int worker_put_error(struct shm *shm, uint32_t idx, const char *msg);

/*
 * Records an item's successful output (`json`, n bytes of compact JSON) in
 * slot idx, whatever its size:
 *   - up to worker_inline_max() bytes, in the slot's output area;
 *   - larger, in an object made for it (host->object_new, committed with
 *     the task), named by a RING_OUT_OBJECT record: the engine reads it as
 *     the output and deletes it, so the client sees the same result;
 *   - past shm_header.max_output (--max-output-size), or when no object
 *     can be made, an error record saying so.
 * *ok is true when the output was recorded as a success. Returns
 * ring_put_output's result: -ENOSPC = the area is full, nothing recorded
 * (the caller calls host_item_end(false), freeing an object it made).
 */
int worker_put_output(struct shm *shm, uint32_t idx, const char *json, size_t n, bool *ok);

/* The largest output kept in a task slot's output area (a quarter of it:
 * the first record of a task always fits). */
size_t worker_inline_max(const struct shm *shm);

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
