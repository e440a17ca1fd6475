/*
 * store_pg: what store_pg.c (connections, schema, writes) shares with
 * store_pg_read.c (reads), and nothing else: the PostgreSQL backend of
 * store.h (store_backend.h is the seam).
 *
 * Connections: one writer (under a mutex, as SQLite's) and a small pool of
 * readers. A connection found broken (pg_terminate_backend, a server
 * restart) is dropped and opened again on next use, with back-off shared
 * by all of them: while the server cannot be reached every operation
 * fails at once with -ENOTCONN (no request waits on a dead server), and
 * the flush buffer (store_buffer.h) keeps what was not written.
 *
 * Process and threads as store.h.
 */
#ifndef BATCHD_STORE_PG_H
#define BATCHD_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "service/store/store.h"

struct store_pg;

#define STORE_PG_JOB_COLUMNS                                                                  \
    "seq, id, model, status, total, done, failed, cancelled, created_ns, started_ns,"        \
    " finished_ns, chunk_size, item_timeout_ms, max_attempts, error,"                         \
    " coalesce(idem_key, ''), request_hash"

/* Parameters of one statement: integers and texts are sent as text,
 * blocks as binary bytea. */
#define STORE_PG_MAX_PARAMS 20
struct store_pg_params {
    int n;
    const char *values[STORE_PG_MAX_PARAMS];
    int lengths[STORE_PG_MAX_PARAMS];
    int formats[STORE_PG_MAX_PARAMS];
    char num[STORE_PG_MAX_PARAMS][24];
};
void store_pg_p_i64(struct store_pg_params *p, int64_t v);
void store_pg_p_text(struct store_pg_params *p, const char *s); /* NULL = SQL NULL */
void store_pg_p_bytes(struct store_pg_params *p, const void *data, size_t len);

/* A reader connection (opened or reopened as needed), borrowed until
 * store_pg_reader_done(s, slot, err). NULL with *err = -ENOTCONN while
 * the server cannot be reached. */
PGconn *store_pg_reader(struct store_pg *s, int *slot, int *err);
/* Gives the reader back; err is what its statement returned: a
 * connection that failed with -ENOTCONN is dropped (reopened next time). */
void store_pg_reader_done(struct store_pg *s, int slot, int err);

/*
 * Runs sql with p on conn, results in binary (every integer column must be
 * bigint: store_pg_i64 reads 8 bytes). Returns the result (new: PQclear)
 * when its status is `want`; otherwise clears it, logs the error once per
 * distinct message, and returns NULL with *err = -ENOTCONN (the connection
 * is broken), -ENOSPC, or -EIO.
 */
PGresult *store_pg_exec(PGconn *conn, const char *sql, const struct store_pg_params *p,
                        ExecStatusType want, int *err);

/* A bigint column of a binary result. */
int64_t store_pg_i64(const PGresult *r, int row, int col);

/* Fills *j from a row of "SELECT " STORE_PG_JOB_COLUMNS. */
void store_pg_read_job(const PGresult *r, int row, struct store_job *j);

/* The read operations of store_pg_read.c (contracts: store.h). */
int store_pg_jobs_each(void *impl, int (*fn)(void *arg, const struct store_job *job), void *arg);
int store_pg_inputs_read(void *impl, uint64_t seq, uint64_t total, struct job_items **items);
int store_pg_result_ranges(void *impl, uint64_t seq,
                           int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg);
int store_pg_results_page(void *impl, uint64_t seq, uint64_t offset, uint64_t limit,
                          struct sbuf *out, uint64_t *next);
int store_pg_results_stream(void *impl, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                            struct sbuf *out);
int store_pg_results_scan(void *impl, uint64_t seq, struct store_scan *sc, struct sbuf *out);
int store_pg_job_result(void *impl, uint64_t seq, struct sbuf *out);
int store_pg_job_get(void *impl, const char *id, struct store_job *job);
int store_pg_job_get_seq(void *impl, uint64_t seq, struct store_job *job);
int store_pg_jobs_each_unfinished(void *impl, int (*fn)(void *arg, const struct store_job *job),
                                  void *arg);
int store_pg_jobs_finished_page(void *impl, int status, uint64_t before, size_t limit,
                                int (*fn)(void *arg, const struct store_job *job), void *arg);
int store_pg_jobs_finished_before(void *impl, uint64_t cutoff_ns, size_t limit,
                                  int (*fn)(void *arg, const struct store_job *job), void *arg);
int store_pg_jobs_count_finished(void *impl, uint64_t *counts, int n_status);
int store_pg_results_from(void *impl, uint64_t seq, uint64_t index, bool *any);

#endif
