/*
 * Finished jobs are served from the store (docs/architecture.md, "What is
 * in memory"): after a restart of the api process or of the whole service,
 * and while the service runs (a finished job leaves the api process's
 * memory once its last row is flushed). Issue 13, items 1, 2, 3 and 5:
 *   - paging a finished job gives the right next_offset after kill -9 of
 *     the api process and after a restart;
 *   - a job shows the model it was submitted to, loaded or not;
 *   - concurrent identical submissions with one Idempotency-Key all get
 *     the one job (200 or 202), never a 409;
 *   - everything a finished job offers (ETag and 304, results, stream,
 *     stateful result, cancel's 409, purge, the list and its filter and
 *     cursor) works from the store.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define N_SQUARE 3000

static bool start(struct h_service *s, const char *const *args)
{
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    return h_service_start(s, &o) == 0;
}

static bool restart(struct h_service *s, const char *const *args)
{
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    return h_service_restart(s, &o) == 0;
}

/* Submits a JSON body; the job id goes to id[32]. */
static bool submit(struct h_service *s, const char *body, char *id)
{
    return h_submit(s, "/v1/jobs", "application/json", body, strlen(body), id, 60);
}

/* Waits for the job to end; true when it did. */
static bool wait_end(struct h_service *s, const char *id)
{
    json_t *j = h_wait_job(s, id, 60);
    json_decref(j);
    return j != NULL;
}

/* {"model":"square","inputs":[0,1,...,n-1]} (new string). */
static char *square_body(int n)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < n; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]}");
    return b.p;
}

/* GET path; returns the JSON body (new reference) when the status is
 * `want`, else NULL (a failed check). */
static json_t *get_json(struct h_service *s, const char *path, long want)
{
    struct h_resp r;
    json_t *out = NULL;
    if (CHECKF(h_get(s, path, &r) == 0, "GET %s: %s", path, r.error) &&
        CHECKF(r.status == want, "GET %s: %ld, want %ld: %s", path, r.status, want, r.body))
        out = json_incref(h_json(&r));
    h_resp_free(&r);
    return out;
}

/* One page of results: its size and next_offset (-1 for null). */
static bool results_page(struct h_service *s, const char *id, long offset, long limit,
                         size_t *n, long long *next)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%ld&limit=%ld", id, offset, limit);
    json_t *page = get_json(s, path, 200);
    if (!page)
        return false;
    *n = json_array_size(json_object_get(page, "results"));
    json_t *no = json_object_get(page, "next_offset");
    *next = json_is_integer(no) ? (long long)json_integer_value(no) : -1;
    json_decref(page);
    return true;
}

/* The paging of a finished 3,000-item job: 1000, 2000, then null. */
static void check_paging(struct h_service *s, const char *id, const char *when)
{
    static const long long want[] = {1000, 2000, -1};
    for (int p = 0; p < 3; p++) {
        size_t n = 0;
        long long next = 0;
        if (!results_page(s, id, p * 1000L, 1000, &n, &next))
            return;
        CHECKF(n == 1000 && next == want[p],
               "%s: page %d has %zu results and next_offset %lld (want 1000 and %lld)", when, p,
               n, next, want[p]);
    }
}

/* The api process: the supervisor's child that is not a worker. */
static pid_t api_pid(struct h_service *s)
{
    pid_t kids[64], api = 0;
    size_t nk = h_children(s->pid, kids, 64), napi = 0;
    json_t *ws = get_json(s, "/v1/workers", 200);
    json_t *arr = json_object_get(ws, "workers");
    for (size_t k = 0; arr && k < nk && k < 64; k++) {
        bool worker = false;
        size_t i;
        json_t *w;
        json_array_foreach(arr, i, w) {
            long long pid = 0;
            worker |= h_jint(w, "pid", &pid) && pid == kids[k];
        }
        if (!worker) {
            api = kids[k];
            napi++;
        }
    }
    json_decref(ws);
    return napi == 1 ? api : 0;
}

/* Waits (bounded) until GET path answers 200 again. */
static bool answers_again(struct h_service *s, const char *path)
{
    double deadline = h_now() + 60;
    for (int i = 0; i < 100000 && h_now() < deadline; i++) {
        struct h_resp r;
        bool ok = h_get(s, path, &r) == 0 && r.status == 200;
        h_resp_free(&r);
        if (ok)
            return true;
        h_sleep_ms(50);
    }
    return false;
}

/* Polls /metrics until the api process holds n jobs in memory (finished
 * jobs then are served from the store), at most `seconds`. */
static bool wait_in_memory_for(struct h_service *s, int n, double seconds)
{
    char want[64];
    snprintf(want, sizeof want, "\nbatchd_jobs_in_memory %d\n", n);
    double deadline = h_now() + seconds;
    for (int i = 0; i < 10000 && h_now() < deadline; i++) {
        struct h_resp r;
        bool ok = h_get(s, "/metrics", &r) == 0 && r.status == 200 && strstr(r.body, want);
        h_resp_free(&r);
        if (ok)
            return true;
        h_sleep_ms(20);
    }
    return false;
}

static bool wait_in_memory(struct h_service *s, int n)
{
    return wait_in_memory_for(s, n, 30);
}

/* Before a kill: gives the finished jobs' last rows time to become
 * durable, i.e. until no job is held in memory, at most 2 s (no check: a
 * batchd that keeps finished jobs in memory shows no such sign). */
static void settle(struct h_service *s)
{
    wait_in_memory_for(s, 0, 2);
}

/* Item 1: next_offset after kill -9 of the api process, and after a
 * restart of the whole service. */
static void test_paging_after_restart(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "square", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    char *body = square_body(N_SQUARE), id[32];
    if (submit(&s, body, id)) {
        json_t *job = h_wait_job(&s, id, 120);
        if (CHECK(job != NULL) && CHECK_STR(h_jstr(job, "status"), "succeeded")) {
            check_paging(&s, id, "before any restart");
            settle(&s);
            pid_t api = api_pid(&s);
            if (CHECKF(api > 0, "the api process was not found")) {
                printf("  SIGKILL api process %d\n", (int)api);
                CHECK(kill(api, SIGKILL) == 0);
                char path[64];
                snprintf(path, sizeof path, "/v1/jobs/%s", id);
                if (CHECKF(answers_again(&s, path), "no answer after the api process died"))
                    check_paging(&s, id, "after kill -9 of the api process");
            }
            CHECK_INT(h_service_stop(&s, 30), 0);
            if (restart(&s, args))
                check_paging(&s, id, "after a restart of batchd");
        }
        json_decref(job);
    }
    free(body);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

/* Item 2: a job shows the model it was submitted to after a restart with
 * another set of --model: a finished job, and an unfinished one (failed
 * at recovery: its model is not loaded). */
static void test_model_after_restart(void)
{
    static const char *const before[] = {"--workers", "1", "--model", "echo", "--model",
                                         "square", "--model", "exp_sinh", NULL};
    static const char *const after[] = {"--workers", "1", "--model", "echo", NULL};
    struct h_service s;
    if (!start(&s, before)) {
        h_service_cleanup(&s);
        return;
    }
    char done_id[32], run_id[32];
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    /* long enough to be mid-run when the service is killed */
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < 400; i++)
        h_buf_printf(&b, "%s{\"n\":%d}", i ? "," : "", 2000000 + i);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":1}}");
    /* (kill -9 once the finished job's last row is durable: a job killed
     * before that is recovered as unfinished, and fails, its model not
     * being loaded) */
    if (submit(&s, small, done_id) && CHECK(wait_end(&s, done_id)) &&
        (settle(&s), submit(&s, b.p, run_id))) {
        CHECK_INT(h_service_kill_group(&s, 10), 0);
        if (restart(&s, after)) {
            char path[64];
            snprintf(path, sizeof path, "/v1/jobs/%s", done_id);
            json_t *j = get_json(&s, path, 200);
            CHECK_STR(h_jstr(j, "model"), "square");
            CHECK_STR(h_jstr(j, "status"), "succeeded");
            json_decref(j);
            json_t *k = h_wait_job(&s, run_id, 60);
            CHECK_STR(h_jstr(k, "model"), "exp_sinh");
            CHECK_STR(h_jstr(k, "status"), "failed");
            json_decref(k);
            json_t *list = get_json(&s, "/v1/jobs?limit=10", 200);
            json_t *jobs = json_object_get(list, "jobs");
            CHECK_INT(json_array_size(jobs), 2);
            CHECK_STR(h_jstr(json_array_get(jobs, 0), "model"), "exp_sinh");
            CHECK_STR(h_jstr(json_array_get(jobs, 1), "model"), "square");
            json_decref(list);
        }
    }
    h_buf_free(&b);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

#define IDEM_CLIENTS 16
#define IDEM_ROUNDS 40

/* Item 3: IDEM_CLIENTS concurrent identical requests with one key, on
 * their own connections, IDEM_ROUNDS times (a new key each round): every
 * answer is 200 or 202 with the one job. */
static void test_idempotency_race(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    const char *body = "{\"model\":\"square\",\"inputs\":[1,2,3,4]}";
    unsigned bad = 0, answers = 0;
    for (int round = 0; round < IDEM_ROUNDS && bad == 0; round++) {
        char key[80];
        snprintf(key, sizeof key, "Idempotency-Key: race-%d-%d", (int)getpid(), round);
        const char *hdrs[] = {"Content-Type: application/json", key, NULL};
        struct h_req req = {.method = "POST", .path = "/v1/jobs", .headers = hdrs,
                            .body = body, .body_len = strlen(body), .timeout_s = 60};
        struct h_resp resp[IDEM_CLIENTS];
        memset(resp, 0, sizeof resp);
        struct h_multi *m = h_multi_new(&s);
        for (int c = 0; m && c < IDEM_CLIENTS; c++)
            h_multi_add(m, &req, &resp[c]);
        if (!CHECK(m != NULL) || !CHECK_INT(h_multi_run(m, 60, false), 0)) {
            h_multi_free(m);
            break;
        }
        char id[32] = "";
        int created = 0;
        for (int c = 0; c < IDEM_CLIENTS; c++) {
            answers++;
            const char *got = h_jstr(h_json(&resp[c]), "id");
            bool ok = (resp[c].status == 200 || resp[c].status == 202) && got;
            if (ok && !id[0])
                snprintf(id, sizeof id, "%s", got);
            ok = ok && !strcmp(id, got);
            created += resp[c].status == 202;
            if (!CHECKF(ok, "round %d: %ld %s", round, resp[c].status, resp[c].body))
                bad++;
        }
        CHECKF(created == 1, "round %d: %d answers created a job", round, created);
        h_multi_free(m);
        for (int c = 0; c < IDEM_CLIENTS; c++)
            h_resp_free(&resp[c]);
    }
    printf("  %u answers, %u wrong\n", answers, bad);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

static long status_of(struct h_service *s, const char *method, const char *path,
                      const char *const *headers)
{
    struct h_req req = {.method = method, .path = path, .headers = headers};
    struct h_resp r;
    long st = h_request(s, &req, &r) == 0 ? r.status : 0;
    h_resp_free(&r);
    return st;
}

/* Item 5's contract: what a finished job offers, served from the store. */
static void test_finished_from_store(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", "--model",
                                       "prefix_count", "--model", "exp_sinh", NULL};
    struct h_service s;
    if (!start(&s, args)) {
        h_service_cleanup(&s);
        return;
    }
    char a[32], b[32], c[32], run[32], etag[64], path[128];
    const char *sq = "{\"model\":\"square\",\"inputs\":[1,2,3,\"x\"]}";
    const char *pc = "{\"model\":\"prefix_count\",\"inputs\":[[\"ab\",\"ac\"],[\"b\"]]}";
    /* runs until it is cancelled below */
    struct h_buf sb = {0};
    h_buf_printf(&sb, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < 200; i++)
        h_buf_printf(&sb, "%s{\"n\":%d}", i ? "," : "", 20000000 + i);
    h_buf_printf(&sb, "],\"options\":{\"chunk_size\":1}}");
    const char *slow = sb.p;
    if (!submit(&s, sq, a) || !wait_end(&s, a) || !submit(&s, pc, b) || !wait_end(&s, b) ||
        !submit(&s, sq, c) || !wait_end(&s, c) ||
        !submit(&s, slow, run)) {
        CHECK(false);
        goto out;
    }
    if (!CHECKF(wait_in_memory(&s, 1), "finished jobs stay in memory"))
        goto out;
    snprintf(path, sizeof path, "/v1/jobs/%s", a);
    struct h_resp er;
    if (CHECK(h_get(&s, path, &er) == 0) && CHECK_INT(er.status, 200))
        snprintf(etag, sizeof etag, "%s", h_resp_header(&er, "ETag"));
    h_resp_free(&er);
    /* ETag and 304 */
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *hdrs[] = {inm, NULL};
    snprintf(path, sizeof path, "/v1/jobs/%s", a);
    CHECK_INT(status_of(&s, "GET", path, hdrs), 304);
    /* results: an item error and outputs, paged to the end */
    size_t n;
    long long next;
    if (results_page(&s, a, 0, 2, &n, &next))
        CHECK(n == 2 && next == 2);
    if (results_page(&s, a, 2, 2, &n, &next))
        CHECK(n == 2 && next == -1);
    /* the stream: every result, then its end */
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", a);
    struct h_resp r;
    if (CHECK(h_get(&s, path, &r) == 0) && CHECK_INT(r.status, 200)) {
        int lines = 0;
        for (const char *p = r.body; *p; p++)
            lines += *p == '\n';
        CHECK_INT(lines, 4);
    }
    h_resp_free(&r);
    /* a stateful job's reduced result */
    snprintf(path, sizeof path, "/v1/jobs/%s/result", b);
    json_t *res = get_json(&s, path, 200);
    CHECK(res != NULL);
    json_decref(res);
    /* cancel: 409, it has finished */
    snprintf(path, sizeof path, "/v1/jobs/%s", a);
    CHECK_INT(status_of(&s, "DELETE", path, NULL), 409);
    /* the list: newest first, the running job from memory, the rest from
     * the store, paged with the cursor, filtered by status */
    const char *want[] = {run, c, b, a};
    char after[32] = "";
    for (int p = 0; p < 2; p++) {
        snprintf(path, sizeof path, "/v1/jobs?limit=2%s%s", after[0] ? "&after=" : "", after);
        json_t *list = get_json(&s, path, 200);
        json_t *jobs = json_object_get(list, "jobs");
        if (CHECK_INT(json_array_size(jobs), 2)) {
            CHECK_STR(h_jstr(json_array_get(jobs, 0), "id"), want[2 * p]);
            CHECK_STR(h_jstr(json_array_get(jobs, 1), "id"), want[2 * p + 1]);
        }
        const char *na = h_jstr(list, "next_after");
        if (p == 0 && CHECK(na != NULL))
            snprintf(after, sizeof after, "%s", na);
        if (p == 1)
            CHECK(json_is_null(json_object_get(list, "next_after")));
        json_decref(list);
    }
    json_t *list = get_json(&s, "/v1/jobs?status=succeeded&limit=10", 200);
    CHECK_INT(json_array_size(json_object_get(list, "jobs")), 3);
    json_decref(list);
    /* purge: 204, then it is gone */
    snprintf(path, sizeof path, "/v1/jobs/%s?purge=true", c);
    CHECK_INT(status_of(&s, "DELETE", path, NULL), 204);
    snprintf(path, sizeof path, "/v1/jobs/%s", c);
    CHECK_INT(status_of(&s, "GET", path, NULL), 404);
    /* its ETag holds across a restart: still a 304 */
    snprintf(path, sizeof path, "/v1/jobs/%s", run);
    CHECK_INT(status_of(&s, "DELETE", path, NULL), 200);
    CHECK(wait_end(&s, run));
    CHECK_INT(h_service_stop(&s, 30), 0);
    if (restart(&s, args)) {
        snprintf(path, sizeof path, "/v1/jobs/%s", a);
        CHECK_INT(status_of(&s, "GET", path, hdrs), 304);
        struct h_resp mr;
        if (CHECK(h_get(&s, "/metrics", &mr) == 0))
            CHECKF(strstr(mr.body, "batchd_jobs{status=\"succeeded\"} 2\n") &&
                       strstr(mr.body, "batchd_jobs{status=\"cancelled\"} 1\n"),
                   "metrics after the restart:\n%.600s", mr.body);
        h_resp_free(&mr);
    }
out:
    h_buf_free(&sb);
    h_service_stop(&s, 30);
    h_service_cleanup(&s);
}

int main(void)
{
    if (h_init() != 0)
        return 1;
    static const struct h_test tests[] = {
        {"paging a finished job after kill -9 of the api and a restart",
         test_paging_after_restart},
        {"a job shows its own model after a restart with other models",
         test_model_after_restart},
        {"concurrent identical submissions with one Idempotency-Key", test_idempotency_race},
        {"a finished job is served from the store: ETag, results, stream, cancel, list, purge",
         test_finished_from_store},
    };
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
