/*
 * test_robustness: many concurrent clients, valid and invalid mixed,
 * against one batchd.
 *
 * Rounds of ROUND_REQUESTS concurrent requests (each on its own
 * connection, curl multi) run for about RUN_SECONDS (and at most
 * MAX_ROUNDS rounds). Each round mixes job submissions (JSON and NDJSON),
 * polls of jobs and results, listings, health and metrics with hostile
 * requests: malformed and mistyped bodies, a body over the item limit, an
 * unknown media type, unknown and repeated query parameters, malformed
 * ids, wrong methods. Alongside, SLOW_CLIENTS raw connections send half a
 * request and then nothing for the whole round (slow or stuck clients
 * hold a connection thread each), so the service runs with well over 100
 * connections open. Checked:
 *   - every request gets a response (no dropped connection, no timeout),
 *     never a 5xx, and exactly the status its kind calls for;
 *   - every 4xx is a problem+json of the expected type, every JSON 2xx
 *     parses;
 *   - afterwards the service answers, its processes are the ones it
 *     started with (nothing crashed and was respawned), the jobs submitted
 *     during the run all finished, and it stops cleanly (exit 0).
 * `make asan` runs this under AddressSanitizer (with every process's
 * reports collected, tests/sanitize.sh). Nothing here asserts on time.
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUND_REQUESTS 96
#define SLOW_CLIENTS 24
#define RUN_SECONDS 10.0
#define MAX_ROUNDS 400
#define MAX_JOBS (MAX_ROUNDS * 10)
#define WAIT_S 120

static struct h_service svc;

/* One kind of request and the answer it must get. */
struct kind {
    const char *name;
    const char *method;
    const char *path;      /* "{id}" is replaced by a job id where present */
    const char *ctype;     /* Content-Type, or NULL */
    const char *body;      /* NULL = no body */
    int status;
    const char *slug;      /* the problem's type for a 4xx */
    bool submits;          /* a 202 here created a job (its id is kept) */
};

static char big_item[70 * 1024];
static char deep_body[256];

static struct kind kinds[] = {
    {"submit JSON", "POST", "/v1/jobs", "application/json",
     "{\"model\":\"square\",\"inputs\":[1,2,3,4,5,6,7,8]}", 202, NULL, true},
    {"submit NDJSON", "POST", "/v1/jobs?model=echo&chunk_size=2", "application/x-ndjson",
     "{\"a\":1}\n[1,2]\n\"x\"\nnull\n", 202, NULL, true},
    {"get job", "GET", "/v1/jobs/{id}", NULL, NULL, 200, NULL, false},
    {"get results", "GET", "/v1/jobs/{id}/results?limit=3", NULL, NULL, 200, NULL, false},
    {"list jobs", "GET", "/v1/jobs?limit=5", NULL, NULL, 200, NULL, false},
    {"health", "GET", "/healthz", NULL, NULL, 200, NULL, false},
    {"models", "GET", "/v1/models", NULL, NULL, 200, NULL, false},
    {"metrics", "GET", "/metrics", NULL, NULL, 200, NULL, false},
    {"truncated JSON", "POST", "/v1/jobs", "application/json", "{\"model\":\"square\",\"inputs\":[1,",
     400, "invalid-json", false},
    {"duplicate key", "POST", "/v1/jobs", "application/json",
     "{\"model\":\"square\",\"model\":\"echo\",\"inputs\":[1]}", 400, "invalid-json", false},
    {"invalid UTF-8", "POST", "/v1/jobs", "application/json",
     "{\"model\":\"echo\",\"inputs\":[\"\xff\xfe\"]}", 400, "invalid-json", false},
    {"deep nesting", "POST", "/v1/jobs", "application/json", deep_body, 400, "invalid-json",
     false},
    {"wrong type", "POST", "/v1/jobs", "application/json", "{\"model\":7,\"inputs\":{}}", 422,
     "invalid-job", false},
    {"unknown model", "POST", "/v1/jobs", "application/json",
     "{\"model\":\"nope\",\"inputs\":[1]}", 422, "unknown-model", false},
    {"item too large", "POST", "/v1/jobs", "application/json", big_item, 413, "too-large", false},
    {"bad media type", "POST", "/v1/jobs", "text/plain", "1", 415, "unsupported-media-type", false},
    {"NDJSON bad line", "POST", "/v1/jobs?model=square", "application/x-ndjson", "1\n2\n{\n",
     400, "invalid-json", false},
    {"unknown parameter", "GET", "/v1/jobs?limt=5", NULL, NULL, 400, "invalid-parameter", false},
    {"repeated parameter", "GET", "/v1/jobs?limit=1&limit=2", NULL, NULL, 400,
     "invalid-parameter", false},
    {"malformed id", "GET", "/v1/jobs/NOT-A-JOB-ID", NULL, NULL, 404, "not-found", false},
    {"unknown job", "GET", "/v1/jobs/aaaaaaaaaaaaaaaaaaaaaaaaaa/results", NULL, NULL, 404,
     "not-found", false},
    {"wrong method", "PUT", "/v1/jobs", "application/json", "{}", 405, "method-not-allowed",
     false},
    {"no route", "GET", "/v2/everything", NULL, NULL, 404, "not-found", false},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static char job_ids[MAX_JOBS][32];
static size_t n_jobs;

/* Opens a connection that sends half a request and then waits. Returns
 * the socket, or -1. */
static int slow_client(int i)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)svc.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    static const char *const halves[] = {
        "GET /healthz HTTP/1.1\r\nHo",
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{\"model\":",
        "GET /v1/jobs?limit=",
    };
    const char *h = halves[i % 3];
    if (send(fd, h, strlen(h), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Checks one response against its kind; returns true when it matched. */
static bool check_response(const struct kind *k, const char *path, struct h_resp *r)
{
    if (!CHECKF(r->status != 0, "%s %s: no response: %s", k->method, path, r->error))
        return false;
    bool ok = CHECKF(r->status < 500, "%s %s: %ld %.200s", k->method, path, r->status, r->body);
    ok &= CHECKF(r->status == k->status, "%s (%s %s): status %ld, expected %d: %.200s", k->name,
                 k->method, path, r->status, k->status, r->body);
    if (r->status >= 400) {
        char bare[128];
        snprintf(bare, sizeof bare, "%.*s", (int)strcspn(path, "?"), path);
        ok &= CHECK_PROBLEM(r, k->status, k->slug, bare);
    } else if (h_resp_is(r, "application/json")) {
        ok &= CHECKF(h_json(r) != NULL, "%s %s: the body is not JSON", k->method, path);
    }
    return ok;
}

struct slot {
    struct h_req req;
    struct h_resp resp;
    char path[128];
    char ct[96];
    const char *hdrs[2];
    const struct kind *k;
};

static void run_round(unsigned round, unsigned *checked, unsigned *bad)
{
    static struct slot slots[ROUND_REQUESTS];
    int slow[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++)
        slow[i] = slow_client(i);

    struct h_multi *m = h_multi_new(&svc);
    for (unsigned i = 0; i < ROUND_REQUESTS; i++) {
        struct slot *s = &slots[i];
        memset(s, 0, sizeof *s);
        /* a different mix each round, every kind in every round */
        const struct kind *k = &kinds[(i * 7 + round * 3) % N_KINDS];
        const char *mark = strstr(k->path, "{id}");
        if (mark && n_jobs == 0) {
            k = &kinds[0];
            mark = NULL;
        }
        s->k = k;
        if (mark)
            snprintf(s->path, sizeof s->path, "%.*s%s%s", (int)(mark - k->path), k->path,
                     job_ids[(i + round) % n_jobs], mark + 4);
        else
            snprintf(s->path, sizeof s->path, "%s", k->path);
        if (k->ctype) {
            snprintf(s->ct, sizeof s->ct, "Content-Type: %s", k->ctype);
            s->hdrs[0] = s->ct;
        }
        s->req = (struct h_req){.method = k->method, .path = s->path, .headers = s->hdrs,
                                .body = k->body, .body_len = k->body ? strlen(k->body) : 0,
                                .timeout_s = 60};
        CHECK(h_multi_add(m, &s->req, &s->resp) >= 0);
    }
    size_t left = h_multi_run(m, 90, false);
    CHECKF(left == 0, "round %u: %zu requests still running after 90 s", round, left);
    for (unsigned i = 0; i < ROUND_REQUESTS; i++) {
        struct slot *s = &slots[i];
        (*checked)++;
        if (!check_response(s->k, s->path, &s->resp))
            (*bad)++;
        if (s->k->submits && s->resp.status == 202 && n_jobs < MAX_JOBS) {
            const char *loc = h_resp_header(&s->resp, "Location");
            if (loc && strncmp(loc, "/v1/jobs/", 9) == 0 && h_is_job_id(loc + 9))
                snprintf(job_ids[n_jobs++], sizeof job_ids[0], "%s", loc + 9);
        }
    }
    h_multi_free(m);
    for (unsigned i = 0; i < ROUND_REQUESTS; i++)
        h_resp_free(&slots[i].resp);
    for (int i = 0; i < SLOW_CLIENTS; i++)
        if (slow[i] >= 0)
            close(slow[i]);
}

static pid_t start_children[64];
static size_t n_start_children;

static void test_concurrent_mix(void)
{
    /* the item over --max-item-bytes: a string of 70 KiB */
    size_t n = (size_t)snprintf(big_item, sizeof big_item, "{\"model\":\"echo\",\"inputs\":[\"");
    memset(big_item + n, 'x', sizeof big_item - n - 4);
    memcpy(big_item + sizeof big_item - 4, "\"]}", 4);
    /* items nested 80 deep, past --max-json-depth 64 */
    n = (size_t)snprintf(deep_body, sizeof deep_body, "{\"model\":\"echo\",\"inputs\":[");
    memset(deep_body + n, '[', 80);
    deep_body[n + 80] = '1';
    memset(deep_body + n + 81, ']', 80);
    memcpy(deep_body + n + 161, "]}", 3);

    n_start_children = h_children(svc.pid, start_children, 64);
    double t0 = h_now();
    unsigned checked = 0, bad = 0, rounds = 0;
    for (unsigned round = 0; round < MAX_ROUNDS && h_now() - t0 < RUN_SECONDS; round++) {
        run_round(round, &checked, &bad);
        rounds++;
        if (bad > 20)
            break; /* the failures are printed; more would only repeat them */
    }
    h_note("%u rounds, %u requests (%d at a time, plus %d stuck clients), %u unexpected",
           rounds, checked, ROUND_REQUESTS, SLOW_CLIENTS, bad);
    CHECK(bad == 0);
}

static void test_still_healthy(void)
{
    struct h_resp r;
    if (CHECK(h_get(&svc, "/healthz", &r) == 0))
        CHECK_INT(r.status, 200);
    h_resp_free(&r);
    /* the same processes: nothing crashed and was replaced */
    pid_t now[64];
    size_t n = h_children(svc.pid, now, 64);
    CHECKF(n == n_start_children, "%zu child processes, %zu at the start", n, n_start_children);
    for (size_t i = 0; i < n_start_children; i++) {
        bool found = false;
        for (size_t k = 0; k < n; k++)
            found |= now[k] == start_children[i];
        CHECKF(found, "process %d is gone (a crash, then a respawn?)", (int)start_children[i]);
    }
    /* every job submitted during the run finishes */
    for (size_t i = 0; i < n_jobs; i++) {
        json_t *job = h_wait_job(&svc, job_ids[i], WAIT_S);
        if (!CHECKF(job != NULL, "job %s did not finish", job_ids[i]))
            break;
        CHECKF(strcmp(h_jstr(job, "status"), "succeeded") == 0, "job %s: %s", job_ids[i],
               h_jstr(job, "status"));
        json_decref(job);
    }
    h_note("%zu jobs submitted during the run, all checked", n_jobs);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"concurrent clients, valid and invalid mixed", test_concurrent_mix},
        {"afterwards: healthy, same processes, every job finished", test_still_healthy},
    };
    static const char *const args[] = {"--workers", "2", "--model", "echo", "--model", "square",
                                       "--max-body-bytes", "1048576", "--max-items", "1000",
                                       "--max-item-bytes", "65536", "--max-connections", "256",
                                       NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 30, tests, sizeof tests / sizeof tests[0]);
}
