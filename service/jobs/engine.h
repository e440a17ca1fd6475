/*
 * engine: jobs, the dispatcher and the collector, in the api process.
 *
 * The engine owns the unfinished jobs of this api process (their inputs,
 * their counters, which items have results) and the producer side of the
 * shared-memory ring. A finished job leaves memory once its final row is
 * durable and nobody reads it: from then on the functions below serve it
 * from the store (store.h, "Jobs served from the store"), so memory does
 * not grow with the number of retained jobs. One
 * engine thread moves work: it cuts jobs into tasks (chunks of consecutive
 * items), writes them into free ring slots, and collects finished tasks'
 * outputs into the jobs' results. HTTP handler threads call the functions
 * below; they only touch job state under the engine's mutex and wake the
 * engine thread through the ring's futex.
 *
 * Process: api only (created after the api process was forked; it starts a
 * thread, so it must never exist in the supervisor).
 * Threads: every function here is safe to call from any thread.
 *
 * Ownership: functions returning json_t * return a new reference (the
 * caller json_decref()s it). Strings passed in are borrowed. Items handed
 * to engine_submit() are taken on success only.
 *
 * JSON shapes produced here are the ones openapi.yaml names: Job, JobList,
 * ResultPage, Result, Model, Worker.
 */
#ifndef BATCHD_ENGINE_H
#define BATCHD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "service/config/config.h"
#include "service/core/sbuf.h"
#include "service/jobs/items.h"

struct shm;
struct objects;
struct engine;
struct store;

/* Job ids are 26 characters of lowercase base32 (128 random bits). */
#define ENGINE_JOB_ID_LEN 26 /* ID_LEN, service/core/id.h */
#define ENGINE_ETAG_LEN 40

enum job_status {
    JOB_QUEUED = 0,
    JOB_RUNNING,
    JOB_SUCCEEDED, /* every item has a result (outputs or per-item errors) */
    JOB_FAILED,    /* the job as a whole could not run (see the job's "error") */
    JOB_CANCELLED,
    JOB_STATUS_COUNT
};

/* "queued", "running", ... Static string. */
const char *engine_status_name(enum job_status s);
/* Returns the status for a name, or -1 for an unknown name. */
int engine_status_parse(const char *name);

/* job_items, a job's inputs: service/jobs/items.h. */

struct job_options {
    uint32_t chunk_size;      /* items per task; 0 = adaptive (the default) */
    uint32_t item_timeout_ms; /* per-item deadline; 0 = the configured default */
    uint32_t max_attempts;    /* tries of an item whose worker dies; 0 = default */
    const char *idempotency_key; /* Idempotency-Key header, or NULL (borrowed) */
    const char *webhook_url;  /* completion webhook (webhook.h), checked; NULL = none
                                 (borrowed) */
};

/* engine_submit's answer when an Idempotency-Key names an earlier job with
 * the same request: that job is returned, nothing new is created. */
#define ENGINE_REPLAYED 1

/*
 * Creates the engine and starts its thread. `cfg` and `shm` are borrowed and
 * must outlive the engine. Claims every ring slot a previous api process
 * left behind (their jobs died with it).
 * Returns NULL on failure (logged).
 */
struct engine *engine_create(const struct config *cfg, struct shm *shm,
                             struct objects *objects);

/* Stops the thread and frees everything. Streams still open get an end. */
void engine_destroy(struct engine *e);

/* Returns true when `model` names a model group of this service. */
bool engine_model_exists(struct engine *e, const char *model);

/* The largest item, in bytes of compact JSON, a task slot can carry. */
size_t engine_max_item_bytes(const struct engine *e);

/*
 * Submits a job. On success returns 0, writes the id (NUL-terminated) into
 * id[ENGINE_JOB_ID_LEN + 1], takes `items`, and if job_json is not NULL
 * stores the Job object there (new reference).
 * The job and its inputs are durable (store.h) before this returns 0.
 * ENGINE_REPLAYED: the idempotency key names an earlier job with the same
 * request (finished, running, or a concurrent request's job that is not in
 * memory yet): its id and Job object are returned, `items` is not taken.
 * Errors (items not taken, nothing changed): -EEXIST the idempotency key
 * names an earlier job with another request (its id is written to id), -ENOSPC the store is full,
 * -EIO the store failed, -ENOENT unknown model,
 * -EINVAL no items, -ENOMEM, -ESHUTDOWN the service is stopping,
 * -EBUSY admission control (accepted-but-unfinished items would pass
 * --max-queued-items), -EFBIG the job alone has more items than
 * --max-queued-items (it could never be accepted), -EHOSTDOWN the model's
 * workers cannot start.
 */
int engine_submit(struct engine *e, const char *model, struct job_items *items,
                  const struct job_options *opt, char *id, json_t **job_json);

/*
 * Returns the Job object for `id` (new reference) and its ETag (a quoted
 * string, written to etag[ENGINE_ETAG_LEN + 1]), or NULL if there is no
 * such job. etag may be NULL.
 */
json_t *engine_job_json(struct engine *e, const char *id, char *etag);

/* engine_job_json, saying why there is no Job object: *rc = -ENOENT (no
 * such job), -ENOTCONN (the store cannot be reached: the job may exist),
 * -EIO, -ENOMEM. */
json_t *engine_job_lookup(struct engine *e, const char *id, char *etag, int *rc);

/*
 * Returns the JobList object {"jobs":[...], "next_after": id|null}: jobs
 * newest first, at most `limit`, only those with `status` (or all when
 * status < 0), starting after the job `after` (NULL: from the newest).
 * Returns NULL with *err = -ENOENT when `after` names no job, -ENOMEM.
 */
json_t *engine_jobs_json(struct engine *e, int status, size_t limit, const char *after, int *err);

/*
 * Appends the ResultPage {"results":[...],"next_offset":N|null} for
 * results [offset, offset+limit) in input order to `out`. Items without a
 * result yet are skipped in the page but bound next_offset: next_offset is
 * the index of the first item not returned (null when the page reached the
 * end of a finished job). Returns 0, -ENOENT (no such job), -E2BIG/-ENOMEM
 * from the buffer.
 */
int engine_results_page(struct engine *e, const char *id, size_t offset, size_t limit,
                        struct sbuf *out);

/*
 * Like engine_results_page with filter=errors: at most `limit` error
 * Results with index >= offset, in input order; next_offset is the first
 * index not looked at (null once a finished job has nothing more). The
 * scan reads the store a block at a time (constant memory). Same returns.
 */
int engine_results_errors_page(struct engine *e, const char *id, size_t offset, size_t limit,
                               struct sbuf *out);

/*
 * Appends the reduced result of a job of a stateful model (model.h: reduce)
 * to `out`. Returns 0, -ENOENT (no such job), -ENODATA (its model has no
 * reduce: per-item results only), -EAGAIN (not reduced yet), -ECANCELED
 * (the job failed or was cancelled: it never gets one), or a storage error.
 */
int engine_job_result(struct engine *e, const char *id, struct sbuf *out);

/*
 * Cancels a job: items not yet dispatched are never run; tasks in the ring
 * are asked to stop after their current item. Returns 0 and the Job object
 * in *job_json (new reference, may be NULL to skip), -ENOENT, or
 * -EALREADY when the job had already finished (still filling *job_json).
 */
int engine_cancel(struct engine *e, const char *id, json_t **job_json);

/*
 * A results stream: Result objects as NDJSON lines in completion order, from
 * the first completed item, until the job ends.
 */
struct engine_stream;
/* Returns a new stream, or NULL when there is no such job (or out of memory). */
struct engine_stream *engine_stream_open(struct engine *e, const char *id);
/* What a stream sends (GET .../results?stream=true&order=...&filter=...). */
struct engine_stream_opts {
    bool input_order;  /* index order, following the completed prefix of a
                          running job; false: completion order (the default) */
    bool errors_only;  /* only the items that failed */
};
/* engine_stream_open with options (NULL: the defaults). Same returns. */
struct engine_stream *engine_stream_open_opts(struct engine *e, const char *id,
                                              const struct engine_stream_opts *opts);
/*
 * Copies whole NDJSON lines into buf (at most max bytes; a single line
 * longer than max is split across calls). Blocks up to timeout_ms for data.
 * Returns bytes written (> 0); 0 when nothing arrived within the timeout;
 * -1 when the job has ended and everything was sent; -2 when the stream is
 * cut before its end (the job was purged, the engine stops, or the store
 * cannot be read): the client must not take it for complete.
 */
ssize_t engine_stream_read(struct engine_stream *s, char *buf, size_t max, int timeout_ms);
/* Frees the stream. NULL is fine. */
void engine_stream_close(struct engine_stream *s);

/*
 * Deletes a finished job and its results now (DELETE ?purge=true).
 * Returns 0, -ENOENT, -EBUSY when the job has not finished (cancel it
 * first), or a store error.
 */
int engine_purge(struct engine *e, const char *id);

/*
 * Watching a job (long-poll, GET /v1/jobs/{id}?wait=S): while a job is
 * watched, the engine calls the watch hook with its id whenever the job
 * changed (its ETag did), at the end of the engine pass, the group commit
 * or the cancel that changed it; and when it is purged. There is no timer
 * behind this: a job that does not change makes no call.
 */
struct engine_watch;
/* Sets the hook (before the first watch). fn runs on engine threads with
 * the engine's mutex held: it must not call back into the engine, and must
 * be quick (it only wakes waiters). */
void engine_set_watch_hook(struct engine *e, void (*fn)(void *arg, const char *id), void *arg);
/* Starts watching job `id`. Returns the watch (release it with
 * engine_unwatch), or NULL when there is no such job (or no memory). */
struct engine_watch *engine_watch(struct engine *e, const char *id);
/* Ends a watch. NULL is fine. */
void engine_unwatch(struct engine *e, struct engine_watch *w);

/* The Job object of a job's stored row (store.h), as GET /v1/jobs/{id}
 * shows a finished job: the webhook event's "data". New reference or NULL. */
struct store_job;
json_t *engine_job_row_json(const struct store_job *row);

/* The engine's store (borrowed; lives as long as the engine). */
struct store *engine_store(struct engine *e);

/* Sets a hook called (engine mutex held, so it must only signal) after
 * every group commit that wrote something: what finished jobs put in the
 * webhook outbox is durable then. NULL to clear. */
void engine_set_flush_hook(struct engine *e, void (*fn)(void *arg), void *arg);

/* Returns {"models":[Model...]} (new reference). */
json_t *engine_models_json(struct engine *e);
/* Returns {"workers":[Worker...]} (new reference). */
json_t *engine_workers_json(struct engine *e);

/*
 * Readiness: true when every worker of every model has finished init().
 * Otherwise false, with the reason in `why` (NUL-terminated).
 */
bool engine_ready(struct engine *e, char *why, size_t whylen);

/* Appends the Prometheus text exposition of every metric to `out`. */
int engine_metrics(struct engine *e, struct sbuf *out);

/* Counts one HTTP request for /metrics (route is the openapi path template,
 * e.g. "/v1/jobs/{id}"; status the HTTP status; seconds its duration). */
void engine_count_request(struct engine *e, const char *route, const char *method, int status,
                          double seconds);

/* Called at shutdown: new submissions get -ESHUTDOWN from now on, and no
 * new task is dispatched; tasks in the ring run to their end. */
void engine_stop_accepting(struct engine *e);

/* True when no task of this engine is in the ring (the drain is over). */
bool engine_drained(struct engine *e);

#endif
