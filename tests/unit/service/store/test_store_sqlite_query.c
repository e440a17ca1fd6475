/*
 * Unit tests of service/store/store_sqlite_query.c, the read side of finished jobs,
 * against a temporary directory and the real SQLite (no mocks):
 *
 *   - store_job_get / store_job_get_seq find a row by id and by seq, and
 *     answer -ENOENT for an unknown one;
 *   - store_jobs_each_unfinished visits only jobs with finished_ns == 0;
 *   - store_jobs_finished_page lists finished jobs newest first, with a
 *     status filter, a seq cursor and a limit, and never an unfinished job;
 *   - store_jobs_finished_before returns what finished before a cutoff,
 *     the longest finished first;
 *   - store_jobs_count_finished counts finished jobs by status;
 *   - store_results_from says whether a result exists at or after an index
 *     (where a finished job's pages end);
 *   - the list and retention queries use their indexes (EXPLAIN QUERY PLAN
 *     names them: a scan of every retained job would grow with retention).
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "service/jobs/engine.h"
#include "service/core/sbuf.h"
#include "service/store/store.h"
#include "tests/unit/service/store/store_test_backend.h"

struct fixture {
    char dir[64];
    struct store *s;
    uint64_t seq[8]; /* jobs 0..7: see setup */
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Job k: status and finished_ns as below; jobs 2 and 5 are unfinished. */
static const int k_status[8] = { JOB_SUCCEEDED, JOB_FAILED,    JOB_RUNNING,   JOB_SUCCEEDED,
                                 JOB_CANCELLED, JOB_QUEUED,    JOB_SUCCEEDED, JOB_SUCCEEDED };
static const uint64_t k_finished[8] = { 5000, 1000, 0, 3000, 2000, 0, 4000, 6000 };

static void make_row(struct store_job *j, unsigned k)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "job%023u", k);
    snprintf(j->model, sizeof j->model, "model-%u", k);
    j->status = JOB_QUEUED;
    j->total = 4;
    j->created_ns = 100 + k;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-query.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512] = "";
    test_store_reset();
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    if (!f->s)
        fail_msg("store_open: %s", err);
    for (unsigned k = 0; k < 8; k++) {
        struct store_job j;
        make_row(&j, k);
        struct job_items *it = job_items_new();
        for (int i = 0; i < 4; i++)
            assert_int_equal(job_items_append(it, "1", 1), 0);
        assert_int_equal(store_job_create(f->s, &j, it, NULL), 0);
        job_items_free(it);
        f->seq[k] = j.seq;
        j.status = k_status[k];
        j.finished_ns = k_finished[k];
        assert_int_equal(store_job_update(f->s, &j), 0);
    }
    assert_int_equal(store_flush(f->s), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

struct seen {
    uint64_t seq[16];
    size_t n;
};

static int collect(void *arg, const struct store_job *j)
{
    struct seen *s = arg;
    if (s->n < 16)
        s->seq[s->n++] = j->seq;
    return 0;
}

static void test_get(void **state)
{
    struct fixture *f = *state;
    struct store_job j;
    assert_int_equal(store_job_get(f->s, "job00000000000000000000003", &j), 0);
    assert_int_equal(j.seq, f->seq[3]);
    assert_string_equal(j.model, "model-3");
    assert_int_equal(j.status, JOB_SUCCEEDED);
    assert_int_equal(j.finished_ns, 3000);
    assert_int_equal(store_job_get_seq(f->s, f->seq[4], &j), 0);
    assert_string_equal(j.id, "job00000000000000000000004");
    assert_int_equal(store_job_get(f->s, "nosuchjob00000000000000000", &j), -ENOENT);
    assert_int_equal(store_job_get_seq(f->s, 9999, &j), -ENOENT);
}

static void test_unfinished(void **state)
{
    struct fixture *f = *state;
    struct seen s = { 0 };
    assert_int_equal(store_jobs_each_unfinished(f->s, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], f->seq[2]);
    assert_int_equal(s.seq[1], f->seq[5]);
}

static void test_finished_page(void **state)
{
    struct fixture *f = *state;
    struct seen s = { 0 };
    /* every finished job, newest first: 7 6 4 3 1 0 */
    assert_int_equal(store_jobs_finished_page(f->s, -1, 0, 100, collect, &s), 0);
    static const unsigned all[] = { 7, 6, 4, 3, 1, 0 };
    assert_int_equal(s.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(s.seq[i], f->seq[all[i]]);
    /* a limit, then the cursor */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_jobs_finished_page(f->s, -1, 0, 2, collect, &s), 0);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_jobs_finished_page(f->s, -1, f->seq[6], 2, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], f->seq[4]);
    assert_int_equal(s.seq[1], f->seq[3]);
    /* a status: succeeded 7 6 3 0; behind 6: 3 0 */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_jobs_finished_page(f->s, JOB_SUCCEEDED, f->seq[6], 10, collect, &s),
                     0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], f->seq[3]);
    assert_int_equal(s.seq[1], f->seq[0]);
    /* unfinished statuses are never listed from here */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_jobs_finished_page(f->s, JOB_RUNNING, 0, 10, collect, &s), 0);
    assert_int_equal(s.n, 0);
}

static void test_finished_before(void **state)
{
    struct fixture *f = *state;
    struct seen s = { 0 };
    /* finished before 3500: 1 (1000), 4 (2000), 3 (3000) */
    assert_int_equal(store_jobs_finished_before(f->s, 3500, 10, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], f->seq[1]);
    assert_int_equal(s.seq[1], f->seq[4]);
    assert_int_equal(s.seq[2], f->seq[3]);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_jobs_finished_before(f->s, 3500, 1, collect, &s), 0);
    assert_int_equal(s.n, 1);
}

static void test_count_finished(void **state)
{
    struct fixture *f = *state;
    uint64_t c[JOB_STATUS_COUNT] = { 0 };
    assert_int_equal(store_jobs_count_finished(f->s, c, JOB_STATUS_COUNT), 0);
    assert_int_equal(c[JOB_SUCCEEDED], 4);
    assert_int_equal(c[JOB_FAILED], 1);
    assert_int_equal(c[JOB_CANCELLED], 1);
    assert_int_equal(c[JOB_QUEUED], 0);
    assert_int_equal(c[JOB_RUNNING], 0);
}

static void test_results_from(void **state)
{
    struct fixture *f = *state;
    /* results of items 0 and 2 of job 4 (a cancelled job: 1 and 3 never ran) */
    const char *texts = "{\"index\":0}{\"index\":2}";
    uint32_t len = 11;
    assert_int_equal(store_put_results(f->s, f->seq[4], 0, 1, texts, &len, NULL), 0);
    assert_int_equal(store_put_results(f->s, f->seq[4], 2, 1, texts + 11, &len, NULL), 0);
    assert_int_equal(store_flush(f->s), 0);
    bool any = false;
    assert_int_equal(store_results_from(f->s, f->seq[4], 1, &any), 0);
    assert_true(any);
    assert_int_equal(store_results_from(f->s, f->seq[4], 2, &any), 0);
    assert_true(any);
    assert_int_equal(store_results_from(f->s, f->seq[4], 3, &any), 0);
    assert_false(any);
    assert_int_equal(store_results_from(f->s, f->seq[0], 0, &any), 0);
    assert_false(any);
}

/* The query plan of sql on the store's file, as one line. */
static void plan(const char *dir, const char *sql, char *out, size_t len)
{
    char path[128], q[512];
    snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE);
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s; ", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_indexes_used(void **state)
{
    struct fixture *f = *state;
    if (test_store_where())
        skip(); /* SQLite's query plans */
    char p[512];
    plan(f->dir,
         "SELECT seq FROM jobs WHERE finished_ns != 0 AND status = 2 AND seq < 9"
         " ORDER BY seq DESC LIMIT 100",
         p, sizeof p);
    assert_non_null(strstr(p, "jobs_finished_by_status"));
    assert_null(strstr(p, "TEMP B-TREE"));
    plan(f->dir, "SELECT seq FROM jobs WHERE finished_ns != 0 AND seq < 9 ORDER BY seq DESC LIMIT 9",
         p, sizeof p);
    assert_non_null(strstr(p, "PRIMARY KEY"));
    assert_null(strstr(p, "TEMP B-TREE"));
    plan(f->dir,
         "SELECT seq FROM jobs WHERE finished_ns != 0 AND finished_ns < 5 ORDER BY finished_ns"
         " LIMIT 128",
         p, sizeof p);
    assert_non_null(strstr(p, "jobs_finished_at"));
}

int main(void)
{
    test_store_banner("store_query");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finished_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finished_before, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_finished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indexes_used, setup, teardown),
    };
    return cmocka_run_group_tests_name("store_query", tests, NULL, NULL);
}
