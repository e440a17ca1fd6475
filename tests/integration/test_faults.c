/*
 * test_faults: batchd when its processes die.
 *
 *   - SIGKILL a worker in the middle of a job: the job still succeeds, every
 *     index has exactly one result (paged and streamed), each correct; the
 *     worker's slot shows restarts >= 1, a new pid, inits == 1.
 *   - SIGKILL the api process (with a job in the ring): /healthz answers
 *     again on the same port, worker pids are unchanged, both jobs answer
 *     200 (the durable store): the finished one as it was, the one in the
 *     ring goes on to succeed with every result exactly once and correct;
 *     and new jobs run.
 *   - SIGKILL of batchd's whole process group mid-job, then a new batchd
 *     on the same data dir: the finished job is served as it was, the
 *     unfinished one goes on from its durable results and ends with
 *     exactly one correct result per item.
 *   - SIGTERM to an idle service: exit status 0, every child gone.
 *   - SIGTERM to a busy service: the same, within the same bound.
 *   - SIGKILL of the supervisor: within a few seconds no worker or api
 *     process survives (children use PR_SET_PDEATHSIG).
 *
 * Only processes that are descendants of the batchd this program started
 * are signalled, by PID, after checking their parent.
 */
#include "tests/integration/harness.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_W 64

static struct h_service svc;

struct wk {
    long long id;
    pid_t pid;
    char model[64];
    char state[16];
    char job[32];
    long long restarts, inits;
};

/* Reads /v1/workers into w[max]; returns the count or -1. */
static int get_workers(struct h_service *s, struct wk *w, int max)
{
    struct h_resp r;
    int n = -1;
    if (h_get(s, "/v1/workers", &r) == 0 && r.status == 200) {
        json_t *arr = h_jget(h_json(&r), "workers");
        n = 0;
        size_t i;
        json_t *o;
        json_array_foreach(arr, i, o) {
            if (n >= max)
                break;
            struct wk *x = &w[n++];
            memset(x, 0, sizeof *x);
            long long pid = 0;
            h_jint(o, "id", &x->id);
            h_jint(o, "pid", &pid);
            x->pid = (pid_t)pid;
            snprintf(x->model, sizeof x->model, "%s", h_jstr(o, "model") ? h_jstr(o, "model") : "");
            snprintf(x->state, sizeof x->state, "%s", h_jstr(o, "state") ? h_jstr(o, "state") : "");
            snprintf(x->job, sizeof x->job, "%s",
                     h_jstr(o, "current_job") ? h_jstr(o, "current_job") : "");
            h_jint(o, "restarts", &x->restarts);
            h_jint(o, "inits", &x->inits);
        }
    } else {
        h_note("GET /v1/workers: %ld %s", r.status, r.status ? r.body : r.error);
    }
    h_resp_free(&r);
    return n;
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

/* Builds an exp_sinh job body of n items, item i having N = base + i % mod. */
static void exp_sinh_body(struct h_buf *b, int n, long base, int mod, unsigned chunk)
{
    h_buf_printf(b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < n; i++)
        h_buf_printf(b, "%s{\"n\":%ld}", i ? "," : "", base + i % mod);
    h_buf_printf(b, "]");
    if (chunk)
        h_buf_printf(b, ",\"options\":{\"chunk_size\":%u}", chunk);
    h_buf_printf(b, "}");
}

/*
 * The results of the finished exp_sinh job `id` (built by exp_sinh_body
 * with n, base, mod): paged, one result per index in order, each correct;
 * streamed, each index exactly once (a duplicate recorded result would
 * show there even if the page hid it).
 */
static void check_exp_sinh_results(struct h_service *s, const char *id, int n, long base, int mod)
{
    double *want = calloc((size_t)mod, sizeof *want);
    unsigned char *seen = calloc((size_t)n, 1);
    if (!CHECK(want != NULL && seen != NULL)) {
        free(want);
        free(seen);
        return;
    }
    for (int m = 0; m < mod; m++)
        want[m] = exp_sinh(base + m);
    json_t *res = h_fetch_results(s, id, (size_t)n, 1000);
    size_t bad = 0;
    for (size_t i = 0; res != NULL && i < (size_t)n; i++) {
        double got = NAN;
        if (!h_jnum(json_array_get(res, i), "output", &got) ||
            fabs(got - want[i % (size_t)mod]) > 1e-9 * fabs(want[i % (size_t)mod]))
            if (bad++ < 3)
                h_note("item %zu: %.17g, expected %.17g", i, got, want[i % (size_t)mod]);
    }
    CHECKF(res != NULL && bad == 0, "job %s: %zu wrong results", id, bad);
    json_decref(res);

    char path[120];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
    struct h_req rq = {.method = "GET", .path = path, .timeout_s = 60};
    struct h_resp r;
    if (CHECKF(h_request(s, &rq, &r) == 0, "%s", r.error) && CHECK_INT(r.status, 200)) {
        json_t *lines = h_parse_ndjson_results(r.body, r.len);
        size_t dup = 0, out_of_range = 0;
        for (size_t i = 0; lines != NULL && i < json_array_size(lines); i++) {
            long long idx = -1;
            h_jint(json_array_get(lines, i), "index", &idx);
            if (idx < 0 || idx >= n)
                out_of_range++;
            else if (seen[idx]++)
                dup++;
        }
        CHECKF(lines != NULL && json_array_size(lines) == (size_t)n && dup == 0 &&
                   out_of_range == 0,
               "job %s stream: %zu lines, %zu duplicates, %zu out of range", id,
               lines ? json_array_size(lines) : 0, dup, out_of_range);
        json_decref(lines);
    }
    h_resp_free(&r);
    free(want);
    free(seen);
}

/* The finished square job `id` of inputs 1..n: n results, output i+1 squared. */
static void check_square_results(struct h_service *s, const char *id, int n)
{
    json_t *res = h_fetch_results(s, id, (size_t)n, 1000);
    for (size_t i = 0; res != NULL && i < (size_t)n; i++) {
        long long out = -1, want = (long long)(i + 1) * (long long)(i + 1);
        CHECKF(h_jint(json_array_get(res, i), "output", &out) && out == want,
               "job %s item %zu: %lld, expected %lld", id, i, out, want);
    }
    CHECK(res != NULL);
    json_decref(res);
}

static bool start_service(struct h_service *s)
{
    static const char *const args[] = {"--workers", "2", "--model", "exp_sinh", "--model",
                                       "square", NULL};
    struct h_service_opts o = {.args = args};
    return h_service_start(s, &o) == 0;
}

/* ------------------------------------------------------- worker SIGKILL */

static void test_kill_worker(void)
{
    enum { N = 300, MOD = 13 };
    const long BASE = 2000000;
    struct h_buf b = {0};
    exp_sinh_body(&b, N, BASE, MOD, 4);
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 30);
    h_buf_free(&b);
    if (!ok)
        return;

    /* Find a worker busy with this job (bounded). */
    struct wk before[MAX_W], victim = {0};
    int nb = 0;
    bool found = false;
    double deadline = h_now() + 60;
    for (int i = 0; i < 100000 && !found && h_now() < deadline; i++) {
        nb = get_workers(&svc, before, MAX_W);
        for (int k = 0; k < nb && !found; k++) {
            if (strcmp(before[k].model, "exp_sinh") == 0 && strcmp(before[k].state, "busy") == 0 &&
                strcmp(before[k].job, id) == 0 && before[k].pid > 0) {
                victim = before[k];
                found = true;
            }
        }
        if (!found)
            h_sleep_ms(20);
    }
    if (!CHECKF(found, "no exp_sinh worker was seen busy with job %s", id))
        return;
    if (!CHECKF(h_pid_ppid(victim.pid) == svc.pid, "worker pid %d is not a child of batchd %d",
                (int)victim.pid, (int)svc.pid))
        return;
    printf("  SIGKILL worker %lld (pid %d) busy with %s\n", victim.id, (int)victim.pid, id);
    CHECK(kill(victim.pid, SIGKILL) == 0);

    json_t *job = h_wait_job(&svc, id, 240);
    if (!CHECK(job != NULL))
        return;
    long long done = -1, failed = -1;
    h_jint(job, "counts/done", &done);
    h_jint(job, "counts/failed", &failed);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    CHECKF(done == N && failed == 0, "done %lld failed %lld of %d", done, failed, N);
    json_decref(job);

    check_exp_sinh_results(&svc, id, N, BASE, MOD);
    struct h_resp r;

    /* The slot was refilled: new pid, restarts >= 1, initialised once. */
    struct wk after[MAX_W];
    bool refilled = false;
    int na = 0;
    deadline = h_now() + 30;
    for (int i = 0; i < 100000 && !refilled && h_now() < deadline; i++) {
        na = get_workers(&svc, after, MAX_W);
        for (int k = 0; k < na; k++) {
            if (after[k].id != victim.id)
                continue;
            refilled = after[k].pid > 0 && after[k].pid != victim.pid && after[k].restarts >= 1 &&
                       (strcmp(after[k].state, "idle") == 0 || strcmp(after[k].state, "busy") == 0);
        }
        if (!refilled)
            h_sleep_ms(50);
    }
    CHECKF(refilled, "worker slot %lld was not refilled with a new process", victim.id);
    for (int k = 0; k < na; k++) {
        if (after[k].id == victim.id) {
            printf("  slot %lld: pid %d -> %d, restarts %lld, inits %lld\n", victim.id,
                   (int)victim.pid, (int)after[k].pid, after[k].restarts, after[k].inits);
            CHECKF(after[k].restarts >= 1, "restarts %lld", after[k].restarts);
            CHECKF(after[k].inits == 1, "inits %lld", after[k].inits);
            CHECKF(h_pid_ppid(after[k].pid) == svc.pid, "the new worker is not batchd's child");
            continue;
        }
        for (int j = 0; j < nb; j++)
            if (before[j].id == after[k].id)
                CHECKF(before[j].pid == after[k].pid, "worker %lld changed pid %d -> %d",
                       after[k].id, (int)before[j].pid, (int)after[k].pid);
    }
    CHECK(!h_pid_alive(victim.pid));
    /* /metrics counts the restart too. */
    if (CHECK(h_get(&svc, "/metrics", &r) == 0) && CHECK_INT(r.status, 200)) {
        char needle[128];
        snprintf(needle, sizeof needle, "batchd_worker_restarts_total{model=\"exp_sinh\",worker=\"%lld\"} ",
                 victim.id);
        const char *line = strstr(r.body, needle);
        CHECKF(line != NULL && atoi(line + strlen(needle)) >= 1, "no restart counted in /metrics for %s",
               needle);
    }
    h_resp_free(&r);
}

/* Finds (bounded) an exp_sinh worker busy with job id; true and *victim set. */
static bool find_busy_worker(struct h_service *s, const char *id, struct wk *victim)
{
    struct wk w[MAX_W];
    double deadline = h_now() + 60;
    for (int i = 0; i < 100000 && h_now() < deadline; i++) {
        int n = get_workers(s, w, MAX_W);
        for (int k = 0; k < n; k++) {
            if (strcmp(w[k].model, "exp_sinh") == 0 && strcmp(w[k].state, "busy") == 0 &&
                strcmp(w[k].job, id) == 0 && w[k].pid > 0) {
                *victim = w[k];
                return true;
            }
        }
        h_sleep_ms(20);
    }
    return false;
}

static void test_max_attempts(void)
{
    /* With --max-attempts 1 what a dead worker held is not retried: those
     * items get an error result each, the rest their output; the job
     * still succeeds and every index has exactly one result. */
    static const char *const args[] = {"--workers", "2", "--model", "exp_sinh",
                                       "--max-attempts", "1", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    enum { N = 200, MOD = 3 };
    const long BASE = 2000000;
    struct h_buf b = {0};
    exp_sinh_body(&b, N, BASE, MOD, 4);
    char id[32];
    bool ok = h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, id, 30);
    h_buf_free(&b);
    struct wk victim = {0};
    if (ok && CHECKF(find_busy_worker(&s, id, &victim), "no worker seen busy with %s", id) &&
        CHECK(h_pid_ppid(victim.pid) == s.pid)) {
        printf("  SIGKILL worker %lld (pid %d)\n", victim.id, (int)victim.pid);
        CHECK(kill(victim.pid, SIGKILL) == 0);
        json_t *job = h_wait_job(&s, id, 240);
        if (job != NULL) {
            long long done = -1, failed = -1;
            h_jint(job, "counts/done", &done);
            h_jint(job, "counts/failed", &failed);
            CHECK_STR(h_jstr(job, "status"), "succeeded");
            CHECKF(failed >= 1 && failed <= 4 && done + failed == N,
                   "done %lld failed %lld (the killed task held at most 4 items)", done, failed);
            json_decref(job);
            json_t *res = h_fetch_results(&s, id, N, 1000);
            size_t errors = 0, bad = 0;
            double want[MOD];
            for (int m = 0; m < MOD; m++)
                want[m] = exp_sinh(BASE + m);
            for (size_t i = 0; res != NULL && i < N; i++) {
                long long idx;
                json_t *out;
                const char *msg;
                if (!CHECK_RESULT(json_array_get(res, i), &idx, &out, &msg))
                    continue;
                if (msg != NULL) {
                    errors++;
                    if (errors == 1)
                        printf("  item %zu: error \"%s\"\n", i, msg);
                } else if (!json_is_number(out) ||
                           fabs(json_number_value(out) - want[i % MOD]) > 1e-9 * want[i % MOD]) {
                    bad++;
                }
            }
            CHECKF(res != NULL && (long long)errors == failed && bad == 0,
                   "%zu error results for failed=%lld, %zu wrong outputs", errors, failed, bad);
            json_decref(res);
        }
    }
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

/* ---------------------------------------------------------- api SIGKILL */

static void test_kill_api(void)
{
    char old_id[32];
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    if (!h_submit(&svc, "/v1/jobs", "application/json", small, strlen(small), old_id, 30))
        return;
    json_t *job = h_wait_job(&svc, old_id, 60);
    if (!CHECK(job != NULL))
        return;
    json_decref(job);
    /* A long job in the ring while the api dies. */
    enum { LONG_N = 400, LONG_MOD = 7 };
    const long LONG_BASE = 2000000;
    struct h_buf b = {0};
    exp_sinh_body(&b, LONG_N, LONG_BASE, LONG_MOD, 0);
    char long_id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, long_id, 30);
    h_buf_free(&b);
    if (!ok)
        return;

    struct wk w0[MAX_W];
    int n0 = get_workers(&svc, w0, MAX_W);
    if (!CHECK(n0 > 0))
        return;
    pid_t kids[MAX_W], api = 0;
    size_t nk = h_children(svc.pid, kids, MAX_W), napi = 0;
    for (size_t k = 0; k < nk && k < MAX_W; k++) {
        bool worker = false;
        for (int j = 0; j < n0; j++)
            worker |= kids[k] == w0[j].pid;
        if (!worker) {
            api = kids[k];
            napi++;
        }
    }
    if (!CHECKF(napi == 1 && api > 0, "%zu children of batchd are not workers (expected 1 api)",
                napi))
        return;
    int port0 = svc.port;
    printf("  SIGKILL api process %d (port %d)\n", (int)api, port0);
    CHECK(kill(api, SIGKILL) == 0);

    /* /healthz answers again (bounded); the port should not move. */
    bool healthy = false;
    double deadline = h_now() + 10;
    for (int i = 0; i < 100000 && !healthy && h_now() < deadline; i++) {
        int p = h_service_read_port(&svc);
        if (p > 0 && p != svc.port) {
            CHECKF(false, "the new api process listens on port %d, not %d: clients lose the service",
                   p, port0);
            svc.port = p;
        }
        struct h_resp r;
        struct h_req rq = {.method = "GET", .path = "/healthz", .timeout_s = 2};
        if (h_request(&svc, &rq, &r) == 0 && r.status == 200) {
            /* The old process may still be answering on a kept-alive
             * connection only if it were alive: it is not. */
            healthy = true;
        }
        h_resp_free(&r);
        if (!healthy)
            h_sleep_ms(50);
    }
    if (!CHECKF(healthy, "/healthz did not answer 200 within 10 s of the api's death"))
        return;
    CHECK(!h_pid_alive(api));
    pid_t kids2[MAX_W], api2 = 0;
    size_t nk2 = h_children(svc.pid, kids2, MAX_W);
    struct wk w1[MAX_W];
    int n1 = get_workers(&svc, w1, MAX_W);
    CHECK_INT(n1, n0);
    for (int j = 0; j < n1; j++) {
        for (int k = 0; k < n0; k++)
            if (w0[k].id == w1[j].id)
                CHECKF(w0[k].pid == w1[j].pid, "worker %lld: pid %d -> %d after the api died",
                       w1[j].id, (int)w0[k].pid, (int)w1[j].pid);
    }
    for (size_t k = 0; k < nk2 && k < MAX_W; k++) {
        bool worker = false;
        for (int j = 0; j < n1; j++)
            worker |= kids2[k] == w1[j].pid;
        if (!worker)
            api2 = kids2[k];
    }
    CHECKF(api2 > 0 && api2 != api, "new api pid %d (old %d)", (int)api2, (int)api);

    /* The jobs live in the store, not in the api process: the finished
     * job answers as it was, and the one whose tasks were in the ring goes
     * on (the slots the dead api left are reclaimed, their items run
     * again) to one correct result per item. */
    char path[80];
    snprintf(path, sizeof path, "/v1/jobs/%s", old_id);
    struct h_resp r;
    if (CHECK(h_get(&svc, path, &r) == 0) && CHECKF(r.status == 200, "GET %s after the api restart: "
                                                     "%ld %.300s", path, r.status, r.body)) {
        CHECK_JOB(h_json(&r));
        CHECK_STR(h_jstr(h_json(&r), "status"), "succeeded");
    }
    h_resp_free(&r);
    job = h_wait_job(&svc, old_id, 30);
    if (CHECK(job != NULL)) {
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        long long done = -1, failed = -1;
        h_jint(job, "counts/done", &done);
        h_jint(job, "counts/failed", &failed);
        CHECKF(done == 3 && failed == 0, "old job: done %lld failed %lld of 3", done, failed);
    }
    json_decref(job);
    check_square_results(&svc, old_id, 3);

    snprintf(path, sizeof path, "/v1/jobs/%s", long_id);
    if (CHECK(h_get(&svc, path, &r) == 0))
        CHECKF(r.status == 200, "GET %s after the api restart: %ld %.300s", path, r.status, r.body);
    h_resp_free(&r);
    job = h_wait_job(&svc, long_id, 240);
    if (CHECK(job != NULL)) {
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        long long done = -1, failed = -1;
        h_jint(job, "counts/done", &done);
        h_jint(job, "counts/failed", &failed);
        CHECKF(done == LONG_N && failed == 0, "job in the ring: done %lld failed %lld of %d", done,
               failed, LONG_N);
    }
    json_decref(job);
    check_exp_sinh_results(&svc, long_id, LONG_N, LONG_BASE, LONG_MOD);

    /* Ready again, and new jobs run to the end (the ring slots the dead
     * api left were reclaimed). */
    deadline = h_now() + 30;
    long st = 0;
    for (int i = 0; i < 10000 && st != 200 && h_now() < deadline; i++) {
        if (h_get(&svc, "/readyz", &r) == 0)
            st = r.status;
        h_resp_free(&r);
        if (st != 200)
            h_sleep_ms(50);
    }
    CHECKF(st == 200, "/readyz %ld after the api restart", st);
    char new_id[32];
    const char *body = "{\"model\":\"exp_sinh\",\"inputs\":[{\"n\":10},{\"n\":20},{\"n\":30}]}";
    if (h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), new_id, 30)) {
        job = h_wait_job(&svc, new_id, 180);
        if (CHECK(job != NULL))
            CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
    }
    if (h_submit(&svc, "/v1/jobs", "application/json", small, strlen(small), new_id, 30)) {
        job = h_wait_job(&svc, new_id, 180);
        if (CHECK(job != NULL))
            CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
    }
}

/* ------------------------------------------------------------- SIGTERM */

static bool all_idle(struct h_service *s)
{
    struct wk w[MAX_W];
    int n = get_workers(s, w, MAX_W);
    for (int i = 0; i < n; i++)
        if (strcmp(w[i].state, "idle") != 0)
            return false;
    return n > 0;
}

static void test_sigterm_idle(void)
{
    /* Let the earlier tests' work drain first (bounded). */
    bool idle = false;
    double deadline = h_now() + 120;
    for (int i = 0; i < 100000 && !idle && h_now() < deadline; i++) {
        idle = all_idle(&svc);
        if (!idle)
            h_sleep_ms(100);
    }
    if (!idle)
        h_note("workers still busy; stopping anyway");
    pid_t desc[256];
    size_t nd = h_descendants(svc.pid, desc, 256);
    CHECKF(nd >= 5, "batchd has %zu descendants (4 workers + api expected)", nd);
    int code = h_service_stop(&svc, 15);
    CHECK_INT(code, 0);
    for (size_t i = 0; i < nd && i < 256; i++)
        CHECKF(!h_pid_alive(desc[i]), "pid %d survived", (int)desc[i]);
}

static void test_sigterm_busy(void)
{
    struct h_service s2;
    if (!start_service(&s2)) {
        h_service_cleanup(&s2);
        return;
    }
    /* ~20 s of work on two workers. */
    struct h_buf b = {0};
    exp_sinh_body(&b, 800, 2000000, 5, 0);
    char id[32];
    bool ok = h_submit(&s2, "/v1/jobs", "application/json", b.p, b.len, id, 30);
    h_buf_free(&b);
    if (ok) {
        struct wk w[MAX_W];
        bool busy = false;
        double deadline = h_now() + 30;
        for (int i = 0; i < 10000 && !busy && h_now() < deadline; i++) {
            int n = get_workers(&s2, w, MAX_W);
            for (int k = 0; k < n; k++)
                busy |= strcmp(w[k].state, "busy") == 0;
            if (!busy)
                h_sleep_ms(20);
        }
        CHECKF(busy, "no worker became busy");
    }
    pid_t desc[256];
    size_t nd = h_descendants(s2.pid, desc, 256);
    double t0 = h_now();
    int code = h_service_stop(&s2, 15);
    printf("  stopped in %.2f s (information only)\n", h_now() - t0);
    CHECK_INT(code, 0);
    for (size_t i = 0; i < nd && i < 256; i++)
        CHECKF(!h_pid_alive(desc[i]), "pid %d survived", (int)desc[i]);
    h_service_cleanup(&s2);
}

static void test_sigint(void)
{
    struct h_service s;
    if (start_service(&s)) {
        pid_t desc[256];
        size_t nd = h_descendants(s.pid, desc, 256);
        CHECK_INT(h_service_stop_sig(&s, SIGINT, 15), 0);
        for (size_t i = 0; i < nd && i < 256; i++)
            CHECKF(!h_pid_alive(desc[i]), "pid %d survived", (int)desc[i]);
    }
    h_service_cleanup(&s);
}

static void test_sigterm_open_stream(void)
{
    struct h_service s;
    if (!start_service(&s)) {
        h_service_cleanup(&s);
        return;
    }
    struct h_buf b = {0};
    exp_sinh_body(&b, 800, 2000000, 5, 0);
    char id[32];
    bool ok = h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, id, 30);
    h_buf_free(&b);
    if (ok) {
        char path[120];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
        struct h_req rq = {.method = "GET", .path = path, .timeout_s = 60};
        struct h_resp r;
        struct h_multi *m = h_multi_new(&s);
        h_multi_add(m, &rq, &r);
        h_multi_run(m, 30, true); /* the stream has begun */
        double t0 = h_now();
        CHECK_INT(h_service_stop(&s, 15), 0);
        printf("  stopped in %.2f s with a stream open (information only)\n", h_now() - t0);
        size_t left = h_multi_run(m, 10, false);
        CHECKF(left == 0, "the stream was still open after batchd exited");
        h_multi_free(m);
        h_resp_free(&r);
    }
    h_service_cleanup(&s);
}

/* ------------------------------------------------- supervisor SIGKILL */

static void test_kill_supervisor(void)
{
    struct h_service s3;
    if (!start_service(&s3)) {
        h_service_cleanup(&s3);
        return;
    }
    struct h_buf b = {0};
    exp_sinh_body(&b, 400, 2000000, 5, 0);
    char id[32];
    h_submit(&s3, "/v1/jobs", "application/json", b.p, b.len, id, 30);
    h_buf_free(&b);
    pid_t desc[256];
    size_t nd = h_descendants(s3.pid, desc, 256);
    if (nd > 256)
        nd = 256;
    CHECKF(nd >= 5, "batchd has %zu descendants (4 workers + api expected)", nd);
    printf("  SIGKILL supervisor %d with %zu descendants\n", (int)s3.pid, nd);
    CHECK(kill(s3.pid, SIGKILL) == 0);
    int code = h_service_wait_exit(&s3, 10);
    CHECKF(code == 128 + SIGKILL, "supervisor exit %d", code);
    size_t alive = nd;
    double deadline = h_now() + 5;
    for (int i = 0; i < 100000 && alive > 0; i++) {
        alive = 0;
        for (size_t k = 0; k < nd; k++)
            alive += h_pid_alive(desc[k]);
        if (alive == 0 || h_now() > deadline)
            break;
        h_sleep_ms(20);
    }
    if (!CHECKF(alive == 0, "%zu of %zu children survived the supervisor by 5 s", alive, nd)) {
        for (size_t k = 0; k < nd; k++) {
            if (h_pid_alive(desc[k])) {
                h_note("survivor %d (parent now %d); SIGKILLing it", (int)desc[k],
                       (int)h_pid_ppid(desc[k]));
                kill(desc[k], SIGKILL);
            }
        }
    }
    h_service_cleanup(&s3);
}

/* --------------------------------- SIGKILL of the whole group, restart */

static bool done_at_least(const json_t *job, void *arg)
{
    long long done = 0;
    h_jint(job, "counts/done", &done);
    return done >= *(const long long *)arg;
}

static void test_kill_group_restart(void)
{
    enum { N = 200, MOD = 11, MIN_DONE = 20 };
    const long BASE = 2000000;
    struct h_service a, b;
    memset(&b, 0, sizeof b);
    if (!start_service(&a)) {
        h_service_cleanup(&a);
        return;
    }
    const char *small = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char small_id[32] = "", id[32] = "";
    bool ok = h_submit(&a, "/v1/jobs", "application/json", small, strlen(small), small_id, 30);
    json_t *job = ok ? h_wait_job(&a, small_id, 60) : NULL;
    ok = ok && CHECK(job != NULL);
    json_decref(job);
    struct h_buf body = {0};
    exp_sinh_body(&body, N, BASE, MOD, 4);
    ok = ok && h_submit(&a, "/v1/jobs", "application/json", body.p, body.len, id, 30);
    h_buf_free(&body);
    /* Mid-job: some results are in (and, 20 ms later, durable), most not. */
    long long min_done = MIN_DONE, done = -1;
    job = ok ? h_poll_job(&a, id, 120, done_at_least, &min_done) : NULL;
    ok = ok && CHECKF(job != NULL, "job %s never had %d results", id, MIN_DONE);
    h_jint(job, "counts/done", &done);
    const char *st = h_jstr(job, "status");
    printf("  job %s: %s, %lld of %d done\n", id, st ? st : "?", done, N);
    json_decref(job);
    if (!ok)
        goto out;

    pid_t desc[64];
    size_t nd = h_descendants(a.pid, desc, 64);
    if (nd > 64)
        nd = 64;
    /* The group is the one the harness made for the batchd it started. */
    if (!CHECKF(getpgid(a.pid) == a.pid, "batchd %d does not lead its process group", (int)a.pid))
        goto out;
    printf("  SIGKILL process group %d (%zu descendants)\n", (int)a.pid, nd);
    CHECK(kill(-a.pid, SIGKILL) == 0);
    int code = h_service_wait_exit(&a, 10);
    CHECKF(code == 128 + SIGKILL, "supervisor exit %d", code);
    size_t alive = nd;
    double deadline = h_now() + 5;
    for (int i = 0; i < 1000 && alive > 0 && h_now() < deadline; i++) {
        alive = 0;
        for (size_t k = 0; k < nd; k++)
            alive += h_pid_alive(desc[k]);
        if (alive > 0)
            h_sleep_ms(20);
    }
    if (!CHECKF(alive == 0, "%zu processes of the killed group are still alive", alive))
        goto out;

    /* A new batchd on the same data dir (the last --data-dir wins). */
    char data_dir[320];
    snprintf(data_dir, sizeof data_dir, "%s/data", a.tmpdir);
    const char *const args[] = {"--workers", "2", "--model", "exp_sinh", "--model", "square",
                                "--data-dir", data_dir, NULL};
    struct h_service_opts o = {.args = args};
    if (h_service_start(&b, &o) != 0)
        goto out;
    char path[80];
    struct h_resp r;
    snprintf(path, sizeof path, "/v1/jobs/%s", small_id);
    if (CHECK(h_get(&b, path, &r) == 0) &&
        CHECKF(r.status == 200, "GET %s after the restart: %ld %.300s", path, r.status, r.body)) {
        CHECK_JOB(h_json(&r));
        CHECK_STR(h_jstr(h_json(&r), "status"), "succeeded");
    }
    h_resp_free(&r);
    check_square_results(&b, small_id, 3);

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    if (CHECK(h_get(&b, path, &r) == 0) &&
        CHECKF(r.status == 200, "GET %s after the restart: %ld %.300s", path, r.status, r.body)) {
        long long d0 = -1;
        h_jint(h_json(&r), "counts/done", &d0);
        printf("  after the restart: %lld of %d done (durable), %s\n", d0, N,
               h_jstr(h_json(&r), "status") ? h_jstr(h_json(&r), "status") : "?");
    }
    h_resp_free(&r);
    job = h_wait_job(&b, id, 240);
    if (CHECK(job != NULL)) {
        long long d = -1, f = -1;
        h_jint(job, "counts/done", &d);
        h_jint(job, "counts/failed", &f);
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        CHECKF(d == N && f == 0, "done %lld failed %lld of %d", d, f, N);
    }
    json_decref(job);
    check_exp_sinh_results(&b, id, N, BASE, MOD);
    CHECK_INT(h_service_stop(&b, 15), 0);
out:
    h_service_cleanup(&b); /* before a's: b's data dir is in a's temp dir */
    h_service_cleanup(&a);
}

/* ----------------------------------------------- the chaos model (if built) */

/* True when `batchd --help` lists `name` among the built-in models. */
static bool has_builtin_model(const char *name)
{
    const char *argv[] = {getenv("BATCHD_BIN"), "--help", NULL};
    struct h_run_result r;
    bool found = false;
    if (h_run(argv, NULL, 10, &r) == 0 && r.exit_code == 0) {
        const char *line = strstr(r.out, "Built-in models:");
        if (line != NULL) {
            const char *end = strchr(line, '\n');
            size_t n = strlen(name);
            for (const char *p = strstr(line, name); p != NULL && (end == NULL || p < end);
                 p = strstr(p + 1, name))
                found |= (p[-1] == ' ' || p[-1] == ',') && (p[n] == ',' || p[n] == '.' ||
                                                            p[n] == '\n' || p[n] == ' ');
        }
    }
    h_run_result_free(&r);
    return found;
}

static bool need_chaos(void)
{
    if (has_builtin_model("chaos"))
        return true;
    h_skip("this batchd has no built-in `chaos` model (batchd --help lists none)");
    return false;
}

/* Runs a chaos job of the given items (JSON array text) with chunk_size and
 * returns its results (new array) once finished, or NULL. */
static json_t *chaos_job(struct h_service *s, const char *items, unsigned chunk, size_t n,
                         json_t **job_out)
{
    char body[2048];
    snprintf(body, sizeof body, "{\"model\":\"chaos\",\"inputs\":%s,\"options\":{\"chunk_size\":%u}}",
             items, chunk);
    char id[32];
    if (!h_submit(s, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return NULL;
    json_t *job = h_wait_job(s, id, 120);
    if (job == NULL)
        return NULL;
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_t *res = h_fetch_results(s, id, n, 1000);
    if (job_out)
        *job_out = job;
    else
        json_decref(job);
    return res;
}

static void test_poison_items(void)
{
    if (!need_chaos())
        return;
    static const char *const args[] = {"--workers", "2", "--model", "chaos", "--max-attempts", "2",
                                       NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    /* One item per task: each poison item fails alone, after 2 attempts. */
    const char *items = "[1,{\"crash\":\"segv\"},3,{\"crash\":\"abort\"},{\"crash\":\"exit\"},"
                        "{\"fail\":\"nope\"},{\"sleep_ms\":10,\"value\":7}]";
    enum { N = 7 };
    static const int kind[N] = {1, 0, 3, 0, 0, -1, 7}; /* 0 crash, -1 item error, else output */
    json_t *job = NULL;
    json_t *res = chaos_job(&s, items, 1, N, &job);
    if (res != NULL) {
        for (size_t i = 0; i < N; i++) {
            long long idx;
            json_t *out;
            const char *msg;
            if (!CHECK_RESULT(json_array_get(res, i), &idx, &out, &msg))
                continue;
            if (kind[i] > 0)
                CHECKF(out != NULL && json_integer_value(out) == kind[i], "item %zu: not %d", i,
                       kind[i]);
            else
                CHECKF(msg != NULL, "item %zu should be an error result", i);
            if (kind[i] == -1 && msg != NULL)
                CHECKF(strstr(msg, "nope") != NULL, "item %zu: error \"%s\"", i, msg);
            if (kind[i] == 0 && msg != NULL && i == 1)
                printf("  crash item error: \"%s\"\n", msg);
        }
        CHECKF(h_jint(job, "counts/failed", NULL) && json_integer_value(h_jget(job, "counts/failed")) == 4,
               "failed count");
    }
    json_decref(res);
    json_decref(job);
    /* Every crash cost a worker per attempt: 3 poison items x 2 attempts. */
    struct wk w[MAX_W];
    long long restarts = 0;
    bool all_back = false;
    double deadline = h_now() + 30;
    for (int i = 0; i < 10000 && !all_back && h_now() < deadline; i++) {
        int n = get_workers(&s, w, MAX_W);
        restarts = 0;
        all_back = n > 0;
        for (int k = 0; k < n; k++) {
            restarts += w[k].restarts;
            all_back &= strcmp(w[k].state, "idle") == 0 && w[k].inits == 1;
        }
        if (!all_back)
            h_sleep_ms(50);
    }
    CHECKF(all_back, "the workers did not all come back idle with inits == 1");
    CHECKF(restarts == 6, "%lld restarts in all, expected 3 poison items x 2 attempts", restarts);

    /* Chunks of 3: a poison item must not take innocent items with it. */
    items = "[10,11,{\"crash\":\"segv\"},13,14,15]";
    res = chaos_job(&s, items, 3, 6, NULL);
    for (size_t i = 0; res != NULL && i < 6; i++) {
        long long idx;
        json_t *out;
        const char *msg;
        if (!CHECK_RESULT(json_array_get(res, i), &idx, &out, &msg))
            continue;
        if (i == 2)
            CHECKF(msg != NULL, "the crash item is not an error");
        else
            CHECKF(out != NULL && json_integer_value(out) == 10 + (long long)i,
                   "innocent item %zu sharing a task with a crash item: %s", i,
                   msg ? msg : "wrong output");
    }
    json_decref(res);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static void test_item_timeout(void)
{
    if (!need_chaos())
        return;
    static const char *const args[] = {"--workers", "1", "--model", "chaos", "--item-timeout",
                                       "0.5", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    /* An hour-long hang: only the timeout can end it within the wait. */
    json_t *res = chaos_job(&s, "[{\"hang_ms\":3600000},5,{\"sleep_ms\":1,\"value\":\"ok\"}]", 1, 3,
                            NULL);
    if (CHECK(res != NULL)) {
        CHECK(h_jget(json_array_get(res, 0), "error") != NULL);
        CHECK(json_integer_value(h_jget(json_array_get(res, 1), "output")) == 5);
        CHECK_STR(h_jstr(json_array_get(res, 2), "output"), "ok");
        const char *msg = h_jstr(json_array_get(res, 0), "error/message");
        printf("  timed-out item: \"%s\"\n", msg ? msg : "");
    }
    json_decref(res);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static void test_sigterm_hung_item(void)
{
    if (!need_chaos())
        return;
    static const char *const args[] = {"--workers", "1", "--model", "chaos", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    const char *body = "{\"model\":\"chaos\",\"inputs\":[{\"hang_ms\":3600000}]}";
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", body, strlen(body), id, 30)) {
        struct wk w[MAX_W];
        bool busy = false;
        double deadline = h_now() + 30;
        for (int i = 0; i < 10000 && !busy && h_now() < deadline; i++) {
            int n = get_workers(&s, w, MAX_W);
            busy = n > 0 && strcmp(w[0].state, "busy") == 0;
            if (!busy)
                h_sleep_ms(20);
        }
        CHECKF(busy, "the worker never took the hanging item");
    }
    pid_t desc[64];
    size_t nd = h_descendants(s.pid, desc, 64);
    double t0 = h_now();
    CHECK_INT(h_service_stop(&s, 20), 0);
    printf("  stopped in %.2f s with an item hanging (information only)\n", h_now() - t0);
    for (size_t i = 0; i < nd && i < 64; i++)
        CHECKF(!h_pid_alive(desc[i]), "pid %d survived", (int)desc[i]);
    h_service_cleanup(&s);
}

static void test_shutting_down(void)
{
    /* During the drain (--grace) the api refuses new jobs with 503
     * shutting-down and Retry-After, or has stopped listening. */
    if (!need_chaos())
        return;
    static const char *const args[] = {"--workers", "1", "--model", "chaos", "--grace", "5", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    const char *slow = "{\"model\":\"chaos\",\"inputs\":[{\"sleep_ms\":4000,\"value\":1}]}";
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", slow, strlen(slow), id, 30)) {
        struct wk w[MAX_W];
        bool busy = false;
        double deadline = h_now() + 30;
        for (int i = 0; i < 10000 && !busy && h_now() < deadline; i++) {
            int n = get_workers(&s, w, MAX_W);
            busy = n > 0 && strcmp(w[0].state, "busy") == 0;
            if (!busy)
                h_sleep_ms(20);
        }
        CHECKF(busy, "the worker never took the slow item");
    }
    pid_t desc[64];
    size_t nd = h_descendants(s.pid, desc, 64);
    CHECK(kill(s.pid, SIGTERM) == 0);
    const char *small = "{\"model\":\"chaos\",\"inputs\":[1]}";
    int accepted = 0;
    bool refused = false, closed = false;
    double deadline = h_now() + 4;
    for (int i = 0; i < 1000 && !refused && !closed && h_now() < deadline; i++) {
        struct h_resp r;
        struct h_req rq = {.method = "POST", .path = "/v1/jobs",
                           .headers = (const char *const[]){"Content-Type: application/json", NULL},
                           .body = small, .body_len = strlen(small), .timeout_s = 5};
        if (h_request(&s, &rq, &r) != 0) {
            closed = true;
        } else if (r.status == 202) {
            accepted++; /* the api had not heard of the SIGTERM yet */
        } else if (CHECK_PROBLEM(&r, 503, "shutting-down", "/v1/jobs")) {
            const char *ra = h_resp_header(&r, "Retry-After");
            CHECKF(ra != NULL, "503 without Retry-After");
            refused = true;
        } else {
            refused = true;
        }
        h_resp_free(&r);
        if (!refused && !closed)
            h_sleep_ms(50);
    }
    printf("  after SIGTERM: %d accepted, %s (information only)\n", accepted,
           refused ? "then 503" : closed ? "then the api stopped listening" : "no refusal seen");
    CHECKF(accepted <= 2, "%d jobs accepted after SIGTERM", accepted);
    int code = h_service_wait_exit(&s, 20);
    CHECKF(code == 0, "exit %d after SIGTERM", code);
    if (code < 0)
        h_service_abort(&s);
    for (size_t i = 0; i < nd && i < 64; i++)
        CHECKF(!h_pid_alive(desc[i]), "pid %d survived", (int)desc[i]);
    h_service_cleanup(&s);
}

/* ------------------------------------------------------------------- main */

static bool svc_up;

static void start(void)
{
    svc_up = start_service(&svc);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"SIGKILL a worker mid-job", test_kill_worker},
        {"SIGKILL the api process", test_kill_api},
        {"SIGTERM: exit 0, no child left", test_sigterm_idle},
    };
    static const struct h_test own_service[] = {
        {"--max-attempts 1: a killed worker's items get error results", test_max_attempts},
        {"SIGTERM while a job runs: exit 0, no child left", test_sigterm_busy},
        {"SIGINT: exit 0, no child left", test_sigint},
        {"SIGTERM with a results stream open", test_sigterm_open_stream},
        {"SIGKILL the supervisor: no child survives", test_kill_supervisor},
        {"SIGKILL the process group mid-job, restart on the same data dir", test_kill_group_restart},
        {"chaos: poison items fail alone after --max-attempts", test_poison_items},
        {"chaos: --item-timeout ends a hung item", test_item_timeout},
        {"chaos: SIGTERM with a hung item", test_sigterm_hung_item},
        {"chaos: 503 shutting-down during the drain", test_shutting_down},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_with_service(tests, sizeof tests / sizeof tests[0], start, &svc_up, NULL);
    h_service_cleanup(&svc);
    h_run_tests(own_service, sizeof own_service / sizeof own_service[0]);
    return h_finish();
}
