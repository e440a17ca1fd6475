/*
 * Unit tests of service/store/store_pg.c, the PostgreSQL backend, against a
 * real PostgreSQL: BATCHD_TEST_PG's, or a throw-away cluster this program
 * starts and stops itself (tests/pg/pg.sh; skipped when PostgreSQL 15
 * cannot be installed). What the conformance suite (test_store_sqlite*.c
 * with BATCHD_TEST_PG) cannot show, because it is PostgreSQL's own:
 *
 *   - a schema newer than this batchd is refused by store_check and
 *     store_open, naming both versions; an older (empty) one is created;
 *   - a second engine on the same database is refused while the first
 *     holds it, and accepted once it is closed;
 *   - an Idempotency-Key is unique in the database: a create racing with
 *     another session's uncommitted job of the same key waits for it and
 *     answers -EEXIST with that job's row (one job, never two);
 *   - pg_terminate_backend of every session of the store costs nothing: the
 *     next reads and the flush reconnect, and every result is there once;
 *   - with the server stopped, reads and flushes fail at once with
 *     -ENOTCONN and the flush buffer is kept whole; once the server is back
 *     the flush writes it: 0 results lost, 0 doubled.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "service/core/sbuf.h"
#include "service/jobs/engine.h"
#include "service/jobs/items.h"
#include "service/store/store.h"

static char g_uri[256];
static char g_cluster[128]; /* "" when BATCHD_TEST_PG was given */

/* Runs sql (no result wanted) on its own connection. */
static void raw(const char *sql)
{
    PGconn *c = PQconnectdb(g_uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static long long raw_int(const char *sql)
{
    PGconn *c = PQconnectdb(g_uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long long v = PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);
    return v;
}

static int pg_sh(const char *cmd)
{
    char line[512];
    snprintf(line, sizeof line, "sh tests/pg/pg.sh %s %s", cmd, g_cluster);
    return system(line);
}

static int reset(void **state)
{
    (void)state;
    raw("SET client_min_messages=warning; DROP SCHEMA IF EXISTS batchd CASCADE");
    return 0;
}

static struct store *open_store(void)
{
    char err[512] = "";
    struct store *s = store_open(g_uri, "/nonexistent", 0, err, sizeof err);
    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

static void make_job(struct store_job *j, unsigned k, const char *idem)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "job%023u", k);
    snprintf(j->model, sizeof j->model, "echo");
    j->status = JOB_QUEUED;
    j->created_ns = 1700000000000000000ull + k;
    j->chunk_size = 16;
    j->max_attempts = 3;
    snprintf(j->idem_key, sizeof j->idem_key, "%s", idem ? idem : "");
}

static uint64_t create_job(struct store *s, unsigned k, size_t n)
{
    struct store_job j;
    make_job(&j, k, NULL);
    j.total = n;
    struct job_items *it = job_items_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(job_items_append(it, "[1]", 3), 0);
    assert_int_equal(store_job_create(s, &j, it, NULL), 0);
    job_items_free(it);
    return j.seq;
}

/* Buffers results for items [first, first+n): {"index":i}. */
static void put_range(struct store *s, uint64_t seq, uint64_t first, uint32_t n)
{
    struct sbuf texts = SBUF_INIT;
    uint32_t lens[64];
    assert_true(n <= 64);
    for (uint32_t k = 0; k < n; k++) {
        char t[48];
        int l = snprintf(t, sizeof t, "{\"index\":%llu}", (unsigned long long)(first + k));
        assert_int_equal(sbuf_append(&texts, t, (size_t)l), 0);
        lens[k] = (uint32_t)l;
    }
    assert_int_equal(store_put_results(s, seq, first, n, texts.data, lens, NULL), 0);
    sbuf_free(&texts);
}

/* Every index of [0, total) exactly once, in order, through the pages. */
static void check_all_once(struct store *s, uint64_t seq, uint64_t total)
{
    struct sbuf out = SBUF_INIT;
    uint64_t next = 0;
    assert_int_equal(store_results_page(s, seq, 0, total + 10, &out, &next), 0);
    assert_int_equal(next, total);
    const char *p = out.data;
    for (uint64_t i = 0; i < total; i++) {
        unsigned long long idx;
        assert_int_equal(sscanf(p, "{\"index\":%llu}", &idx), 1);
        assert_int_equal(idx, i);
        p = strchr(p, '}') + 1;
        if (*p == ',')
            p++;
    }
    assert_int_equal(*p, '\0');
    sbuf_free(&out);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(n), 0) FROM batchd.results WHERE job = %llu",
             (unsigned long long)seq);
    assert_int_equal(raw_int(sql), (long long)total);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(store_check(g_uri, "/nonexistent", err, sizeof err), 0);
    assert_int_equal(raw_int("SELECT version FROM batchd.schema_version"), 1);
    raw("UPDATE batchd.schema_version SET version = 99");
    assert_int_equal(store_check(g_uri, "/nonexistent", err, sizeof err), -EIO);
    if (!strstr(err, "schema version 99") || !strstr(err, "up to 1"))
        fail_msg("reason: %s", err);
    assert_null(store_open(g_uri, "/nonexistent", 0, err, sizeof err));
    assert_non_null(strstr(err, "schema version 99"));
}

static void test_second_engine_refused(void **state)
{
    (void)state;
    struct store *a = open_store();
    char err[512] = "";
    assert_int_equal(store_check(g_uri, "/nonexistent", err, sizeof err), -EIO);
    assert_non_null(strstr(err, "another batchd"));
    store_close(a);
    assert_int_equal(store_check(g_uri, "/nonexistent", err, sizeof err), 0);
}

struct racer {
    struct store *s;
    int rc;
    struct store_job existing;
};

static void *race_create(void *arg)
{
    struct racer *r = arg;
    struct store_job j;
    make_job(&j, 2, "same-key");
    j.total = 1;
    struct job_items *it = job_items_new();
    job_items_append(it, "1", 1);
    r->rc = store_job_create(r->s, &j, it, &r->existing);
    job_items_free(it);
    return NULL;
}

static void test_idempotency_key_unique_across_sessions(void **state)
{
    (void)state;
    struct store *s = open_store();
    /* another session (another replica) holds an uncommitted job of the key */
    PGconn *other = PQconnectdb(g_uri);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PQclear(PQexec(other, "BEGIN"));
    PGresult *r = PQexec(other,
                         "INSERT INTO batchd.jobs(seq, id, model, status, total, done, failed,"
                         " cancelled, created_ns, started_ns, finished_ns, chunk_size,"
                         " item_timeout_ms, max_attempts, error, idem_key, request_hash)"
                         " VALUES(nextval('batchd.job_seq'), 'otherreplicajob00000000001', 'echo',"
                         " 0, 1, 0, 0, 0, 1, 0, 0, 16, 0, 3, '', 'same-key', 77)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    struct racer rc = { .s = s };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_create, &rc), 0);
    usleep(300000); /* the create waits on the other session's row */
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    pthread_join(t, NULL);
    assert_int_equal(rc.rc, -EEXIST);
    assert_string_equal(rc.existing.id, "otherreplicajob00000000001");
    assert_int_equal(rc.existing.request_hash, 77);
    assert_int_equal(raw_int("SELECT count(*) FROM batchd.jobs WHERE idem_key = 'same-key'"), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM batchd.jobs"), 1);
    store_close(s);
}

static void test_terminated_sessions_reconnect(void **state)
{
    (void)state;
    struct store *s = open_store();
    uint64_t seq = create_job(s, 1, 256);
    put_range(s, seq, 0, 64);
    assert_int_equal(store_flush(s), 0);
    struct store_job j;
    assert_int_equal(store_job_get_seq(s, seq, &j), 0); /* a reader exists */
    raw("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'batchd'");
    assert_int_equal(raw_int("SELECT count(*) FROM pg_stat_activity"
                             " WHERE application_name = 'batchd'"),
                     0);
    /* reads and writes go on, each on a new session */
    assert_int_equal(store_job_get_seq(s, seq, &j), 0);
    put_range(s, seq, 64, 64);
    assert_int_equal(store_flush(s), 0);
    raw("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'batchd'");
    put_range(s, seq, 128, 64);
    assert_int_equal(store_flush(s), 0);
    put_range(s, seq, 192, 64);
    assert_int_equal(store_flush(s), 0);
    check_all_once(s, seq, 256);
    store_close(s);
}

static void test_server_down_keeps_buffer(void **state)
{
    (void)state;
    if (!g_cluster[0])
        skip(); /* the server is BATCHD_TEST_PG's: not ours to stop */
    struct store *s = open_store();
    uint64_t seq = create_job(s, 1, 320);
    put_range(s, seq, 0, 64);
    assert_int_equal(store_flush(s), 0);
    assert_int_equal(pg_sh("halt"), 0);
    put_range(s, seq, 64, 64);
    put_range(s, seq, 128, 64);
    size_t pending = store_pending_bytes(s);
    assert_true(pending > 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(store_flush(s), -ENOTCONN);
    assert_int_equal(store_pending_bytes(s), pending);
    struct store_job j;
    assert_int_equal(store_job_get_seq(s, seq, &j), -ENOTCONN);
    struct store_job nj;
    make_job(&nj, 9, NULL);
    nj.total = 1;
    struct job_items *it = job_items_new();
    job_items_append(it, "1", 1);
    assert_int_equal(store_job_create(s, &nj, it, NULL), -ENOTCONN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("note: three operations against a stopped server took %.0f ms\n",
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    /* more results while it is away: kept behind the failed ones */
    put_range(s, seq, 192, 64);
    assert_int_equal(store_flush(s), -ENOTCONN);
    assert_int_equal(pg_sh("resume"), 0);
    put_range(s, seq, 256, 64);
    int rc = -ENOTCONN;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 200 && rc == -ENOTCONN; i++) {
        rc = store_flush(s);
        if (rc == -ENOTCONN)
            usleep(50000); /* the back-off (at most 2 s) */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(rc, 0);
    print_message("note: the flush succeeded %.0f ms after the server was back\n",
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_int_equal(store_pending_bytes(s), 0);
    check_all_once(s, seq, 320);
    /* the job that was refused is not there; a new one is accepted */
    assert_int_equal(store_job_get(s, nj.id, &j), -ENOENT);
    assert_int_equal(store_job_create(s, &nj, it, NULL), 0);
    job_items_free(it);
    store_close(s);
}

static int group_setup(void **state)
{
    (void)state;
    const char *given = getenv("BATCHD_TEST_PG");
    if (given && given[0]) {
        snprintf(g_uri, sizeof g_uri, "%s", given);
        return 0;
    }
    snprintf(g_cluster, sizeof g_cluster, "/tmp/batchd-test-pg.%d", (int)getpid());
    char line[512];
    snprintf(line, sizeof line, "sh tests/pg/pg.sh start %s", g_cluster);
    FILE *p = popen(line, "r");
    if (!p || !fgets(g_uri, sizeof g_uri, p)) {
        if (p)
            pclose(p);
        g_uri[0] = '\0';
        return 0; /* every test skips */
    }
    pclose(p);
    g_uri[strcspn(g_uri, "\n")] = '\0';
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_cluster[0])
        pg_sh("stop");
    return 0;
}

static int setup(void **state)
{
    if (!g_uri[0])
        return 0;
    return reset(state);
}

#define SKIP_WITHOUT_PG(f)                                                                    \
    static void f##_maybe(void **state)                                                       \
    {                                                                                         \
        if (!g_uri[0])                                                                        \
            skip(); /* PostgreSQL 15 is not installed and cannot be */                       \
        f(state);                                                                             \
    }
SKIP_WITHOUT_PG(test_newer_schema_refused)
SKIP_WITHOUT_PG(test_second_engine_refused)
SKIP_WITHOUT_PG(test_idempotency_key_unique_across_sessions)
SKIP_WITHOUT_PG(test_terminated_sessions_reconnect)
SKIP_WITHOUT_PG(test_server_down_keeps_buffer)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_newer_schema_refused_maybe, setup),
        cmocka_unit_test_setup(test_second_engine_refused_maybe, setup),
        cmocka_unit_test_setup(test_idempotency_key_unique_across_sessions_maybe, setup),
        cmocka_unit_test_setup(test_terminated_sessions_reconnect_maybe, setup),
        cmocka_unit_test_setup(test_server_down_keeps_buffer_maybe, setup),
    };
    return cmocka_run_group_tests_name("store_pg", tests, group_setup, group_teardown);
}
