/*
 * store_sqlite: what store_sqlite.c shares with store_sqlite_query.c and
 * store_sqlite_scan.c (the SQLite backend's three files), and nothing
 * else.
 *
 * Not part of the store interface (store.h): another backend has no
 * reader pool or SQLite statements. Process and threads as store.h.
 */
#ifndef BATCHD_STORE_SQLITE_H
#define BATCHD_STORE_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "service/store/store.h"

struct store_sqlite;

#define STORE_JOB_COLUMNS                                                                     \
    "seq, id, model, status, total, done, failed, cancelled, created_ns, started_ns,"        \
    " finished_ns, chunk_size, item_timeout_ms, max_attempts, error, idem_key, request_hash"

/* A read connection from the pool (opened on first need; waits while all
 * are busy), borrowed until store_reader_done(s, *slot). NULL on failure. */
sqlite3 *store_reader(struct store_sqlite *s, int *slot);
void store_reader_done(struct store_sqlite *s, int slot);

/* Fills *j from a row of "SELECT " STORE_JOB_COLUMNS. */
void store_read_job(sqlite3_stmt *st, struct store_job *j);

/* The operations of store_sqlite_query.c and store_sqlite_scan.c (as
 * store.h's functions of the same names, impl the struct store_sqlite). */
int store_sqlite_job_get(void *impl, const char *id, struct store_job *job);
int store_sqlite_job_get_seq(void *impl, uint64_t seq, struct store_job *job);
int store_sqlite_jobs_each_unfinished(void *impl,
                                      int (*fn)(void *arg, const struct store_job *job),
                                      void *arg);
int store_sqlite_jobs_finished_page(void *impl, int status, uint64_t before, size_t limit,
                                    int (*fn)(void *arg, const struct store_job *job),
                                    void *arg);
int store_sqlite_jobs_finished_before(void *impl, uint64_t cutoff_ns, size_t limit,
                                      int (*fn)(void *arg, const struct store_job *job),
                                      void *arg);
int store_sqlite_jobs_count_finished(void *impl, uint64_t *counts, int n_status);
int store_sqlite_results_from(void *impl, uint64_t seq, uint64_t index, bool *any);
int store_sqlite_results_scan(void *impl, uint64_t seq, struct store_scan *sc,
                              struct sbuf *out);

#endif
