/*
 * store_sqlite_query.c: the read side of finished jobs (see store.h, "Jobs served
 * from the store").
 *
 * A finished job is not kept in the api process's memory: its status, its
 * place in the list and its results are read from here. Every query below
 * is answered from an index (jobs' primary key, jobs_finished_by_status,
 * jobs_finished_at, results' primary key), so its cost does not grow with
 * the number of retained jobs.
 */
#include "service/store/store.h"

#include <errno.h>
#include <stdint.h>

#include "service/store/store_backend.h"
#include "service/store/store_sqlite.h"

/* Runs a SELECT of STORE_JOB_COLUMNS with integer parameters ?1..?n (a
 * NULL text parameter when text is given: ?1 is then that text) and calls
 * fn for each row. Returns 0, fn's non-zero value, or -EIO. */
static int store_select_jobs(struct store_sqlite *s, const char *sql, const char *text,
                             const int64_t *args, int n_args,
                             int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    int p = 1;
    if (text)
        sqlite3_bind_text(st, p++, text, -1, SQLITE_STATIC);
    for (int i = 0; i < n_args; i++)
        sqlite3_bind_int64(st, p++, (sqlite3_int64)args[i]);
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job j;
        store_read_job(st, &j);
        if ((out = fn(arg, &j)) != 0)
            break;
    }
    if (!out && rc != SQLITE_DONE)
        out = -EIO;
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return out;
}

static int copy_one(void *arg, const struct store_job *job)
{
    *(struct store_job *)arg = *job;
    return 1;
}

int store_sqlite_job_get(void *impl, const char *id, struct store_job *job)
{
    struct store_sqlite *s = impl;
    int rc = store_select_jobs(s, "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE id=?1", id,
                               NULL, 0, copy_one, job);
    return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

int store_sqlite_job_get_seq(void *impl, uint64_t seq, struct store_job *job)
{
    struct store_sqlite *s = impl;
    int64_t a = (int64_t)seq;
    int rc = store_select_jobs(s, "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE seq=?1", NULL,
                               &a, 1, copy_one, job);
    return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

int store_sqlite_jobs_each_unfinished(void *impl,
                               int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_sqlite *s = impl;
    return store_select_jobs(s,
                             "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE finished_ns = 0"
                             " ORDER BY seq",
                             NULL, NULL, 0, fn, arg);
}

int store_sqlite_jobs_finished_page(void *impl, int status, uint64_t before, size_t limit,
                             int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_sqlite *s = impl;
    int64_t a[3] = { before && before <= INT64_MAX ? (int64_t)before : INT64_MAX,
                     limit <= INT64_MAX ? (int64_t)limit : INT64_MAX, status };
    /* "finished_ns != 0" word for word: that is what lets SQLite use the
     * partial index jobs_finished_by_status */
    if (status >= 0)
        return store_select_jobs(s,
                                 "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE finished_ns != 0"
                                 " AND status = ?3 AND seq < ?1 ORDER BY seq DESC LIMIT ?2",
                                 NULL, a, 3, fn, arg);
    return store_select_jobs(s,
                             "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE finished_ns != 0"
                             " AND seq < ?1 ORDER BY seq DESC LIMIT ?2",
                             NULL, a, 2, fn, arg);
}

int store_sqlite_jobs_finished_before(void *impl, uint64_t cutoff_ns, size_t limit,
                               int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_sqlite *s = impl;
    int64_t a[2] = { cutoff_ns <= INT64_MAX ? (int64_t)cutoff_ns : INT64_MAX,
                     limit <= INT64_MAX ? (int64_t)limit : INT64_MAX };
    return store_select_jobs(s,
                             "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE finished_ns != 0"
                             " AND finished_ns < ?1 ORDER BY finished_ns LIMIT ?2",
                             NULL, a, 2, fn, arg);
}

int store_sqlite_jobs_count_finished(void *impl, uint64_t *counts, int n_status)
{
    struct store_sqlite *s = impl;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT status, count(*) FROM jobs WHERE finished_ns != 0"
                           " GROUP BY status",
                           -1, &st, NULL) != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int status = sqlite3_column_int(st, 0);
        if (status >= 0 && status < n_status)
            counts[status] += (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_sqlite_results_from(void *impl, uint64_t seq, uint64_t index, bool *any)
{
    struct store_sqlite *s = impl;
    *any = false;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM results WHERE job=?1 AND first + n > ?2 LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, index <= INT64_MAX ? (sqlite3_int64)index : INT64_MAX);
    int rc = sqlite3_step(st);
    *any = rc == SQLITE_ROW;
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}
