/*
 * test_pg: batchd on a PostgreSQL store (--store postgresql://..., issue
 * 16 phase 1) against a real PostgreSQL 15 this program starts in a
 * temporary folder (tests/pg/pg.sh: 127.0.0.1, a free port) and stops at
 * the end. Every job runs 600 chaos items of 3 ms on 2 workers (about a
 * second), and is checked to end with exactly one result per item, in the
 * API and in the database (sum of the result blocks' sizes = items):
 *
 *   - pg_terminate_backend of every batchd session mid-job: 0 lost,
 *     0 doubled, nothing visible to clients but a log line;
 *   - PostgreSQL stopped mid-job: a new job gets 503 not-ready with
 *     Retry-After (nothing accepted), the running job goes on in memory;
 *     once PostgreSQL is back its results are written: 0 lost, 0 doubled;
 *   - kill -9 of the whole service mid-job, then a restart: the job is
 *     recovered from PostgreSQL and finishes: 0 lost, 0 doubled;
 *   - a schema newer than batchd knows: exit 2 naming both versions;
 *   - a second batchd on the same database: exit 2 (one engine per
 *     database in this phase).
 * Recovery times are printed, never asserted.
 */
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"

#define N_ITEMS 600

static char g_cluster[256];
static char g_admin[256];

static int pg_sh(const char *cmd)
{
    char line[600];
    snprintf(line, sizeof line, "sh tests/pg/pg.sh %s %s", cmd, g_cluster);
    return system(line);
}

/* The first column of the first row of sql on db uri, or -1. */
static long long pg_int(const char *uri, const char *sql)
{
    PGconn *c = PQconnectdb(uri);
    long long v = -1;
    if (CHECKF(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c))) {
        PGresult *r = PQexec(c, sql);
        if (CHECKF(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                   "%s: %s", sql, PQerrorMessage(c)) &&
            PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            v = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

static const char *const k_args[] = {"--model", "chaos", "--workers", "2", NULL};

static bool start(struct h_service *s)
{
    struct h_service_opts o = {.args = k_args, .ready_timeout_s = 60};
    return h_service_start(s, &o) == 0;
}

static bool submit_job(struct h_service *s, char *id)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"chaos\",\"inputs\":[");
    for (int i = 0; i < N_ITEMS; i++)
        h_buf_printf(&b, "%s{\"sleep_ms\":3}", i ? "," : "");
    h_buf_printf(&b, "]}");
    bool ok = h_submit(s, "/v1/jobs", "application/json", b.p, strlen(b.p), id, 60);
    h_buf_free(&b);
    return ok;
}

/* Waits until the job has at least `done` items done (bounded). */
static void wait_done(struct h_service *s, const char *id, long long done)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = h_now() + 60;
    while (h_now() < deadline) {
        struct h_resp r;
        long long d = -1;
        if (h_get(s, path, &r) == 0 && r.status == 200)
            h_jint(h_jget(h_json(&r), "counts"), "done", &d);
        h_resp_free(&r);
        if (d >= done)
            return;
        h_sleep_ms(20);
    }
    CHECKF(false, "job %s: not %lld items done within 60 s", id, done);
}

/* The job succeeded with exactly one result per item: every index once in
 * the pages, and as many result rows' items in PostgreSQL as items. */
static void check_exactly_once(struct h_service *s, const char *id)
{
    json_t *job = h_wait_job(s, id, 120);
    if (!CHECKF(job != NULL, "job %s did not finish", id))
        return;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    long long done = -1;
    h_jint(h_jget(job, "counts"), "done", &done);
    CHECK_INT(done, N_ITEMS);
    json_decref(job);
    static unsigned char seen[N_ITEMS];
    memset(seen, 0, sizeof seen);
    long lost = 0, doubled = 0;
    for (long offset = 0; offset >= 0 && offset < N_ITEMS;) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%ld&limit=250", id, offset);
        struct h_resp r;
        if (!CHECK(h_get(s, path, &r) == 0 && r.status == 200)) {
            h_resp_free(&r);
            return;
        }
        json_t *res = h_jget(h_json(&r), "results");
        size_t i;
        json_t *it;
        json_array_foreach(res, i, it) {
            long long idx = -1;
            h_jint(it, "index", &idx);
            if (idx >= 0 && idx < N_ITEMS && seen[idx]++)
                doubled++;
        }
        long long next = -1;
        if (!h_jint(h_json(&r), "next_offset", &next))
            next = -1;
        h_resp_free(&r);
        offset = (long)next;
    }
    for (int i = 0; i < N_ITEMS; i++)
        lost += !seen[i];
    char uri[512], sql[160];
    h_pg_store_uri(s->data_dir, uri, sizeof uri);
    snprintf(sql, sizeof sql,
             "SELECT coalesce(sum(r.n), 0) FROM batchd.results r JOIN batchd.jobs j"
             " ON j.seq = r.job WHERE j.id = '%s'",
             id);
    long long stored = pg_int(uri, sql);
    printf("  job %s: %ld lost, %ld doubled; %lld results stored for %d items\n", id, lost,
           doubled, stored, N_ITEMS);
    CHECK_INT(lost, 0);
    CHECK_INT(doubled, 0);
    CHECK_INT(stored, N_ITEMS);
}

static void test_terminate_backend(void)
{
    struct h_service s;
    if (!start(&s))
        return;
    char id[32];
    if (submit_job(&s, id)) {
        wait_done(&s, id, N_ITEMS / 4);
        char uri[512];
        h_pg_store_uri(s.data_dir, uri, sizeof uri);
        long long killed = pg_int(g_admin, "SELECT count(pg_terminate_backend(pid))"
                                           " FROM pg_stat_activity"
                                           " WHERE application_name = 'batchd'");
        printf("  terminated %lld batchd session(s)\n", killed);
        CHECK(killed >= 1);
        double t0 = h_now();
        /* reads on new sessions at once */
        char path[64];
        snprintf(path, sizeof path, "/v1/jobs?limit=5");
        struct h_resp r;
        CHECK(h_get(&s, path, &r) == 0 && r.status == 200);
        h_resp_free(&r);
        printf("  the first read after the termination answered in %.0f ms\n",
               (h_now() - t0) * 1e3);
        check_exactly_once(&s, id);
    }
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

static void test_server_restart(void)
{
    struct h_service s;
    if (!start(&s))
        return;
    char id[32];
    if (submit_job(&s, id)) {
        wait_done(&s, id, N_ITEMS / 4);
        CHECK_INT(pg_sh("halt"), 0);
        double t0 = h_now();
        /* a new job cannot be accepted: 503, Retry-After, nothing stored */
        const char body[] = "{\"model\":\"chaos\",\"inputs\":[1]}";
        struct h_resp r;
        if (CHECK(h_post(&s, "/v1/jobs", "application/json", body, &r) == 0)) {
            CHECKF(r.status == 503, "POST while PostgreSQL is down: %ld %s", r.status, r.body);
            CHECK(h_resp_header(&r, "Retry-After") != NULL);
            CHECK_STR(h_jstr(h_json(&r), "type"), "urn:batchd:problem:not-ready");
        }
        h_resp_free(&r);
        h_sleep_ms(500); /* the job goes on meanwhile; its flushes fail and wait */
        CHECK_INT(pg_sh("resume"), 0);
        printf("  PostgreSQL was down for %.0f ms\n", (h_now() - t0) * 1e3);
        double t1 = h_now();
        bool back = false;
        for (int i = 0; i < 600 && !back; i++) {
            back = h_post(&s, "/v1/jobs", "application/json", body, &r) == 0 &&
                   r.status == 202;
            h_resp_free(&r);
            if (!back)
                h_sleep_ms(50);
        }
        CHECK(back);
        printf("  jobs were accepted again %.0f ms after PostgreSQL was back\n",
               (h_now() - t1) * 1e3);
        check_exactly_once(&s, id);
    }
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

static void test_kill_and_recover(void)
{
    struct h_service s;
    if (!start(&s))
        return;
    char id[32];
    if (submit_job(&s, id)) {
        wait_done(&s, id, N_ITEMS / 3);
        if (h_service_kill_group(&s, 20) == 0) {
            double t0 = h_now();
            struct h_service_opts o = {.args = k_args, .ready_timeout_s = 60};
            if (CHECK(h_service_restart(&s, &o) == 0)) {
                printf("  ready again %.0f ms after kill -9\n", (h_now() - t0) * 1e3);
                check_exactly_once(&s, id);
            }
        }
    }
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

/* batchd --store uri must exit 2 with an error line naming needle. */
static void expect_exit_2(const char *dir, const char *uri, const char *needle)
{
    const char *argv[] = {getenv("BATCHD_BIN"), "--listen", "127.0.0.1:0", "--data-dir", dir,
                          "--store", uri, "--workers", "1", "--model", "square", NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, 30, &r) == 0))
        return;
    CHECKF(!r.timed_out && r.exit_code == 2, "exit %d (timed out: %d), expected 2: %s",
           r.exit_code, r.timed_out, r.err);
    CHECKF(strstr(r.err, needle) != NULL, "stderr does not name \"%s\": %s", needle, r.err);
    h_run_result_free(&r);
}

static void test_refusals(void)
{
    struct h_service s;
    if (!start(&s))
        return;
    char uri[512];
    h_pg_store_uri(s.data_dir, uri, sizeof uri);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/second", h_tmpdir());
    mkdir(dir, 0700);
    expect_exit_2(dir, uri, "another batchd uses this PostgreSQL database");
    h_service_stop(&s, 30);
    pg_int(uri, "UPDATE batchd.schema_version SET version = 99");
    expect_exit_2(dir, uri, "schema version 99");
    pg_int(uri, "UPDATE batchd.schema_version SET version = 1");
    h_service_cleanup(&s);
}

int main(void)
{
    if (h_init() != 0)
        return 1;
    snprintf(g_cluster, sizeof g_cluster, "%s/pg", h_tmpdir());
    char line[600];
    snprintf(line, sizeof line, "sh tests/pg/pg.sh start %s", g_cluster);
    FILE *p = popen(line, "r");
    bool up = p && fgets(g_admin, sizeof g_admin, p);
    int st = p ? pclose(p) : -1;
    if (!up || st != 0) {
        h_fail_test("start PostgreSQL", "tests/pg/pg.sh start failed (see its output)");
        return h_finish();
    }
    g_admin[strcspn(g_admin, "\n")] = '\0';
    setenv("BATCHD_TEST_PG", g_admin, 1); /* the harness: a database per data dir */
    printf("  PostgreSQL at %s\n", g_admin);
    static const struct h_test tests[] = {
        {"pg_terminate_backend mid-job: 0 lost, 0 doubled", test_terminate_backend},
        {"PostgreSQL stopped mid-job: 503 + Retry-After, then 0 lost, 0 doubled",
         test_server_restart},
        {"kill -9 of the service mid-job, restart: recovered from PostgreSQL",
         test_kill_and_recover},
        {"a second batchd on the database, a newer schema: exit 2", test_refusals},
    };
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    pg_sh("stop");
    return h_finish();
}
