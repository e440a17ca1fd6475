/*
 * store: the durable home of jobs, their inputs and their results.
 *
 * Two backends behind one interface (store_backend.h is the seam): an
 * embedded SQLite database (DATA_DIR/batchd.db) in WAL mode, the default,
 * and a PostgreSQL database named by a libpq URI (store_pg.c), which
 * several replicas can share. The interface is what the engine needs and
 * nothing of either shows through it.
 *
 * What is durable when:
 *   - store_job_create() commits the job and all of its inputs in one
 *     transaction with a full fsync before it returns 0: the 202 goes out
 *     after that, so an accepted job survives kill -9 of every process.
 *   - store_flush() commits buffered result blocks and job updates in one
 *     transaction (group commit): results are written in batches, never a
 *     transaction per item.
 *
 * Results are kept in blocks: a run of consecutive items' Result JSON texts
 * (what a task produced), so a million results are a few hundred rows. The
 * blocks of one job never overlap (the engine records one result per item).
 *
 * Process: the api process (one store per engine) and the supervisor (only
 * store_check at start-up). No connection ever crosses a fork.
 * Threads: every function is safe from any thread. Writes are serialized on
 * one connection under a mutex; reads use a small pool of read connections
 * (beside the writer: SQLite's WAL, PostgreSQL's MVCC).
 * Ownership: strings passed in are borrowed; what a function returns in an
 * out-parameter is described on the function.
 *
 * Errors: functions return 0 or a negative errno: -ENOSPC when the disk (or
 * --max-store-bytes) is full, -EIO for any other storage failure, -ENOMEM,
 * -ENOENT for an unknown job, -EEXIST for an idempotency key already used,
 * -ENOTCONN while a PostgreSQL server cannot be reached (the backend
 * reconnects by itself: worth a retry later, a 503 for a request).
 * After a failed write nothing of it is visible (the transaction rolled
 * back).
 */
#ifndef BATCHD_STORE_H
#define BATCHD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/core/sbuf.h"

struct store;
struct job_items;

#define STORE_FILE "batchd.db"

/* A job's row: what the engine keeps of a job besides its items. */
struct store_job {
    uint64_t seq;              /* creation order, assigned by store_job_create */
    char id[32];
    char model[64];
    int status;                /* enum job_status */
    uint64_t total, done, failed, cancelled;
    uint64_t created_ns, started_ns, finished_ns;
    uint32_t chunk_size, item_timeout_ms, max_attempts;
    char error[256];           /* job-level failure, "" for none */
    char idem_key[129];        /* Idempotency-Key, "" for none */
    uint64_t request_hash;     /* of the request, to tell a replay from a reuse */
    const char *webhook_url;   /* store_job_create only: the job's completion
                                  webhook (borrowed), NULL = none */
};

/* Whether `where` (--store) names PostgreSQL: a postgresql:// or
 * postgres:// URI. */
bool store_uri_is_pg(const char *where);

/* 0 when `where` names a store (NULL, "" or "sqlite": SQLite in the data
 * directory; or a PostgreSQL URI), else -EINVAL with a reason in err. */
int store_uri_check(const char *where, char *err, size_t errlen);

/*
 * Opens the store `where` names (see store_uri_check): SQLite opens
 * (creating if needed) DIR/batchd.db; PostgreSQL connects to the URI.
 * Either checks the schema and creates or migrates it.
 * max_bytes > 0 caps the database size (-ENOSPC past it).
 * Returns the store (new: store_close), or NULL with a one-line reason in
 * err: not writable or unreachable, not a batchd database, corrupt, from a
 * newer batchd (both schema versions named).
 */
struct store *store_open(const char *where, const char *dir, uint64_t max_bytes, char *err,
                         size_t errlen);

/* "sqlite" or "postgresql" (static). */
const char *store_backend_name(const struct store *s);

/*
 * max_bytes caps what new jobs may add (store_job_create answers -ENOSPC
 * past it); result flushes are not capped, so that a job accepted before
 * the store filled up can always finish (only a really full disk stops
 * them, and the flush is retried). With on = true the cap applies to
 * flushes too (a failing flush keeps its buffer: tests use it).
 */
void store_cap_results(struct store *s, bool on);

/* Closes every connection. NULL is fine. */
void store_close(struct store *s);

/*
 * Checks the store at start-up without keeping it open (the supervisor
 * calls this before it forks: a bad store is exit 2, not an api process
 * that dies in a loop); creates or migrates its schema. Returns 0, or
 * -EIO with a reason in err.
 */
int store_check(const char *where, const char *dir, char *err, size_t errlen);

/*
 * Writes a new job and its inputs, durably (see above). Fills job->seq (on
 * success only): seqs grow and are never given twice, even after a delete.
 * With an idempotency key that is already used, writes nothing and returns
 * -EEXIST with the existing job's row in *existing (if not NULL).
 */
int store_job_create(struct store *s, struct store_job *job, const struct job_items *items,
                     struct store_job *existing);

/* Buffers an update of the job's status, counts and timestamps; written by
 * the next store_flush(). Returns 0 or -ENOMEM. */
int store_job_update(struct store *s, const struct store_job *job);

/* Buffers a block of results: items [first, first+n) of job `seq`, whose
 * Result JSON texts are `texts` (n texts back to back) with lengths
 * `lens`, together with the job's row that counts them (may be NULL):
 * both go into the same flush, never one without the other. Copied;
 * written by the next store_flush(). 0 or -ENOMEM. */
int store_put_results(struct store *s, uint64_t seq, uint64_t first, uint32_t n,
                      const char *texts, const uint32_t *lens, const struct store_job *row);

/* Bytes of results waiting for store_flush(). */
size_t store_pending_bytes(struct store *s);

/* Commits everything buffered in one transaction. On failure the buffer is
 * kept (the next flush tries again) and the error returned; the failure is
 * logged when it differs from the previous flush's, not at every retry. */
int store_flush(struct store *s);

/* Calls fn for every job, oldest first (start-up recovery). `fn` returns 0
 * to go on. Returns 0, fn's non-zero value, or a storage error. */
int store_jobs_each(struct store *s, int (*fn)(void *arg, const struct store_job *job),
                    void *arg);

/* Reads all inputs of job `seq` into a new item list (*items, caller frees
 * with job_items_free). Returns 0, -ENOENT, -EIO, -ENOMEM. */
int store_inputs_read(struct store *s, uint64_t seq, uint64_t total, struct job_items **items);

/* Calls fn(first, n) for each durable result block of job `seq`. */
int store_result_ranges(struct store *s, uint64_t seq,
                        int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg);

/*
 * Appends to `out` the durable results of job `seq` with index in
 * [offset, offset+limit), in index order, separated by commas, stopping at
 * the first index that has no durable result. *next is the first index not
 * written. Returns 0 or an error (-E2BIG from the buffer).
 */
int store_results_page(struct store *s, uint64_t seq, uint64_t offset, uint64_t limit,
                       struct sbuf *out, uint64_t *next);

/*
 * Appends whole NDJSON lines (Result text + "\n") of job `seq`'s result
 * blocks written after block cursor *cursor (0 at first), in the order they
 * became durable, up to about max_bytes; advances *cursor. Returns 0.
 */
int store_results_stream(struct store *s, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                         struct sbuf *out);

/*
 * A scan of job `seq`'s durable results in input (index) order, from
 * sc->next on, with constant memory whatever the job's size: the blocks
 * are read a few at a time. Used by the input-order NDJSON stream and the
 * filter=errors pages (issue 18).
 */
struct store_scan {
    uint64_t next;       /* in/out: the first index not yet looked at */
    uint64_t end;        /* look at indexes below this only */
    bool skip_gaps;      /* an item without a result is passed over (a
                            finished job's never-run items); otherwise the
                            scan stops there (a running job's prefix) */
    bool errors_only;    /* write only the error Results (result_text.h) */
    bool ndjson;         /* each Result + "\n"; otherwise ","-separated */
    size_t max_bytes;    /* stop once out has grown by this much */
    size_t max_results;  /* stop after writing this many (0 = no bound) */
    size_t written;      /* in/out: Results written (the "," rule) */
    bool blocked;        /* out: stopped at an item without a result */
    bool exhausted;      /* out: nothing durable at or after next (for now) */
};

/*
 * Runs the scan, appending to `out`. Stops at sc->end, at a gap (unless
 * skip_gaps), at max_bytes or max_results, and otherwise after a bounded
 * number of blocks (so one call never runs long): then neither blocked
 * nor exhausted is set and the caller calls again. Returns 0, -EIO, or
 * -E2BIG/-ENOMEM from the buffer (out then holds what fitted, sc->next
 * says where that stopped).
 */
int store_results_scan(struct store *s, uint64_t seq, struct store_scan *sc, struct sbuf *out);

/* Deletes a job, its inputs and its results. Returns 0 or -ENOENT. */
int store_job_delete(struct store *s, uint64_t seq);

/* A stateful job's reduced result (JSON text): written durably at once (one
 * per job, in its own transaction, before the job is marked finished).
 * Returns 0 or a storage error. */
int store_put_job_result(struct store *s, uint64_t seq, const char *text, size_t len);

/* Appends job `seq`'s reduced result to `out`. Returns 0, -ENOENT (none),
 * -EIO, -ENOMEM. */
int store_job_result(struct store *s, uint64_t seq, struct sbuf *out);

/*
 * Jobs served from the store (store_sqlite_query.c, store_pg_read.c). A finished job lives only
 * here: the engine keeps unfinished jobs in memory and reads finished ones
 * through these functions, each answered from an index. `fn` callbacks
 * return 0 to go on; a non-zero value stops and is returned.
 */

/* Reads the row of job `id` (or of job `seq`) into *job. Returns 0,
 * -ENOENT, -EIO. */
int store_job_get(struct store *s, const char *id, struct store_job *job);
int store_job_get_seq(struct store *s, uint64_t seq, struct store_job *job);

/* Calls fn for every job not finished (finished_ns == 0), oldest first:
 * start-up recovery. Returns 0, fn's value, or -EIO. */
int store_jobs_each_unfinished(struct store *s,
                               int (*fn)(void *arg, const struct store_job *job), void *arg);

/* Calls fn for at most `limit` finished jobs, newest first (seq order),
 * with seq < before (0: no bound) and status `status` (< 0: any). */
int store_jobs_finished_page(struct store *s, int status, uint64_t before, size_t limit,
                             int (*fn)(void *arg, const struct store_job *job), void *arg);

/* Calls fn for at most `limit` jobs that finished before cutoff_ns
 * (CLOCK_REALTIME), the longest finished first (retention). */
int store_jobs_finished_before(struct store *s, uint64_t cutoff_ns, size_t limit,
                               int (*fn)(void *arg, const struct store_job *job), void *arg);

/* Adds the number of finished jobs of each status to counts[status]
 * (statuses >= n_status are not counted). Returns 0 or -EIO. */
int store_jobs_count_finished(struct store *s, uint64_t *counts, int n_status);

/* *any = whether job `seq` has a durable result at an index >= `index`
 * (where a finished job's results end). Returns 0 or -EIO. */
int store_results_from(struct store *s, uint64_t seq, uint64_t index, bool *any);

/* Gives freed pages back to the file system, a little at a time. */
void store_reclaim_space(struct store *s);

#endif
