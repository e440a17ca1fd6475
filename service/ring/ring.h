/*
 * ring: the task slots and ready queues in shared memory, and the protocol
 * that moves a task from the engine (api process) to a worker and back.
 *
 * A task is a chunk of consecutive items of one job. It lives in a task
 * slot: a 64-bit atomic state word, metadata, and a payload area (inputs,
 * then outputs). Each model group owns a range of slots and a ready queue:
 * a ring of 64-bit entries (slot index | generation) with free-running
 * 64-bit head and tail counters over a power-of-two capacity.
 *
 * The state word is  gen:32 | worker:16 | code:8  and moves
 *
 *   FREE --engine: fill, then release-store READY(gen+1)--> READY
 *   READY --worker: CAS acq_rel READY(gen) -> CLAIMED(gen, w)--> CLAIMED
 *   CLAIMED --worker: outputs, then CAS release -> DONE(gen, w)--> DONE
 *   CLAIMED --supervisor, worker w dead: CAS release -> DIED(gen, w)--> DIED
 *   DONE | DIED --engine: read outputs, then release-store FREE(gen)--> FREE
 *
 * Who writes what:
 *   - slot metadata and inputs: the engine, only while the slot is FREE
 *     (the engine is the only one that moves a slot out of FREE, so it owns
 *     FREE slots exclusively). Published by the release store of READY;
 *     the worker's acquire CAS on READY pairs with it.
 *   - outputs and out_count: the claiming worker, while CLAIMED. Each output
 *     record is written, then out_count is release-stored (one per item), so
 *     the engine's acquire load of out_count sees complete records even if
 *     the worker died half-way through the next one.
 *   - cancel: the engine, any time; the worker reads it (relaxed) between
 *     items: a hint, never needed for correctness.
 *   - item_started_ns: the worker, around each item; the engine reads it
 *     (relaxed) to enforce deadlines. timeout_item: the engine, just before
 *     it SIGKILLs a worker whose item ran past its deadline, so that the
 *     DIED slot says which item timed out (only if out_count still equals
 *     timeout_item - 1 when the engine collects it: otherwise the worker
 *     had moved on and the death is treated like any other).
 *   - died_status: the supervisor, before its release CAS to DIED.
 *   - queue tail and entries: the engine only (one producer per group).
 *     Entry store (relaxed) then tail release-store; workers acquire-load
 *     tail before reading entries.
 *   - queue head: workers, by CAS (release), advisory only: see below. The
 *     engine's acquire load of head (room in the queue) pairs with it: the
 *     entries below head are consumed and may be overwritten.
 *   - mailbox (targeted tasks): the engine stores it after READY (release);
 *     the worker's exchange (acquire) pairs with it.
 *   - state_key: the engine, while FREE, for EXPORT and DROP only.
 *   - worker_pid: the claiming worker, right after its claim (relaxed: the
 *     engine reads it after the DONE/DIED acquire).
 *   - batch_n: the claiming worker, before each model call (relaxed: read
 *     after the DIED acquire, like item_started_ns). The engine cuts a
 *     batch it must split into smaller tasks: a task is at most one batch.
 *
 * The crash rule. A process may die at any instruction, so the single
 * source of truth is the slot's state word, and every ownership change is
 * one CAS on it:
 *   - the claim names the worker in the same CAS that takes the task, so
 *     the supervisor can always tell what a dead worker held: after reaping
 *     worker w (and before forking its replacement into the same worker
 *     slot) it CASes every CLAIMED(w) slot to DIED. The engine then keeps
 *     the outputs the worker committed (out_count) and re-queues the rest;
 *     the item that was running gets its attempt count raised.
 *   - the queue is only a hint of which slot to try next. A worker that dies
 *     between claiming a slot and advancing head leaves head on an entry
 *     whose slot is no longer READY with that generation; the next worker
 *     that looks there sees that and advances head for it (helping). Stale
 *     entries are harmless for the same reason: an entry is taken only if
 *     the slot's state is READY with the entry's generation, and every new
 *     READY has a new generation (no ABA).
 *   - the engine dying (the api process) leaves slots in any state; the next
 *     api process's engine reclaims them all (ring_reclaim_all) and ignores
 *     their outputs: their jobs died with the old process.
 *
 * Payload records. Input: n_items records of [u32 len][len bytes of JSON]
 * (RING_IN_HDR bytes of header; ring_put_input writes one, ring_next_input
 * reads them). Output: records of [u32 len][u8 kind][len bytes]
 * (RING_OUT_HDR; ring_put_output, ring_next_output), kind 0 = output JSON,
 * 1 = error message (UTF-8 text), 2 = the id of an object holding the
 * output JSON (reduce only); record k is the result of input item k.
 * Lengths are host byte order: every process is on the same machine.
 *
 * Job keys. ring_slot.job_key and shm_worker.current_job carry the
 * engine's job handle, laid out here (ring_key_make) because a worker
 * reads it too: the api epoch of the engine that made it (shm_header.
 * api_epoch, bumped by each new api process) in the top 24 bits, and the
 * engine's sequence number in the low 40. A worker drops a stateful job's
 * state whose key has another epoch than the current one (ring_key_epoch):
 * the api process that knew the job is gone.
 *
 * Processes: engine functions run in one thread of the api process; worker
 * functions in workers; ring_reclaim_worker in the supervisor.
 */
#ifndef BATCHD_RING_H
#define BATCHD_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "service/ring/shm.h"

enum ring_code {
    RING_FREE = 0,
    RING_READY = 1,
    RING_CLAIMED = 2,
    RING_DONE = 3,
    RING_DIED = 4,
};

#define RING_IN_HDR 4u  /* an input record's header: u32 len */
#define RING_OUT_HDR 5u /* an output record's header: u32 len, u8 kind */

/* Job keys (see "Job keys" above). */
#define RING_KEY_SEQ_BITS 40
static inline uint64_t ring_key_make(uint32_t epoch, uint64_t seq)
{
    return ((uint64_t)epoch << RING_KEY_SEQ_BITS) | (seq & ((UINT64_C(1) << RING_KEY_SEQ_BITS) - 1));
}
static inline uint32_t ring_key_epoch(uint64_t key) { return (uint32_t)(key >> RING_KEY_SEQ_BITS); }
static inline uint64_t ring_key_seq(uint64_t key)
{
    return key & ((UINT64_C(1) << RING_KEY_SEQ_BITS) - 1);
}

#define RING_OUT_OK 0u
#define RING_OUT_ERROR 1u
#define RING_OUT_OBJECT 2u /* the record is an object id: that object's bytes
                              are the output JSON (a reduced result larger
                              than the slot's output area) */

struct ring_slot {
    _Atomic uint64_t state;     /* gen:32 | worker:16 | code:8 */
    /* engine, while FREE */
    uint64_t job_key;           /* the engine's job handle (ring_key_make); 0 for a
                                   task that belongs to no job (DROP) */
    uint64_t first_index;       /* index of the first item in its job */
    uint64_t state_key;         /* EXPORT, DROP: the job key whose per-worker
                                   state to hand over or drop */
    uint32_t n_items;
    uint32_t in_len;            /* bytes of input records */
    uint32_t attempt;           /* tries of the first item so far (0 = first) */
    uint32_t group;
    uint32_t item_timeout_ms;   /* per-item deadline, 0 = none */
    _Atomic uint32_t cancel;    /* engine: stop after the current item */
    _Atomic uint32_t timeout_item; /* engine, when it kills the worker for a
                                      deadline: out_count + 1 at that moment */
    /* worker, while CLAIMED */
    _Atomic uint32_t out_count; /* committed output records */
    _Atomic uint32_t out_len;   /* bytes of committed output records */
    uint32_t kind;              /* engine, while FREE: enum ring_kind */
    _Atomic uint64_t run_ns;    /* time spent in model run() for this task */
    _Atomic uint64_t item_started_ns; /* CLOCK_MONOTONIC start of the running
                                         item, 0 between items (deadlines) */
    /* supervisor, before DIED */
    _Atomic int32_t died_status; /* waitpid status of the dead worker */
    /* engine, while FREE: a targeted task (ring_publish_to) names the one
     * worker process that may run it; 0 for any worker of the group */
    int32_t target_pid;
    /* worker, right after its claim: which process ran the task (a worker
     * slot is reused by the replacement of a dead process; stateful jobs
     * must know which process holds which state) */
    _Atomic int32_t worker_pid;
    /* worker, before each model call: how many items the call in progress
     * holds, from out_count on (1 for run(), n for run_batch()); the engine
     * reads it (relaxed, after the DIED acquire) to tell a crash or a
     * deadline it can blame on one item from one inside a batch, which it
     * splits (see "Batches" in include/batchd/model.h) */
    _Atomic uint32_t batch_n;
} __attribute__((aligned(64)));

/*
 * What a task asks of its worker (ring_slot.kind). Plain models only ever
 * see RING_TASK_ITEMS. A stateful model (model.h: acc_run...) also gets:
 *   REPLAY   items that already have their results, run again only to
 *            rebuild state a dead worker took with it (outputs ignored)
 *   EXPORT   targeted: hand over this worker's state for the job whose key
 *            is state_key (= job_key) as one output record (acc_export),
 *            then drop it
 *   DROP     targeted: drop the state of the job whose key is state_key
 *            (cancelled or failed job); no output. Its job_key is 0: a
 *            drop is no task of the job's and may outlive it
 *   REDUCE   one input record, the JSON array of every partial: one output
 *            record, the job's result (reduce)
 */
enum ring_kind {
    RING_TASK_ITEMS = 0,
    RING_TASK_REPLAY = 1,
    RING_TASK_EXPORT = 2,
    RING_TASK_DROP = 3,
    RING_TASK_REDUCE = 4,
};

static inline uint64_t ring_state(uint32_t gen, uint32_t worker, enum ring_code code)
{
    return ((uint64_t)gen << 32) | ((uint64_t)(worker & 0xffffu) << 8) | (uint64_t)code;
}
static inline enum ring_code ring_state_code(uint64_t s) { return (enum ring_code)(s & 0xffu); }
static inline uint32_t ring_state_worker(uint64_t s) { return (uint32_t)((s >> 8) & 0xffffu); }
static inline uint32_t ring_state_gen(uint64_t s) { return (uint32_t)(s >> 32); }

/* The slot and its payload areas. */
struct ring_slot *ring_slot(const struct shm *shm, uint32_t idx);
uint8_t *ring_slot_in(const struct shm *shm, uint32_t idx);
uint8_t *ring_slot_out(const struct shm *shm, uint32_t idx);

/* ---- engine (api process, one thread) ---- */

/*
 * Publishes the FREE slot idx, whose metadata and inputs the caller wrote,
 * on its group's ready queue. Returns 0, or -EAGAIN when the queue has no
 * room (state unchanged: try again after workers took entries), or -EBUSY
 * when the slot is not FREE (a bug in the caller).
 * Does not wake workers: call ring_notify_workers() after a batch.
 */
int ring_publish(struct shm *shm, uint32_t idx);

/*
 * Publishes the FREE slot idx for worker w only (its target_pid written by
 * the caller): READY, then w's mailbox (shm_worker.mail), then every
 * sleeping worker of the group is woken (only w will act). The engine keeps
 * at most one targeted task per worker in flight, so the mailbox is empty
 * here; a stale entry is overwritten (its slot is the engine's to retract).
 */
void ring_publish_to(struct shm *shm, uint32_t idx, uint32_t w);

/* Wakes up to n workers of group g sleeping for work. */
void ring_notify_workers(struct shm *shm, uint32_t g, int n);

/* Returns the slot's state word (acquire: pairs with the worker's release
 * CAS to DONE and the supervisor's to DIED, so outputs are visible). */
uint64_t ring_slot_state(const struct shm *shm, uint32_t idx);

/* Returns a DONE or DIED slot to FREE (release: our reads of its outputs
 * happen before any reuse). */
void ring_release(struct shm *shm, uint32_t idx);

/*
 * Takes back a task no worker has claimed yet (cancel, or a model that
 * cannot start): CAS READY -> FREE, racing the workers' claim fairly (one
 * CAS wins). Returns true if the slot is FREE again (the queue entry left
 * behind is stale and will be skipped), false if a worker claimed it first.
 */
bool ring_retract(struct shm *shm, uint32_t idx);

/*
 * At start-up of an api process: every slot not FREE belongs to a dead
 * engine. READY slots are taken back (CAS to FREE, racing workers fairly);
 * DONE/DIED ones are freed; CLAIMED ones are left for their workers to
 * finish. Returns the number of slots still CLAIMED (the engine must wait
 * for them to turn DONE/DIED before it reuses them).
 */
uint32_t ring_reclaim_all(struct shm *shm);

/* ---- worker ---- */

/*
 * Claims the oldest READY task of group g for worker w. Returns 0 with the
 * slot index in *idx, or -EAGAIN when there is none.
 */
int ring_claim(struct shm *shm, uint32_t g, uint32_t w, uint32_t *idx);

/*
 * Takes the task in worker w's mailbox, if any, for the process `pid`:
 * returns 0 with its slot in *idx (now CLAIMED by w), or -EAGAIN. A task
 * targeted at another process (w's dead predecessor) is left READY: the
 * engine sees its target is gone and takes it back.
 */
int ring_claim_mail(struct shm *shm, uint32_t w, int32_t pid, uint32_t *idx);

/*
 * Looks (without sleeping, without a system call) for a task in group g's
 * queue or worker w's mailbox for at most max_ns. Returns true if one may
 * be there (claim it: another worker may be faster).
 */
bool ring_poll_ready(struct shm *shm, uint32_t g, uint32_t w, uint64_t max_ns);

/*
 * Sleeps until a task may be READY in group g or in worker w's mailbox, at
 * most timeout_ms.
 * Returns 0, -ETIMEDOUT or -EINTR (a signal: check the stop flag).
 */
int ring_wait_ready(struct shm *shm, uint32_t g, uint32_t w, int timeout_ms);

/*
 * Appends output record for the next item of the CLAIMED slot idx and
 * commits it (release). Returns 0, or -ENOSPC when it does not fit in the
 * slot's output area (nothing written).
 */
int ring_put_output(struct shm *shm, uint32_t idx, uint32_t kind, const void *data, uint32_t len);

/* Marks the CLAIMED slot idx DONE (release) and wakes the engine. */
void ring_complete(struct shm *shm, uint32_t idx, uint32_t w);

/* ---- supervisor ---- */

/*
 * Worker w died with waitpid status `status`: every slot CLAIMED by w
 * becomes DIED (with the status recorded) and the engine is woken.
 * Async-signal-unsafe functions are not used, but call it from the
 * supervisor's loop, not a handler. Returns the number of slots changed.
 */
uint32_t ring_reclaim_worker(struct shm *shm, uint32_t w, int status);

/* ---- payload records ---- */

/*
 * Appends one input record ([u32 len][data]) to a slot's input area `in`
 * of `cap` bytes, of which *used are taken. Engine, while the slot is FREE
 * (it then sets in_len = *used). Returns 0 and advances *used, or -ENOSPC
 * when the record does not fit (nothing written).
 */
int ring_put_input(uint8_t *in, uint32_t *used, uint32_t cap, const void *data, size_t len);

/* Iterates input records: *pos starts at 0. Returns true and the record in
 * (*data, *len) while records remain within in_len; false at the end or on a
 * malformed record. */
bool ring_next_input(const struct shm *shm, uint32_t idx, uint32_t *pos, const uint8_t **data,
                     uint32_t *len);

/* Iterates committed output records (limit = out_len observed by the
 * caller). Same contract as ring_next_input, plus the record's kind. */
bool ring_next_output(const struct shm *shm, uint32_t idx, uint32_t limit, uint32_t *pos,
                      uint32_t *kind, const uint8_t **data, uint32_t *len);

/* Wakes the engine (workers on completion, supervisor on a death, api
 * threads on new work). */
void ring_notify_engine(struct shm *shm);

/* The engine's sleep: returns 0, -ETIMEDOUT or -EINTR. `has_work` is
 * re-checked after announcing (see futex.h). */
int ring_wait_engine(struct shm *shm, bool (*has_work)(void *), void *arg, int timeout_ms);

#endif
