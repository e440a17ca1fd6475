/*
 * test_jobs: jobs at scale on one batchd (--workers 2, default limits):
 *   - 1,000,000 `square` items in one JSON request, every result fetched
 *     in order (pages of 10,000) and checked;
 *   - a 10,000-item job, then every worker still has inits == 1 (a model is
 *     initialised once per worker, never per task) and each model has two;
 *   - fairness: a 10-item job submitted behind a big job finishes while the
 *     big job is still running (an ordering assertion, never a duration);
 *   - several jobs of different models at once all succeed, correctly.
 */
#include "tests/integration/harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_service svc;

#define N_WORKERS 2

static long long count_of(const json_t *job, const char *name)
{
    char p[64];
    long long v = -1;
    snprintf(p, sizeof p, "counts/%s", name);
    h_jint(job, p, &v);
    return v;
}

static double exp_sinh(long n)
{
    double sum = 0;
    for (long i = 1; i <= n; i++) {
        double x = (double)i / (double)n;
        sum += exp(x) * sinh(x);
    }
    return sum;
}

static bool close_to(double got, double want)
{
    return fabs(got - want) <= 1e-9 * fmax(1.0, fabs(want));
}

/* ------------------------------------------------------------ 1,000,000 */

struct square_walk {
    size_t bad;
};

static bool square_ok(const json_t *res, void *arg)
{
    struct square_walk *w = arg;
    long long idx = -1;
    double out = NAN;
    h_jint(res, "index", &idx);
    if (!h_jnum(res, "output", &out) || out != (double)idx * (double)idx) {
        if (w->bad++ < 5) {
            char *d = h_json_dump(res);
            h_note("wrong result %s", d);
            free(d);
        }
    }
    return w->bad < 1000;
}

static void test_million(void)
{
    enum { N = 1000000 };
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]}");
    printf("  body: %zu bytes\n", b.len);
    char id[32];
    double t0 = h_now();
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 120);
    h_buf_free(&b);
    if (!ok)
        return;
    printf("  accepted in %.2f s (information only)\n", h_now() - t0);
    json_t *job = h_wait_job(&svc, id, 200);
    if (!CHECK(job != NULL))
        return;
    printf("  finished %.2f s after submission (information only)\n", h_now() - t0);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    CHECK_INT(count_of(job, "total"), N);
    CHECK_INT(count_of(job, "done"), N);
    CHECK_INT(count_of(job, "failed"), 0);
    json_decref(job);
    struct square_walk w = {0};
    CHECK(h_each_result(&svc, id, N, 10000, square_ok, &w));
    CHECKF(w.bad == 0, "%zu wrong results", w.bad);
}

/* ------------------------------------------------------ inits, workers */

static void test_inits_once(void)
{
    enum { N = 10000 };
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i % 1000);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":10}}");
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 60);
    h_buf_free(&b);
    if (!ok)
        return;
    json_t *job = h_wait_job(&svc, id, 120);
    if (!CHECK(job != NULL))
        return;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    CHECK_INT(count_of(job, "done"), N);
    json_decref(job);

    struct h_resp r;
    if (!CHECK(h_get(&svc, "/v1/workers", &r) == 0) || !CHECK_INT(r.status, 200)) {
        h_resp_free(&r);
        return;
    }
    json_t *workers = h_jget(h_json(&r), "workers");
    size_t i, square_workers = 0, square_busy_ever = 0;
    long long square_items = 0;
    json_t *w;
    json_array_foreach(workers, i, w) {
        long long wid = -1, inits = -1, restarts = -1, done = 0, tasks = 0;
        h_jint(w, "id", &wid);
        CHECKF(h_jint(w, "inits", &inits) && inits == 1, "worker %lld (%s): inits %lld", wid,
               h_jstr(w, "model"), inits);
        CHECKF(h_jint(w, "restarts", &restarts) && restarts == 0, "worker %lld restarts %lld", wid,
               restarts);
        const char *model = h_jstr(w, "model");
        if (model && strcmp(model, "square") == 0) {
            square_workers++;
            h_jint(w, "items_done", &done);
            h_jint(w, "tasks_done", &tasks);
            square_items += done;
            square_busy_ever += tasks > 0;
        }
    }
    CHECKF(square_workers >= 2 && square_workers == N_WORKERS, "%zu square workers",
           square_workers);
    CHECKF(square_items >= N, "square workers' items_done add up to %lld", square_items);
    /* After a 1,000,000-item and a 1,000-task job, both took part. */
    CHECKF(square_busy_ever == square_workers, "%zu of %zu square workers ever ran a task",
           square_busy_ever, square_workers);
    h_resp_free(&r);
}

/* ------------------------------------------------------------- fairness */

static void test_fairness(void)
{
    /* ~2.5 * 10^9 exp/sinh pairs: tens of seconds on two workers. */
    enum { BIG = 200000, BIG_N = 10000, SMALL = 10, SMALL_N = 1000 };
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < BIG; i++)
        h_buf_printf(&b, "%s{\"n\":%d}", i ? "," : "", BIG_N);
    h_buf_printf(&b, "]}");
    char big[32], small[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, big, 60);
    h_buf_free(&b);
    if (!ok)
        return;
    /* The big job holds the workers before the small one arrives. */
    json_t *job = h_poll_job(&svc, big, 60, h_job_started, NULL);
    if (!CHECKF(job != NULL, "the big job did not start"))
        return;
    json_decref(job);

    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < SMALL; i++)
        h_buf_printf(&b, "%s{\"n\":%d}", i ? "," : "", SMALL_N + i);
    h_buf_printf(&b, "]}");
    ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, small, 30);
    h_buf_free(&b);
    if (ok) {
        job = h_wait_job(&svc, small, 240);
        if (CHECK(job != NULL))
            CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
        /* The list filter sees the big job running. */
        struct h_resp lr;
        if (CHECK(h_get(&svc, "/v1/jobs?status=running&limit=1000", &lr) == 0) &&
            CHECK_INT(lr.status, 200)) {
            bool listed = false;
            size_t i;
            json_t *j;
            json_array_foreach(h_jget(h_json(&lr), "jobs"), i, j) listed |=
                h_jstr(j, "id") && strcmp(h_jstr(j, "id"), big) == 0;
            CHECKF(listed, "?status=running does not list the running big job");
        }
        h_resp_free(&lr);
        /* The ordering assertion: the big job is still running. */
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", big);
        struct h_resp r;
        if (CHECK(h_get(&svc, path, &r) == 0) && CHECK_INT(r.status, 200)) {
            json_t *bj = h_json(&r);
            const char *st = h_jstr(bj, "status");
            long long d = count_of(bj, "done"), f = count_of(bj, "failed");
            CHECKF(st && strcmp(st, "running") == 0 && d + f < BIG,
                   "the small job finished only after the big one (big: %s, %lld of %d done)",
                   st ? st : "?", d + f, BIG);
        }
        h_resp_free(&r);
        json_t *res = h_fetch_results(&svc, small, SMALL, 1000);
        for (size_t i = 0; res != NULL && i < SMALL; i++) {
            double got = NAN, want = exp_sinh(SMALL_N + (long)i);
            CHECKF(h_jnum(json_array_get(res, i), "output", &got) && close_to(got, want),
                   "small job item %zu: %.17g, expected %.17g", i, got, want);
        }
        json_decref(res);
    }
    /* Stop the big job; its items settle as done or cancelled. */
    char path[80];
    snprintf(path, sizeof path, "/v1/jobs/%s", big);
    struct h_resp r;
    if (CHECK(h_delete(&svc, path, &r) == 0))
        CHECKF(r.status == 200, "DELETE big job: %ld %.200s", r.status, r.body);
    h_resp_free(&r);
    job = h_wait_job(&svc, big, 120);
    if (job != NULL)
        CHECK_STR(h_jstr(job, "status"), "cancelled");
    json_decref(job);
}

/* ---------------------------------------------------- several at once */

struct job_spec {
    const char *model;
    size_t n;
    int kind; /* 0 square i, 1 echo "s<i>", 2 sum_squares [i,i+1], 3 exp_sinh n=100+i */
    unsigned chunk;
};

static void item_json(struct h_buf *b, int kind, size_t i)
{
    switch (kind) {
    case 0: h_buf_printf(b, "%zu", i); break;
    case 1: h_buf_printf(b, "\"s%zu\"", i); break;
    case 2: h_buf_printf(b, "[%zu,%zu]", i, i + 1); break;
    default: h_buf_printf(b, "{\"n\":%zu}", 100 + i); break;
    }
}

static bool item_ok(int kind, size_t i, const json_t *out)
{
    char s[32];
    switch (kind) {
    case 0: return json_is_number(out) && json_number_value(out) == (double)i * (double)i;
    case 1:
        snprintf(s, sizeof s, "s%zu", i);
        return json_is_string(out) && strcmp(json_string_value(out), s) == 0;
    case 2:
        return json_is_number(out) &&
               json_number_value(out) == (double)i * (double)i + (double)(i + 1) * (double)(i + 1);
    default: return json_is_number(out) && close_to(json_number_value(out), exp_sinh(100 + (long)i));
    }
}

static void test_concurrent(void)
{
    static const struct job_spec specs[] = {
        {"square", 20000, 0, 0},   {"echo", 3000, 1, 0},   {"sum_squares", 5000, 2, 0},
        {"exp_sinh", 300, 3, 0},   {"square", 1, 0, 0},    {"square", 2000, 0, 1},
        {"echo", 10, 1, 1000},     {"exp_sinh", 50, 3, 7}, {"square", 7777, 0, 100},
        {"sum_squares", 1, 2, 0},
    };
    enum { NJ = sizeof specs / sizeof specs[0] };
    char ids[NJ][32];
    bool submitted[NJ] = {false};
    for (size_t j = 0; j < NJ; j++) {
        struct h_buf b = {0};
        h_buf_printf(&b, "{\"model\":\"%s\",\"inputs\":[", specs[j].model);
        for (size_t i = 0; i < specs[j].n; i++) {
            if (i)
                h_buf_add(&b, ",", 1);
            item_json(&b, specs[j].kind, i);
        }
        h_buf_printf(&b, "]");
        if (specs[j].chunk)
            h_buf_printf(&b, ",\"options\":{\"chunk_size\":%u}", specs[j].chunk);
        h_buf_printf(&b, "}");
        submitted[j] = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, ids[j], 60);
        h_buf_free(&b);
    }
    for (size_t j = 0; j < NJ; j++) {
        if (!submitted[j])
            continue;
        json_t *job = h_wait_job(&svc, ids[j], 180);
        if (!CHECKF(job != NULL, "job %zu (%s)", j, specs[j].model))
            continue;
        CHECKF(strcmp(h_jstr(job, "status"), "succeeded") == 0 &&
                   count_of(job, "done") == (long long)specs[j].n,
               "job %zu (%s): %s, %lld done of %zu", j, specs[j].model, h_jstr(job, "status"),
               count_of(job, "done"), specs[j].n);
        json_decref(job);
        json_t *res = h_fetch_results(&svc, ids[j], specs[j].n, 10000);
        size_t bad = 0;
        for (size_t i = 0; res != NULL && i < specs[j].n; i++) {
            json_t *out = h_jget(json_array_get(res, i), "output");
            if (!item_ok(specs[j].kind, i, out) && bad++ < 3) {
                char *d = h_json_dump(json_array_get(res, i));
                h_note("job %zu (%s) item %zu: %s", j, specs[j].model, i, d);
                free(d);
            }
        }
        CHECKF(res != NULL && bad == 0, "job %zu (%s): %zu wrong results", j, specs[j].model, bad);
        json_decref(res);
    }
}

/* ------------------------------------------------ parallel connections */

static void test_parallel_submissions(void)
{
    enum { NJ = 64 };
    static char bodies[NJ][128];
    static struct h_req reqs[NJ];
    static struct h_resp resps[NJ];
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct h_multi *m = h_multi_new(&svc);
    for (int j = 0; j < NJ; j++) {
        snprintf(bodies[j], sizeof bodies[j],
                 "{\"model\":\"square\",\"inputs\":[%d,%d,%d],\"options\":{\"chunk_size\":%d}}",
                 j, j + 1, j + 2, 1 + j % 3);
        reqs[j] = (struct h_req){.method = "POST", .path = "/v1/jobs", .headers = hdrs,
                                 .body = bodies[j], .body_len = strlen(bodies[j]), .timeout_s = 60};
        h_multi_add(m, &reqs[j], &resps[j]);
    }
    size_t left = h_multi_run(m, 90, false);
    CHECKF(left == 0, "%zu submissions still running after 90 s", left);
    char ids[NJ][32];
    for (int j = 0; j < NJ; j++) {
        ids[j][0] = '\0';
        if (!CHECKF(resps[j].status == 202, "submission %d: %ld %s %.200s", j, resps[j].status,
                    resps[j].error, resps[j].body ? resps[j].body : ""))
            continue;
        const char *id = h_jstr(h_json(&resps[j]), "id");
        if (CHECK(h_is_job_id(id)))
            snprintf(ids[j], sizeof ids[j], "%s", id);
        for (int k = 0; k < j; k++)
            CHECKF(strcmp(ids[k], ids[j]) != 0 || ids[j][0] == '\0', "two jobs got id %s", ids[j]);
    }
    h_multi_free(m);
    for (int j = 0; j < NJ; j++)
        h_resp_free(&resps[j]);
    for (int j = 0; j < NJ; j++) {
        if (ids[j][0] == '\0')
            continue;
        json_t *job = h_wait_job(&svc, ids[j], 120);
        json_decref(job);
        json_t *res = h_fetch_results(&svc, ids[j], 3, 1000);
        for (int i = 0; res != NULL && i < 3; i++) {
            double v = NAN, x = j + i;
            CHECKF(h_jnum(json_array_get(res, (size_t)i), "output", &v) && v == x * x,
                   "job %d item %d: %g, expected %g", j, i, v, x * x);
        }
        json_decref(res);
    }
}

static void test_parallel_streams(void)
{
    /* Sixteen clients stream one running job; each sees every index once. */
    enum { N = 4000, NS = 16 };
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s{\"n\":%d}", i ? "," : "", 20000 + i % 17);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":8}}");
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 60);
    h_buf_free(&b);
    if (!ok)
        return;
    char path[120];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
    static struct h_req reqs[NS];
    static struct h_resp resps[NS];
    struct h_multi *m = h_multi_new(&svc);
    for (int s = 0; s < NS; s++) {
        reqs[s] = (struct h_req){.method = "GET", .path = path, .timeout_s = 180};
        h_multi_add(m, &reqs[s], &resps[s]);
    }
    size_t left = h_multi_run(m, 200, false);
    CHECKF(left == 0, "%zu streams did not end", left);
    h_multi_free(m);
    double want[17];
    for (int k = 0; k < 17; k++)
        want[k] = exp_sinh(20000 + k);
    for (int s = 0; s < NS; s++) {
        if (!CHECKF(resps[s].status == 200, "stream %d: %ld %s", s, resps[s].status, resps[s].error)) {
            h_resp_free(&resps[s]);
            continue;
        }
        json_t *lines = h_parse_ndjson_results(resps[s].body, resps[s].len);
        unsigned char *seen = calloc(N, 1);
        size_t dup = 0, bad = 0, missing = 0;
        for (size_t i = 0; lines != NULL && i < json_array_size(lines); i++) {
            long long idx = -1;
            double v = NAN;
            json_t *res = json_array_get(lines, i);
            h_jint(res, "index", &idx);
            if (idx < 0 || idx >= N || !h_jnum(res, "output", &v) || !close_to(v, want[idx % 17]))
                bad++;
            else if (seen[idx]++)
                dup++;
        }
        for (int i = 0; i < N; i++)
            missing += !seen[i];
        CHECKF(lines != NULL && dup == 0 && bad == 0 && missing == 0,
               "stream %d: %zu duplicate, %zu wrong, %zu missing", s, dup, bad, missing);
        free(seen);
        json_decref(lines);
        h_resp_free(&resps[s]);
    }
    json_decref(h_wait_job(&svc, id, 120));
}

/* ---------------------------------------------------- admission control */

static int count_jobs(struct h_service *s)
{
    struct h_resp r;
    int n = -1;
    if (h_get(s, "/v1/jobs?limit=1000", &r) == 0 && r.status == 200)
        n = (int)json_array_size(h_jget(h_json(&r), "jobs"));
    h_resp_free(&r);
    return n;
}

static void test_admission(void)
{
    /* --max-queued-items 10 on one chaos worker: a job of 8 slow items
     * holds the queue while the checks run. */
    static const char *const args[] = {"--workers", "1", "--model", "chaos",
                                       "--max-queued-items", "10", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    char a[32], c[32], bid[32];
    const char *job_a = "{\"model\":\"chaos\",\"inputs\":[{\"sleep_ms\":300},{\"sleep_ms\":300},"
                        "{\"sleep_ms\":300},{\"sleep_ms\":300},{\"sleep_ms\":300},{\"sleep_ms\":300},"
                        "{\"sleep_ms\":300},{\"sleep_ms\":300}],\"options\":{\"chunk_size\":1}}";
    const char *job_b = "{\"model\":\"chaos\",\"inputs\":[1,2,3,4,5]}";
    const char *job_c = "{\"model\":\"chaos\",\"inputs\":[6,7]}";
    if (!h_submit(&s, "/v1/jobs", "application/json", job_a, strlen(job_a), a, 30))
        goto out;
    /* 8 + 5 > 10: refused whole, with Retry-After. */
    struct h_resp r;
    if (CHECK(h_post(&s, "/v1/jobs", "application/json", job_b, &r) == 0) &&
        CHECK_PROBLEM(&r, 429, "overloaded", "/v1/jobs")) {
        const char *ra = h_resp_header(&r, "Retry-After");
        CHECKF(ra != NULL && ra[0] >= '0' && ra[0] <= '9', "Retry-After \"%s\"", ra ? ra : "(none)");
    }
    h_resp_free(&r);
    CHECKF(count_jobs(&s) == 1, "the refused job left a trace in the job list");
    /* 8 + 2 == 10 fits. */
    if (h_submit(&s, "/v1/jobs", "application/json", job_c, strlen(job_c), c, 30)) {
        /* Cancel A: its unfinished items are released, and B fits. */
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", a);
        if (CHECK(h_delete(&s, path, &r) == 0))
            CHECKF(r.status == 200 || r.status == 409, "DELETE A: %ld", r.status);
        h_resp_free(&r);
        json_decref(h_wait_job(&s, a, 60));
        json_t *jc = h_wait_job(&s, c, 60);
        json_decref(jc);
        if (h_submit(&s, "/v1/jobs", "application/json", job_b, strlen(job_b), bid, 30)) {
            json_t *jb = h_wait_job(&s, bid, 60);
            if (jb)
                CHECK_STR(h_jstr(jb, "status"), "succeeded");
            json_decref(jb);
        }
    }
    /* A job that can never fit is not "retry later" but too large. */
    const char *job_d = "{\"model\":\"chaos\",\"inputs\":[1,2,3,4,5,6,7,8,9,10,11]}";
    if (CHECK(h_post(&s, "/v1/jobs", "application/json", job_d, &r) == 0) &&
        CHECK_PROBLEM(&r, 413, "too-large", "/v1/jobs")) {
        long long lim = 0;
        if (h_jint(h_json(&r), "limit", &lim))
            CHECK_INT(lim, 10);
    }
    h_resp_free(&r);
out:
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static bool has_chaos(void)
{
    const char *argv[] = {getenv("BATCHD_BIN"), "--help", NULL};
    struct h_run_result r;
    bool found = h_run(argv, NULL, 10, &r) == 0 && r.exit_code == 0 &&
                 strstr(r.out, "Built-in models:") != NULL &&
                 strstr(strstr(r.out, "Built-in models:"), "chaos") != NULL;
    h_run_result_free(&r);
    return found;
}

static void test_admission_guarded(void)
{
    if (!has_chaos()) {
        h_skip("this batchd has no built-in `chaos` model (batchd --help lists none)");
        return;
    }
    test_admission();
}

/* ------------------------------------------------------------------- main */

int main(void)
{
    static const struct h_test tests[] = {
        {"1,000,000 square items in one request", test_million},
        {"10,000 items: every worker initialised once", test_inits_once},
        {"fairness: a small job passes a big one", test_fairness},
        {"several jobs at once", test_concurrent},
        {"64 submissions on parallel connections", test_parallel_submissions},
        {"16 parallel streams of one running job", test_parallel_streams},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    static const char *const args[] = {"--workers", "2", "--model", "echo", "--model", "square",
                                       "--model", "sum_squares", "--model", "exp_sinh", NULL};
    struct h_service_opts o = {.args = args};
    h_run_on_service(&svc, &o, 15, tests, sizeof tests / sizeof tests[0]);
    h_run_one("admission: --max-queued-items (429, then accepted)", test_admission_guarded);
    return h_finish();
}
