/*
 * engine.c: jobs, the dispatcher and the collector (see engine.h).
 *
 * One mutex guards all job state; the engine thread holds it while it
 * collects and dispatches, and releases it while it sleeps on the ring's
 * engine futex. HTTP threads take it briefly to read or change a job and
 * wake the engine thread (ring_notify_engine) when they add work.
 *
 * Exactly one result per item: a result is recorded only for an index that
 * has none (res_len[i] == 0), however many times a task carrying that index
 * was retried. Re-queued items are exactly those without a result.
 */
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
/* The upper bounds (seconds) of batchd_http_request_duration_seconds'
 * buckets: counted by engine_count_request, printed by engine_metrics. */
static const double engine_http_bounds[ENGINE_HTTP_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                0.025,  0.05,  0.1,    0.5,   1.0 };

/* ----------------------------------------------------------------- jobs */

struct range {
    uint64_t start, count;
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

static int engine_group_of(struct engine *e, const char *model);
static int engine_insert_job(struct engine *e, struct job *j);
static uint32_t engine_chunk(const struct egroup *g, const struct job *j);

static const char *const status_names[JOB_STATUS_COUNT] = { "queued", "running", "succeeded",
                                                            "failed", "cancelled" };

const char *engine_status_name(enum job_status s)
{
    return (unsigned)s < JOB_STATUS_COUNT ? status_names[s] : "unknown";
}

int engine_status_parse(const char *name)
{
    for (int i = 0; i < JOB_STATUS_COUNT; i++)
        if (!strcmp(name, status_names[i]))
            return i;
    return -1;
}

static bool job_finished(const struct job *j) { return j->finished_ns != 0; }

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static struct job *engine_find(struct engine *e, const char *id)
{
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return NULL;
    for (struct job *j = e->hash[hash_id(id) & (e->hash_cap - 1)]; j; j = j->hnext)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

static size_t hash_key(uint64_t key) { return (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20); }

static struct job *engine_find_key(struct engine *e, uint64_t key)
{
    if (ring_key_epoch(key) != e->epoch)
        return NULL;
    for (struct job *j = e->khash[hash_key(key) & (e->hash_cap - 1)]; j; j = j->knext)
        if (j->key == key)
            return j;
    return NULL;
}

/* Moves every job of both tables into tables of nc buckets. */
static int engine_rehash(struct engine *e, size_t nc)
{
    struct job **nh = calloc(nc, sizeof *nh), **nk = calloc(nc, sizeof *nk);
    if (!nh || !nk) {
        free(nh);
        free(nk);
        return -ENOMEM;
    }
    for (size_t i = 0; i < e->hash_cap; i++) {
        for (struct job *p = e->hash[i], *next; p; p = next) {
            next = p->hnext;
            size_t b = hash_id(p->id) & (nc - 1);
            p->hnext = nh[b];
            nh[b] = p;
        }
        for (struct job *p = e->khash[i], *next; p; p = next) {
            next = p->knext;
            size_t b = hash_key(p->key) & (nc - 1);
            p->knext = nk[b];
            nk[b] = p;
        }
    }
    free(e->hash);
    free(e->khash);
    e->hash = nh;
    e->khash = nk;
    e->hash_cap = nc;
    return 0;
}

/* Adds j (its id and key set) to both tables. Returns 0 or -ENOMEM. */
static int engine_hash_insert(struct engine *e, struct job *j)
{
    if ((e->n_jobs + 1) * 2 > e->hash_cap && engine_rehash(e, e->hash_cap * 2) != 0)
        return -ENOMEM;
    size_t b = hash_id(j->id) & (e->hash_cap - 1);
    j->hnext = e->hash[b];
    e->hash[b] = j;
    b = hash_key(j->key) & (e->hash_cap - 1);
    j->knext = e->khash[b];
    e->khash[b] = j;
    return 0;
}

static void job_persist(struct engine *e, struct job *j);

static void job_set_status(struct engine *e, struct job *j, enum job_status st)
{
    if (j->status == st)
        return;
    e->jobs_by_status[j->status]--;
    e->jobs_by_status[st]++;
    j->status = st;
    j->version++;
    job_persist(e, j);
}

static void job_free(struct job *j)
{
    for (uint32_t k = 0; k < j->n_accs; k++)
        free(j->accs[k].held.r);
    free(j->accs);
    free(j->replay.r);
    json_decref(j->partials);
    free(j->pins);
    job_items_free(j->items);
    free(j->retry.r);
    free(j->attempts);
    free(j->has);
    free(j->idem_key);
    free(j->error);
    free(j);
}

static void engine_evict(struct engine *e, struct job *j);

/* Drops a stream's or reader's hold on a job (mutex held); a purged job is
 * freed when the last hold goes, a finished one may leave memory. */
static void engine_job_release(struct engine *e, struct job *j)
{
    if (j->refs > 0)
        j->refs--;
    if (j->deleted && j->refs == 0)
        job_free(j);
    else
        engine_evict(e, j);
}

/* Removes j from an unordered list of jobs, if it is there. */
static void jobs_remove(struct job **a, size_t *n, const struct job *j)
{
    for (size_t i = 0; i < *n; i++) {
        if (a[i] == j) {
            a[i] = a[--*n];
            return;
        }
    }
}

/* Takes a job out of every in-memory table and list (mutex held). */
static void engine_unlink_job(struct engine *e, struct job *j)
{
    struct job **pp = &e->hash[hash_id(j->id) & (e->hash_cap - 1)];
    while (*pp && *pp != j)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = j->hnext;
    pp = &e->khash[hash_key(j->key) & (e->hash_cap - 1)];
    while (*pp && *pp != j)
        pp = &(*pp)->knext;
    if (*pp)
        *pp = j->knext;
    if (j->newer)
        j->newer->older = j->older;
    else
        e->newest = j->older;
    if (j->older)
        j->older->newer = j->newer;
    else
        e->oldest = j->newer;
    struct egroup *g = &e->groups[j->group];
    jobs_remove(e->dirty, &e->n_dirty, j);
    if (j->active)
        jobs_remove(g->active, &g->n_active, j);
    j->active = false;
    /* purged before its workers' states were dropped: they stay until those
     * workers end (rare: a purge right after a cancel) */
    if (j->on_stateful_list)
        jobs_remove(g->sjobs, &g->n_sjobs, j);
    j->on_stateful_list = false;
    e->n_jobs--;
}

/* Deletes a finished job from memory (mutex held; purge, retention): it is
 * freed now or when the last stream lets go (which then sees it purged).
 * jobs_by_status is the caller's: it counts the job until its rows are
 * deleted (engine_delete_stored). */
static void engine_forget_job(struct engine *e, struct job *j)
{
    engine_unlink_job(e, j);
    j->deleted = true;
    j->version++;
    if (j->refs == 0)
        job_free(j);
}

/* Drops a finished job from memory once the store has all of it: its last
 * row is flushed, no reader holds it, its workers hold no state of it.
 * From then on it is served from the store (mutex held). */
static void engine_evict(struct engine *e, struct job *j)
{
    if (!job_finished(j) || j->dirty || j->refs > 0 || j->deleted || j->on_stateful_list)
        return;
    if (e->run_n && e->run_job == j)
        return;
    engine_unlink_job(e, j);
    job_free(j);
}

/* 128 random bits as 26 characters of lowercase base32 (service/core/id.h). */
static void engine_new_id(char *out) { id_new(out); }

/* --------------------------------------------------------------- results */

/* Records item i's result unless it has one. Returns true if recorded. */
static inline bool job_has(const struct job *j, uint64_t i)
{
    return (j->has[i >> 3] >> (i & 7)) & 1;
}

static inline void job_set_has(struct job *j, uint64_t i)
{
    j->has[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static void engine_mark_dirty(struct engine *e, struct job *j)
{
    j->dirty_gen = ++e->gen;
    if (j->dirty)
        return;
    if (e->n_dirty == e->cap_dirty) {
        size_t nc = e->cap_dirty ? e->cap_dirty * 2 : 32;
        struct job **p = realloc(e->dirty, nc * sizeof *p);
        if (!p)
            abort(); /* a pointer per job; see the OOM policy */
        e->dirty = p;
        e->cap_dirty = nc;
    }
    e->dirty[e->n_dirty++] = j;
    j->dirty = true;
}

/* The job's row, as the store keeps it. */
static void job_row(const struct engine *e, const struct job *j, struct store_job *r)
{
    memset(r, 0, sizeof *r);
    r->seq = j->sseq;
    snprintf(r->id, sizeof r->id, "%s", j->id);
    (void)e;
    snprintf(r->model, sizeof r->model, "%s", j->model);
    r->status = (int)j->status;
    r->total = j->total;
    r->done = j->done;
    r->failed = j->failed;
    r->created_ns = j->created_ns;
    r->started_ns = j->started_ns;
    r->finished_ns = j->finished_ns;
    r->chunk_size = j->chunk_size;
    r->item_timeout_ms = j->item_timeout_ms;
    r->max_attempts = j->max_attempts;
    snprintf(r->error, sizeof r->error, "%s", j->error ? j->error : "");
    snprintf(r->idem_key, sizeof r->idem_key, "%s", j->idem_key ? j->idem_key : "");
    r->request_hash = j->request_hash;
}

/* Hands j's row to the store's buffer, with the run collected so far
 * (consecutive items from run_first) if that run is j's. Written by the
 * next flush. */
static void engine_end_run(struct engine *e, struct job *j)
{
    /* The open run may be another job's: a slot of j that made no result
     * (its worker died before its first commit) follows, in one collect
     * pass, slots of a job with a lower key. That run goes out under its
     * own job first; under j's seq it would land in j's results (or be
     * dropped by INSERT OR IGNORE on (job, first)) while its items' bits
     * say they have a result, so they would never run again. */
    if (e->run_n && e->run_job != j)
        engine_end_run(e, e->run_job);
    struct store_job row;
    job_row(e, j, &row);
    if (e->run_n) {
        if (store_put_results(e->store, j->sseq, e->run_first, e->run_n, e->run.data,
                              e->run_lens, &row) != 0)
            log_error("out of memory buffering results of job %s", j->id);
        e->run_n = 0;
        sbuf_reset(&e->run);
    } else {
        store_job_update(e->store, &row);
    }
    engine_mark_dirty(e, j);
}

/* Records item i's result unless it has one. Results of one run must be
 * consecutive (they are: a task's items are). Returns true if recorded. */
static bool job_put_result(struct engine *e, struct job *j, uint64_t i, bool ok,
                           const char *data, size_t len)
{
    if (i >= j->total || job_has(j, i))
        return false;
    if (e->run_n &&
        (e->run_job != j || e->run_first + e->run_n != i || e->run_n == ENGINE_MAX_CHUNK))
        engine_end_run(e, e->run_job);
    e->run_job = j;
    size_t mark = e->run.len;
    int rc;
    if (ok) {
        rc = sbuf_printf(&e->run, "{\"index\":%" PRIu64 ",\"output\":", i);
        if (!rc)
            rc = sbuf_append(&e->run, data, len);
        if (!rc)
            rc = sbuf_append(&e->run, "}", 1);
    } else {
        /* the message is text, not JSON: escape it */
        char *msg = strndup(data, len);
        rc = msg ? sbuf_printf(&e->run, "{\"index\":%" PRIu64 ",\"error\":{\"message\":", i)
                 : -ENOMEM;
        if (!rc)
            rc = sbuf_json_string(&e->run, msg);
        if (!rc)
            rc = sbuf_append(&e->run, "}}", 2);
        free(msg);
    }
    if (rc) {
        e->run.len = mark;
        log_error("out of memory recording a result of job %s", j->id);
        return false;
    }
    if (e->run_n == 0)
        e->run_first = i;
    e->run_lens[e->run_n++] = (uint32_t)(e->run.len - mark);
    job_set_has(j, i);
    e->pending_items--;
    if (ok) {
        j->done++;
        e->items_done_total++;
    } else {
        j->failed++;
        e->items_failed_total++;
    }
    j->version++;
    return true;
}

/* Appends [start, start+count) to the list, merged with the last range when
 * they touch. Returns 0 or -ENOMEM. */
static int ranges_add(struct ranges *l, uint64_t start, uint64_t count)
{
    if (count == 0)
        return 0;
    if (l->n > 0 && l->r[l->n - 1].start + l->r[l->n - 1].count == start) {
        l->r[l->n - 1].count += count;
        return 0;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct range *r = realloc(l->r, nc * sizeof *r);
        if (!r)
            return -ENOMEM;
        l->r = r;
        l->cap = nc;
    }
    l->r[l->n++] = (struct range){ start, count };
    return 0;
}

/* Removes the first `count` items of the list's first range. */
static void ranges_consume(struct ranges *l, uint64_t count)
{
    l->r[0].start += count;
    l->r[0].count -= count;
    if (l->r[0].count == 0) {
        memmove(l->r, l->r + 1, (l->n - 1) * sizeof *l->r);
        l->n--;
    }
}

static int job_add_retry(struct job *j, uint64_t start, uint64_t count)
{
    return ranges_add(&j->retry, start, count);
}

static void group_activate(struct egroup *g, struct job *j)
{
    if (j->active)
        return;
    if (g->n_active == g->cap_active) {
        size_t nc = g->cap_active ? g->cap_active * 2 : 16;
        struct job **a = realloc(g->active, nc * sizeof *a);
        if (!a)
            abort(); /* a few pointers per job; see the OOM policy */
        g->active = a;
        g->cap_active = nc;
    }
    g->active[g->n_active++] = j;
    j->active = true;
}

static bool job_has_pending(const struct job *j)
{
    /* Replays wait for the job's exports in flight: a worker's export then
     * holds exactly the items the engine recorded for it, never items of a
     * replay it ran after the export (which the engine could collect
     * first, and clear with the export) */
    return !j->cancel_requested && (j->retry.n > 0 || j->next_index < j->total ||
                                     (j->replay.n > 0 && j->exports_inflight == 0));
}

/* Items of a job that will never get a result stop counting against
 * admission control once the job has ended. */
static void job_persist(struct engine *e, struct job *j)
{
    struct store_job row;
    job_row(e, j, &row);
    store_job_update(e->store, &row);
    engine_mark_dirty(e, j);
}

/* Calls fn(arg, id) for every object reference {"$object": "ID"} in v. */
static void json_each_object_ref(const json_t *v, void (*fn)(void *, const char *), void *arg)
{
    if (json_is_object(v)) {
        const json_t *id = json_object_get(v, "$object");
        if (json_is_string(id)) { /* a reference (maybe with more members,
                                     as a partial's "entries") */
            fn(arg, json_string_value(id));
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
            json_each_object_ref(x, fn, arg);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
            json_each_object_ref(x, fn, arg);
    }
}

struct pin_ctx {
    struct engine *e;
    struct job *j;
};

/* Pins an object an item names, once per job; an unknown id is left to
 * the model, which answers that item with "object 'ID' not found". */
static void job_pin_one(void *arg, const char *id)
{
    struct pin_ctx *c = arg;
    struct job *j = c->j;
    if (!c->e->objects || strlen(id) != MODEL_OBJECT_ID_LEN)
        return;
    for (size_t i = 0; i < j->n_pins; i++)
        if (strcmp(j->pins[i], id) == 0)
            return;
    if (objects_pin(c->e->objects, id) != 0)
        return;
    void *p = realloc(j->pins, (j->n_pins + 1) * sizeof *j->pins);
    if (!p) {
        objects_unpin(c->e->objects, id);
        return;
    }
    j->pins = p;
    memcpy(j->pins[j->n_pins++], id, MODEL_OBJECT_ID_LEN + 1);
}

/* Pins every object the job's items name. Only items whose text mentions
 * "$object" are parsed: the common job names none and pays one memmem. */
static void job_pin_objects(struct engine *e, struct job *j, const struct job_items *items)
{
    static const char needle[] = "\"$object\"";
    struct pin_ctx c = { e, j };
    for (size_t i = 0; i < items->n; i++) {
        size_t len;
        const char *t = job_items_get(items, i, &len);
        if (!memmem(t, len, needle, sizeof needle - 1))
            continue;
        json_t *v = json_loadb(t, len, JSON_DECODE_ANY, NULL);
        json_each_object_ref(v, job_pin_one, &c);
        json_decref(v);
    }
}

static void job_unpin_objects(struct engine *e, struct job *j)
{
    for (size_t i = 0; i < j->n_pins; i++)
        objects_unpin(e->objects, j->pins[i]);
    free(j->pins);
    j->pins = NULL;
    j->n_pins = 0;
}

static void delete_object(void *arg, const char *id)
{
    struct engine *e = arg;
    if (e->objects)
        objects_delete(e->objects, id);
}

/* The partial states exported for a reduce live in objects made by the
 * workers: once the reduce ran (or the job ended), they go. */
static void job_drop_partials(struct engine *e, struct job *j)
{
    if (!j->partials)
        return;
    json_each_object_ref(j->partials, delete_object, e);
    json_array_clear(j->partials);
}

static void job_mark_finished(struct engine *e, struct job *j)
{
    job_unpin_objects(e, j);
    job_drop_partials(e, j);
    j->finished_ns = shm_now_real_ns();
    e->pending_items -= j->total - j->done - j->failed;
    /* its inputs are in the store; nothing will be dispatched again */
    job_items_free(j->items);
    j->items = NULL;
    j->version++;
    job_persist(e, j);
}

/* A job ends only once its results are durable: a client that sees
 * "succeeded" can read every result, even after a crash. */
static void job_check_finished(struct engine *e, struct job *j)
{
    if (j->finished_ns)
        return;
    bool durable = j->flushed == j->done + j->failed;
    if (j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        if (j->inflight_tasks == 0 && durable)
            job_mark_finished(e, j);
        return;
    }
    if (j->done + j->failed == j->total && durable && (!j->stateful || j->reduced)) {
        job_set_status(e, j, JOB_SUCCEEDED);
        job_mark_finished(e, j);
    }
}

/* Ends a job that cannot run: what is queued never runs, what runs now is
 * asked to stop; the job is failed with `why`. */
/* Stops a job's tasks in the ring (mutex held): the ones no worker has
 * claimed are taken back at once (their items are never run: a model
 * that cannot start would never claim them), the running ones are asked
 * to stop after their current item. */
static void job_stop_tasks(struct engine *e, struct job *j)
{
    struct egroup *g = &e->groups[j->group];
    for (uint32_t k = 0; k < g->n_inflight;) {
        uint32_t idx = g->inflight[k];
        struct ring_slot *s = ring_slot(e->shm, idx);
        /* targeted tasks (exports) finish on their own: the worker's
         * state must be handed over or dropped either way */
        if (s->job_key != j->key || s->target_pid) {
            k++;
            continue;
        }
        if (ring_retract(e->shm, idx)) {
            if (s->kind == RING_TASK_REDUCE)
                j->reduce_inflight = false;
            g->inflight[k] = g->inflight[--g->n_inflight];
            g->free_slots[g->n_free++] = idx;
            j->inflight_tasks--;
            j->inflight_items -= s->n_items;
            j->version++;
            continue;
        }
        atomic_store_explicit(&s->cancel, 1, memory_order_relaxed);
        k++;
    }
}

static void job_fail(struct engine *e, struct job *j, const char *why)
{
    if (j->finished_ns || j->status == JOB_CANCELLED || j->status == JOB_FAILED)
        return;
    free(j->error);
    j->error = strdup(why);
    j->cancel_requested = true;
    j->retry.n = 0;
    j->next_index = j->total;
    job_set_status(e, j, JOB_FAILED);
    job_stop_tasks(e, j);
    job_check_finished(e, j);
    log_warn("job %s failed: %s", j->id, why);
}

/* "worker died: signal 11 (SIGSEGV) on attempt 3/3" */
static void describe_death(int status, unsigned attempt, unsigned max, char *buf, size_t len)
{
    char how[64];
    proc_describe_status(status, how, sizeof how);
    snprintf(buf, len, "worker died: %s on attempt %u/%u", how, attempt, max);
}

/* ------------------------------------------------------- stateful jobs */

/* Worker deaths that took a job's state with them before the job gives up
 * (a model whose replays keep killing workers would otherwise never end). */
#define ENGINE_MAX_STATE_LOSSES 64u

/* Is `pid` still the live process of worker w? The new process writes its
 * pid before it takes any task (and the supervisor after fork), the
 * supervisor 0 once it reaped it: a task's worker_pid that is not the
 * slot's pid belongs to a dead process. */
static bool engine_worker_alive(const struct engine *e, uint32_t w, int32_t pid)
{
    return pid > 0 &&
           atomic_load_explicit(&shm_worker(e->shm, w)->pid, memory_order_acquire) == pid;
}

/* The process that held a's state is gone: what it held runs again. */
static void job_state_lost(struct engine *e, struct job *j, struct job_acc *a)
{
    if (a->held.n > 0 || a->dirty) {
        for (size_t k = 0; k < a->held.n; k++)
            if (ranges_add(&j->replay, a->held.r[k].start, a->held.r[k].count) != 0)
                job_fail(e, j, "out of memory rebuilding a worker's state");
        j->state_losses++;
        log_info("job %s: a worker died with its state; %zu range(s) of items run again", j->id,
                 a->held.n);
    }
    a->held.n = 0;
    a->pid = 0;
    a->dirty = false;
    if (j->state_losses > ENGINE_MAX_STATE_LOSSES) {
        char why[128];
        snprintf(why, sizeof why, "workers died with this job's state %u times: giving up",
                 j->state_losses);
        job_fail(e, j, why);
    }
}

/*
 * The accumulator record of the process that ran items task `s` (DONE or
 * DIED in state st), or NULL when that process is dead: then its
 * successes must run again. A live process that is not the one recorded
 * for its worker slot means the recorded one died.
 */
static struct job_acc *job_acc_of(struct engine *e, struct egroup *g, struct job *j,
                                  struct ring_slot *s, uint64_t st)
{
    uint32_t w = ring_state_worker(st);
    int32_t pid = atomic_load_explicit(&s->worker_pid, memory_order_relaxed);
    if (w < g->first_worker || w - g->first_worker >= j->n_accs)
        return NULL;
    struct job_acc *a = &j->accs[w - g->first_worker];
    if (ring_state_code(st) == RING_DIED || !engine_worker_alive(e, w, pid)) {
        if (pid && a->pid == pid)
            job_state_lost(e, j, a);
        return NULL;
    }
    if (a->pid != pid) {
        if (a->pid)
            job_state_lost(e, j, a);
        a->pid = pid;
    }
    a->dirty = true;
    return a;
}

/* Publishes a targeted task (EXPORT or DROP of job j's state) for worker
 * wl of group g. Returns 0, or -EAGAIN without a free slot. */
static int engine_post_targeted(struct engine *e, struct egroup *g, uint32_t gi, struct job *j,
                                uint32_t wl, enum ring_kind kind)
{
    if (g->n_free == 0)
        return -EAGAIN;
    uint32_t idx = g->free_slots[--g->n_free];
    struct ring_slot *s = ring_slot(e->shm, idx);
    s->job_key = kind == RING_TASK_EXPORT ? j->key : 0; /* a drop is no task of
                                                           the job's: it may
                                                           outlive it */
    s->first_index = 0;
    s->state_key = j->key; /* whose state */
    s->n_items = 0;
    s->in_len = 0;
    s->attempt = 0;
    s->item_timeout_ms = 0;
    s->kind = kind;
    s->target_pid = j->accs[wl].pid;
    (void)gi;
    ring_publish_to(e->shm, idx, g->first_worker + wl);
    g->inflight[g->n_inflight++] = idx;
    g->target[idx - g->first_slot] = wl + 1;
    g->mail_busy[wl] = true;
    if (kind == RING_TASK_EXPORT) {
        j->inflight_tasks++;
        j->exports_inflight++;
        j->accs[wl].exporting = true;
    }
    return 0;
}

/* Publishes the job's REDUCE task: one input record, the partials. */
static int engine_post_reduce(struct engine *e, struct egroup *g, uint32_t gi, struct job *j)
{
    if (g->n_free == 0)
        return -EAGAIN;
    char *text = jsonfmt_dumps(j->partials, JSON_COMPACT);
    if (!text) {
        job_fail(e, j, "out of memory gathering the partial results");
        return 0;
    }
    size_t len = strlen(text);
    uint32_t cap = shm_header(e->shm)->in_cap;
    if (len + RING_IN_HDR > cap) {
        char why[160];
        snprintf(why, sizeof why,
                 "the workers' partial results take %zu bytes; a task holds %u (--max-item-bytes)",
                 len, cap - RING_IN_HDR);
        free(text);
        job_fail(e, j, why);
        return 0;
    }
    uint32_t idx = g->free_slots[--g->n_free];
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t used = 0;
    ring_put_input(ring_slot_in(e->shm, idx), &used, cap, text, len); /* fits: checked above */
    free(text);
    s->job_key = j->key;
    s->first_index = 0;
    s->n_items = 1;
    s->in_len = used;
    s->attempt = j->reduce_tries;
    s->item_timeout_ms = 0;
    s->kind = RING_TASK_REDUCE;
    s->target_pid = 0;
    if (ring_publish(e->shm, idx) != 0) {
        g->free_slots[g->n_free++] = idx;
        return -EAGAIN;
    }
    g->inflight[g->n_inflight++] = idx;
    j->inflight_tasks++;
    j->reduce_inflight = true;
    ring_notify_workers(e->shm, gi, 1);
    return 0;
}

/* The first output record of a finished control task, if it has one. */
static bool engine_first_output(struct engine *e, uint32_t idx, uint32_t *kind,
                                const uint8_t **data, uint32_t *len)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t count = atomic_load_explicit(&s->out_count, memory_order_acquire);
    uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
    uint32_t pos = 0;
    return count >= 1 && ring_next_output(e->shm, idx, limit, &pos, kind, data, len);
}

/* Stores a REDUCE task's output as the job's result: the JSON itself, or
 * (RING_OUT_OBJECT) the bytes of the object it names, which then goes. */
static int engine_store_result(struct engine *e, struct job *j, uint32_t kind,
                               const uint8_t *data, uint32_t len)
{
    if (kind == RING_OUT_OK)
        return store_put_job_result(e->store, j->sseq, (const char *)data, len);
    char id[MODEL_OBJECT_ID_LEN + 1];
    struct objects_info info;
    if (len != MODEL_OBJECT_ID_LEN || !e->objects)
        return -EIO;
    memcpy(id, data, len);
    id[len] = '\0';
    if (objects_find(e->objects, id, &info) != 0)
        return -EIO;
    int rc = store_put_job_result(e->store, j->sseq, info.obj.data, info.obj.bytes);
    objects_delete(e->objects, id);
    return rc;
}

/* Collects an EXPORT, DROP or REDUCE task (DONE or DIED). */
static void engine_collect_control(struct engine *e, struct egroup *g, uint32_t idx, uint64_t st)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t wl1 = g->target[idx - g->first_slot];
    g->target[idx - g->first_slot] = 0;
    if (wl1)
        g->mail_busy[wl1 - 1] = false;
    struct job *j = s->kind == RING_TASK_DROP ? NULL : engine_find_key(e, s->job_key);
    if (!j)
        return;
    j->inflight_tasks--;
    j->version++;
    uint32_t kind = RING_OUT_ERROR, len = 0;
    const uint8_t *data = NULL;
    bool done = ring_state_code(st) == RING_DONE &&
                engine_first_output(e, idx, &kind, &data, &len);
    char msg[600];
    if (s->kind == RING_TASK_EXPORT && wl1) {
        struct job_acc *a = &j->accs[wl1 - 1];
        a->exporting = false;
        j->exports_inflight--;
        if (!done) {
            job_state_lost(e, j, a);
        } else if (kind == RING_OUT_OK) {
            /* the worker dropped its state with the export */
            json_t *p = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);
            if (p && !json_is_null(p))
                json_array_append(j->partials, p);
            json_decref(p);
            a->held.n = 0;
            a->dirty = false;
        } else {
            snprintf(msg, sizeof msg, "exporting worker %u's state failed: %.*s",
                     g->first_worker + wl1 - 1, (int)(len < 400 ? len : 400), data);
            a->held.n = 0;
            a->dirty = false;
            job_fail(e, j, msg);
        }
    } else if (s->kind == RING_TASK_REDUCE) {
        j->reduce_inflight = false;
        if (j->cancel_requested) {
            /* cancelled meanwhile: no result */
        } else if (done && (kind == RING_OUT_OK || kind == RING_OUT_OBJECT)) {
            int rc = engine_store_result(e, j, kind, data, len);
            if (rc != 0) {
                snprintf(msg, sizeof msg, "the job's result cannot be stored: %s",
                         strerror(-rc));
                job_fail(e, j, msg);
            } else {
                j->reduced = true;
            }
            job_drop_partials(e, j);
        } else if (done) {
            snprintf(msg, sizeof msg, "reduce failed: %.*s", (int)(len < 400 ? len : 400),
                     data);
            job_fail(e, j, msg);
        } else if (++j->reduce_tries >= j->max_attempts) {
            char death[160];
            describe_death(atomic_load_explicit(&s->died_status, memory_order_relaxed),
                           j->reduce_tries, j->max_attempts, death, sizeof death);
            snprintf(msg, sizeof msg, "reduce: %s", death);
            job_fail(e, j, msg);
        }
    }
    job_check_finished(e, j);
}

/* Targeted tasks whose process died before taking them are taken back
 * (the worker that replaces it will not take them: they name the dead
 * process). */
static void engine_retract_orphans(struct engine *e, struct egroup *g)
{
    for (uint32_t k = 0; k < g->n_inflight;) {
        uint32_t idx = g->inflight[k];
        struct ring_slot *s = ring_slot(e->shm, idx);
        uint32_t wl1 = g->target[idx - g->first_slot];
        if (!wl1 || engine_worker_alive(e, g->first_worker + wl1 - 1, s->target_pid) ||
            !ring_retract(e->shm, idx)) {
            k++;
            continue;
        }
        g->inflight[k] = g->inflight[--g->n_inflight];
        /* as if it died: an export's state is lost, a drop has nothing
         * left to drop */
        engine_collect_control(e, g, idx, ring_state(0, 0, RING_DIED));
        g->free_slots[g->n_free++] = idx;
    }
}

/*
 * Moves a stateful job on once its items are done (engine thread, mutex
 * held): states of dead processes are replayed, every process holding
 * state exports it, then one worker reduces the partials. A cancelled or
 * failed job's states are dropped. Returns true when the job needs
 * nothing more from this loop.
 */
static bool job_wind(struct engine *e, struct egroup *g, uint32_t gi, struct job *j)
{
    bool ended = j->status == JOB_CANCELLED || j->status == JOB_FAILED;
    if (ended) {
        if (j->inflight_tasks > 0)
            return false;
        bool left = false;
        for (uint32_t wl = 0; wl < j->n_accs; wl++) {
            struct job_acc *a = &j->accs[wl];
            if (!a->pid)
                continue;
            if (!engine_worker_alive(e, g->first_worker + wl, a->pid) ||
                (!g->mail_busy[wl] && engine_post_targeted(e, g, gi, j, wl, RING_TASK_DROP) == 0))
                a->pid = 0;
            else
                left = true;
        }
        return !left;
    }
    if (j->reduced)
        return true;
    /* states lost (a dead worker, a failed export): run their items again
     * once no export of the job is in flight */
    if (j->replay.n > 0 && j->exports_inflight == 0 && !j->cancel_requested)
        group_activate(g, j);
    if (j->done + j->failed < j->total || j->inflight_tasks > j->exports_inflight ||
        j->replay.n > 0 || j->retry.n > 0)
        return false;
    bool waiting = false;
    for (uint32_t wl = 0; wl < j->n_accs && !j->cancel_requested; wl++) {
        struct job_acc *a = &j->accs[wl];
        if (!a->pid || a->exporting) {
            waiting |= a->exporting;
            continue;
        }
        if (!engine_worker_alive(e, g->first_worker + wl, a->pid)) {
            job_state_lost(e, j, a);
            continue;
        }
        if (!a->dirty)
            continue;
        waiting = true;
        if (!g->mail_busy[wl])
            engine_post_targeted(e, g, gi, j, wl, RING_TASK_EXPORT);
    }
    if (j->cancel_requested)
        return false; /* failed while winding: the next pass drops */
    if (j->replay.n > 0)
        return false; /* activated above once the exports are back */
    if (!waiting && !j->reduce_inflight)
        engine_post_reduce(e, g, gi, j);
    return false;
}

static void engine_wind_stateful(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        if (!g->stateful)
            continue;
        engine_retract_orphans(e, g);
        for (size_t k = 0; k < g->n_sjobs;) {
            struct job *j = g->sjobs[k];
            if (job_wind(e, g, gi, j)) {
                j->on_stateful_list = false;
                g->sjobs[k] = g->sjobs[--g->n_sjobs];
                engine_evict(e, j);
            } else {
                k++;
            }
        }
    }
}

/* Appends item i's input record to a slot's input area (len bytes used of
 * cap). Returns false, writing nothing, when it does not fit. */
static bool slot_put_item(uint8_t *in, uint32_t *len, uint32_t cap, const struct job_items *items,
                          uint64_t i)
{
    size_t ilen;
    const char *text = job_items_get(items, (size_t)i, &ilen);
    return ring_put_input(in, len, cap, text, ilen) == 0;
}

/* Replays part of j->replay: items that already have their result, run
 * again only for the state (mutex held). Same returns as
 * engine_dispatch_one. */
static int engine_dispatch_replay(struct engine *e, struct egroup *g, struct job *j)
{
    struct shm *shm = e->shm;
    uint32_t idx = g->free_slots[g->n_free - 1];
    struct ring_slot *s = ring_slot(shm, idx);
    uint32_t cap = shm_header(shm)->in_cap;
    uint8_t *in = ring_slot_in(shm, idx);
    uint64_t start = j->replay.r[0].start, want = engine_chunk(g, j);
    if (want > j->replay.r[0].count)
        want = j->replay.r[0].count;
    uint32_t n = 0, len = 0;
    while (n < want) {
        uint64_t i = start + n;
        if (!slot_put_item(in, &len, cap, j->items, i))
            break;
        n++;
    }
    s->job_key = j->key;
    s->first_index = start;
    s->n_items = n;
    s->in_len = len;
    s->attempt = 0;
    s->item_timeout_ms = j->item_timeout_ms;
    s->kind = RING_TASK_REPLAY;
    s->target_pid = 0;
    if (ring_publish(shm, idx) != 0)
        return -EAGAIN;
    g->n_free--;
    g->inflight[g->n_inflight++] = idx;
    ranges_consume(&j->replay, n);
    j->inflight_tasks++;
    j->inflight_items += n;
    return 1;
}

/* Makes j a stateful job if its group's model is one (mutex held). */
static int job_make_stateful(struct engine *e, struct job *j)
{
    struct egroup *g = &e->groups[j->group];
    if (!g->stateful || j->finished_ns)
        return 0;
    j->stateful = true;
    j->n_accs = g->n_workers;
    j->accs = calloc(j->n_accs ? j->n_accs : 1, sizeof *j->accs);
    j->partials = json_array();
    if (g->n_sjobs == g->cap_sjobs) {
        size_t nc = g->cap_sjobs ? g->cap_sjobs * 2 : 16;
        struct job **a = realloc(g->sjobs, nc * sizeof *a);
        if (a) {
            g->sjobs = a;
            g->cap_sjobs = nc;
        }
    }
    if (!j->accs || !j->partials || g->n_sjobs == g->cap_sjobs)
        return -ENOMEM;
    g->sjobs[g->n_sjobs++] = j;
    j->on_stateful_list = true;
    return 0;
}

/* Takes the outputs of a DONE or DIED slot into its job, re-queues what has
 * no result, and frees the slot. */
static void engine_collect_slot(struct engine *e, struct egroup *g, uint32_t idx, uint64_t st)
{
    struct shm *shm = e->shm;
    struct ring_slot *s = ring_slot(shm, idx);
    if (s->kind != RING_TASK_ITEMS && s->kind != RING_TASK_REPLAY) {
        engine_collect_control(e, g, idx, st);
        ring_release(shm, idx);
        g->free_slots[g->n_free++] = idx;
        return;
    }
    struct job *j = engine_find_key(e, s->job_key);
    if (j) {
        bool replay = s->kind == RING_TASK_REPLAY;
        struct job_acc *a = j->stateful ? job_acc_of(e, g, j, s, st) : NULL;
        /* Acquire: pairs with the worker's release per committed record. */
        uint32_t count = atomic_load_explicit(&s->out_count, memory_order_acquire);
        uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
        uint32_t pos = 0, kind, len, k = 0;
        const uint8_t *data;
        while (k < count && k < s->n_items &&
               ring_next_output(shm, idx, limit, &pos, &kind, &data, &len)) {
            if (!replay)
                job_put_result(e, j, s->first_index + k, kind == RING_OUT_OK,
                               (const char *)data, len);
            /* A success went into the state of the process that ran it:
             * held there, or run again if that process is gone. */
            if (j->stateful && kind == RING_OUT_OK)
                ranges_add(a ? &a->held : &j->replay, s->first_index + k, 1);
            k++;
        }
        if (replay) {
            /* what did not run goes back; a replay never makes results */
            ranges_add(&j->replay, s->first_index + k, s->n_items - k);
            j->inflight_tasks--;
            j->inflight_items -= s->n_items;
            if (job_has_pending(j))
                group_activate(g, j);
            ring_release(shm, idx);
            g->free_slots[g->n_free++] = idx;
            return;
        }
        uint64_t run_ns = atomic_load_explicit(&s->run_ns, memory_order_relaxed);
        if (k > 0 && run_ns > 0 && !j->chunk_size) {
            double per = (double)run_ns / k;
            g->ns_per_item = g->ns_per_item > 0 ? 0.7 * g->ns_per_item + 0.3 * per : per;
        }
        uint64_t rest_start = s->first_index + k, rest = s->n_items - k;
        if (rest > 0 && !j->cancel_requested) {
            uint32_t timeout_item = atomic_load_explicit(&s->timeout_item, memory_order_relaxed);
            if (ring_state_code(st) == RING_DIED && timeout_item == k + 1) {
                /* Killed for its deadline: that is the item's result; the
                 * items after it did not run and go back to the queue. */
                char msg[96];
                snprintf(msg, sizeof msg, "timed out after %.3f s", j->item_timeout_ms / 1000.0);
                job_put_result(e, j, rest_start, false, msg, strlen(msg));
                job_add_retry(j, rest_start + 1, rest - 1);
            } else if (ring_state_code(st) == RING_DIED) {
                int status = atomic_load_explicit(&s->died_status, memory_order_relaxed);
                if (!j->attempts)
                    j->attempts = calloc(j->total, 1);
                unsigned tries = j->attempts ? ++j->attempts[rest_start] : j->max_attempts;
                if (tries >= j->max_attempts) {
                    /* A poison item: it killed its worker every time. */
                    char msg[160];
                    describe_death(status, tries, j->max_attempts, msg, sizeof msg);
                    job_put_result(e, j, rest_start, false, msg, strlen(msg));
                    log_warn("job %s item %" PRIu64 ": %s", j->id, rest_start, msg);
                } else {
                    /* Alone, so that a second death names the item exactly. */
                    job_add_retry(j, rest_start, 1);
                }
                job_add_retry(j, rest_start + 1, rest - 1);
                e->tasks_retried++;
            } else {
                job_add_retry(j, rest_start, rest);
            }
            e->items_retried += rest;
            if (job_has_pending(j))
                group_activate(g, j);
        }
        j->inflight_tasks--;
        j->inflight_items -= s->n_items;
        j->version++;
        /* an open run of this job carries its row when it ends (at the end
         * of this collect pass at the latest) */
        if (!(e->run_n && e->run_job == j))
            engine_end_run(e, j);
        job_check_finished(e, j);
    }
    ring_release(shm, idx);
    g->free_slots[g->n_free++] = idx;
}

/* Stops the tasks of jobs cancelled since the last pass (engine thread,
 * mutex held): engine_cancel runs on HTTP threads and only marks the job. */
static void engine_stop_cancelled(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        /* job_stop_tasks reorders the list: after each job, look again (it
         * ends: a stopped job's slots are gone or flagged) */
        bool again = true;
        while (again) {
            again = false;
            for (uint32_t k = 0; k < g->n_inflight; k++) {
                struct ring_slot *s = ring_slot(e->shm, g->inflight[k]);
                struct job *j = engine_find_key(e, s->job_key);
                if (j && j->cancel_requested && j->status == JOB_CANCELLED &&
                    !atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
                    job_stop_tasks(e, j);
                    job_check_finished(e, j);
                    again = true;
                    break;
                }
            }
        }
    }
}

/* Orders finished slots by job, then first item: consecutive small tasks
 * then add to one run of results (one store block). */
static int engine_slot_order(const void *a, const void *b, void *shm)
{
    const struct ring_slot *x = ring_slot(shm, *(const uint32_t *)a);
    const struct ring_slot *y = ring_slot(shm, *(const uint32_t *)b);
    if (x->job_key != y->job_key)
        return x->job_key < y->job_key ? -1 : 1;
    return x->first_index < y->first_index ? -1 : x->first_index > y->first_index;
}

static void engine_collect(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        uint32_t n = 0;
        for (uint32_t k = 0; k < g->n_inflight;) {
            uint32_t idx = g->inflight[k];
            enum ring_code c = ring_state_code(ring_slot_state(e->shm, idx));
            if (c == RING_DONE || c == RING_DIED) {
                g->inflight[k] = g->inflight[--g->n_inflight];
                e->done_slots[n++] = idx;
            } else {
                k++;
            }
        }
        qsort_r(e->done_slots, n, sizeof *e->done_slots, engine_slot_order, e->shm);
        for (uint32_t k = 0; k < n; k++) {
            /* DONE/DIED slots stay so until released: read it again (acquire) */
            uint64_t st = ring_slot_state(e->shm, e->done_slots[k]);
            engine_collect_slot(e, g, e->done_slots[k], st);
        }
    }
    if (e->run_n)
        engine_end_run(e, e->run_job);
}

/* --------------------------------------------------------------- dispatch */

static uint32_t engine_chunk(const struct egroup *g, const struct job *j)
{
    if (j->chunk_size)
        return j->chunk_size;
    if (g->ns_per_item <= 0)
        return ENGINE_FIRST_CHUNK;
    double n = ENGINE_TARGET_TASK_NS / g->ns_per_item;
    if (n < 1)
        return 1;
    return n > ENGINE_MAX_CHUNK ? ENGINE_MAX_CHUNK : (uint32_t)n;
}

/* How many tasks this group keeps in the ring: enough to keep every worker
 * busy while the engine refills (~10 ms of work each), few enough that a
 * newly submitted job gets its turn quickly. */
static uint32_t engine_depth(const struct engine *e, const struct egroup *g, uint32_t chunk)
{
    uint32_t slots = g->n_free + g->n_inflight;
    double task_ns = g->ns_per_item > 0 ? g->ns_per_item * chunk : ENGINE_TARGET_TASK_NS;
    double per_worker = ceil(10e6 / (task_ns > 1 ? task_ns : 1));
    double d = g->n_workers * (1 + (per_worker > 64 ? 64 : per_worker));
    (void)e;
    return d >= slots ? slots : (uint32_t)d;
}

/* Writes the next task of job j into a free slot and publishes it.
 * Returns 1 if a task was published, 0 if the job has nothing to give,
 * -EAGAIN if the ring had no room. */
static int engine_dispatch_one(struct engine *e, struct egroup *g, struct job *j)
{
    if (!job_has_pending(j) || g->n_free == 0)
        return 0;
    if (j->replay.n > 0 && j->exports_inflight == 0)
        return engine_dispatch_replay(e, g, j);
    struct shm *shm = e->shm;
    uint32_t idx = g->free_slots[g->n_free - 1];
    struct ring_slot *s = ring_slot(shm, idx);
    uint32_t cap = shm_header(shm)->in_cap;
    uint8_t *in = ring_slot_in(shm, idx);

    uint64_t start, avail;
    uint32_t attempt = 0;
    bool from_retry = j->retry.n > 0;
    if (from_retry) {
        start = j->retry.r[0].start;
        avail = j->retry.r[0].count;
        if (j->attempts && j->attempts[start] > 0) {
            attempt = j->attempts[start];
            avail = 1; /* a suspect runs alone */
        }
    } else {
        start = j->next_index;
        avail = j->total - j->next_index;
    }
    uint64_t want = engine_chunk(g, j);
    if (want > avail)
        want = avail;
    uint32_t n = 0, len = 0;
    while (n < want) {
        uint64_t i = start + n;
        /* Items that already have a result (from a task that died after
         * committing them) are not run again. */
        if (job_has(j, i)) {
            if (n == 0) {
                start++;
                want--;
                avail--;
                if (from_retry) {
                    j->retry.r[0].start++;
                    j->retry.r[0].count--;
                } else {
                    j->next_index++;
                }
                continue;
            }
            break;
        }
        if (!slot_put_item(in, &len, cap, j->items, i))
            break;
        n++;
    }
    if (from_retry && j->retry.r[0].count == 0)
        ranges_consume(&j->retry, 0);
    if (n == 0)
        return job_has_pending(j) ? engine_dispatch_one(e, g, j) : 0;

    s->job_key = j->key;
    s->first_index = start;
    s->n_items = n;
    s->in_len = len;
    s->attempt = attempt;
    s->item_timeout_ms = j->item_timeout_ms;
    s->kind = RING_TASK_ITEMS;
    s->target_pid = 0;
    int rc = ring_publish(shm, idx);
    if (rc != 0)
        return -EAGAIN; /* nothing consumed: the cursors move only below */
    g->n_free--;
    g->inflight[g->n_inflight++] = idx;
    if (from_retry) {
        ranges_consume(&j->retry, n);
    } else {
        j->next_index += n;
    }
    j->inflight_tasks++;
    j->inflight_items += n;
    if (j->status == JOB_QUEUED) {
        j->started_ns = shm_now_real_ns();
        job_set_status(e, j, JOB_RUNNING);
    }
    return 1;
}

static void engine_dispatch(struct engine *e)
{
    /* Draining for shutdown: what runs finishes, nothing new starts. */
    if (!e->accepting)
        return;
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        int published = 0;
        while (g->n_active > 0 && g->n_free > 0) {
            if (g->rr >= g->n_active)
                g->rr = 0;
            struct job *j = g->active[g->rr];
            if (!job_has_pending(j)) {
                j->active = false;
                g->active[g->rr] = g->active[--g->n_active];
                continue;
            }
            if (g->n_inflight >= engine_depth(e, g, engine_chunk(g, j)))
                break;
            int rc = engine_dispatch_one(e, g, j);
            if (rc < 0)
                break;
            published += rc;
            g->rr++; /* one task per job per turn: fairness between jobs */
        }
        if (published)
            ring_notify_workers(e->shm, gi, published);
    }
}

/* Kills the worker of any item running past its deadline. The death comes
 * back as a DIED slot that says which item timed out (see ring.h). */
static void engine_check_deadlines(struct engine *e)
{
    uint64_t now = shm_now_mono_ns();
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        for (uint32_t k = 0; k < g->n_inflight; k++) {
            uint32_t idx = g->inflight[k];
            struct ring_slot *s = ring_slot(e->shm, idx);
            uint64_t st = ring_slot_state(e->shm, idx);
            if (ring_state_code(st) != RING_CLAIMED || !s->item_timeout_ms ||
                atomic_load_explicit(&s->timeout_item, memory_order_relaxed))
                continue;
            uint64_t started = atomic_load_explicit(&s->item_started_ns, memory_order_relaxed);
            if (!started || now < started ||
                now - started <= (uint64_t)s->item_timeout_ms * 1000000ULL)
                continue;
            uint32_t w = ring_state_worker(st);
            pid_t pid = atomic_load_explicit(&shm_worker(e->shm, w)->pid, memory_order_acquire);
            if (pid <= 0)
                continue;
            uint32_t done = atomic_load_explicit(&s->out_count, memory_order_acquire);
            atomic_store_explicit(&s->timeout_item, done + 1, memory_order_relaxed);
            log_warn("item %" PRIu64 " ran past its %u ms deadline: killing worker %u (pid %d)",
                     s->first_index + done, s->item_timeout_ms, w, (int)pid);
            kill(pid, SIGKILL);
        }
    }
}

/* A group whose workers keep failing init() is down: its jobs fail with
 * the reason instead of waiting forever. It is up again as soon as one of
 * its workers gets through init(). */
#define ENGINE_DOWN_AFTER_FAILURES 3

static void engine_check_groups(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct shm_group *sg = shm_group(e->shm, gi);
        struct egroup *g = &e->groups[gi];
        bool any_ready = false;
        for (uint32_t k = 0; k < sg->n_workers && !any_ready; k++) {
            uint32_t st = atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->state,
                                               memory_order_relaxed);
            any_ready = st == WORKER_IDLE || st == WORKER_BUSY;
        }
        bool down = !any_ready && atomic_load_explicit(&sg->init_failures, memory_order_relaxed) >=
                                      ENGINE_DOWN_AFTER_FAILURES;
        if (down != g->down)
            log_warn("model %s is %s", sg->name, down ? "down: its workers cannot start" : "up");
        g->down = down;
        if (!down)
            continue;
        char why[SHM_ERR_LEN + SHM_NAME_LEN + 64];
        snprintf(why, sizeof why, "model %s cannot start: init failed: %s", sg->name,
                 sg->load_error);
        for (struct job *j = e->newest; j; j = j->older)
            if (j->group == gi && !j->finished_ns)
                job_fail(e, j, why);
    }
}

static bool engine_has_work(void *arg)
{
    struct engine *e = arg;
    if (atomic_load_explicit(&e->kick, memory_order_acquire) ||
        atomic_load_explicit(&e->stop, memory_order_acquire))
        return true;
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        for (uint32_t k = 0; k < g->n_inflight; k++) {
            enum ring_code c = ring_state_code(ring_slot_state(e->shm, g->inflight[k]));
            if (c == RING_DONE || c == RING_DIED)
                return true;
        }
    }
    return false;
}

/* Waits on cv (mu held) at most ms milliseconds. */
static void engine_timedwait(struct engine *e, pthread_cond_t *cv, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, &e->mu, &ts);
}

/* Tells the watch hook about every watched job that changed since it was
 * last told (mutex held). The cost is one comparison per watched job, at
 * the points where the engine already wakes its own waiters. */
static void engine_fire_watches(struct engine *e)
{
    for (size_t i = 0; e->watch_fn && i < e->n_watched; i++) {
        struct job *j = e->watched[i];
        if (j->version != j->watch_version) {
            j->watch_version = j->version;
            e->watch_fn(e->watch_arg, j->id);
        }
    }
}

#define ENGINE_FLUSH_NS 20000000ULL     /* group commit: a flush per 20 ms at most */
#define ENGINE_FLUSH_BYTES (8u << 20)   /* or when this much waits */
#define ENGINE_RETENTION_EVERY_NS 10000000000ULL

/* Group commit: writes what the dirty jobs accumulated in one transaction,
 * then lets the jobs whose results are now all durable finish. The commit
 * waits for the disk outside the mutex, so status polls never wait for it. */
static void engine_flush(struct engine *e, bool force)
{
    pthread_mutex_lock(&e->mu);
    uint64_t now = shm_now_mono_ns();
    bool due = force || now - e->last_flush_ns >= ENGINE_FLUSH_NS ||
               store_pending_bytes(e->store) > ENGINE_FLUSH_BYTES;
    /* a failing store (a full disk) is retried with back-off, not hammered */
    if (!force && e->store_error && now - e->last_flush_ns < e->flush_retry_ns)
        due = false;
    for (size_t i = 0; !due && !e->store_error && i < e->n_dirty; i++) {
        const struct job *j = e->dirty[i];
        due = j->done + j->failed == j->total && j->flushed < j->total;
    }
    if (e->n_dirty == 0 || !due) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    uint64_t gen = e->gen;
    for (size_t i = 0; i < e->n_dirty; i++) {
        e->dirty[i]->flush_target = e->dirty[i]->done + e->dirty[i]->failed;
        e->dirty[i]->in_flush = true;
    }
    pthread_mutex_unlock(&e->mu);

    int rc = store_flush(e->store);

    pthread_mutex_lock(&e->mu);
    e->last_flush_ns = now;
    if (rc != 0) {
        if (rc != e->store_error)
            log_error("engine: results cannot be written (%s); retrying", strerror(-rc));
        e->store_error = rc;
        e->flush_retry_ns = e->flush_retry_ns ? e->flush_retry_ns * 2 : 10000000ULL;
        if (e->flush_retry_ns > 1000000000ULL)
            e->flush_retry_ns = 1000000000ULL;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (e->store_error)
        log_info("engine: results are written again");
    e->store_error = 0;
    e->flush_retry_ns = 0;
    /* Jobs marked in_flush were in the transaction; those changed since
     * (a later generation) stay dirty for the next one. */
    struct job **done = malloc((e->n_dirty ? e->n_dirty : 1) * sizeof *done);
    size_t n_done = 0;
    for (size_t i = 0; i < e->n_dirty;) {
        struct job *j = e->dirty[i];
        if (j->in_flush) {
            j->in_flush = false;
            j->flushed = j->flush_target;
            if (j->dirty_gen <= gen) {
                j->dirty = false;
                e->dirty[i] = e->dirty[--e->n_dirty];
                if (done)
                    done[n_done++] = j;
                continue;
            }
        }
        i++;
    }
    for (size_t i = 0; i < n_done; i++) {
        job_check_finished(e, done[i]);
        /* finished and now wholly in the store: served from there */
        engine_evict(e, done[i]);
    }
    free(done);
    engine_fire_watches(e);
    if (e->flush_fn)
        e->flush_fn(e->flush_arg);
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
}

static int engine_delete_stored(struct engine *e, uint64_t seq, int status);

struct expired {
    uint64_t seq[128];
    int status[128];
    char id[128][ENGINE_JOB_ID_LEN + 1];
    size_t n;
};

static int expired_add(void *arg, const struct store_job *row)
{
    struct expired *x = arg;
    if (x->n < 128) {
        x->seq[x->n] = row->seq;
        x->status[x->n] = row->status;
        memcpy(x->id[x->n], row->id, ENGINE_JOB_ID_LEN);
        x->id[x->n][ENGINE_JOB_ID_LEN] = '\0';
        x->n++;
    }
    return 0;
}

/* Deletes jobs that finished longer ago than --retention, a few at a time,
 * found through the store's index on finished_ns. A job still in memory
 * (a stream reads it) is forgotten there too; one whose last row is not
 * flushed yet waits for the next round. */
static void engine_retention(struct engine *e)
{
    uint64_t now = shm_now_mono_ns();
    if (now - e->last_retention_ns < ENGINE_RETENTION_EVERY_NS)
        return;
    e->last_retention_ns = now;
    uint64_t cutoff = shm_now_real_ns() - (uint64_t)e->cfg->retention_s * 1000000000ULL;
    struct expired *x = calloc(1, sizeof *x);
    if (!x)
        return;
    store_jobs_finished_before(e->store, cutoff, 128, expired_add, x);
    size_t deleted = 0;
    for (size_t i = 0; i < x->n; i++) {
        pthread_mutex_lock(&e->mu);
        struct job *j = engine_find(e, x->id[i]);
        bool wait = j && j->dirty;
        if (j && !wait)
            engine_forget_job(e, j);
        pthread_mutex_unlock(&e->mu);
        if (!wait && engine_delete_stored(e, x->seq[i], x->status[i]) == 0)
            deleted++;
    }
    free(x);
    if (deleted)
        log_info("retention: deleted %zu job(s) finished more than %u s ago", deleted,
                 e->cfg->retention_s);
    /* deleted data frees disk space over time, not in one long stall */
    store_reclaim_space(e->store);
    /* Memory freed by requests and by jobs that left memory sits in holes
     * of the heap that malloc keeps (only the top of an arena goes back
     * by itself): a few MB after a busy spell, with nothing in use. Whole
     * free pages go back to the system here, so the process's RSS follows
     * what it holds (docs/architecture.md, "What is in memory"). */
    malloc_trim(0);
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    while (!atomic_load_explicit(&e->stop, memory_order_acquire)) {
        atomic_store_explicit(&e->kick, false, memory_order_release);
        pthread_mutex_lock(&e->mu);
        engine_collect(e);
        engine_stop_cancelled(e);
        engine_wind_stateful(e);
        engine_check_groups(e);
        engine_check_deadlines(e);
        engine_dispatch(e);
        /* a flusher between two group commits wakes on its own (5 ms):
         * signalling it on every pass would cost a wake-up per task */
        if (e->n_dirty && e->flusher_idle)
            pthread_cond_signal(&e->flush_cv);
        engine_fire_watches(e);
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->mu);
        engine_retention(e);
        ring_wait_engine(e->shm, engine_has_work, e, ENGINE_TICK_MS);
    }
    return NULL;
}

/* The flusher thread: commits what the engine collected, so that the
 * engine thread keeps dispatching while a commit waits for the disk. */
static void *engine_flusher_main(void *arg)
{
    struct engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!atomic_load_explicit(&e->stop, memory_order_acquire)) {
        if (e->n_dirty == 0) {
            e->flusher_idle = true;
            engine_timedwait(e, &e->flush_cv, ENGINE_TICK_MS);
            e->flusher_idle = false;
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        engine_flush(e, false);
        pthread_mutex_lock(&e->mu);
        /* not due yet, or just written: look again in a few ms */
        engine_timedwait(e, &e->flush_cv, 5);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ----------------------------------------------------------- recovery */

static int recover_range(void *arg, uint64_t first, uint32_t n)
{
    struct job *j = arg;
    for (uint64_t i = first; i < first + n && i < j->total; i++)
        job_set_has(j, i);
    return 0;
}

/* Rebuilds one unfinished job from its row at start-up: it goes on from
 * where its durable results stop. (Finished jobs stay in the store, and are
 * served from there.) */
static int engine_recover_job(void *arg, const struct store_job *row)
{
    struct engine *e = arg;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->total = row->total;
    j->has = calloc((j->total + 7) / 8 + 1, 1);
    if (!j->has) {
        free(j);
        return -ENOMEM;
    }
    memcpy(j->id, row->id, ENGINE_JOB_ID_LEN);
    j->id[ENGINE_JOB_ID_LEN] = '\0';
    snprintf(j->model, sizeof j->model, "%s", row->model);
    j->sseq = row->seq;
    j->status = row->status >= 0 && row->status < JOB_STATUS_COUNT ? (enum job_status)row->status
                                                                   : JOB_FAILED;
    j->done = row->done;
    j->failed = row->failed;
    j->flushed = row->done + row->failed;
    j->created_ns = row->created_ns;
    j->started_ns = row->started_ns;
    j->finished_ns = row->finished_ns;
    j->chunk_size = row->chunk_size;
    j->item_timeout_ms = row->item_timeout_ms;
    j->max_attempts = row->max_attempts ? row->max_attempts : e->cfg->max_attempts;
    j->error = row->error[0] ? strdup(row->error) : NULL;
    j->idem_key = row->idem_key[0] ? strdup(row->idem_key) : NULL;
    j->request_hash = row->request_hash;
    int g = engine_group_of(e, row->model);
    j->group = g >= 0 ? (uint32_t)g : 0;
    int rc = engine_insert_job(e, j);
    if (rc) {
        job_free(j);
        return rc;
    }
    e->pending_items += j->total - j->done - j->failed;
    rc = store_result_ranges(e->store, j->sseq, recover_range, j);
    if (rc == 0 && g >= 0 && j->status != JOB_CANCELLED && j->status != JOB_FAILED)
        rc = store_inputs_read(e->store, j->sseq, j->total, &j->items);
    if (rc != 0 || g < 0) {
        char why[160];
        if (g < 0)
            snprintf(why, sizeof why, "model %s is not loaded by this batchd", row->model);
        else
            snprintf(why, sizeof why, "its stored data cannot be read (%s)", strerror(-rc));
        job_fail(e, j, why);
        return 0;
    }
    if (j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        j->cancel_requested = true;
        j->next_index = j->total;
        job_check_finished(e, j);
        return 0;
    }
    /* Everything without a durable result runs (again). */
    j->next_index = j->total;
    for (uint64_t i = 0; i < j->total;) {
        if (job_has(j, i)) {
            i++;
            continue;
        }
        uint64_t start = i;
        while (i < j->total && !job_has(j, i))
            i++;
        if (job_add_retry(j, start, i - start) != 0)
            return -ENOMEM;
    }
    job_pin_objects(e, j, j->items);
    if (j->stateful) {
        /* The workers' states were keyed to the old api process's jobs (they
         * drop them): every item that has a result runs again for its
         * state, unless the result was reduced before the restart. */
        struct sbuf b = SBUF_INIT;
        if (store_job_result(e->store, j->sseq, &b) == 0) {
            j->reduced = true;
        } else {
            for (uint64_t i = 0; i < j->total;) {
                uint64_t start = i;
                while (i < j->total && job_has(j, i))
                    i++;
                if (ranges_add(&j->replay, start, i - start) != 0) {
                    sbuf_free(&b);
                    return -ENOMEM;
                }
                while (i < j->total && !job_has(j, i))
                    i++;
            }
        }
        sbuf_free(&b);
    }
    if (job_has_pending(j))
        group_activate(&e->groups[j->group], j);
    else
        job_check_finished(e, j);
    return 0;
}

/* ---------------------------------------------------------------- public */

struct engine *engine_create(const struct config *cfg, struct shm *shm,
                             struct objects *objects)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = cfg;
    e->shm = shm;
    e->objects = objects;
    e->accepting = true;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->http_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->progress, &ca);
    pthread_cond_init(&e->flush_cv, &ca);
    pthread_condattr_destroy(&ca);
    struct shm_header *h = shm_header(shm);
    e->epoch = (atomic_fetch_add(&h->api_epoch, 1) + 1) & 0xffffffu;
    e->n_groups = h->n_groups;
    e->groups = calloc(e->n_groups, sizeof *e->groups);
    e->hash_cap = 1024;
    e->hash = calloc(e->hash_cap, sizeof *e->hash);
    e->khash = calloc(e->hash_cap, sizeof *e->khash);
    if (!e->groups || !e->hash || !e->khash)
        goto fail;
    /* What a previous api process left in the ring belongs to jobs that died
     * with it: READY/DONE slots are freed now, CLAIMED ones once their
     * workers finish (they are watched like our own and dropped). */
    uint32_t orphans = ring_reclaim_all(shm);
    if (orphans)
        log_info("engine: %u task(s) of a previous api process still running", orphans);
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct shm_group *sg = shm_group(shm, gi);
        struct egroup *g = &e->groups[gi];
        g->n_workers = sg->n_workers;
        g->stateful = sg->flags & SHM_GROUP_STATEFUL;
        g->first_worker = sg->first_worker;
        g->first_slot = sg->first_slot;
        g->free_slots = calloc(sg->n_slots, sizeof *g->free_slots);
        g->inflight = calloc(sg->n_slots, sizeof *g->inflight);
        g->target = calloc(sg->n_slots, sizeof *g->target);
        g->mail_busy = calloc(sg->n_workers ? sg->n_workers : 1, sizeof *g->mail_busy);
        if (!g->free_slots || !g->inflight || !g->target || !g->mail_busy)
            goto fail;
        for (uint32_t k = 0; k < sg->n_slots; k++) {
            uint32_t idx = sg->first_slot + k;
            if (ring_state_code(ring_slot_state(shm, idx)) == RING_FREE)
                g->free_slots[g->n_free++] = idx;
            else
                g->inflight[g->n_inflight++] = idx;
        }
    }
    e->run_lens = malloc(sizeof *e->run_lens * (ENGINE_MAX_CHUNK + 1));
    e->done_slots = malloc(sizeof *e->done_slots * (h->n_slots ? h->n_slots : 1));
    if (!e->run_lens || !e->done_slots)
        goto fail;
    char err[512];
    e->store = store_open(cfg->data_dir, cfg->max_store_bytes, err, sizeof err);
    if (!e->store) {
        log_error("engine: %s", err);
        goto fail;
    }
    /* Jobs of earlier runs: unfinished ones go on where their durable
     * results stop; finished ones stay in the store (only counted). */
    int rc = store_jobs_count_finished(e->store, e->jobs_by_status, JOB_STATUS_COUNT);
    if (rc == 0)
        rc = store_jobs_each_unfinished(e->store, engine_recover_job, e);
    if (rc != 0) {
        log_error("engine: cannot recover jobs from the store: %s", strerror(-rc));
        goto fail;
    }
    if (e->n_jobs)
        log_info("engine: recovered %" PRIu64 " unfinished job(s), %" PRIu64 " item(s) to run",
                 e->n_jobs, e->pending_items);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        goto fail;
    e->thread_started = true;
    if (pthread_create(&e->flusher, NULL, engine_flusher_main, e) != 0)
        goto fail;
    e->flusher_started = true;
    return e;
fail:
    log_error("engine: cannot start (out of memory or threads)");
    engine_destroy(e);
    return NULL;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    atomic_store(&e->stop, true);
    if (e->thread_started) {
        ring_notify_engine(e->shm);
        pthread_join(e->thread, NULL);
    }
    if (e->flusher_started) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_signal(&e->flush_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->flusher, NULL);
    }
    /* what was collected is written before the process goes */
    if (e->store)
        engine_flush(e, true);
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
    for (struct job *j = e->newest, *next; j; j = next) {
        next = j->older;
        job_free(j);
    }
    for (uint32_t gi = 0; e->groups && gi < e->n_groups; gi++) {
        free(e->groups[gi].free_slots);
        free(e->groups[gi].inflight);
        free(e->groups[gi].active);
        free(e->groups[gi].target);
        free(e->groups[gi].mail_busy);
        free(e->groups[gi].sjobs);
    }
    free(e->groups);
    free(e->hash);
    free(e->khash);
    free(e->http);
    free(e->dirty);
    free(e->watched);
    free(e->run_lens);
    free(e->done_slots);
    sbuf_free(&e->run);
    store_close(e->store);
    pthread_cond_destroy(&e->progress);
    pthread_cond_destroy(&e->flush_cv);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->http_mu);
    free(e);
}

static int engine_group_of(struct engine *e, const char *model)
{
    for (uint32_t g = 0; g < e->n_groups; g++)
        if (!strcmp(shm_group(e->shm, g)->name, model))
            return (int)g;
    return -1;
}

bool engine_model_exists(struct engine *e, const char *model)
{
    return model && engine_group_of(e, model) >= 0;
}

size_t engine_max_item_bytes(const struct engine *e)
{
    size_t slot = shm_header(e->shm)->in_cap - RING_IN_HDR;
    return e->cfg->max_item_bytes < slot ? e->cfg->max_item_bytes : slot;
}

/* What a Job object shows, copied under the mutex so that the JSON is
 * built without it (job_view.h). */
static void job_view_fill(const struct engine *e, const struct job *j, struct job_view *v)
{
    (void)e;
    memset(v, 0, sizeof *v);
    v->seq = j->sseq;
    memcpy(v->id, j->id, sizeof v->id);
    memcpy(v->model, j->model, sizeof v->model);
    v->status = j->status;
    v->total = j->total;
    v->done = j->done;
    v->failed = j->failed;
    v->inflight_items = j->inflight_items;
    v->created_ns = j->created_ns;
    v->started_ns = j->started_ns;
    v->finished_ns = j->finished_ns;
    v->chunk_size = j->chunk_size;
    v->has_error = j->error != NULL;
    v->stateful = j->stateful;
    snprintf(v->error, sizeof v->error, "%s", j->error ? j->error : "");
}

json_t *engine_job_row_json(const struct store_job *row)
{
    struct job_view v;
    /* the event's data: a finished job, as GET shows it from the store */
    job_view_from_row(&v, row, false);
    return job_view_json(&v);
}

struct store *engine_store(struct engine *e) { return e->store; }

void engine_set_flush_hook(struct engine *e, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&e->mu);
    e->flush_fn = fn;
    e->flush_arg = arg;
    pthread_mutex_unlock(&e->mu);
}

static json_t *job_json(struct engine *e, const struct job *j)
{
    struct job_view v;
    job_view_fill(e, j, &v);
    return job_view_json(&v);
}

/* A running job's tag changes with every visible change (its version);
 * a finished one's is final, the same as when it is served from the store. */
static void job_etag(struct engine *e, const struct job *j, char *etag)
{
    if (job_finished(j)) {
        job_view_final_etag(j->sseq, (int)j->status, etag);
        return;
    }
    snprintf(etag, ENGINE_ETAG_LEN + 1, "\"%x-%" PRIx64 "-%" PRIx64 "\"", e->epoch,
             ring_key_seq(j->key), j->version);
}

/* Adds a job to the in-memory tables (mutex held). Returns 0 or -ENOMEM. */
static int engine_insert_job(struct engine *e, struct job *j)
{
    j->key = ring_key_make(e->epoch, e->n_seq + 1);
    if (engine_hash_insert(e, j) != 0)
        return -ENOMEM;
    e->n_seq++;
    j->older = e->newest;
    if (e->newest)
        e->newest->newer = j;
    e->newest = j;
    if (!e->oldest)
        e->oldest = j;
    e->n_jobs++;
    e->jobs_by_status[j->status]++;
    return job_make_stateful(e, j);
}

/* FNV-1a over the request: the same key with another body is a conflict. */
static uint64_t engine_request_hash(const char *model, const struct job_options *opt,
                                    const struct job_items *items)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *parts[2] = { (const unsigned char *)model,
                                      (const unsigned char *)items->data };
    size_t lens[2] = { strlen(model) + 1, items->len };
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < lens[p]; i++)
            h = (h ^ parts[p][i]) * 1099511628211ULL;
    uint32_t o[3] = { opt ? opt->chunk_size : 0, opt ? opt->item_timeout_ms : 0,
                      opt ? opt->max_attempts : 0 };
    for (size_t i = 0; i < sizeof o; i++)
        h = (h ^ ((const unsigned char *)o)[i]) * 1099511628211ULL;
    /* so does the webhook: the same key with another URL is another request */
    for (const char *u = opt && opt->webhook_url ? opt->webhook_url : ""; *u; u++)
        h = (h ^ (unsigned char)*u) * 1099511628211ULL;
    /* item boundaries count too: ["ab"] is not ["a","b"] */
    for (size_t i = 0; i <= items->n; i++)
        h = (h ^ items->off[i]) * 1099511628211ULL;
    return h;
}

static bool engine_model_stateful(struct engine *e, const char *model)
{
    int g = engine_group_of(e, model);
    return g >= 0 && e->groups[g].stateful;
}

/* Fills v (and etag, if not NULL) for job `id`: from memory when it is
 * there, else from `row` when given, else from the store. Returns 0,
 * -ENOENT, -EIO. */
static int engine_view(struct engine *e, const char *id, const struct store_job *row,
                       struct job_view *v, char *etag)
{
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return -ENOENT;
    pthread_mutex_lock(&e->mu);
    struct job *j = engine_find(e, id);
    if (j) {
        job_view_fill(e, j, v);
        if (etag)
            job_etag(e, j, etag);
    }
    pthread_mutex_unlock(&e->mu);
    if (j)
        return 0;
    struct store_job r;
    if (!row) {
        int rc = store_job_get(e->store, id, &r);
        if (rc)
            return rc;
        row = &r;
    }
    job_view_from_row(v, row, engine_model_stateful(e, row->model));
    if (etag)
        job_view_final_etag(row->seq, row->status, etag);
    return 0;
}

#define ENGINE_INSERT_WAIT_MS 1000

/*
 * Finds job `id` for a reader. In memory: returns it held (refs; the
 * caller releases it with engine_job_release under the mutex), mutex not
 * held. Otherwise returns NULL with *rc = 0 and its row in *row (a job
 * served from the store), or *rc = -ENOENT / -EIO.
 * A row that is not finished while its job is not in memory belongs to a
 * submission between its commit and its insert (engine_submit): that is
 * waited out (bounded), so that callers see it in memory.
 */
static struct job *engine_hold(struct engine *e, const char *id, struct store_job *row, int *rc)
{
    *rc = -ENOENT;
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return NULL;
    for (int waited = 0;; waited++) {
        pthread_mutex_lock(&e->mu);
        struct job *j = engine_find(e, id);
        if (j)
            j->refs++;
        pthread_mutex_unlock(&e->mu);
        if (j) {
            *rc = 0;
            return j;
        }
        *rc = store_job_get(e->store, id, row);
        if (*rc || row->finished_ns || waited == ENGINE_INSERT_WAIT_MS)
            return NULL;
        usleep(1000);
    }
}

/* The answer to a request whose Idempotency-Key names the job of row
 * `old`: the same request gets that job back (ENGINE_REPLAYED, with its id
 * and Job object), another request -EEXIST. The job is shown from memory
 * if it is there, else from its row: it may have finished and left memory,
 * or be the job of a concurrent request whose row is committed but which
 * is not in memory yet (its Job is then the row as submitted). */
static int engine_replay(struct engine *e, const struct store_job *old, uint64_t request_hash,
                         char *id, json_t **job_json_out)
{
    memcpy(id, old->id, ENGINE_JOB_ID_LEN);
    id[ENGINE_JOB_ID_LEN] = '\0';
    if (old->request_hash != request_hash)
        return -EEXIST;
    if (job_json_out) {
        struct job_view v;
        engine_view(e, old->id, old, &v, NULL);
        *job_json_out = job_view_json(&v);
    }
    return ENGINE_REPLAYED;
}

int engine_submit(struct engine *e, const char *model, struct job_items *items,
                  const struct job_options *opt, char *id, json_t **job_json_out)
{
    int g = model ? engine_group_of(e, model) : -1;
    if (g < 0)
        return -ENOENT;
    if (!items || items->n == 0)
        return -EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->total = items->n;
    j->has = calloc((j->total + 7) / 8, 1);
    if (!j->has) {
        job_free(j);
        return -ENOMEM;
    }
    j->group = (uint32_t)g;
    snprintf(j->model, sizeof j->model, "%s", model);
    j->chunk_size = opt && opt->chunk_size ? opt->chunk_size : 0;
    if (j->chunk_size > ENGINE_MAX_CHUNK)
        j->chunk_size = ENGINE_MAX_CHUNK;
    j->item_timeout_ms = opt && opt->item_timeout_ms ? opt->item_timeout_ms
                                                     : e->cfg->item_timeout_ms;
    j->max_attempts = opt && opt->max_attempts ? opt->max_attempts : e->cfg->max_attempts;
    if (j->max_attempts == 0)
        j->max_attempts = 1;
    j->created_ns = shm_now_real_ns();
    j->status = JOB_QUEUED;
    engine_new_id(j->id);
    if (opt && opt->idempotency_key && opt->idempotency_key[0]) {
        j->idem_key = strdup(opt->idempotency_key);
        if (!j->idem_key) {
            job_free(j);
            return -ENOMEM;
        }
    }
    j->request_hash = engine_request_hash(model, opt, items);

    /* Admission first, with the items reserved, so that concurrent
     * submissions cannot pass the limit together. */
    pthread_mutex_lock(&e->mu);
    int refuse = !e->accepting                 ? -ESHUTDOWN
                 : j->total > e->cfg->max_queued_items ? -EFBIG
                 : e->groups[g].down           ? -EHOSTDOWN
                 : e->pending_items + j->total > e->cfg->max_queued_items ? -EBUSY
                                               : 0;
    if (!refuse)
        e->pending_items += j->total;
    pthread_mutex_unlock(&e->mu);
    if (refuse) {
        job_free(j);
        return refuse;
    }

    /* Durable before anything else sees it (outside the mutex: the commit
     * waits for the disk, and status polls must not). */
    struct store_job row, existing;
    job_row(e, j, &row);
    row.webhook_url = opt ? opt->webhook_url : NULL;
    int rc = store_job_create(e->store, &row, items, &existing);
    if (rc != 0) {
        pthread_mutex_lock(&e->mu);
        e->pending_items -= j->total;
        int out = rc;
        pthread_mutex_unlock(&e->mu);
        if (rc == -EEXIST)
            out = engine_replay(e, &existing, j->request_hash, id, job_json_out);
        job_free(j);
        return out;
    }
    j->sseq = row.seq;

    pthread_mutex_lock(&e->mu);
    rc = engine_insert_job(e, j);
    if (rc != 0) {
        /* Durable but not runnable now: it runs after the next restart. */
        e->pending_items -= j->total;
        pthread_mutex_unlock(&e->mu);
        log_error("job %s: out of memory after it was stored", j->id);
        job_free(j);
        return -ENOMEM;
    }
    j->items = items;
    job_pin_objects(e, j, items);
    e->jobs_submitted++;
    group_activate(&e->groups[g], j);
    memcpy(id, j->id, ENGINE_JOB_ID_LEN + 1);
    if (job_json_out)
        *job_json_out = job_json(e, j);
    pthread_mutex_unlock(&e->mu);
    atomic_store_explicit(&e->kick, true, memory_order_release);
    ring_notify_engine(e->shm);
    return 0;
}

json_t *engine_job_json(struct engine *e, const char *id, char *etag)
{
    struct job_view v;
    if (engine_view(e, id, NULL, &v, etag) != 0)
        return NULL;
    return job_view_json(&v);
}

static int job_seq_desc(const void *a, const void *b)
{
    uint64_t x = (*(struct job *const *)a)->sseq, y = (*(struct job *const *)b)->sseq;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The in-memory part of a list page (mutex held): views of at most `max`
 * jobs with `status` (< 0: any) and seq < before (0: any), newest first,
 * in a new array (*out, caller frees). *finished counts those finished (a
 * finished job may be in the store's part too). Returns the count, or -1
 * on out-of-memory. */
static ssize_t engine_list_memory(struct engine *e, int status, uint64_t before, size_t max,
                                  struct job_view **out, size_t *finished)
{
    *out = NULL;
    *finished = 0;
    struct job **js = malloc((e->n_jobs ? e->n_jobs : 1) * sizeof *js);
    if (!js)
        return -1;
    size_t n = 0;
    for (struct job *j = e->newest; j && n < e->n_jobs; j = j->older)
        if ((status < 0 || (int)j->status == status) && (!before || j->sseq < before))
            js[n++] = j;
    qsort(js, n, sizeof *js, job_seq_desc);
    for (size_t i = 0; i < n; i++)
        *finished += job_finished(js[i]);
    if (n > max)
        n = max;
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!*out) {
        free(js);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        job_view_fill(e, js[i], &(*out)[i]);
    free(js);
    return (ssize_t)n;
}

struct stored_page {
    struct engine *e;
    struct job_view *v;
    size_t n, cap;
};

static int stored_page_add(void *arg, const struct store_job *row)
{
    struct stored_page *p = arg;
    if (p->n < p->cap)
        job_view_from_row(&p->v[p->n++], row, engine_model_stateful(p->e, row->model));
    return 0;
}

json_t *engine_jobs_json(struct engine *e, int status, size_t limit, const char *after, int *err)
{
    *err = 0;
    uint64_t before = 0;
    if (after) {
        struct job_view av;
        if ((*err = engine_view(e, after, NULL, &av, NULL)) != 0)
            return NULL;
        before = av.seq;
    }
    /* Unfinished jobs from memory, finished ones from the store's index:
     * one page of each is enough to merge one page of the list. */
    struct job_view *mem;
    size_t dups;
    pthread_mutex_lock(&e->mu);
    ssize_t n_mem = engine_list_memory(e, status, before, limit + 1, &mem, &dups);
    pthread_mutex_unlock(&e->mu);
    if (n_mem < 0) {
        *err = -ENOMEM;
        return NULL;
    }
    struct stored_page sp = { .e = e, .cap = limit + 1 + dups };
    sp.v = malloc(sp.cap * sizeof *sp.v);
    json_t *r = NULL;
    if (!sp.v)
        *err = -ENOMEM;
    else if ((*err = store_jobs_finished_page(e->store, status, before, sp.cap, stored_page_add,
                                              &sp)) == 0 &&
             !(r = job_view_list_json(mem, (size_t)n_mem, sp.v, sp.n, limit)))
        *err = -ENOMEM;
    free(sp.v);
    free(mem);
    return r;
}

int engine_results_page(struct engine *e, const char *id, size_t offset, size_t limit,
                        struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j && rc)
        return rc;
    uint64_t sseq = j ? j->sseq : row.seq, total = j ? j->total : row.total;

    /* Results are read from the store: only durable ones are shown, and a
     * job's results need not fit in memory. */
    uint64_t next = offset;
    rc = sbuf_puts(out, "{\"results\":[");
    if (!rc && offset < total)
        rc = store_results_page(e->store, sseq, offset,
                                limit < total - offset ? limit : total - offset, out, &next);

    /* A cancelled or failed job's never-run items have no result: past
     * the last result of a finished job the page is complete too. */
    bool at_end = next >= total;
    if (j) {
        pthread_mutex_lock(&e->mu);
        if (!at_end && job_finished(j)) {
            uint64_t k = next;
            while (k < total && !job_has(j, k))
                k++;
            at_end = k >= total;
        }
        engine_job_release(e, j);
        pthread_mutex_unlock(&e->mu);
    } else if (!rc && !at_end && row.finished_ns) {
        bool any = true;
        rc = store_results_from(e->store, sseq, next, &any);
        at_end = !any;
    }
    if (!rc) {
        if (at_end)
            rc = sbuf_puts(out, "],\"next_offset\":null}");
        else
            rc = sbuf_printf(out, "],\"next_offset\":%" PRIu64 "}", next);
    }
    return rc;
}

int engine_results_errors_page(struct engine *e, const char *id, size_t offset, size_t limit,
                               struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j && rc)
        return rc;
    uint64_t sseq = j ? j->sseq : row.seq, total = j ? j->total : row.total;
    /* read before the store: what was durable by the end is in the scan */
    bool ended = true;
    if (j) {
        pthread_mutex_lock(&e->mu);
        ended = job_finished(j);
        pthread_mutex_unlock(&e->mu);
    }

    struct store_scan sc = { .next = offset, .end = total, .skip_gaps = ended,
                             .errors_only = true, .max_bytes = SIZE_MAX,
                             .max_results = limit };
    rc = sbuf_puts(out, "{\"results\":[");
    /* a page of errors may need many blocks: scan until it is full, the
     * job's end, or (running job) its first item without a result */
    while (!rc && sc.written < limit) {
        rc = store_results_scan(e->store, sseq, &sc, out);
        if (sc.blocked || sc.exhausted)
            break;
    }
    if (j) {
        pthread_mutex_lock(&e->mu);
        engine_job_release(e, j);
        pthread_mutex_unlock(&e->mu);
    }
    bool at_end = ended && (sc.exhausted || sc.next >= total);
    if (!rc) {
        if (at_end)
            rc = sbuf_puts(out, "],\"next_offset\":null}");
        else
            rc = sbuf_printf(out, "],\"next_offset\":%" PRIu64 "}", sc.next);
    }
    return rc;
}

/* engine_job_result for a job served from the store. */
static int engine_stored_result(struct engine *e, const struct store_job *row, struct sbuf *out)
{
    int g = engine_group_of(e, row->model);
    if (g >= 0 && !e->groups[g].stateful)
        return -ENODATA;
    if (row->status == JOB_CANCELLED || row->status == JOB_FAILED)
        return -ECANCELED;
    int rc = store_job_result(e->store, row->seq, out);
    if (rc == -ENOENT) /* a model not loaded now: stateful or not, it has none */
        return g >= 0 && !row->finished_ns ? -EAGAIN : -ENODATA;
    return rc;
}

int engine_job_result(struct engine *e, const char *id, struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j)
        return rc ? rc : engine_stored_result(e, &row, out);
    pthread_mutex_lock(&e->mu);
    if (!e->groups[j->group].stateful)
        rc = -ENODATA;
    else if (j->status == JOB_CANCELLED || j->status == JOB_FAILED)
        rc = -ECANCELED;
    else if (!j->reduced)
        rc = -EAGAIN;
    uint64_t sseq = j->sseq;
    pthread_mutex_unlock(&e->mu);
    if (!rc) {
        rc = store_job_result(e->store, sseq, out);
        if (rc == -ENOENT)
            rc = -EAGAIN;
    }
    pthread_mutex_lock(&e->mu);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Deletes a finished job's rows, and counts it gone if they were there. */
static int engine_delete_stored(struct engine *e, uint64_t seq, int status)
{
    int rc = store_job_delete(e->store, seq);
    if (rc == 0 && status >= 0 && status < JOB_STATUS_COUNT) {
        pthread_mutex_lock(&e->mu);
        e->jobs_by_status[status]--;
        pthread_mutex_unlock(&e->mu);
    }
    return rc == -ENOENT ? 0 : rc;
}

int engine_purge(struct engine *e, const char *id)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j) {
        if (rc)
            return rc;
        return row.finished_ns ? engine_delete_stored(e, row.seq, row.status) : -EBUSY;
    }
    pthread_mutex_lock(&e->mu);
    bool finished = job_finished(j);
    uint64_t sseq = j->sseq; /* before: forgetting may free the job */
    int status = (int)j->status;
    if (finished)
        engine_forget_job(e, j);
    engine_fire_watches(e); /* its waiters answer 404 now */
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    return finished ? engine_delete_stored(e, sseq, status) : -EBUSY;
}

int engine_cancel(struct engine *e, const char *id, json_t **job_json_out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j) {
        if (rc)
            return rc;
        if (job_json_out) {
            struct job_view v;
            job_view_from_row(&v, &row, engine_model_stateful(e, row.model));
            *job_json_out = job_view_json(&v);
        }
        return -EALREADY; /* finished: served from the store */
    }
    pthread_mutex_lock(&e->mu);
    if (job_finished(j) || j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        rc = -EALREADY;
    } else {
        j->cancel_requested = true;
        j->retry.n = 0;
        j->next_index = j->total;
        if (!j->started_ns)
            j->started_ns = shm_now_real_ns();
        job_set_status(e, j, JOB_CANCELLED);
        /* Its tasks in the ring are stopped by the engine thread (the only
         * one that touches the in-flight lists): see engine_stop_cancelled. */
        job_check_finished(e, j);
        engine_fire_watches(e);
        pthread_cond_broadcast(&e->progress);
    }
    if (job_json_out)
        *job_json_out = job_json(e, j);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    atomic_store_explicit(&e->kick, true, memory_order_release);
    ring_notify_engine(e->shm);
    return rc;
}

/* A stream of a job in memory holds it (refs); a stream of a job served
 * from the store holds only its seq, and asks the store whether the job
 * is still there when it runs dry (a purge cuts the stream). */
struct engine_stream {
    struct engine *e;
    struct job *job;  /* NULL: served from the store */
    uint64_t sseq;
    uint64_t cursor;  /* the store's block cursor (store_results_stream) */
    struct sbuf buf;  /* lines read from the store, not yet sent */
    size_t sent;      /* bytes of buf already sent */
    struct engine_stream_opts opts;
    uint64_t next;    /* input order: the first index not yet sent */
    uint64_t total;   /* input order: the job's items */
};

struct engine_stream *engine_stream_open(struct engine *e, const char *id)
{
    return engine_stream_open_opts(e, id, NULL);
}

struct engine_stream *engine_stream_open_opts(struct engine *e, const char *id,
                                              const struct engine_stream_opts *opts)
{
    struct engine_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (opts)
        s->opts = *opts;
    struct store_job row;
    int rc;
    s->job = engine_hold(e, id, &row, &rc);
    if (!s->job && rc) {
        free(s);
        return NULL;
    }
    s->sseq = s->job ? s->job->sseq : row.seq;
    s->total = s->job ? s->job->total : row.total;
    s->e = e;
    return s;
}

/* Whether the stream's job has ended, and whether it was purged. */
static void engine_stream_state(struct engine_stream *s, bool *ended, bool *purged)
{
    struct engine *e = s->e;
    if (s->job) {
        pthread_mutex_lock(&e->mu);
        *ended = job_finished(s->job);
        *purged = s->job->deleted;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    struct store_job row;
    int rc = store_job_get_seq(e->store, s->sseq, &row);
    *purged = rc != 0;
    /* not finished only in the moment between a submission's commit and
     * its job in memory (engine_hold waited that out) */
    *ended = true;
}

ssize_t engine_stream_read(struct engine_stream *s, char *buf, size_t max, int timeout_ms)
{
    struct engine *e = s->e;
    if (s->sent == s->buf.len) {
        sbuf_reset(&s->buf);
        s->sent = 0;
        /* Whether the job had ended is read before the store: whatever was
         * durable by then is in what the store returns now. */
        bool ended, purged;
        engine_stream_state(s, &ended, &purged);
        /* A purged job's results are gone: the stream is cut, not ended. */
        if (purged)
            return -2;
        bool more = false; /* input order: blocks left to scan right now */
        if (s->opts.input_order) {
            /* Index order: a running job's completed prefix, then, once it
             * ended, every result (never-run items of a cancelled job have
             * none and are passed over). */
            struct store_scan sc = { .next = s->next, .end = s->total, .skip_gaps = ended,
                                     .errors_only = s->opts.errors_only, .ndjson = true,
                                     .max_bytes = 256 * 1024 };
            if (store_results_scan(e->store, s->sseq, &sc, &s->buf) != 0)
                return -2;
            s->next = sc.next;
            more = !sc.blocked && !sc.exhausted;
        } else {
            if (store_results_stream(e->store, s->sseq, &s->cursor, 256 * 1024, &s->buf) != 0)
                return -2;
            if (s->opts.errors_only && s->buf.len) {
                more = true; /* blocks were read: look again before ending */
                s->buf.len = result_text_keep_errors(s->buf.data, s->buf.len);
            }
        }
        if (s->buf.len == 0 && more)
            return 0; /* scanned past outputs only: the caller asks again */
        if (s->buf.len == 0) {
            if (atomic_load(&e->stop))
                return -2;
            if (ended && !s->job) {
                /* purged while we read? then what we sent is not all */
                engine_stream_state(s, &ended, &purged);
                if (purged)
                    return -2;
            }
            if (ended)
                return -1;
            if (timeout_ms > 0) {
                pthread_mutex_lock(&e->mu);
                engine_timedwait(e, &e->progress, timeout_ms);
                pthread_mutex_unlock(&e->mu);
            }
            return 0;
        }
    }
    size_t n = s->buf.len - s->sent;
    if (n > max)
        n = max;
    memcpy(buf, s->buf.data + s->sent, n);
    s->sent += n;
    return (ssize_t)n;
}

void engine_stream_close(struct engine_stream *s)
{
    if (!s)
        return;
    if (s->job) {
        pthread_mutex_lock(&s->e->mu);
        engine_job_release(s->e, s->job);
        pthread_mutex_unlock(&s->e->mu);
    }
    sbuf_free(&s->buf);
    free(s);
}

void engine_set_watch_hook(struct engine *e, void (*fn)(void *arg, const char *id), void *arg)
{
    pthread_mutex_lock(&e->mu);
    e->watch_fn = fn;
    e->watch_arg = arg;
    pthread_mutex_unlock(&e->mu);
}

struct engine_watch *engine_watch(struct engine *e, const char *id)
{
    pthread_mutex_lock(&e->mu);
    struct job *j = engine_find(e, id);
    if (j && j->watchers == 0) {
        if (e->n_watched == e->cap_watched) {
            size_t nc = e->cap_watched ? e->cap_watched * 2 : 16;
            struct job **p = realloc(e->watched, nc * sizeof *p);
            if (!p) {
                pthread_mutex_unlock(&e->mu);
                return NULL;
            }
            e->watched = p;
            e->cap_watched = nc;
        }
        e->watched[e->n_watched++] = j;
        j->watch_version = j->version;
    }
    if (j) {
        j->watchers++;
        j->refs++; /* a purge frees it only after the last watch ends */
    }
    pthread_mutex_unlock(&e->mu);
    /* the job itself is the handle: it lives while refs holds it */
    return (struct engine_watch *)j;
}

void engine_unwatch(struct engine *e, struct engine_watch *w)
{
    if (!w)
        return;
    struct job *j = (struct job *)w;
    pthread_mutex_lock(&e->mu);
    if (j->watchers > 0 && --j->watchers == 0)
        jobs_remove(e->watched, &e->n_watched, j);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
}

static const char *worker_state_name(uint32_t st)
{
    static const char *const names[] = { "starting", "starting", "idle",  "busy",
                                         "stopping", "dead",     "failed" };
    return st < sizeof names / sizeof *names ? names[st] : "dead";
}

/* Reads Rss and Pss (bytes) from /proc/PID/smaps_rollup. */
static void proc_mem(pid_t pid, json_int_t *rss, json_int_t *pss)
{
    *rss = *pss = -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        long long kb;
        if (sscanf(line, "Rss: %lld kB", &kb) == 1)
            *rss = (json_int_t)kb * 1024;
        else if (sscanf(line, "Pss: %lld kB", &kb) == 1)
            *pss = (json_int_t)kb * 1024;
    }
    fclose(f);
}

json_t *engine_workers_json(struct engine *e)
{
    json_t *arr = json_array();
    struct shm_header *h = shm_header(e->shm);
    for (uint32_t w = 0; w < h->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        pid_t pid = atomic_load_explicit(&sw->pid, memory_order_acquire);
        uint64_t job_key = atomic_load_explicit(&sw->current_job, memory_order_relaxed);
        json_t *cur = json_null();
        if (job_key) {
            pthread_mutex_lock(&e->mu);
            struct job *j = engine_find_key(e, job_key);
            if (j) {
                json_decref(cur);
                cur = json_string(j->id);
            }
            pthread_mutex_unlock(&e->mu);
        }
        json_int_t rss = -1, pss = -1;
        if (pid > 0)
            proc_mem(pid, &rss, &pss);
        uint32_t rc_items = atomic_load_explicit(&sw->recycles_items, memory_order_relaxed);
        uint32_t rc_rss = atomic_load_explicit(&sw->recycles_rss, memory_order_relaxed);
        uint64_t gap = atomic_load_explicit(&sw->last_recycle_ns, memory_order_relaxed);
        json_array_append_new(
            arr,
            json_pack("{s:i, s:o, s:s, s:s, s:i, s:I, s:I, s:I, s:i, s:I, s:{s:i, s:i}, s:o, s:o, "
                      "s:o, s:o, s:o}",
                      "id",
                      (int)w, "pid", pid > 0 ? json_integer(pid) : json_null(), "model",
                      shm_group(e->shm, sw->group)->name, "state",
                      worker_state_name(atomic_load(&sw->state)), "inits",
                      (int)atomic_load(&sw->inits), "tasks_done",
                      (json_int_t)atomic_load(&sw->tasks_done), "items_done",
                      (json_int_t)atomic_load(&sw->items_done), "items_failed",
                      (json_int_t)atomic_load(&sw->items_failed), "restarts",
                      (int)atomic_load(&sw->restarts), "recycles",
                      (json_int_t)rc_items + rc_rss, "recycles_by_reason", "items", (int)rc_items,
                      "rss", (int)rc_rss, "last_recycle_seconds",
                      gap ? json_real((double)gap / 1e9) : json_null(), "current_job", cur,
                      "started_at",
                      job_view_time(atomic_load(&sw->started_ns)), "rss_bytes",
                      rss >= 0 ? json_integer(rss) : json_null(), "pss_bytes",
                      pss >= 0 ? json_integer(pss) : json_null()));
    }
    return json_pack("{s:o}", "workers", arr);
}

json_t *engine_models_json(struct engine *e)
{
    json_t *arr = json_array();
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        unsigned ready = 0, inited = 0;
        double init_sum = 0;
        for (uint32_t k = 0; k < sg->n_workers; k++) {
            struct shm_worker *sw = shm_worker(e->shm, sg->first_worker + k);
            uint32_t st = atomic_load(&sw->state);
            if (st == WORKER_IDLE || st == WORKER_BUSY)
                ready++;
            uint64_t ns = atomic_load(&sw->init_ns);
            if (atomic_load(&sw->inits) > 0) {
                inited++;
                init_sum += (double)ns / 1e9;
            }
        }
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:i, s:i, s:f, s:o, s:b, s:s*, s:o, s:o}", "name",
                           sg->name, "description", sg->description, /* the supervisor's copy */
                           "workers", (int)sg->n_workers, "ready_workers", (int)ready,
                           "load_seconds", (double)sg->load_ns / 1e9, "init_seconds",
                           inited ? json_real(init_sum / inited) : json_null(), "builtin",
                           sg->plugin[0] == '\0', "plugin",
                           sg->plugin[0] ? sg->plugin : NULL, "max_items_per_worker",
                           sg->max_items ? json_integer((json_int_t)sg->max_items) : json_null(),
                           "max_worker_rss_bytes",
                           sg->max_rss ? json_integer((json_int_t)sg->max_rss) : json_null()));
    }
    return json_pack("{s:o}", "models", arr);
}

bool engine_ready(struct engine *e, char *why, size_t whylen)
{
    if (atomic_load(&shm_header(e->shm)->shutting_down)) {
        snprintf(why, whylen, "batchd is shutting down");
        return false;
    }
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        for (uint32_t k = 0; k < sg->n_workers; k++) {
            uint32_t w = sg->first_worker + k;
            uint32_t st = atomic_load(&shm_worker(e->shm, w)->state);
            if (st == WORKER_IDLE || st == WORKER_BUSY)
                continue;
            if (st == WORKER_FAILED && sg->load_error[0])
                snprintf(why, whylen, "model %s: worker %u cannot start: init failed: %s",
                         sg->name, w, sg->load_error);
            else
                snprintf(why, whylen, "model %s: worker %u is %s", sg->name, w,
                         worker_state_name(st));
            return false;
        }
    }
    why[0] = '\0';
    return true;
}

void engine_count_request(struct engine *e, const char *route, const char *method, int status,
                          double seconds)
{
    pthread_mutex_lock(&e->http_mu);
    struct http_stat *st = NULL;
    for (size_t i = 0; i < e->n_http; i++) {
        if (e->http[i].status == status && !strcmp(e->http[i].route, route) &&
            !strcmp(e->http[i].method, method)) {
            st = &e->http[i];
            break;
        }
    }
    if (!st && e->n_http < 512) {
        if (e->n_http == e->cap_http) {
            size_t nc = e->cap_http ? e->cap_http * 2 : 32;
            struct http_stat *p = realloc(e->http, nc * sizeof *p);
            if (p) {
                e->http = p;
                e->cap_http = nc;
            }
        }
        if (e->n_http < e->cap_http) {
            st = &e->http[e->n_http++];
            memset(st, 0, sizeof *st);
            snprintf(st->route, sizeof st->route, "%s", route);
            snprintf(st->method, sizeof st->method, "%s", method);
            st->status = status;
        }
    }
    if (st) {
        st->count++;
        st->sum += seconds;
        for (int b = 0; b < ENGINE_HTTP_BUCKETS; b++)
            if (seconds <= engine_http_bounds[b])
                st->buckets[b]++;
    }
    pthread_mutex_unlock(&e->http_mu);
}

int engine_metrics(struct engine *e, struct sbuf *o)
{
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    rc |= sbuf_puts(o, "# HELP batchd_jobs Jobs retained (unfinished, or finished and kept "
                       "until --retention), by status.\n"
                       "# TYPE batchd_jobs gauge\n");
    for (int s = 0; s < JOB_STATUS_COUNT; s++)
        rc |= sbuf_printf(o, "batchd_jobs{status=\"%s\"} %" PRIu64 "\n", status_names[s],
                          e->jobs_by_status[s]);
    rc |= sbuf_printf(o,
                      "# HELP batchd_jobs_in_memory Jobs the api process holds in memory "
                      "(unfinished; finished ones are served from the store).\n"
                      "# TYPE batchd_jobs_in_memory gauge\n"
                      "batchd_jobs_in_memory %" PRIu64 "\n",
                      e->n_jobs);
    rc |= sbuf_printf(o,
                      "# HELP batchd_items_done_total Items that produced an output.\n"
                      "# TYPE batchd_items_done_total counter\n"
                      "batchd_items_done_total %" PRIu64 "\n"
                      "# HELP batchd_items_failed_total Items that produced an error result.\n"
                      "# TYPE batchd_items_failed_total counter\n"
                      "batchd_items_failed_total %" PRIu64 "\n"
                      "# HELP batchd_items_retried_total Items re-queued after their task "
                      "ended early (worker death, full output area).\n"
                      "# TYPE batchd_items_retried_total counter\n"
                      "batchd_items_retried_total %" PRIu64 "\n",
                      e->items_done_total, e->items_failed_total, e->items_retried);
    rc |= sbuf_printf(o,
                      "# HELP batchd_jobs_submitted_total Jobs accepted by this api process.\n"
                      "# TYPE batchd_jobs_submitted_total counter\n"
                      "batchd_jobs_submitted_total %" PRIu64 "\n"
                      "# HELP batchd_queued_items Items accepted and not yet finished, over all "
                      "jobs (the queue depth).\n"
                      "# TYPE batchd_queued_items gauge\n"
                      "batchd_queued_items %" PRIu64 "\n"
                      "# HELP batchd_queued_items_limit Most items accepted and not yet finished "
                      "(--max-queued-items).\n"
                      "# TYPE batchd_queued_items_limit gauge\n"
                      "batchd_queued_items_limit %zu\n",
                      e->jobs_submitted, e->pending_items, e->cfg->max_queued_items);
    rc |= sbuf_puts(o, "# HELP batchd_ring_tasks Tasks in the ring per model group.\n"
                       "# TYPE batchd_ring_tasks gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_ring_tasks{model=\"%s\"} %u\n",
                          shm_group(e->shm, g)->name, e->groups[g].n_inflight);
    rc |= sbuf_puts(o, "# HELP batchd_ring_slots Task slots per model group.\n"
                       "# TYPE batchd_ring_slots gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_ring_slots{model=\"%s\"} %u\n",
                          shm_group(e->shm, g)->name, shm_group(e->shm, g)->n_slots);
    pthread_mutex_lock(&e->http_mu);
    rc |= sbuf_puts(o, "# HELP batchd_http_requests_total HTTP requests by route, method and "
                       "status.\n# TYPE batchd_http_requests_total counter\n");
    for (size_t i = 0; i < e->n_http; i++)
        rc |= sbuf_printf(o,
                          "batchd_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} "
                          "%" PRIu64 "\n",
                          e->http[i].route, e->http[i].method, e->http[i].status,
                          e->http[i].count);
    rc |= sbuf_puts(o, "# HELP batchd_http_request_duration_seconds HTTP request latency.\n"
                       "# TYPE batchd_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < e->n_http; i++) {
        const struct http_stat *st = &e->http[i];
        for (int b = 0; b < ENGINE_HTTP_BUCKETS; b++)
            rc |= sbuf_printf(o,
                              "batchd_http_request_duration_seconds_bucket{route=\"%s\","
                              "method=\"%s\",code=\"%d\",le=\"%g\"} %" PRIu64 "\n",
                              st->route, st->method, st->status, engine_http_bounds[b], st->buckets[b]);
        rc |= sbuf_printf(o,
                          "batchd_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                          "code=\"%d\",le=\"+Inf\"} %" PRIu64 "\n"
                          "batchd_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\","
                          "code=\"%d\"} %.6f\n"
                          "batchd_http_request_duration_seconds_count{route=\"%s\",method=\"%s\","
                          "code=\"%d\"} %" PRIu64 "\n",
                          st->route, st->method, st->status, st->count, st->route, st->method,
                          st->status, st->sum, st->route, st->method, st->status, st->count);
    }
    pthread_mutex_unlock(&e->http_mu);
    pthread_mutex_unlock(&e->mu);

    /* Worker-side figures come straight from shared memory (no lock: each
     * counter has one writer and is read relaxed). */
    const uint64_t *bounds = shm_hist_bounds();
    rc |= sbuf_puts(o, "# HELP batchd_item_duration_seconds Time of one model run() per item.\n"
                       "# TYPE batchd_item_duration_seconds histogram\n");
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        uint64_t cum = 0, sum = 0;
        for (unsigned b = 0; b < SHM_HIST_BUCKETS; b++) {
            for (uint32_t k = 0; k < sg->n_workers; k++)
                cum += atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->hist[b],
                                            memory_order_relaxed);
            if (b + 1 < SHM_HIST_BUCKETS)
                rc |= sbuf_printf(o, "batchd_item_duration_seconds_bucket{model=\"%s\",le=\"%g\"} "
                                     "%" PRIu64 "\n",
                                  sg->name, (double)bounds[b] / 1e9, cum);
        }
        for (uint32_t k = 0; k < sg->n_workers; k++)
            sum += atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->hist_sum_ns,
                                        memory_order_relaxed);
        rc |= sbuf_printf(o,
                          "batchd_item_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"} %" PRIu64
                          "\n"
                          "batchd_item_duration_seconds_sum{model=\"%s\"} %.9f\n"
                          "batchd_item_duration_seconds_count{model=\"%s\"} %" PRIu64 "\n",
                          sg->name, cum, sg->name, (double)sum / 1e9, sg->name, cum);
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_restarts_total Re-forks of each worker slot after "
                       "a death (crash, kill, failed init); recycles are not counted here.\n"
                       "# TYPE batchd_worker_restarts_total counter\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_restarts_total{model=\"%s\",worker=\"%u\"} %u\n",
                          shm_group(e->shm, sw->group)->name, w, atomic_load(&sw->restarts));
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_recycles_total Planned replacements of each worker "
                       "slot's process past its max_items or max_rss limit, by reason.\n"
                       "# TYPE batchd_worker_recycles_total counter\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        const char *m = shm_group(e->shm, sw->group)->name;
        rc |= sbuf_printf(o,
                          "batchd_worker_recycles_total{model=\"%s\",worker=\"%u\",reason=\"items\"} "
                          "%u\n"
                          "batchd_worker_recycles_total{model=\"%s\",worker=\"%u\",reason=\"rss\"} "
                          "%u\n",
                          m, w, atomic_load_explicit(&sw->recycles_items, memory_order_relaxed),
                          m, w, atomic_load_explicit(&sw->recycles_rss, memory_order_relaxed));
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_recycle_seconds Time the worker slot's last recycle "
                       "took, from the old process's decision to the new one's readiness (0 = "
                       "never recycled).\n"
                       "# TYPE batchd_worker_recycle_seconds gauge\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_recycle_seconds{model=\"%s\",worker=\"%u\"} %.6f\n",
                          shm_group(e->shm, sw->group)->name, w,
                          (double)atomic_load_explicit(&sw->last_recycle_ns,
                                                       memory_order_relaxed) / 1e9);
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_init_seconds Time the worker's model init() took "
                       "(its last start).\n"
                       "# TYPE batchd_worker_init_seconds gauge\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_init_seconds{model=\"%s\",worker=\"%u\"} %.6f\n",
                          shm_group(e->shm, sw->group)->name, w,
                          (double)atomic_load_explicit(&sw->init_ns, memory_order_relaxed) / 1e9);
    }
    rc |= sbuf_puts(o, "# HELP batchd_model_load_seconds Time model load() took.\n"
                       "# TYPE batchd_model_load_seconds gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_model_load_seconds{model=\"%s\"} %.6f\n",
                          shm_group(e->shm, g)->name, (double)shm_group(e->shm, g)->load_ns / 1e9);
    return rc ? -ENOMEM : 0;
}

void engine_stop_accepting(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->accepting = false;
    pthread_mutex_unlock(&e->mu);
}

bool engine_drained(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool drained = true;
    for (uint32_t gi = 0; gi < e->n_groups && drained; gi++)
        drained = e->groups[gi].n_inflight == 0;
    pthread_mutex_unlock(&e->mu);
    return drained;
}
