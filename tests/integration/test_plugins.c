/*
 * test_plugins: models from shared objects, and several models at once.
 *
 * One batchd runs --model stats:plugin=BUILD/examples/plugins/libstats.so,
 * workers=2 --model square:workers=1:
 *   - GET /v1/models shows both groups with their worker counts, their
 *     descriptions (the plugin's own text for stats), builtin, and the
 *     plugin's path;
 *   - a stats job's results are right (checked against sums computed
 *     here), and while it runs and after, only the stats workers' item
 *     counts grow and the square worker never holds it; a square job the
 *     other way round; jobs of both models at once;
 * then start-up failures, each exit status 2 before anything is forked,
 * with a message naming what is wrong: a missing file, a file that is not
 * a shared object, an object without batchd_model, one with model ABI
 * version 1, one without run(), a parameter the plugin's load() refuses.
 *
 * The plugins are found next to $BATCHD_BIN (BUILD/batchd ->
 * BUILD/examples/plugins/, BUILD/tests/plugins/); the Makefile builds them
 * before this program.
 */
#include "tests/integration/harness.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_TIMEOUT_S 10

static struct h_service svc;
static bool svc_up;
static char build_dir[PATH_MAX];
static char stats_so[PATH_MAX + 64];

static void plugin_path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", build_dir, rel);
}

/* ----------------------------------------------------------- the numbers */

/* Item i of a stats job: 2 + i % 7 numbers, a deterministic spread. */
static size_t item_numbers(size_t i, double *xs)
{
    size_t n = 2 + i % 7;
    for (size_t k = 0; k < n; k++)
        xs[k] = (double)((long)((i * 31 + k * 17) % 101) - 50) / 4.0;
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static bool near(double got, double want)
{
    return fabs(got - want) <= 1e-9 * fmax(1.0, fabs(want));
}

/* Checks one stats output against a two-pass computation. */
static bool stats_ok(const json_t *out, size_t i)
{
    double xs[16];
    size_t n = item_numbers(i, xs);
    double sum = 0, ss = 0;
    for (size_t k = 0; k < n; k++)
        sum += xs[k];
    double mean = sum / (double)n;
    for (size_t k = 0; k < n; k++)
        ss += (xs[k] - mean) * (xs[k] - mean);
    qsort(xs, n, sizeof xs[0], cmp_double);
    double median = n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
    long long got_n = -1;
    double m = NAN, sd = NAN, mn = NAN, mx = NAN, md = NAN;
    return h_jint(out, "n", &got_n) && got_n == (long long)n && h_jnum(out, "mean", &m) &&
           near(m, mean) && h_jnum(out, "std", &sd) && near(sd, sqrt(ss / (double)n)) &&
           h_jnum(out, "min", &mn) && mn == xs[0] && h_jnum(out, "max", &mx) &&
           mx == xs[n - 1] && h_jnum(out, "median", &md) && near(md, median);
}

/* {"model":"stats","inputs":[[...],...]} of n items. New, free(). */
static char *stats_body(size_t n_items)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"stats\",\"inputs\":[");
    for (size_t i = 0; i < n_items; i++) {
        double xs[16];
        size_t n = item_numbers(i, xs);
        h_buf_printf(&b, "%s[", i ? "," : "");
        for (size_t k = 0; k < n; k++)
            h_buf_printf(&b, "%s%.17g", k ? "," : "", xs[k]);
        h_buf_printf(&b, "]");
    }
    h_buf_printf(&b, "]}");
    return b.p;
}

/* ------------------------------------------------------------ the workers */

/* Per model: items run (done + failed) by its workers, and how many. */
struct counts {
    long long stats, square;
    int stats_workers, square_workers;
    bool square_held; /* the square worker held the job named in `watch` */
};

static bool read_counts(struct counts *c, const char *watch)
{
    memset(c, 0, sizeof *c);
    struct h_resp r;
    bool ok = CHECK(h_get(&svc, "/v1/workers", &r) == 0) && CHECK_INT(r.status, 200);
    json_t *ws = ok ? h_jget(h_json(&r), "workers") : NULL;
    size_t i;
    json_t *w;
    json_array_foreach(ws, i, w) {
        long long done = 0, failed = 0;
        h_jint(w, "items_done", &done);
        h_jint(w, "items_failed", &failed);
        const char *model = h_jstr(w, "model");
        const char *cur = h_jstr(w, "current_job");
        if (model && strcmp(model, "stats") == 0) {
            c->stats += done + failed;
            c->stats_workers++;
        } else if (model && strcmp(model, "square") == 0) {
            c->square += done + failed;
            c->square_workers++;
            c->square_held |= watch && cur && strcmp(cur, watch) == 0;
        } else {
            CHECKF(false, "a worker of model %s, which was not asked for", model ? model : "?");
        }
    }
    h_resp_free(&r);
    return ok;
}

/* ------------------------------------------------------------------ tests */

static void test_models(void)
{
    struct h_resp r;
    if (!CHECK(h_get(&svc, "/v1/models", &r) == 0) || !CHECK_INT(r.status, 200)) {
        h_resp_free(&r);
        return;
    }
    json_t *ms = h_jget(h_json(&r), "models");
    CHECK_INT(json_array_size(ms), 2);
    static const char *const plugin_keys[] = {"name", "description", "workers",
                                              "ready_workers", "load_seconds", "init_seconds",
                                              "builtin", "plugin", "runtime", "host",
                                              "max_items_per_worker", "max_worker_rss_bytes", NULL};
    static const char *const builtin_keys[] = {"name", "description", "workers",
                                               "ready_workers", "load_seconds", "init_seconds",
                                               "builtin", "runtime", "host", "max_items_per_worker",
                                               "max_worker_rss_bytes", NULL};
    bool seen_stats = false, seen_square = false;
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m) {
        const char *name = h_jstr(m, "name");
        const char *desc = h_jstr(m, "description");
        long long workers = -1, ready = -1;
        h_jint(m, "workers", &workers);
        h_jint(m, "ready_workers", &ready);
        if (name && strcmp(name, "stats") == 0) {
            seen_stats = true;
            CHECK(h_json_keys_exactly(m, plugin_keys));
            CHECK_INT(workers, 2);
            CHECK_INT(ready, 2);
            CHECK(json_is_false(h_jget(m, "builtin")));
            CHECK_STR(h_jstr(m, "plugin"), stats_so);
            /* the plugin's own words, from its table */
            CHECKF(desc && strstr(desc, "\"median\"") && strstr(desc, "examples/plugins/stats.c"),
                   "stats description: %s", desc ? desc : "(none)");
        } else if (name && strcmp(name, "square") == 0) {
            seen_square = true;
            CHECK(h_json_keys_exactly(m, builtin_keys));
            CHECK_INT(workers, 1);
            CHECK_INT(ready, 1);
            CHECK(json_is_true(h_jget(m, "builtin")));
            CHECKF(desc && strstr(desc, "square"), "square description: %s",
                   desc ? desc : "(none)");
        } else {
            CHECKF(false, "model %s was not asked for", name ? name : "?");
        }
    }
    CHECK(seen_stats && seen_square);
    h_resp_free(&r);

    struct counts c;
    if (read_counts(&c, NULL)) {
        CHECK_INT(c.stats_workers, 2);
        CHECK_INT(c.square_workers, 1);
    }
}

struct job_walk {
    size_t bad;
};

static bool stats_result_ok(const json_t *res, void *arg)
{
    struct job_walk *w = arg;
    long long idx = -1;
    json_t *out = NULL;
    const char *msg = NULL;
    if (!CHECK_RESULT(res, &idx, &out, &msg) || !out || !stats_ok(out, (size_t)idx)) {
        if (w->bad++ < 5) {
            char *d = h_json_dump(res);
            h_note("wrong stats result %s", d);
            free(d);
        }
    }
    return w->bad < 100;
}

static void test_stats_job_reaches_only_stats_workers(void)
{
    enum { N = 20000 };
    struct counts before, now;
    if (!read_counts(&before, NULL))
        return;
    char *body = stats_body(N);
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 60);
    free(body);
    if (!ok)
        return;
    /* While it runs: the square worker's count never moves and it never
     * holds the job. Bounded: at most 600 polls 20 ms apart. */
    int polls = 0, grew = 0;
    json_t *job = NULL;
    for (; polls < 600; polls++) {
        if (!read_counts(&now, id))
            break;
        CHECKF(now.square == before.square, "the square worker ran %lld items during a stats job",
               now.square - before.square);
        CHECKF(!now.square_held, "the square worker holds the stats job %s", id);
        grew += now.stats > before.stats && now.stats < before.stats + N;
        struct h_resp r;
        char path[64];
        snprintf(path, sizeof path, "/v1/jobs/%s", id);
        if (h_get(&svc, path, &r) == 0 && r.status == 200) {
            const char *st = h_jstr(h_json(&r), "status");
            if (st && strcmp(st, "running") != 0 && strcmp(st, "queued") != 0) {
                h_resp_free(&r);
                break;
            }
        }
        h_resp_free(&r);
        h_sleep_ms(20);
    }
    h_note("%d polls, %d of them saw the stats count part-way", polls, grew);
    job = h_wait_job(&svc, id, 120);
    if (!CHECK(job != NULL))
        return;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    long long done = -1;
    h_jint(job, "counts/done", &done);
    CHECK_INT(done, N);
    json_decref(job);
    if (read_counts(&now, id)) {
        CHECK_INT(now.stats - before.stats, N);
        CHECK_INT(now.square - before.square, 0);
    }
    struct job_walk w = {0};
    CHECK(h_each_result(&svc, id, N, 5000, stats_result_ok, &w));
    CHECKF(w.bad == 0, "%zu wrong stats results", w.bad);
}

static bool square_result_ok(const json_t *res, void *arg)
{
    struct job_walk *w = arg;
    long long idx = -1, v = -1;
    if (!h_jint(res, "index", &idx) || !h_jint(res, "output", &v) || v != idx * idx)
        w->bad++;
    return w->bad < 100;
}

static void test_square_job_reaches_only_the_square_worker(void)
{
    enum { N = 5000 };
    struct counts before, after;
    if (!read_counts(&before, NULL))
        return;
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]}");
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 60);
    h_buf_free(&b);
    if (!ok)
        return;
    json_t *job = h_wait_job(&svc, id, 120);
    if (!CHECK(job != NULL))
        return;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    if (read_counts(&after, NULL)) {
        CHECK_INT(after.square - before.square, N);
        CHECK_INT(after.stats - before.stats, 0);
    }
    struct job_walk w = {0};
    CHECK(h_each_result(&svc, id, N, 5000, square_result_ok, &w));
    CHECKF(w.bad == 0, "%zu wrong square results", w.bad);
}

static void test_both_models_at_once(void)
{
    enum { NS = 3000, NQ = 3000 };
    struct counts before, after;
    if (!read_counts(&before, NULL))
        return;
    char *sbody = stats_body(NS);
    struct h_buf q = {0};
    h_buf_printf(&q, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < NQ; i++)
        h_buf_printf(&q, "%s%d", i ? "," : "", i);
    h_buf_printf(&q, "]}");
    char sid[32], qid[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", sbody, strlen(sbody), sid, 60) &&
              h_submit(&svc, "/v1/jobs", "application/json", q.p, q.len, qid, 60);
    free(sbody);
    h_buf_free(&q);
    if (!ok)
        return;
    json_t *sj = h_wait_job(&svc, sid, 120), *qj = h_wait_job(&svc, qid, 120);
    CHECK(sj && qj);
    CHECK_STR(sj ? h_jstr(sj, "status") : NULL, "succeeded");
    CHECK_STR(qj ? h_jstr(qj, "status") : NULL, "succeeded");
    json_decref(sj);
    json_decref(qj);
    if (read_counts(&after, NULL)) {
        CHECK_INT(after.stats - before.stats, NS);
        CHECK_INT(after.square - before.square, NQ);
    }
    struct job_walk ws = {0}, wq = {0};
    CHECK(h_each_result(&svc, sid, NS, 5000, stats_result_ok, &ws));
    CHECK(h_each_result(&svc, qid, NQ, 5000, square_result_ok, &wq));
    CHECKF(ws.bad == 0 && wq.bad == 0, "%zu wrong stats, %zu wrong square results", ws.bad,
           wq.bad);
}

static void test_item_errors_are_results(void)
{
    const char *body = "{\"model\":\"stats\",\"inputs\":[[1,2,3],\"x\",[],[1,\"a\"]]}";
    char id[32];
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return;
    json_t *job = h_wait_job(&svc, id, 60);
    if (!CHECK(job != NULL))
        return;
    long long done = -1, failed = -1;
    h_jint(job, "counts/done", &done);
    h_jint(job, "counts/failed", &failed);
    CHECK_INT(done, 1);
    CHECK_INT(failed, 3);
    json_decref(job);
    json_t *res = h_fetch_results(&svc, id, 4, 10);
    if (!CHECK(res != NULL))
        return;
    static const char *const want[] = {
        NULL,
        "item must be an array of numbers, got a string",
        "item is an empty array: need at least one number",
        "item[1] is a string, expected a number",
    };
    for (size_t i = 0; i < 4; i++) {
        long long idx;
        json_t *out = NULL;
        const char *msg = NULL;
        if (!CHECK_RESULT(json_array_get(res, i), &idx, &out, &msg))
            continue;
        if (want[i])
            CHECK_STR(msg, want[i]);
        else
            CHECK(out && h_jget(out, "median") && json_number_value(h_jget(out, "median")) == 2);
    }
    json_decref(res);
}

/* ------------------------------------------------------ start-up failures */

/* batchd with `model` must exit 2 at start, naming `err_has` in an error. */
static void run_bad_start(const char *model, const char *err_has)
{
    char data[300];
    snprintf(data, sizeof data, "%s/data", h_tmpdir());
    const char *argv[] = {getenv("BATCHD_BIN"), "--listen", "127.0.0.1:0", "--data-dir", data,
                          "--model", model, "--model", "square:workers=1", NULL};
    printf("  case: --model %s\n", model);
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(!r.timed_out, "%s: still running after %d s (it started instead of failing)", model,
           RUN_TIMEOUT_S);
    CHECKF(r.exit_code == 2, "%s: exit %d, expected 2 (stderr: %s)", model, r.exit_code, r.err);
    const char *line = strstr(r.err, err_has);
    CHECKF(line != NULL, "%s: stderr does not say \"%s\": %s", model, err_has, r.err);
    /* ...and says it as an error, in the supervisor, before any worker */
    CHECKF(strstr(r.err, "\"level\":\"error\"") != NULL, "%s: no error line: %s", model, r.err);
    CHECKF(strstr(r.err, "started, pid") == NULL, "%s: something was forked: %s", model, r.err);
    /* the failure path frees what it loaded (the sanitizer builds see it) */
    CHECKF(strstr(r.err, "Sanitizer") == NULL, "%s: a sanitizer report: %s", model, r.err);
    h_run_result_free(&r);
}

static void test_missing_file(void)
{
    char spec[PATH_MAX + 64];
    snprintf(spec, sizeof spec, "stats:plugin=%s/no/such/libstats.so", build_dir);
    run_bad_start(spec, "cannot open shared object file: No such file or directory");
}

static void test_not_a_shared_object(void)
{
    char path[PATH_MAX], spec[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/notaplugin.so", h_tmpdir());
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL))
        return;
    fputs("not an ELF object\n", f);
    fclose(f);
    snprintf(spec, sizeof spec, "stats:plugin=%s", path);
    run_bad_start(spec, "cannot be loaded");
    unlink(path);
}

static void test_no_symbol(void)
{
    char path[PATH_MAX + 64], spec[PATH_MAX + 128];
    plugin_path(path, sizeof path, "tests/plugins/libbad_nosym.so");
    snprintf(spec, sizeof spec, "bad:plugin=%s", path);
    run_bad_start(spec, "does not export the symbol batchd_model");
}

static void test_abi_version_1(void)
{
    char path[PATH_MAX + 64], spec[PATH_MAX + 128], want[PATH_MAX + 128];
    plugin_path(path, sizeof path, "tests/plugins/libbad_abi1.so");
    snprintf(spec, sizeof spec, "bad:plugin=%s", path);
    snprintf(want, sizeof want, "plugin %s has model ABI version 1, this batchd speaks 2", path);
    run_bad_start(spec, want);
}

static void test_no_run(void)
{
    char path[PATH_MAX + 64], spec[PATH_MAX + 128];
    plugin_path(path, sizeof path, "tests/plugins/libbad_norun.so");
    snprintf(spec, sizeof spec, "bad:plugin=%s", path);
    run_bad_start(spec, "run is NULL");
}

static void test_load_refuses_a_parameter(void)
{
    char spec[PATH_MAX + 128];
    snprintf(spec, sizeof spec, "stats:plugin=%s,ddof=2", stats_so);
    run_bad_start(spec, "stats: ddof must be 0 or 1, got '2'");
}

/* ------------------------------------------------------------------- main */

static void start(void)
{
    char spec[PATH_MAX + 128];
    snprintf(spec, sizeof spec, "stats:plugin=%s,workers=2", stats_so);
    const char *const args[] = {"--model", spec, "--model", "square:workers=1", NULL};
    struct h_service_opts o = {.args = args};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void) { CHECK_INT(h_service_stop(&svc, 15), 0); }

int main(void)
{
    static const struct h_test tests[] = {
        {"GET /v1/models: both groups, workers, descriptions", test_models},
        {"a stats job runs on the stats workers only", test_stats_job_reaches_only_stats_workers},
        {"a square job runs on the square worker only",
         test_square_job_reaches_only_the_square_worker},
        {"a stats and a square job at once", test_both_models_at_once},
        {"a plugin's item errors are results", test_item_errors_are_results},
    };
    static const struct h_test bad[] = {
        {"a missing plugin file exits 2", test_missing_file},
        {"a file that is not a shared object exits 2", test_not_a_shared_object},
        {"a plugin without batchd_model exits 2", test_no_symbol},
        {"a plugin of model ABI version 1 exits 2", test_abi_version_1},
        {"a plugin without run() exits 2", test_no_run},
        {"a parameter the plugin's load() refuses exits 2", test_load_refuses_a_parameter},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    const char *bin = getenv("BATCHD_BIN");
    snprintf(build_dir, sizeof build_dir, "%s", bin);
    char *slash = strrchr(build_dir, '/');
    if (slash)
        *slash = '\0';
    plugin_path(stats_so, sizeof stats_so, "examples/plugins/libstats.so");
    if (access(stats_so, R_OK) != 0) {
        h_fail_test("plugins built", "BUILD/examples/plugins/libstats.so is missing (make builds it)");
        return h_finish();
    }
    h_run_one("start batchd with a plugin and a built-in", start);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    h_run_tests(bad, sizeof bad / sizeof bad[0]);
    return h_finish();
}
