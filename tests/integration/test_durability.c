/*
 * test_durability: batchd's durable store, seen from outside.
 *
 *   - Crashes: a job of 2000 exp_sinh items on 2 workers (a few seconds of
 *     work) survives SIGKILL of the whole process group (supervisor, api,
 *     workers) (a) just after its 202, (b) mid-run, (c) right after its
 *     counts moved (results being written; three crashes in a row), and
 *     (d) a SIGTERM mid-job (exit 0): each time batchd starts again on the
 *     same data dir and port and the job succeeds with exactly one result
 *     per index (paged in order, and streamed), each equal to the value
 *     computed here with the same loop (relative error 1e-12). Results
 *     served before the crash are served unchanged after it, and the
 *     database holds one block per item range, without overlap.
 *   - A finished job (succeeded, with failed items, or cancelled) is served
 *     as it was after a restart: status, counts, timestamps, results.
 *   - Idempotency-Key: the same request again is a 200 with the same job,
 *     also after a restart; another request with the key is a 409; bad
 *     keys are a 400; a purged job's key is free again.
 *   - Retention: with --retention 2 a finished job is gone (404, not
 *     listed) within a bounded wait (the engine sweeps every 10 s).
 *   - Purge: DELETE ?purge=true is 204 then 404 (also after a restart); 409
 *     for a running job; 400 for purge=maybe. A stream of a job purged
 *     while a slow client reads it never carries another job's results.
 *   - Bad storage at start-up exits 2 with one error line naming the
 *     problem: a missing parent, a data dir that is a file, a corrupt
 *     batchd.db, another application's database, a newer schema, and a
 *     data dir locked by a running batchd.
 *   - A full store (--max-store-bytes): a submission gets 507
 *     insufficient-storage and creates nothing; a job accepted before it
 *     finishes and reads back in full (openapi.yaml: "Jobs accepted before
 *     are not affected"); with room again (a purge), a job is accepted.
 *
 * Every wait is bounded; nothing asserts on durations. Only processes this
 * program started are signalled: by PID, or the process group the harness
 * created for a batchd.
 */
#include "tests/integration/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <sqlite3.h>

#define N_ITEMS 2000
#define N_BASE 200000L

/* ------------------------------------------------------------ helpers */

static const char *const exp_args[] = {"--workers", "2", "--model", "exp_sinh", NULL};

/* The exp_sinh kernel, the same double loop as workers/models_builtin.c. */
static double exp_sinh(long n)
{
    double sum = 0.0;
    for (long i = 1; i <= n; i++) {
        double x = (double)i / (double)n;
        sum += exp(x) * sinh(x);
    }
    return sum;
}

/* Expected outputs of item i = {"n": N_BASE + i}, computed once. */
static const double *expected(void)
{
    static double want[N_ITEMS];
    static bool ready;
    if (!ready) {
        double t0 = h_now();
        for (int i = 0; i < N_ITEMS; i++)
            want[i] = exp_sinh(N_BASE + i);
        ready = true;
        printf("  (computed %d expected values in %.1f s)\n", N_ITEMS, h_now() - t0);
    }
    return want;
}

static void exp_body(struct h_buf *b, int n, long base)
{
    h_buf_printf(b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < n; i++)
        h_buf_printf(b, "%s{\"n\":%ld}", i ? "," : "", base + i);
    h_buf_printf(b, "]}");
}

static bool start(struct h_service *s, const char *const *args)
{
    struct h_service_opts o = {.args = args, .ready_timeout_s = 30};
    return h_service_start(s, &o) == 0;
}

static bool restart(struct h_service *s, const char *const *args)
{
    printf("  restarting on the same data dir and port %d\n", s->port);
    struct h_service_opts o = {.args = args, .ready_timeout_s = 30};
    return h_service_restart(s, &o) == 0;
}

/* GET /v1/jobs/{id}: the Job (new) or NULL; *status the HTTP status. */
static json_t *get_job(struct h_service *s, const char *id, long *status)
{
    char path[80];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    struct h_resp r;
    json_t *job = NULL;
    *status = 0;
    if (h_get(s, path, &r) == 0) {
        *status = r.status;
        if (r.status == 200) {
            job = h_json(&r);
            json_incref(job);
        }
    }
    h_resp_free(&r);
    return job;
}

static long long jcount(const json_t *job, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "counts/%s", what);
    long long v = -1;
    h_jint(job, path, &v);
    return v;
}

/* A POST /v1/jobs with extra header lines (NULL-terminated, may be NULL). */
static void post_job(struct h_service *s, const char *body, const char *const *extra,
                     struct h_resp *r)
{
    const char *hdrs[8] = {"Content-Type: application/json"};
    size_t n = 1;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 7; i++)
        hdrs[n++] = extra[i];
    hdrs[n] = NULL;
    struct h_req req = {.method = "POST", .path = "/v1/jobs", .headers = hdrs, .body = body,
                        .body_len = strlen(body), .timeout_s = 60};
    if (h_request(s, &req, r) != 0)
        h_note("POST /v1/jobs: %s", r->error);
}

/* Polls the job until pred holds (bounded). */
struct at_least {
    long long done;
};

static bool done_at_least(const json_t *job, void *arg)
{
    const struct at_least *a = arg;
    return jcount(job, "done") >= a->done;
}

/* The durable results [0, limit) as a page: a new array (may be empty). */
static json_t *results_prefix(struct h_service *s, const char *id, size_t limit)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=0&limit=%zu", id, limit);
    struct h_resp r;
    json_t *out = NULL;
    if (h_get(s, path, &r) == 0 && r.status == 200) {
        out = h_jget(h_json(&r), "results");
        json_incref(out);
    } else {
        CHECKF(false, "GET %s: %ld %.200s", path, r.status, r.status ? r.body : r.error);
    }
    h_resp_free(&r);
    return out ? out : json_array();
}

struct verify {
    const double *want;
    size_t bad;
};

static bool check_exp_result(const json_t *res, void *arg)
{
    struct verify *v = arg;
    long long idx;
    json_t *out;
    const char *msg;
    if (!CHECK_RESULT(res, &idx, &out, &msg))
        return false;
    double got = NAN;
    double want = v->want[idx];
    if (!json_is_number(out) || (got = json_number_value(out), fabs(got - want) > 1e-12 * fabs(want))) {
        if (v->bad++ < 3)
            h_note("item %lld: got %.17g, expected %.17g%s%s", idx, got, want,
                   msg ? ", error: " : "", msg ? msg : "");
    }
    return true;
}

static int by_index(const void *a, const void *b)
{
    long long x = -1, y = -1;
    h_jint(*(json_t *const *)a, "index", &x);
    h_jint(*(json_t *const *)b, "index", &y);
    return (x > y) - (x < y);
}

/* Every result of a finished job through the stream, sorted by index: a new
 * array (empty on failure, checks counted). Unlike a page, it does not stop
 * at an item without a result (a cancelled job's). */
static json_t *all_results(struct h_service *s, const char *id)
{
    char path[120];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
    struct h_req rq = {.method = "GET", .path = path, .timeout_s = 60};
    struct h_resp r;
    json_t *sorted = json_array();
    if (CHECKF(h_request(s, &rq, &r) == 0, "%s", r.error) && CHECK_INT(r.status, 200)) {
        json_t *lines = h_parse_ndjson_results(r.body, r.len);
        size_t n = json_array_size(lines);
        json_t **v = calloc(n + 1, sizeof *v);
        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(lines, i);
        qsort(v, n, sizeof *v, by_index);
        for (size_t i = 0; i < n; i++)
            json_array_append(sorted, v[i]);
        free(v);
        json_decref(lines);
    }
    h_resp_free(&r);
    return sorted;
}

/* Every index of the stream exactly once. */
static void check_stream_once(struct h_service *s, const char *id, size_t n)
{
    char path[120];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
    struct h_req rq = {.method = "GET", .path = path, .timeout_s = 60};
    struct h_resp r;
    if (CHECKF(h_request(s, &rq, &r) == 0, "%s", r.error) && CHECK_INT(r.status, 200)) {
        json_t *lines = h_parse_ndjson_results(r.body, r.len);
        unsigned char *seen = calloc(n, 1);
        size_t dup = 0, out_of_range = 0;
        for (size_t i = 0; lines != NULL && i < json_array_size(lines); i++) {
            long long idx = -1;
            h_jint(json_array_get(lines, i), "index", &idx);
            if (idx < 0 || (size_t)idx >= n)
                out_of_range++;
            else if (seen[idx]++)
                dup++;
        }
        CHECKF(lines != NULL && json_array_size(lines) == n && dup == 0 && out_of_range == 0,
               "stream: %zu lines for %zu items, %zu duplicates, %zu out of range",
               lines ? json_array_size(lines) : 0, n, dup, out_of_range);
        free(seen);
        json_decref(lines);
    }
    h_resp_free(&r);
}

/*
 * Waits for the exp_sinh job of N_ITEMS items to finish and checks it: it
 * succeeded, every index has exactly one result, in order, equal to the
 * expected value; `before` (results served before a crash, may be NULL)
 * are served unchanged.
 */
static void verify_exp_job(struct h_service *s, const char *id, const char *created_at,
                           const json_t *before)
{
    json_t *job = h_wait_job(s, id, 90);
    if (!CHECK(job != NULL))
        return;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    CHECK_INT(jcount(job, "total"), N_ITEMS);
    CHECK_INT(jcount(job, "done"), N_ITEMS);
    CHECK_INT(jcount(job, "failed"), 0);
    if (created_at != NULL)
        CHECK_STR(h_jstr(job, "created_at"), created_at);
    json_decref(job);

    struct verify v = {expected(), 0};
    CHECK(h_each_result(s, id, N_ITEMS, 700, check_exp_result, &v));
    CHECKF(v.bad == 0, "%zu results differ from the expected values", v.bad);
    check_stream_once(s, id, N_ITEMS);

    if (before != NULL && json_array_size(before) > 0) {
        json_t *after = results_prefix(s, id, json_array_size(before));
        size_t same = 0;
        for (size_t i = 0; i < json_array_size(before); i++)
            same += json_equal(json_array_get(before, i), json_array_get(after, i));
        CHECKF(same == json_array_size(before),
               "%zu of %zu results served before the crash differ after it",
               json_array_size(before) - same, json_array_size(before));
        json_decref(after);
    }
}

/*
 * Opens the stopped service's database read-only and checks that the
 * job's result blocks cover [0, n) exactly once: sorted by first index,
 * each starts where the previous one ended.
 */
static void check_blocks(const struct h_service *s, const char *id, size_t n)
{
    char path[400];
    snprintf(path, sizeof path, "%s/batchd.db", s->data_dir);
    sqlite3 *db = NULL;
    if (!CHECKF(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK,
                "open %s: %s", path, db ? sqlite3_errmsg(db) : "?")) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT first, n FROM results WHERE job=(SELECT seq FROM jobs"
                                " WHERE id=?) ORDER BY first",
                                -1, &st, NULL);
    if (!CHECKF(rc == SQLITE_OK, "prepare: %s", sqlite3_errmsg(db))) {
        sqlite3_close(db);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    unsigned long long at = 0, blocks = 0, overlaps = 0, gaps = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        unsigned long long first = (unsigned long long)sqlite3_column_int64(st, 0);
        unsigned long long cnt = (unsigned long long)sqlite3_column_int64(st, 1);
        if (first < at)
            overlaps++;
        else if (first > at)
            gaps++;
        if (first + cnt > at)
            at = first + cnt;
        blocks++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECKF(overlaps == 0 && gaps == 0 && at == n,
           "stored result blocks: %llu blocks, %llu overlapping, %llu gaps, end %llu of %zu",
           blocks, overlaps, gaps, at, n);
}

/* Submits the N_ITEMS exp_sinh job; fills id and created_at[32]. */
static bool submit_exp_job(struct h_service *s, char *id, char *created_at)
{
    struct h_buf b = {0};
    exp_body(&b, N_ITEMS, N_BASE);
    bool ok = h_submit(s, "/v1/jobs", "application/json", b.p, b.len, id, 60);
    h_buf_free(&b);
    created_at[0] = '\0';
    if (ok) {
        long st;
        json_t *job = get_job(s, id, &st);
        const char *c = h_jstr(job, "created_at");
        snprintf(created_at, 32, "%s", c ? c : "");
        json_decref(job);
    }
    return ok;
}

/* ------------------------------------------------------------- crashes */

/* (a) SIGKILL of every process right after the 202. */
static void test_kill_after_202(void)
{
    expected(); /* before the service competes for the CPUs */
    struct h_service s;
    if (!start(&s, exp_args)) {
        h_service_cleanup(&s);
        return;
    }
    char id[32], created[32];
    if (submit_exp_job(&s, id, created)) {
        printf("  SIGKILL process group %d right after the 202 of %s\n", (int)s.pid, id);
        if (h_service_kill_group(&s, 10) == 0 && restart(&s, exp_args)) {
            verify_exp_job(&s, id, created, NULL);
            h_service_stop(&s, 30);
            check_blocks(&s, id, N_ITEMS);
        }
    }
    h_service_cleanup(&s);
}

/* (b) SIGKILL of every process mid-run. */
static void test_kill_mid_run(void)
{
    struct h_service s;
    if (!start(&s, exp_args)) {
        h_service_cleanup(&s);
        return;
    }
    char id[32], created[32];
    if (submit_exp_job(&s, id, created)) {
        struct at_least a = {N_ITEMS / 3};
        json_t *job = h_poll_job(&s, id, 120, done_at_least, &a);
        if (CHECKF(job != NULL, "job %s never reached %lld done", id, a.done)) {
            long long done = jcount(job, "done");
            /* what a client could read before the crash */
            json_t *before = results_prefix(&s, id, N_ITEMS);
            printf("  SIGKILL process group %d at %lld done, %zu results served\n", (int)s.pid,
                   done, json_array_size(before));
            CHECKF(done < N_ITEMS, "the job finished before the crash (done %lld)", done);
            if (h_service_kill_group(&s, 10) == 0 && restart(&s, exp_args)) {
                verify_exp_job(&s, id, created, before);
                h_service_stop(&s, 30);
                check_blocks(&s, id, N_ITEMS);
            }
            json_decref(before);
        }
        json_decref(job);
    }
    h_service_cleanup(&s);
}

/* Polls the job as fast as it answers until counts.done reaches min_done,
 * and returns as soon as it moves after that (results are being collected
 * and written): true, with *done. */
static bool wait_done_moves(struct h_service *s, const char *id, long long min_done,
                            long long *done)
{
    long long last = -1;
    double deadline = h_now() + 60;
    for (int i = 0; i < 1000000 && h_now() < deadline; i++) {
        long st;
        json_t *job = get_job(s, id, &st);
        if (job == NULL)
            return false;
        long long d = jcount(job, "done");
        const char *status = h_jstr(job, "status");
        bool finished = status && strcmp(status, "running") != 0 && strcmp(status, "queued") != 0;
        json_decref(job);
        if (finished)
            return false;
        if (last >= min_done && d > last) {
            *done = d;
            return true;
        }
        last = d;
    }
    return false;
}

/* (c) SIGKILL right after counts.done moved, three times on one job. */
static void test_kill_while_writing(void)
{
    struct h_service s;
    if (!start(&s, exp_args)) {
        h_service_cleanup(&s);
        return;
    }
    char id[32], created[32];
    bool ok = submit_exp_job(&s, id, created);
    json_t *before = NULL;
    for (int round = 0; ok && round < 3; round++) {
        long long done = 0;
        /* served before the crash (read first: the crash must follow the
         * move at once) */
        json_decref(before);
        before = results_prefix(&s, id, N_ITEMS);
        /* a crash early, one in the middle, one late */
        if (!wait_done_moves(&s, id, round * (N_ITEMS / 3), &done)) {
            /* the job ended first (a fast machine): nothing left to crash */
            h_note("round %d: the job finished before its counts were seen moving", round + 1);
            break;
        }
        printf("  round %d: SIGKILL process group %d just after done moved to %lld "
               "(%zu results served)\n",
               round + 1, (int)s.pid, done, json_array_size(before));
        ok = h_service_kill_group(&s, 10) == 0 && restart(&s, exp_args);
    }
    if (ok) {
        verify_exp_job(&s, id, created, before);
        h_service_stop(&s, 30);
        check_blocks(&s, id, N_ITEMS);
    }
    json_decref(before);
    h_service_cleanup(&s);
}

/* (d) SIGTERM mid-job: a clean exit 0, then the job goes on after a start. */
static void test_sigterm_mid_job(void)
{
    struct h_service s;
    if (!start(&s, exp_args)) {
        h_service_cleanup(&s);
        return;
    }
    char id[32], created[32];
    if (submit_exp_job(&s, id, created)) {
        struct at_least a = {N_ITEMS / 3};
        json_t *job = h_poll_job(&s, id, 120, done_at_least, &a);
        if (CHECKF(job != NULL, "job %s never reached %lld done", id, a.done)) {
            json_t *before = results_prefix(&s, id, N_ITEMS);
            printf("  SIGTERM batchd %d at %lld done\n", (int)s.pid, jcount(job, "done"));
            int code = h_service_stop(&s, 30); /* checks exit 0 and no child left */
            if (code == 0 && restart(&s, exp_args)) {
                long st;
                json_t *again = get_job(&s, id, &st);
                CHECKF(again != NULL, "job %s: %ld after the restart", id, st);
                /* what was done before the stop is still done */
                CHECKF(jcount(again, "done") >= (long long)json_array_size(before),
                       "done %lld after the restart, %zu results were served before",
                       jcount(again, "done"), json_array_size(before));
                json_decref(again);
                verify_exp_job(&s, id, created, before);
                h_service_stop(&s, 30);
                check_blocks(&s, id, N_ITEMS);
            }
            json_decref(before);
        }
        json_decref(job);
    }
    h_service_cleanup(&s);
}

/* SIGKILL of the api process alone mid-job: the supervisor starts a new
 * one, which takes the job over from the store. */
static void test_kill_api_mid_job(void)
{
    struct h_service s;
    if (!start(&s, exp_args)) {
        h_service_cleanup(&s);
        return;
    }
    char id[32], created[32];
    if (submit_exp_job(&s, id, created)) {
        struct at_least a = {N_ITEMS / 4};
        json_t *job = h_poll_job(&s, id, 120, done_at_least, &a);
        /* the api is the child that is not a worker */
        pid_t kids[16], api = 0;
        size_t nk = h_children(s.pid, kids, 16);
        struct h_resp r;
        size_t napi = 0;
        if (job != NULL && h_get(&s, "/v1/workers", &r) == 0 && r.status == 200) {
            json_t *ws = h_jget(h_json(&r), "workers");
            for (size_t k = 0; k < nk && k < 16; k++) {
                bool worker = false;
                size_t i;
                json_t *w;
                json_array_foreach(ws, i, w) {
                    long long pid = 0;
                    worker |= h_jint(w, "pid", &pid) && pid == kids[k];
                }
                if (!worker) {
                    api = kids[k];
                    napi++;
                }
            }
        }
        h_resp_free(&r);
        if (CHECKF(job != NULL && napi == 1, "job %s or its api process not found", id)) {
            json_t *before = results_prefix(&s, id, N_ITEMS);
            printf("  SIGKILL api process %d at %lld done\n", (int)api, jcount(job, "done"));
            CHECK(kill(api, SIGKILL) == 0);
            /* answers again on the same port (bounded) */
            long st = 0;
            double deadline = h_now() + 30;
            for (int i = 0; i < 100000 && st != 200 && h_now() < deadline; i++) {
                json_t *j = get_job(&s, id, &st);
                json_decref(j);
                if (st != 200)
                    h_sleep_ms(50);
            }
            if (CHECKF(st == 200, "job %s: %ld after the api restarted", id, st))
                verify_exp_job(&s, id, created, before);
            json_decref(before);
        }
        json_decref(job);
        h_service_stop(&s, 30);
    }
    h_service_cleanup(&s);
}

/* --------------------------------------------------- finished jobs kept */

struct kept_job {
    char id[32];
    json_t *job;     /* the Job before the restart */
    json_t *page;    /* the first page of results */
    json_t *results; /* every result (streamed), by index */
};

static void keep_job(struct h_service *s, struct kept_job *k)
{
    long st;
    k->job = get_job(s, k->id, &st);
    long long total = jcount(k->job, "total");
    long long have = jcount(k->job, "done") + jcount(k->job, "failed");
    k->page = results_prefix(s, k->id, 10000);
    k->results = all_results(s, k->id);
    CHECKF((long long)json_array_size(k->results) == have && have <= total,
           "job %s: %zu results for %lld done+failed", k->id, json_array_size(k->results),
           have);
}

static void compare_kept(struct h_service *s, const struct kept_job *k)
{
    long st;
    json_t *now = get_job(s, k->id, &st);
    if (!CHECKF(now != NULL, "job %s: %ld after the restart", k->id, st))
        return;
    CHECK_JOB(now);
    static const char *const same[] = {"id", "model", "status", "counts", "created_at",
                                       "started_at", "finished_at", "chunk_size", "error",
                                       "links"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        json_t *a = json_object_get(k->job, same[i]), *b = json_object_get(now, same[i]);
        if (!json_equal(a, b)) {
            char *da = h_json_dump(a), *db = h_json_dump(b);
            CHECKF(false, "job %s: %s was %s, is %s after the restart", k->id, same[i], da, db);
            free(da);
            free(db);
        }
    }
    json_t *page = results_prefix(s, k->id, 10000);
    CHECKF(json_equal(page, k->page), "job %s: the first page differs after the restart "
           "(%zu vs %zu results)", k->id, json_array_size(k->page), json_array_size(page));
    json_decref(page);
    json_t *res = all_results(s, k->id);
    CHECKF(json_equal(res, k->results), "job %s: results differ after the restart (%zu vs %zu)",
           k->id, json_array_size(k->results), json_array_size(res));
    json_decref(res);
    json_decref(now);
}

static void test_finished_jobs_kept(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "exp_sinh", "--model",
                                       "square", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    struct kept_job k[3];
    memset(k, 0, sizeof k);
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < 5000; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":100}}");
    bool ok = h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, k[0].id, 60);
    h_buf_free(&b);
    /* per-item errors: a succeeded job with failed items */
    const char *mixed = "{\"model\":\"exp_sinh\",\"inputs\":[{\"n\":10},{\"n\":-1},{\"n\":30},"
                        "\"x\",{\"n\":50}]}";
    ok = ok && h_submit(&s, "/v1/jobs", "application/json", mixed, strlen(mixed), k[1].id, 60);
    /* a cancelled job with some results */
    struct h_buf c = {0};
    exp_body(&c, N_ITEMS, N_BASE);
    ok = ok && h_submit(&s, "/v1/jobs", "application/json", c.p, c.len, k[2].id, 60);
    h_buf_free(&c);
    if (ok) {
        struct at_least a = {10};
        json_t *j = h_poll_job(&s, k[2].id, 60, done_at_least, &a);
        json_decref(j);
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", k[2].id);
        struct h_resp r;
        if (CHECK(h_delete(&s, path, &r) == 0))
            CHECK_INT(r.status, 200);
        h_resp_free(&r);
        for (int i = 0; i < 3; i++) {
            json_t *job = h_wait_job(&s, k[i].id, 120);
            json_decref(job);
            keep_job(&s, &k[i]);
        }
        CHECK_STR(h_jstr(k[0].job, "status"), "succeeded");
        CHECK_STR(h_jstr(k[1].job, "status"), "succeeded");
        CHECK_INT(jcount(k[1].job, "failed"), 2);
        CHECK_STR(h_jstr(k[2].job, "status"), "cancelled");
        CHECKF(jcount(k[2].job, "cancelled") > 0, "the cancelled job has no cancelled item");
        struct h_resp l;
        json_t *list_before = NULL;
        if (h_get(&s, "/v1/jobs", &l) == 0 && l.status == 200) {
            list_before = h_jget(h_json(&l), "jobs");
            json_incref(list_before);
        }
        h_resp_free(&l);

        if (h_service_stop(&s, 30) == 0 && restart(&s, args)) {
            for (int i = 0; i < 3; i++)
                compare_kept(&s, &k[i]);
            /* the list: the same jobs, newest first */
            if (h_get(&s, "/v1/jobs", &l) == 0 && l.status == 200) {
                json_t *list = h_jget(h_json(&l), "jobs");
                CHECKF(json_array_size(list) == 3 &&
                           json_array_size(list) == json_array_size(list_before),
                       "%zu jobs listed after the restart", json_array_size(list));
                for (size_t i = 0; i < json_array_size(list) && i < 3; i++)
                    CHECK_STR(h_jstr(json_array_get(list, i), "id"),
                              h_jstr(json_array_get(list_before, i), "id"));
            }
            h_resp_free(&l);
            /* and the same after a crash */
            if (h_service_kill_group(&s, 10) == 0 && restart(&s, args))
                for (int i = 0; i < 3; i++)
                    compare_kept(&s, &k[i]);
        }
        json_decref(list_before);
    }
    for (int i = 0; i < 3; i++) {
        json_decref(k[i].job);
        json_decref(k[i].page);
        json_decref(k[i].results);
    }
    h_service_cleanup(&s);
}

/* ------------------------------------------------------- idempotency */

static void test_idempotency(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    const char *body = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    const char *other = "{\"model\":\"square\",\"inputs\":[1,2,4]}";
    const char *other_opts = "{\"model\":\"square\",\"inputs\":[1,2,3],\"options\":{\"chunk_size\":1}}";
    const char *const key[] = {"Idempotency-Key: order-42", NULL};
    char id[32] = "";
    struct h_resp r;

    post_job(&s, body, key, &r);
    if (CHECKF(r.status == 202, "first POST: %ld %.300s", r.status, r.body)) {
        const char *jid = h_jstr(h_json(&r), "id");
        snprintf(id, sizeof id, "%s", jid ? jid : "");
    }
    h_resp_free(&r);
    if (!CHECK(h_is_job_id(id))) {
        h_service_cleanup(&s);
        return;
    }
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%s", id);

    /* the same request: 200, the same job, nothing new */
    for (int round = 0; round < 2; round++) {
        post_job(&s, body, key, &r);
        CHECKF(r.status == 200, "replay: %ld %.300s", r.status, r.body);
        CHECK(h_resp_is(&r, "application/json"));
        json_t *job = h_json(&r);
        CHECK_JOB(job);
        CHECK_STR(h_jstr(job, "id"), id);
        const char *l = h_resp_header(&r, "Location");
        CHECK_STR(l, loc);
        h_resp_free(&r);
    }
    /* the key with another request: 409, naming the job */
    post_job(&s, other, key, &r);
    if (CHECK_PROBLEM(&r, 409, "conflict", "/v1/jobs"))
        CHECKF(strstr(h_jstr(h_json(&r), "detail"), id) != NULL, "the detail does not name %s",
               id);
    h_resp_free(&r);
    post_job(&s, other_opts, key, &r);
    CHECK_PROBLEM(&r, 409, "conflict", "/v1/jobs");
    h_resp_free(&r);

    /* bad keys: 400 invalid-parameter */
    char k129[160], k128[160];
    size_t hl = (size_t)snprintf(k129, sizeof k129, "Idempotency-Key: ");
    memset(k129 + hl, 'k', 129);
    k129[hl + 129] = '\0';
    k129[hl + 64] = '~'; /* any visible ASCII character */
    snprintf(k128, sizeof k128, "%.*s", (int)(hl + 128), k129);
    const char *const bad[][2] = {
        {"Idempotency-Key;", NULL}, /* curl's way to send an empty header */
        {k129, NULL},
        {"Idempotency-Key: has space", NULL},
        {"Idempotency-Key: caf\xc3\xa9", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        printf("  bad key: %.40s%s\n", bad[i][0], strlen(bad[i][0]) > 40 ? "..." : "");
        post_job(&s, body, bad[i], &r);
        CHECK_PROBLEM(&r, 400, "invalid-parameter", "/v1/jobs");
        h_resp_free(&r);
    }
    /* replays, conflicts and bad keys created nothing */
    if (h_get(&s, "/v1/jobs", &r) == 0 && r.status == 200)
        CHECKF(json_array_size(h_jget(h_json(&r), "jobs")) == 1, "%zu jobs listed, expected 1",
               json_array_size(h_jget(h_json(&r), "jobs")));
    h_resp_free(&r);

    /* 128 characters is the longest key */
    const char *const long_key[] = {k128, NULL};
    char id128[32] = "";
    post_job(&s, body, long_key, &r);
    if (CHECKF(r.status == 202, "128-character key: %ld %.300s", r.status, r.body))
        snprintf(id128, sizeof id128, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    CHECKF(strcmp(id128, id) != 0, "another key made the same job");

    json_t *job = h_wait_job(&s, id, 60);
    json_decref(job);

    /* keys are durable: after a restart, and after a crash */
    for (int round = 0; round < 2; round++) {
        bool up = round == 0 ? h_service_stop(&s, 30) == 0 && restart(&s, args)
                             : h_service_kill_group(&s, 10) == 0 && restart(&s, args);
        if (!up)
            break;
        post_job(&s, body, key, &r);
        CHECKF(r.status == 200, "replay after a restart: %ld %.300s", r.status, r.body);
        CHECK_STR(h_jstr(h_json(&r), "id"), id);
        CHECK_STR(h_jstr(h_json(&r), "status"), "succeeded");
        h_resp_free(&r);
        post_job(&s, body, long_key, &r);
        CHECKF(r.status == 200, "128-character key after a restart: %ld", r.status);
        CHECK_STR(h_jstr(h_json(&r), "id"), id128);
        h_resp_free(&r);
        post_job(&s, other, key, &r);
        CHECK_PROBLEM(&r, 409, "conflict", "/v1/jobs");
        h_resp_free(&r);
    }

    /* a purged job's key is free again: a new job */
    char purge[96];
    snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", id);
    if (s.pid > 0 && CHECK(h_delete(&s, purge, &r) == 0))
        CHECK_INT(r.status, 204);
    h_resp_free(&r);
    post_job(&s, body, key, &r);
    if (CHECKF(r.status == 202, "the key of a purged job: %ld %.300s", r.status, r.body))
        CHECKF(strcmp(h_jstr(h_json(&r), "id"), id) != 0, "a purged job came back");
    h_resp_free(&r);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

/* --------------------------------------------------------- retention */

static bool listed(struct h_service *s, const char *id)
{
    struct h_resp r;
    bool found = false;
    if (h_get(s, "/v1/jobs?limit=1000", &r) == 0 && r.status == 200) {
        size_t i;
        json_t *j;
        json_array_foreach(h_jget(h_json(&r), "jobs"), i, j)
            found |= h_jstr(j, "id") && strcmp(h_jstr(j, "id"), id) == 0;
    }
    h_resp_free(&r);
    return found;
}

static void test_retention(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", "--retention", "2",
                                       NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    const char *body = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", body, strlen(body), id, 30)) {
        json_t *job = h_wait_job(&s, id, 60);
        json_decref(job);
        CHECK(listed(&s, id));
        /* gone within a bounded wait: --retention 2 plus the 10 s sweep */
        long st = 200;
        double t0 = h_now(), deadline = t0 + 25;
        for (int i = 0; i < 1000 && st == 200 && h_now() < deadline; i++) {
            json_t *j = get_job(&s, id, &st);
            json_decref(j);
            if (st == 200)
                h_sleep_ms(250);
        }
        CHECKF(st == 404, "job %s still answers %ld 25 s after it finished (--retention 2)", id,
               st);
        printf("  gone after %.1f s\n", h_now() - t0);
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", id);
        struct h_resp r;
        if (CHECK(h_get(&s, path, &r) == 0))
            CHECK_PROBLEM(&r, 404, "not-found", path);
        h_resp_free(&r);
        char rpath[96];
        snprintf(rpath, sizeof rpath, "/v1/jobs/%s/results", id);
        if (CHECK(h_get(&s, rpath, &r) == 0))
            CHECK_PROBLEM(&r, 404, "not-found", rpath);
        h_resp_free(&r);
        CHECK(!listed(&s, id));
        /* deleted from the store, not only forgotten: not back after a restart */
        if (h_service_stop(&s, 30) == 0 && restart(&s, args)) {
            json_t *j = get_job(&s, id, &st);
            CHECKF(j == NULL && st == 404, "job %s: %ld after a restart", id, st);
            json_decref(j);
            h_service_stop(&s, 30);
        }
    }
    h_service_cleanup(&s);
}

/* -------------------------------------------------------------- purge */

static void test_purge(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "exp_sinh", "--model",
                                       "square", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char done_id[32], run_id[32];
    bool ok = h_submit(&s, "/v1/jobs", "application/json", small, strlen(small), done_id, 30);
    struct h_buf b = {0};
    exp_body(&b, N_ITEMS, N_BASE);
    ok = ok && h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, run_id, 60);
    h_buf_free(&b);
    if (ok) {
        json_t *job = h_wait_job(&s, done_id, 60);
        json_decref(job);
        char path[96], purge[120], maybe[120];
        struct h_resp r;

        /* purge=maybe: 400, nothing happens */
        snprintf(maybe, sizeof maybe, "/v1/jobs/%s?purge=maybe", done_id);
        if (CHECK(h_delete(&s, maybe, &r) == 0))
            CHECK_PROBLEM(&r, 400, "invalid-parameter", maybe);
        h_resp_free(&r);

        /* a running job: 409, and it goes on */
        snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", run_id);
        if (CHECK(h_delete(&s, purge, &r) == 0))
            CHECK_PROBLEM(&r, 409, "conflict", purge);
        h_resp_free(&r);
        long st;
        json_t *j = get_job(&s, run_id, &st);
        CHECKF(j != NULL && strcmp(h_jstr(j, "status"), "cancelled") != 0,
               "the running job after a refused purge: %ld", st);
        json_decref(j);

        /* a finished job: 204 with no body, then 404 everywhere */
        snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", done_id);
        snprintf(path, sizeof path, "/v1/jobs/%s", done_id);
        if (CHECK(h_delete(&s, purge, &r) == 0)) {
            CHECK_INT(r.status, 204);
            CHECK_INT(r.len, 0);
        }
        h_resp_free(&r);
        if (CHECK(h_get(&s, path, &r) == 0))
            CHECK_PROBLEM(&r, 404, "not-found", path);
        h_resp_free(&r);
        if (CHECK(h_delete(&s, purge, &r) == 0))
            CHECK_PROBLEM(&r, 404, "not-found", purge);
        h_resp_free(&r);
        CHECK(!listed(&s, done_id));

        /* cancel, then purge the once-running job */
        snprintf(path, sizeof path, "/v1/jobs/%s", run_id);
        if (CHECK(h_delete(&s, path, &r) == 0))
            CHECK_INT(r.status, 200);
        h_resp_free(&r);
        j = h_wait_job(&s, run_id, 60);
        json_decref(j);
        snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", run_id);
        if (CHECK(h_delete(&s, purge, &r) == 0))
            CHECK_INT(r.status, 204);
        h_resp_free(&r);

        /* purged for good: not back after a crash and a restart */
        if (h_service_kill_group(&s, 10) == 0 && restart(&s, args)) {
            j = get_job(&s, done_id, &st);
            CHECKF(j == NULL && st == 404, "purged job %s: %ld after a restart", done_id, st);
            json_decref(j);
            j = get_job(&s, run_id, &st);
            CHECKF(j == NULL && st == 404, "purged job %s: %ld after a restart", run_id, st);
            json_decref(j);
            h_service_stop(&s, 30);
        }
    }
    h_service_cleanup(&s);
}

/*
 * A slow reader holds a results stream of job X open; X is purged, and a
 * new job Y runs: the rest of the stream must never carry Y's results (a
 * store that gave X's seq to Y would send them: they match X's seq and
 * come after the stream's cursor). A raw socket with a small receive
 * buffer is the slow client.
 */
static void test_purged_stream_isolated(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", "--model", "echo",
                                       NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    char z_id[32], x_id[32], y_id[32];
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    /* Z stays: its result rows keep the table's highest rowid up */
    bool ok = h_submit(&s, "/v1/jobs", "application/json", small, strlen(small), z_id, 30);
    json_t *j = ok ? h_wait_job(&s, z_id, 60) : NULL;
    json_decref(j);
    /* X: 400 results of 40 KB, one block each: far more than socket buffers */
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"echo\",\"inputs\":[");
    char *big = malloc(40001);
    memset(big, 'x', 40000);
    big[40000] = '\0';
    for (int i = 0; i < 400; i++)
        h_buf_printf(&b, "%s\"%s\"", i ? "," : "", big);
    free(big);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":1}}");
    ok = ok && h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, x_id, 60);
    h_buf_free(&b);
    j = ok ? h_wait_job(&s, x_id, 60) : NULL;
    json_decref(j);
    int fd = ok ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
    if (!CHECK(fd >= 0)) {
        h_service_cleanup(&s);
        return;
    }
    int small_buf = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small_buf, sizeof small_buf);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char reqline[200];
    int rl = snprintf(reqline, sizeof reqline,
                      "GET /v1/jobs/%s/results?stream=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\n\r\n",
                      x_id);
    struct h_buf got = {0};
    char buf[65536];
    if (CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0) &&
        CHECK(send(fd, reqline, (size_t)rl, 0) == rl)) {
        ssize_t n = recv(fd, buf, 4096, 0); /* the start, then a pause */
        if (n > 0)
            h_buf_add(&got, buf, (size_t)n);
        char purge[96];
        snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", x_id);
        struct h_resp r;
        if (CHECK(h_delete(&s, purge, &r) == 0))
            CHECK_INT(r.status, 204);
        h_resp_free(&r);
        struct h_buf yb = {0};
        h_buf_printf(&yb, "{\"model\":\"square\",\"inputs\":[");
        for (int i = 0; i < 400; i++)
            h_buf_printf(&yb, "%s%d", i ? "," : "", 1000 + i);
        h_buf_printf(&yb, "],\"options\":{\"chunk_size\":1}}");
        if (h_submit(&s, "/v1/jobs", "application/json", yb.p, yb.len, y_id, 60)) {
            j = h_wait_job(&s, y_id, 60);
            json_decref(j);
        }
        h_buf_free(&yb);
        /* the rest of the stream (bounded in size and time) */
        double deadline = h_now() + 30;
        while (got.len < ((size_t)64 << 20) && h_now() < deadline) {
            n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                break;
            h_buf_add(&got, buf, (size_t)n);
        }
    }
    close(fd);
    size_t lines = 0, foreign = 0;
    for (const char *p = got.p; p != NULL && (p = strstr(p, "{\"index\":")) != NULL; p++) {
        lines++;
        const char *o = strstr(p, "\"output\":");
        if (o != NULL && o[9] >= '0' && o[9] <= '9') /* X's outputs are strings */
            foreign++;
    }
    printf("  the stream of purged job %s: %zu result lines, %zu of another job\n", x_id, lines,
           foreign);
    CHECKF(foreign == 0, "the stream of purged job %s carried %zu results of job %s", x_id,
           foreign, y_id);
    CHECKF(lines <= 400, "%zu result lines for a job of 400 items", lines);
    h_buf_free(&got);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

/* ---------------------------------------------------- bad storage */

static void write_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!CHECKF(fd >= 0, "open %s: %s", path, strerror(errno)))
        return;
    CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static bool sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    bool ok = sqlite3_open(path, &db) == SQLITE_OK &&
              sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
    CHECKF(ok, "%s on %s: %s", sql, path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return ok;
}

/* batchd with --data-dir dir must exit 2 with exactly one error line that
 * names `needle` (and nothing on stdout). */
static void expect_bad_storage(const char *label, const char *dir, const char *needle)
{
    const char *argv[] = {getenv("BATCHD_BIN"), "--listen", "127.0.0.1:0", "--data-dir", dir,
                          "--workers", "1", "--model", "square", NULL};
    printf("  case: %s\n", label);
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, 20, &r) == 0))
        return;
    CHECKF(!r.timed_out, "%s: still running after 20 s (it started instead of failing)", label);
    CHECKF(r.exit_code == 2, "%s: exit %d, expected 2 (stderr: %s)", label, r.exit_code, r.err);
    size_t errors = 0;
    const char *line = NULL;
    for (const char *p = strstr(r.err, "\"level\":\"error\""); p;
         p = strstr(p + 1, "\"level\":\"error\"")) {
        errors++;
        line = p;
    }
    CHECKF(errors == 1, "%s: %zu error lines on stderr: %s", label, errors, r.err);
    if (line != NULL) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char *one = strndup(line, len);
        CHECKF(strstr(one, needle) != NULL, "%s: the error line does not name \"%s\": %s",
               label, needle, one);
        printf("    %s\n", one);
        free(one);
    }
    CHECKF(r.out[0] == '\0', "%s: stdout is not empty: %.200s", label, r.out);
    h_run_result_free(&r);
}

static void test_bad_storage(void)
{
    char base[300], dir[400], file[400], db[420];
    snprintf(base, sizeof base, "%s/bad-storage", h_tmpdir());
    CHECK(mkdir(base, 0700) == 0);

    snprintf(dir, sizeof dir, "%s/no/such/parent/data", base);
    expect_bad_storage("the data dir's parent does not exist", dir, "No such file or directory");

    snprintf(file, sizeof file, "%s/a-file", base);
    write_bytes(file, "not a directory\n", 16);
    expect_bad_storage("the data dir is a regular file", file, "is not a directory");

    unsigned char junk[32768];
    unsigned long x = 88172645463325252UL;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        junk[i] = (unsigned char)x;
    }
    snprintf(dir, sizeof dir, "%s/corrupt", base);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(db, sizeof db, "%s/batchd.db", dir);
    write_bytes(db, junk, sizeof junk);
    expect_bad_storage("a corrupt batchd.db", dir, "is not a usable SQLite database");
    /* refused, not repaired or replaced */
    struct stat st;
    CHECK(stat(db, &st) == 0 && st.st_size == (off_t)sizeof junk);

    snprintf(dir, sizeof dir, "%s/other-app", base);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(db, sizeof db, "%s/batchd.db", dir);
    if (sql_exec(db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)"))
        expect_bad_storage("another application's SQLite database", dir, "not batchd's");

    /* a database of a newer batchd: made by this one, then its version bumped */
    struct h_service s;
    static const char *const args[] = {"--workers", "1", "--model", "square", NULL};
    if (start(&s, args)) {
        h_service_stop(&s, 30);
        snprintf(db, sizeof db, "%s/batchd.db", s.data_dir);
        if (sql_exec(db, "UPDATE meta SET value='99' WHERE key='schema'"))
            expect_bad_storage("a newer schema version", s.data_dir, "schema version 99");
    }
    h_service_cleanup(&s);
}

static void test_locked_data_dir(void)
{
    struct h_service s;
    static const char *const args[] = {"--workers", "1", "--model", "square", NULL};
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    char needle[96];
    snprintf(needle, sizeof needle, "in use by another batchd (pid %d)", (int)s.pid);
    expect_bad_storage("a data dir in use by a running batchd", s.data_dir, needle);
    /* the first one is unharmed */
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", small, strlen(small), id, 30)) {
        json_t *job = h_wait_job(&s, id, 60);
        if (CHECK(job != NULL))
            CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
    }
    h_service_stop(&s, 30);
    /* once it stopped, the directory is free: a new batchd starts on it */
    if (restart(&s, args)) {
        long st;
        json_t *job = get_job(&s, id, &st);
        CHECKF(job != NULL, "job %s: %ld after the restart", id, st);
        json_decref(job);
        h_service_stop(&s, 30);
    }
    h_service_cleanup(&s);
}

/* ---------------------------------------------------------- full store */

/* A square job body of n items, item i = base + i. */
static void square_body(struct h_buf *b, int n, int base)
{
    h_buf_printf(b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < n; i++)
        h_buf_printf(b, "%s%d", i ? "," : "", base + i);
    h_buf_printf(b, "]}");
}

struct square_check {
    long long base;
    size_t bad;
};

static bool check_square_result(const json_t *res, void *arg)
{
    struct square_check *c = arg;
    long long idx;
    json_t *out;
    const char *msg;
    if (!CHECK_RESULT(res, &idx, &out, &msg))
        return false;
    long long v = c->base + idx;
    if (!json_is_integer(out) || json_integer_value(out) != v * v) {
        if (c->bad++ < 3)
            h_note("item %lld: output %s", idx, out ? "wrong" : "missing");
    }
    return true;
}

static bool is_finished(const json_t *job, void *arg)
{
    (void)arg;
    json_t *fa = h_jget(job, "finished_at");
    return fa != NULL && !json_is_null(fa);
}

/* True when job `id` finished within timeout_s, succeeded, and reads back
 * in full (n results, item i = (base + i)^2). */
static bool square_job_complete(struct h_service *s, const char *id, int n, int base,
                                int timeout_s)
{
    json_t *job = h_poll_job(s, id, timeout_s, is_finished, NULL);
    if (job == NULL) {
        long st;
        json_t *j = get_job(s, id, &st);
        h_note("job %s after %d s: %s, done %lld of %d, finished_at null", id, timeout_s,
               h_jstr(j, "status") ? h_jstr(j, "status") : "?", jcount(j, "done"), n);
        json_decref(j);
        return false;
    }
    bool ok = CHECK_JOB(job);
    ok &= CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    struct square_check c = {base, 0};
    ok &= CHECK(h_each_result(s, id, (size_t)n, 5000, check_square_result, &c));
    ok &= CHECKF(c.bad == 0, "job %s: %zu wrong results", id, c.bad);
    return ok;
}

/*
 * The store holds 256 pages (--max-store-bytes 1M). Sizes measured on
 * this schema: a square item takes ~10 bytes of input and ~40 of result.
 *   F  12,000 items, finished first:      ~130 pages
 *   J  12,000 items: inputs ~30 pages, results ~115 pages: with F there,
 *      its results do not fit (~85 pages free); without F they do
 *   K  60,000 items: inputs ~150 pages: never fits beside F and J -> 507
 */
static void test_store_full(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "square",
                                       "--max-store-bytes", "1M", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    enum { NF = 12000, NJ = 12000, NK = 60000, JBASE = 100000 };
    char f_id[32], j_id[32];
    struct h_buf b = {0};
    square_body(&b, NF, 0);
    bool ok = h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, f_id, 60);
    h_buf_free(&b);
    ok = ok && CHECKF(square_job_complete(&s, f_id, NF, 0, 60), "job F did not complete");
    square_body(&b, NJ, JBASE);
    ok = ok && h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, j_id, 60);
    h_buf_free(&b);
    if (!ok) {
        h_service_cleanup(&s);
        return;
    }
    /* J's items have run (their results wait to be written) */
    struct at_least all = {NJ};
    json_t *job = h_poll_job(&s, j_id, 60, done_at_least, &all);
    CHECKF(job != NULL, "job J never had its %d items done", NJ);
    json_decref(job);

    /* K does not fit: 507 insufficient-storage, and nothing is created */
    square_body(&b, NK, 0);
    struct h_resp r;
    post_job(&s, b.p, NULL, &r);
    h_buf_free(&b);
    CHECK_PROBLEM(&r, 507, "insufficient-storage", "/v1/jobs");
    h_resp_free(&r);
    if (h_get(&s, "/v1/jobs?limit=1000", &r) == 0 && r.status == 200)
        CHECKF(json_array_size(h_jget(h_json(&r), "jobs")) == 2,
               "%zu jobs listed after the 507, expected 2 (F and J)",
               json_array_size(h_jget(h_json(&r), "jobs")));
    h_resp_free(&r);

    /* openapi.yaml, 507: "Jobs accepted before are not affected": J, which
     * was accepted before the 507, finishes and reads back in full */
    CHECKF(square_job_complete(&s, j_id, NJ, JBASE, 15),
           "job J, accepted before the 507, did not finish: its results cannot be written "
           "to the full store");

    /* with room again (F purged): J finishes, a new job is accepted */
    char purge[96];
    snprintf(purge, sizeof purge, "/v1/jobs/%s?purge=true", f_id);
    if (CHECK(h_delete(&s, purge, &r) == 0))
        CHECK_INT(r.status, 204);
    h_resp_free(&r);
    CHECKF(square_job_complete(&s, j_id, NJ, JBASE, 30), "job J did not finish after F was purged");
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", small, strlen(small), id, 30)) {
        json_t *j = h_wait_job(&s, id, 60);
        if (CHECK(j != NULL))
            CHECK_STR(h_jstr(j, "status"), "succeeded");
        json_decref(j);
    }
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

int main(void)
{
    if (h_init() != 0)
        return 1;
    static const struct h_test tests[] = {
        {"SIGKILL of every process just after the 202", test_kill_after_202},
        {"SIGKILL of every process mid-run", test_kill_mid_run},
        {"SIGKILL right after results moved, three times", test_kill_while_writing},
        {"SIGTERM mid-job, then a restart", test_sigterm_mid_job},
        {"SIGKILL of the api process alone mid-job", test_kill_api_mid_job},
        {"finished jobs are served as they were after a restart", test_finished_jobs_kept},
        {"Idempotency-Key: replay, conflict, bad keys, durable", test_idempotency},
        {"--retention deletes finished jobs", test_retention},
        {"DELETE ?purge=true", test_purge},
        {"a purged job's open stream never shows another job's results",
         test_purged_stream_isolated},
        {"bad storage at start-up: exit 2 with the reason", test_bad_storage},
        {"a data dir in use by another batchd", test_locked_data_dir},
        {"a full store: 507; jobs accepted before it finish", test_store_full},
    };
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
