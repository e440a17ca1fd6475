/*
 * engine_int.h: the engine's private header, shared by its files and by
 * nothing else (the public API is engine.h; only service/jobs/engine*.c
 * include this).
 *
 * The engine is one module split by concern:
 *   engine.c           create/destroy, the engine thread's loop, submit and
 *                      the Job view helpers (HTTP threads)
 *   engine_table.c     the job table: find by id or key, hash, status
 *                      counts, release, forget, evict, new ids
 *   engine_collect.c   results into jobs, retries, pins, finishing and
 *                      failing a job, collecting slots, deadlines, groups
 *   engine_dispatch.c  chunk sizes, fairness, writing tasks into the ring
 *   engine_stateful.c  stateful jobs: accumulators, export, replay, reduce,
 *                      targeted (mailbox) tasks, orphans
 *   engine_persist.c   the flusher thread, retention, recovery at start
 *   engine_query.c     listing, results pages, purge, cancel, streams,
 *                      long-poll watches
 *   engine_views.c     the workers/models JSON (/proc reads), readiness,
 *                      HTTP counters and /metrics
 *
 * Threads and the one lock: e->mu guards every field of struct engine and
 * everything reachable from it (jobs, groups, the run being collected),
 * except what is marked atomic and the HTTP counters (e->http_mu).
 * Three kinds of thread run this code: the engine thread (engine_main:
 * collect, wind stateful jobs, check groups and deadlines, dispatch, all
 * under e->mu; retention without it), the flusher thread
 * (engine_flusher_main: takes e->mu to take the dirty jobs, commits to
 * the store without it), and the HTTP threads (the public API in
 * engine.h: each takes e->mu briefly). engine_create and engine_destroy
 * run alone (no other thread yet, or none any more). Each declaration
 * below says which of these runs it and whether e->mu is held on entry;
 * "e->mu held" without a thread means any of them, holding the lock.
 */

#ifndef BATCHD_ENGINE_INT_H
#define BATCHD_ENGINE_INT_H

#include "service/jobs/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "service/core/id.h"
#include "service/core/jsonfmt.h"
#include "service/core/log.h"
#include "service/core/process.h"
#include "service/core/rfc3339.h"
#include <batchd/model.h>
#include "service/jobs/job_view.h"
#include "service/objects/objects.h"
#include "service/ring/ring.h"
#include "service/ring/shm.h"
#include "service/store/store.h"
#include "service/store/result_text.h"

#define ENGINE_TARGET_TASK_NS 5000000.0 /* aim: ~5 ms of model time per task */
#define ENGINE_MAX_CHUNK 4096u
#define ENGINE_FIRST_CHUNK 1u           /* until a cost was measured: an item of
                                           unknown cost may take seconds */
#define ENGINE_TICK_MS 200              /* housekeeping when nothing wakes us */
#define ENGINE_HTTP_BUCKETS 10

/* ----------------------------------------------------------------- jobs */

struct range {
    uint64_t start, count;
    /* retry only: the largest task these items may be dispatched in (0 =
     * any): a batch that crashed or passed its deadline is split in halves
     * (include/batchd/model.h, "Batches") */
    uint64_t batch;
};

/* A list of item ranges (what a stateful worker's state holds, what must be
 * replayed, what must be retried). */
struct ranges {
    struct range *r;
    size_t n, cap;
};

/*
 * Stateful jobs (SHM_GROUP_STATEFUL, model.h's acc_run...). For each worker
 * of the group: which process holds state for this job, and the items
 * whose successful runs went into that state. A worker process that dies
 * takes its state with it: its items are then run again (RING_TASK_REPLAY,
 * outputs ignored: each item keeps its one result) so that the state is
 * rebuilt somewhere, and the reduced result stays exact.
 */
struct job_acc {
    int32_t pid;       /* the process that ran tasks of this job, 0 = none */
    bool dirty;        /* it ran some since its last export */
    bool exporting;    /* an EXPORT task to it is in flight */
    struct ranges held; /* items whose state it holds */
};

struct job {
    uint64_t key; /* ring_key_make(api epoch, seq): what ring slots carry */
    char id[ENGINE_JOB_ID_LEN + 1];
    char model[64]; /* as submitted: a recovered job's model may not be loaded */
    uint32_t group;
    enum job_status status;
    uint64_t created_ns, started_ns, finished_ns; /* CLOCK_REALTIME, 0 = not yet */
    uint64_t total, done, failed;
    uint64_t inflight_items; /* items in tasks that are in the ring */
    uint32_t inflight_tasks;
    uint32_t chunk_size;     /* fixed by the client, or 0 */
    uint32_t item_timeout_ms; /* 0 = none */
    uint32_t max_attempts;
    uint64_t version;        /* bumped on every visible change (ETag) */
    bool cancel_requested;
    char *error;             /* job-level failure, for JOB_FAILED */

    struct job_items *items;
    uint64_t next_index;     /* first item never dispatched */
    struct ranges retry;     /* items to run again, in order */
    uint8_t *attempts;       /* per item, allocated at the first death */

    /* results live in the store; here only which items have one */
    uint8_t *has;            /* bitmap: item i has a recorded result */
    uint64_t sseq;           /* the job's row in the store */
    uint64_t flushed;        /* results known durable (done + failed at the
                                last successful store_flush) */
    uint64_t flush_target;   /* done + failed when the pending flush began */
    bool dirty;              /* on the engine's dirty list */
    uint64_t dirty_gen;      /* engine change generation of its last change */
    bool in_flush;           /* its changes are in the commit under way */
    bool deleted;            /* purged: freed when the last stream lets go */
    unsigned refs;           /* open streams */
    char *idem_key;
    uint64_t request_hash;

    struct job *newer, *older; /* the list, newest first */
    struct job *hnext;         /* id hash chain */
    struct job *knext;         /* key hash chain */
    bool active;               /* on its group's round-robin list */

    /* stateful models only (see struct job_acc) */
    bool stateful;
    bool on_stateful_list;     /* on its group's list of such jobs */
    struct job_acc *accs;      /* one per worker of the group */
    uint32_t n_accs;
    struct ranges replay;      /* items to run again for their state */
    json_t *partials;          /* exported partial states (array) */
    uint32_t exports_inflight;
    bool reduce_inflight;
    bool reduced;              /* its result is in the store */
    uint32_t reduce_tries;
    uint32_t state_losses;     /* worker deaths that took state with them */

    /* objects its items name ({"$object": ID}), pinned while it runs so
     * that a DELETE /v1/objects/{id} cannot free them under a task */
    char (*pins)[MODEL_OBJECT_ID_LEN + 1];
    size_t n_pins;

    /* long-poll (engine_watch): watches held, and the version the hook
     * last reported */
    unsigned watchers;
    uint64_t watch_version;
};

struct egroup {
    uint32_t *free_slots;
    uint32_t n_free;
    uint32_t *inflight; /* slot indices published or claimed */
    uint32_t n_inflight;
    struct job **active; /* jobs with work left to dispatch (round robin) */
    size_t n_active, cap_active, rr;
    double ns_per_item;   /* measured cost (EWMA), 0 = unknown */
    uint32_t n_workers;
    bool down;            /* its workers cannot get through init() */
    bool stateful;        /* SHM_GROUP_STATEFUL */
    uint32_t first_worker, first_slot;
    uint32_t *target;     /* per slot of the group: worker + 1 of a targeted
                             task in flight there, 0 = not targeted */
    bool *mail_busy;      /* per worker: a targeted task is in flight */
    struct job **sjobs;   /* stateful jobs not yet wound up */
    size_t n_sjobs, cap_sjobs;
};

struct http_stat {
    char route[48];
    char method[8];
    int status;
    uint64_t count;
    uint64_t buckets[ENGINE_HTTP_BUCKETS];
    double sum;
};

struct engine {
    const struct config *cfg;
    struct objects *objects; /* the object store (borrowed; NULL in tests without one) */
    struct shm *shm;
    uint32_t epoch;
    pthread_mutex_t mu;
    pthread_cond_t progress; /* broadcast when results or statuses change */
    pthread_t thread;
    bool thread_started;
    pthread_t flusher;       /* group commit runs beside the engine thread */
    bool flusher_started;
    pthread_cond_t flush_cv; /* wakes the flusher (with mu) */
    bool flusher_idle;       /* it waits for dirt, not for its next turn:
                                only then is it worth a wake-up */
    _Atomic bool stop;
    _Atomic bool kick;       /* api threads added work */
    bool accepting;
    uint64_t pending_items;  /* accepted, not finished: admission control */
    uint64_t jobs_submitted; /* jobs accepted since start (/metrics) */

    uint32_t n_groups;
    struct egroup *groups;

    /* Only jobs that are not finished, and finished ones until their last
     * row is flushed and nobody reads them (engine_evict): a finished job
     * is served from the store, so memory does not grow with retention. */
    struct job *newest, *oldest;
    uint64_t n_seq;          /* keys given so far (the low 40 bits of a key) */
    struct job **hash;       /* id -> job */
    struct job **khash;      /* key -> job (ring slots name jobs by key) */
    size_t hash_cap;         /* of both tables */
    uint64_t n_jobs;         /* in memory */
    uint64_t jobs_by_status[JOB_STATUS_COUNT]; /* every retained job, in
                                                  memory or in the store */
    uint64_t items_done_total, items_failed_total, tasks_retried, items_retried;

    pthread_mutex_t http_mu; /* the request counters: not the job mutex, so
                                that counting a request never waits for it */
    struct http_stat *http;
    size_t n_http, cap_http;

    struct store *store;
    struct job **dirty;      /* jobs with results or changes not yet flushed */
    size_t n_dirty, cap_dirty;
    uint64_t gen;            /* bumped by every change to a job's row */
    uint64_t last_flush_ns;  /* CLOCK_MONOTONIC */
    uint64_t last_retention_ns;
    int store_error;         /* last flush failure, 0 when healthy */
    uint64_t flush_retry_ns; /* after a failure: wait this long (doubling) */
    struct sbuf run;         /* Result texts of the run being collected */
    uint32_t *run_lens;
    uint64_t run_first;
    uint32_t run_n;
    struct job *run_job;     /* whose run it is (open across the slots of one
                                collect pass: one store block, not one per
                                task, when tasks are small) */
    uint32_t *done_slots;    /* scratch: the slots one collect pass takes */

    /* jobs with long-poll watchers (engine_watch), and the hook that wakes
     * them (engine_fire_watches) */
    struct job **watched;
    size_t n_watched, cap_watched;
    void (*watch_fn)(void *arg, const char *id);
    void *watch_arg;
    void (*flush_fn)(void *arg); /* engine_set_flush_hook */
    void *flush_arg;
};


/* ------------------------------------------------ cross-file helpers */

/* Whether job j has finished (any thread, e->mu held). */
static inline bool ejob_finished(const struct job *j) { return j->finished_ns != 0; }

/* Whether item i has a result: bit i of j->has (e->mu held). */
static inline bool ejob_has(const struct job *j, uint64_t i)
{
    return (j->has[i >> 3] >> (i & 7)) & 1;
}

/* Marks item i as having a result (e->mu held). */
static inline void ejob_set_has(struct job *j, uint64_t i)
{
    j->has[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* ---- engine_table.c: the job table */

/* The job with this id or key, or NULL: borrowed, valid while e->mu is
 * held (e->mu held; any thread). */
struct job *engine_find(struct engine *e, const char *id);
struct job *engine_find_key(struct engine *e, uint64_t key);
/* Adds j to the key hash, growing it; 0, or -ENOMEM with the table
 * unchanged (e->mu held, or engine_create alone). */
int engine_hash_insert(struct engine *e, struct job *j);
/* Sets j's status, keeping the per-status counts and persisting j
 * (e->mu held). */
void ejob_set_status(struct engine *e, struct job *j, enum job_status st);
/* Frees j and all it owns; j is in no table any more (no lock needed). */
void ejob_free(struct job *j);
/* Drops a hold taken by engine_hold: frees a purged j at its last hold,
 * else lets a finished j leave memory (HTTP thread, e->mu held). */
void engine_job_release(struct engine *e, struct job *j);
/* Deletes a finished j from memory, now or at its last hold (purge: HTTP
 * thread; retention: engine thread; e->mu held). */
void engine_forget_job(struct engine *e, struct job *j);
/* Drops a finished job from memory once the store has all of it
 * (e->mu held). */
void engine_evict(struct engine *e, struct job *j);
/* Removes j from an unordered list of jobs, if it is there (the list's
 * lock: e->mu held). */
void engine_jobs_remove(struct job **a, size_t *n, const struct job *j);
/* A new job id (any thread, no lock). */
void engine_new_id(char *out);

/* ---- engine_collect.c: results, finishing, collection */

/* j's store row as it stands (e->mu held). */
void ejob_row(const struct engine *e, const struct job *j, struct store_job *r);
/* Range lists: 0 or -ENOMEM (list unchanged); consume drops the first
 * count items (the owner's lock: e->mu held). */
int engine_ranges_add(struct ranges *l, uint64_t start, uint64_t count);
void engine_ranges_consume(struct ranges *l, uint64_t count);
/* Queues items [start, start+count) of j to be run again (e->mu held). */
int ejob_add_retry(struct job *j, uint64_t start, uint64_t count);
/* The same, in tasks of at most `batch` items (0 = any size). */
int ejob_add_retry_batch(struct job *j, uint64_t start, uint64_t count, uint64_t batch);
/* Puts j on its group's active list if it is not (e->mu held). */
void egroup_activate(struct egroup *g, struct job *j);
/* Whether j has items not yet dispatched or to retry (e->mu held). */
bool ejob_has_pending(const struct job *j);
/* Marks j dirty for the flusher (e->mu held). */
void ejob_persist(struct engine *e, struct job *j);
/* Pins the objects j's items name (e->mu held, or engine_create alone). */
void ejob_pin_objects(struct engine *e, struct job *j, const struct job_items *items);
/* Deletes the partial-state objects of a stateful job (e->mu held). */
void ejob_drop_partials(struct engine *e, struct job *j);
/* Finishes j if every item has a result and nothing runs (e->mu held). */
void ejob_check_finished(struct engine *e, struct job *j);
/* Fails j with reason why, stopping its tasks (e->mu held). */
void ejob_fail(struct engine *e, struct job *j, const char *why);
/* "worker died: ..." for a wait status, into buf (any thread, no lock). */
void engine_describe_death(int status, unsigned attempt, unsigned max, char *buf, size_t len);
/* Stops the tasks of cancelled jobs (engine thread or HTTP cancel, e->mu
 * held). */
void engine_stop_cancelled(struct engine *e);
/* The engine thread's passes (engine thread, e->mu held): take DONE and
 * DIED slots into their jobs; kill items past their deadline; mark groups
 * down or up. */
void engine_collect(struct engine *e);
void engine_check_deadlines(struct engine *e);
void engine_check_groups(struct engine *e);

/* ---- engine_dispatch.c: the ring's writer side (engine thread, e->mu held) */

/* Items per task for j in g (from the measured cost per item). */
uint32_t engine_chunk(const struct egroup *g, const struct job *j);
/* Writes j's next task into a free slot of g: 1 if written, 0 if none
 * could be, negative errno on failure. */
int engine_dispatch_one(struct engine *e, struct egroup *g, struct job *j);
/* Fills the ring from the active jobs, fairly across jobs and groups. */
void engine_dispatch(struct engine *e);

/* ---- engine_stateful.c: stateful jobs */

/* The accumulator record of j on the worker of slot s, created if needed;
 * NULL on -ENOMEM (engine thread, e->mu held). */
struct job_acc *ejob_acc_of(struct engine *e, struct egroup *g, struct job *j,
                            struct ring_slot *s, uint64_t st);
/* Collects a control task's slot (export, drop, reduce) (engine thread,
 * e->mu held). */
void engine_collect_control(struct engine *e, struct egroup *g, uint32_t idx, uint64_t st);
/* Exports, replays and reduces what stateful jobs need next (engine
 * thread, e->mu held). */
void engine_wind_stateful(struct engine *e);
/* Appends item i to a slot's input; false if it does not fit (no lock). */
bool engine_slot_put_item(uint8_t *in, uint32_t *len, uint32_t cap, const struct job_items *items,
                          uint64_t i);
/* Dispatches one replay task of j (engine thread, e->mu held). */
int engine_dispatch_replay(struct engine *e, struct egroup *g, struct job *j);
/* Sets up j's stateful bookkeeping: 0 or -ENOMEM (e->mu held: HTTP submit,
 * or engine_create's recovery alone). */
int ejob_make_stateful(struct engine *e, struct job *j);

/* ---- engine_persist.c: the store side */

/* Commits the dirty jobs and collected results: takes e->mu to take them,
 * commits without it (flusher thread; engine_destroy alone, force). */
void engine_flush(struct engine *e, bool force);
/* Forgets finished jobs past --retention (engine thread, e->mu not held:
 * takes it per batch). */
void engine_retention(struct engine *e);
/* The flusher thread's body (pthread_create in engine_create). */
void *engine_flusher_main(void *arg);
/* store_jobs_each_unfinished callback: rebuilds one job from its row
 * (engine_create alone, before the threads start). */
int engine_recover_job(void *arg, const struct store_job *row);

/* ---- engine.c */

/* pthread_cond_timedwait on cv for ms (e->mu held; any thread). */
void engine_timedwait(struct engine *e, pthread_cond_t *cv, int ms);
/* Tells the watch hook about every watched job that changed since it was
 * last told (e->mu held: engine thread, flusher thread, HTTP purge and
 * cancel). */
void engine_fire_watches(struct engine *e);
/* The group index of model, or -1 (any thread; groups are fixed at
 * create, no lock needed). */
int engine_group_of(struct engine *e, const char *model);
/* A Job object: the view filled under e->mu, the JSON (new reference)
 * built from it (HTTP thread, e->mu held). */
void ejob_view_fill(const struct engine *e, const struct job *j, struct job_view *v);
json_t *ejob_json(struct engine *e, const struct job *j);
/* Adds j to the tables: 0, or negative errno with nothing added (e->mu
 * held, or engine_create alone). */
int engine_insert_job(struct engine *e, struct job *j);
/* Whether model's group is stateful (any thread, no lock). */
bool engine_model_stateful(struct engine *e, const char *model);
/* The view of job id from memory, row or the store: 0, -ENOENT, -EIO
 * (HTTP thread, e->mu not held: takes it). */
int engine_view(struct engine *e, const char *id, const struct store_job *row,
                struct job_view *v, char *etag);
/* Finds job id for a reader: returns it held (refs; release with
 * engine_job_release under e->mu), or NULL with its stored row or *rc
 * (see engine.c) (HTTP thread, e->mu not held on entry or return). */
struct job *engine_hold(struct engine *e, const char *id, struct store_job *row, int *rc);

/* ---- engine_query.c */

/* Deletes stored job seq with its results: 0 or negative errno (e->mu not
 * held: a store call). */
int engine_delete_stored(struct engine *e, uint64_t seq, int status);

#endif
