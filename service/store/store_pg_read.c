/*
 * store_pg_read.c: the reads of the PostgreSQL backend (store_pg.h), each
 * with the same semantics as the SQLite backend's (store.h): the same
 * orders, the same stops at a gap, the same bounds per call. A result
 * is copied out of its PGresult before the next statement, and every
 * PGresult is cleared on every path.
 *
 * Large reads go a bounded number of rows at a time (keyset paging on the
 * primary key), so that a job's size never sets the memory of one call.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "service/core/log.h"
#include "service/jobs/items.h"
#include "service/store/result_text.h"
#include "service/store/store_backend.h"
#include "service/store/store_pg.h"

#define STORE_PG_BATCH 64 /* blocks per statement */

/* Runs one read on a pooled connection: the result (new: PQclear), or
 * NULL with *err set. */
static PGresult *store_pg_read(struct store_pg *s, const char *sql,
                               const struct store_pg_params *p, int *err)
{
    /* A read changes nothing: when the connection turns out to be gone
     * (its session was terminated, the server restarted), it is tried
     * once more on a new one, so that a reconnection costs no request
     * while the server is there. */
    for (int attempt = 0;; attempt++) {
        int slot;
        PGconn *c = store_pg_reader(s, &slot, err);
        if (!c)
            return NULL;
        PGresult *r = store_pg_exec(c, sql, p, PGRES_TUPLES_OK, err);
        store_pg_reader_done(s, slot, r ? 0 : *err);
        if (r)
            *err = 0; /* (a first attempt's failure is forgotten) */
        if (r || *err != -ENOTCONN || attempt == 1)
            return r;
    }
}

static int store_pg_select_jobs(struct store_pg *s, const char *sql,
                                const struct store_pg_params *p,
                                int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    int rc = 0;
    PGresult *r = store_pg_read(s, sql, p, &rc);
    if (!r)
        return rc;
    int out = 0, n = PQntuples(r);
    for (int i = 0; i < n && out == 0; i++) {
        struct store_job j;
        store_pg_read_job(r, i, &j);
        out = fn(arg, &j);
    }
    PQclear(r);
    return out;
}

int store_pg_jobs_each(void *impl, int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    return store_pg_select_jobs(impl, "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs ORDER BY seq",
                                NULL, fn, arg);
}

static int copy_one(void *arg, const struct store_job *job)
{
    *(struct store_job *)arg = *job;
    return 1;
}

int store_pg_job_get(void *impl, const char *id, struct store_job *job)
{
    struct store_pg_params p = { 0 };
    store_pg_p_text(&p, id);
    int rc = store_pg_select_jobs(impl, "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs WHERE id = $1",
                                  &p, copy_one, job);
    return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

int store_pg_job_get_seq(void *impl, uint64_t seq, struct store_job *job)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    int rc = store_pg_select_jobs(impl,
                                  "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs WHERE seq = $1", &p,
                                  copy_one, job);
    return rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
}

int store_pg_jobs_each_unfinished(void *impl, int (*fn)(void *arg, const struct store_job *job),
                                  void *arg)
{
    return store_pg_select_jobs(impl,
                                "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs WHERE finished_ns = 0"
                                " ORDER BY seq",
                                NULL, fn, arg);
}

int store_pg_jobs_finished_page(void *impl, int status, uint64_t before, size_t limit,
                                int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, before && before <= INT64_MAX ? (int64_t)before : INT64_MAX);
    store_pg_p_i64(&p, limit <= INT64_MAX ? (int64_t)limit : INT64_MAX);
    if (status >= 0) {
        store_pg_p_i64(&p, status);
        return store_pg_select_jobs(impl,
                                    "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs"
                                    " WHERE finished_ns != 0 AND status = $3 AND seq < $1"
                                    " ORDER BY seq DESC LIMIT $2",
                                    &p, fn, arg);
    }
    return store_pg_select_jobs(impl,
                                "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs"
                                " WHERE finished_ns != 0 AND seq < $1 ORDER BY seq DESC LIMIT $2",
                                &p, fn, arg);
}

int store_pg_jobs_finished_before(void *impl, uint64_t cutoff_ns, size_t limit,
                                  int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, cutoff_ns <= INT64_MAX ? (int64_t)cutoff_ns : INT64_MAX);
    store_pg_p_i64(&p, limit <= INT64_MAX ? (int64_t)limit : INT64_MAX);
    return store_pg_select_jobs(impl,
                                "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs"
                                " WHERE finished_ns != 0 AND finished_ns < $1"
                                " ORDER BY finished_ns LIMIT $2",
                                &p, fn, arg);
}

int store_pg_jobs_count_finished(void *impl, uint64_t *counts, int n_status)
{
    int rc = 0;
    PGresult *r = store_pg_read(impl,
                                "SELECT status, count(*)::bigint FROM jobs WHERE finished_ns != 0"
                                " GROUP BY status",
                                NULL, &rc);
    if (!r)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t status = store_pg_i64(r, i, 0);
        if (status >= 0 && status < n_status)
            counts[status] += (uint64_t)store_pg_i64(r, i, 1);
    }
    PQclear(r);
    return 0;
}

int store_pg_results_from(void *impl, uint64_t seq, uint64_t index, bool *any)
{
    *any = false;
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    store_pg_p_i64(&p, index <= INT64_MAX ? (int64_t)index : INT64_MAX);
    int rc = 0;
    PGresult *r = store_pg_read(impl,
                                "SELECT 1::bigint FROM results WHERE job = $1 AND first + n > $2"
                                " LIMIT 1",
                                &p, &rc);
    if (!r)
        return rc;
    *any = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

int store_pg_inputs_read(void *impl, uint64_t seq, uint64_t total, struct job_items **items)
{
    struct store_pg *s = impl;
    *items = NULL;
    struct job_items *it = job_items_new();
    if (!it)
        return -ENOMEM;
    int out = 0;
    int64_t after = -1;
    for (;;) {
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, (int64_t)seq);
        store_pg_p_i64(&p, after);
        PGresult *r = store_pg_read(s,
                                    "SELECT block, data FROM inputs WHERE job = $1 AND block > $2"
                                    " ORDER BY block LIMIT 16",
                                    &p, &out);
        if (!r)
            break;
        int rows = PQntuples(r);
        for (int i = 0; i < rows && !out; i++) {
            const uint8_t *lens, *texts;
            long n = store_decode_block((const uint8_t *)PQgetvalue(r, i, 1),
                                        (size_t)PQgetlength(r, i, 1), &lens, &texts);
            if (n < 0) {
                out = -EIO;
                break;
            }
            for (long k = 0; k < n && !out; k++) {
                uint32_t l;
                memcpy(&l, lens + k * 4, 4);
                out = job_items_append(it, (const char *)texts, l);
                texts += l;
            }
            after = store_pg_i64(r, i, 0);
        }
        PQclear(r);
        if (out || rows < 16)
            break;
    }
    if (!out && job_items_count(it) == 0 && total > 0) {
        struct store_job j;
        out = store_pg_job_get_seq(s, seq, &j);
        if (out == 0)
            out = -EIO; /* the job is there, its inputs are not */
    }
    if (!out && job_items_count(it) != total)
        out = -EIO;
    if (out) {
        job_items_free(it);
        if (out != -ENOENT && out != -ENOTCONN)
            log_error("store: cannot read the inputs of job %llu", (unsigned long long)seq);
        return out;
    }
    *items = it;
    return 0;
}

int store_pg_result_ranges(void *impl, uint64_t seq,
                           int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    int rc = 0;
    PGresult *r = store_pg_read(impl, "SELECT first, n FROM results WHERE job = $1", &p, &rc);
    if (!r)
        return rc;
    int out = 0;
    for (int i = 0; i < PQntuples(r) && !out; i++)
        out = fn(arg, (uint64_t)store_pg_i64(r, i, 0), (uint32_t)store_pg_i64(r, i, 1));
    PQclear(r);
    return out;
}

/* Up to STORE_PG_BATCH blocks of job seq with first in (after, below),
 * in index order: (first, data) rows, or NULL with *err. */
static PGresult *store_pg_blocks(struct store_pg *s, uint64_t seq, int64_t after, int64_t below,
                                 int *err)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    store_pg_p_i64(&p, after);
    store_pg_p_i64(&p, below);
    _Static_assert(STORE_PG_BATCH == 64, "the LIMIT below");
    return store_pg_read(s,
                         "SELECT first, data FROM results WHERE job = $1 AND first > $2"
                         " AND first < $3 ORDER BY first LIMIT 64",
                         &p, err);
}

int store_pg_results_page(void *impl, uint64_t seq, uint64_t offset, uint64_t limit,
                          struct sbuf *out, uint64_t *next)
{
    struct store_pg *s = impl;
    *next = offset;
    if (limit == 0)
        return 0;
    uint64_t end = offset + limit < offset ? UINT64_MAX : offset + limit;
    int64_t below = end > INT64_MAX ? INT64_MAX : (int64_t)end;
    /* Blocks hold at most STORE_BLOCK_ITEMS items: one starting that far
     * before the offset is the earliest that can cover it. */
    int64_t after = (int64_t)offset - (int64_t)STORE_BLOCK_ITEMS;
    uint64_t at = offset;
    int err = 0;
    bool stop = false;
    while (!err && !stop && at < end) {
        PGresult *r = store_pg_blocks(s, seq, after, below, &err);
        if (!r)
            break;
        int rows = PQntuples(r);
        for (int i = 0; i < rows && !err && !stop && at < end; i++) {
            uint64_t first = (uint64_t)store_pg_i64(r, i, 0);
            after = (int64_t)first;
            /* stop: a gap, the page ends at the first item without a result */
            err = store_page_block(first, (const uint8_t *)PQgetvalue(r, i, 1),
                                   (size_t)PQgetlength(r, i, 1), offset, end, &at, out, &stop);
        }
        PQclear(r);
        if (rows < STORE_PG_BATCH)
            break;
    }
    *next = at;
    return err;
}

int store_pg_results_stream(void *impl, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                            struct sbuf *out)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    store_pg_p_i64(&p, (int64_t)*cursor);
    int err = 0;
    PGresult *r = store_pg_read(impl,
                                "SELECT id, data FROM results WHERE job = $1 AND id > $2"
                                " ORDER BY id LIMIT 64",
                                &p, &err);
    if (!r)
        return err;
    for (int i = 0; i < PQntuples(r) && !err && out->len < max_bytes; i++) {
        const uint8_t *lens, *texts;
        long n = store_decode_block((const uint8_t *)PQgetvalue(r, i, 1),
                                    (size_t)PQgetlength(r, i, 1), &lens, &texts);
        if (n < 0) {
            err = -EIO;
            break;
        }
        for (long k = 0; k < n && !err; k++) {
            uint32_t l;
            memcpy(&l, lens + k * 4, 4);
            err = sbuf_append(out, texts, l);
            if (!err)
                err = sbuf_append(out, "\n", 1);
            texts += l;
        }
        if (!err)
            *cursor = (uint64_t)store_pg_i64(r, i, 0);
    }
    PQclear(r);
    return err;
}

int store_pg_results_scan(void *impl, uint64_t seq, struct store_scan *sc, struct sbuf *out)
{
    struct store_pg *s = impl;
    sc->blocked = sc->exhausted = false;
    if (sc->next >= sc->end) {
        sc->exhausted = true;
        return 0;
    }
    int err = 0;
    PGresult *r = store_pg_blocks(s, seq, (int64_t)sc->next - (int64_t)STORE_BLOCK_ITEMS,
                                  sc->end > INT64_MAX ? INT64_MAX : (int64_t)sc->end, &err);
    if (!r)
        return err;
    size_t start_len = out->len;
    int rows = PQntuples(r), i;
    bool stop = false;
    for (i = 0; i < rows && !err && !stop; i++) {
        err = store_scan_block(sc, (uint64_t)store_pg_i64(r, i, 0),
                               (const uint8_t *)PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1),
                               out, start_len, &stop);
        if (sc->blocked)
            break;
    }
    /* every block there is was read: nothing durable further on, for now */
    if (!err && !stop && !sc->blocked && i == rows && rows < STORE_PG_BATCH)
        sc->exhausted = true;
    if (!err && sc->next >= sc->end)
        sc->exhausted = true;
    PQclear(r);
    return err;
}

int store_pg_job_result(void *impl, uint64_t seq, struct sbuf *out)
{
    struct store_pg_params p = { 0 };
    store_pg_p_i64(&p, (int64_t)seq);
    int err = 0;
    PGresult *r = store_pg_read(impl, "SELECT data FROM job_results WHERE job = $1", &p, &err);
    if (!r)
        return err;
    if (PQntuples(r) == 1)
        err = sbuf_append(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    else
        err = -ENOENT;
    PQclear(r);
    return err;
}
