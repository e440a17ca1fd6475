/*
 * test_observability: what operators see of a running batchd.
 *
 *   - The access log: one JSON line per request on stderr with method, path
 *     (without the query), route, status, body bytes, duration and the
 *     request id (the client's X-Request-Id, echoed); none with
 *     --access-log false.
 *   - /metrics: requests by route and status with a latency histogram, job
 *     and item counters, queue depth, ring occupancy, per-worker restarts,
 *     model load and init times, under Prometheus names; `promtool check
 *     metrics` accepts the text (a failure without promtool).
 *   - `batchd healthcheck`: exit 0 against the running service (by flag and
 *     by BATCHD_LISTEN), 1 against a closed port and against a port that
 *     accepts but never answers (bounded by its own timeout).
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct h_service svc;
static const char *bin;

/* The access line (parsed, new) of request id `rid` in the service log,
 * polling a moment for it to be written (it is, once the request ends). */
static json_t *access_line(struct h_service *s, const char *rid)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        FILE *f = fopen(s->log_file, "r");
        char line[8192];
        while (f && fgets(line, sizeof line, f)) {
            if (!strstr(line, "\"access\"") || !strstr(line, rid))
                continue;
            json_t *j = h_json_loads(line, strlen(line));
            const char *id = h_jstr(j, "request_id");
            if (id && strcmp(id, rid) == 0) {
                fclose(f);
                return j;
            }
            json_decref(j);
        }
        if (f)
            fclose(f);
        h_sleep_ms(20);
    }
    return NULL;
}

static void check_access(struct h_service *s, const char *rid, const char *method,
                         const char *path, long status, long long bytes)
{
    json_t *j = access_line(s, rid);
    if (!CHECKF(j != NULL, "no access line with request_id %s in %s", rid, s->log_file))
        return;
    long long st = -1, b = -2;
    double ms = -1;
    CHECK_STR(h_jstr(j, "event"), "access");
    CHECK_STR(h_jstr(j, "level"), "info");
    CHECK_STR(h_jstr(j, "method"), method);
    CHECK_STR(h_jstr(j, "path"), path);
    CHECK(h_jint(j, "status", &st) && st == status);
    if (bytes >= 0)
        CHECKF(h_jint(j, "bytes", &b) && b == bytes, "bytes %lld, expected %lld", b, bytes);
    CHECK(h_jnum(j, "duration_ms", &ms) && ms >= 0);
    CHECK_STR(h_jstr(j, "remote"), "127.0.0.1");
    CHECK(h_jstr(j, "route") != NULL);
    json_decref(j);
}

static void test_access_log(void)
{
    const char *h1[] = {"X-Request-Id: obs-models-1", NULL};
    struct h_resp r;
    if (CHECK(h_get_hdr(&svc, "/v1/models", h1, &r) == 0) && CHECK_INT(r.status, 200)) {
        CHECK_STR(h_resp_header(&r, "X-Request-Id"), "obs-models-1");
        check_access(&svc, "obs-models-1", "GET", "/v1/models", 200, (long long)r.len);
    }
    h_resp_free(&r);

    const char *h2[] = {"X-Request-Id: obs-missing-2", NULL};
    if (CHECK(h_get_hdr(&svc, "/v1/jobs?limit=nope", h2, &r) == 0)) {
        CHECK_INT(r.status, 400);
        /* the query is not logged: it may carry anything */
        check_access(&svc, "obs-missing-2", "GET", "/v1/jobs", 400, (long long)r.len);
    }
    h_resp_free(&r);

    const char *h3[] = {"X-Request-Id: obs-post-3", "Content-Type: application/json", NULL};
    const char *body = "{\"model\":\"square\",\"inputs\":[1,2]}";
    struct h_req req = {.method = "POST", .path = "/v1/jobs", .headers = h3, .body = body,
                        .body_len = strlen(body), .timeout_s = 10};
    if (CHECK(h_request(&svc, &req, &r) == 0) && CHECK_INT(r.status, 202))
        check_access(&svc, "obs-post-3", "POST", "/v1/jobs", 202, (long long)r.len);
    h_resp_free(&r);

    /* a generated id is logged too: the one echoed to the client */
    if (CHECK(h_get(&svc, "/nowhere", &r) == 0) && CHECK_INT(r.status, 404)) {
        const char *rid = h_resp_header(&r, "X-Request-Id");
        if (CHECK(rid != NULL))
            check_access(&svc, rid, "GET", "/nowhere", 404, (long long)r.len);
    }
    h_resp_free(&r);
}

static bool has_line_prefix(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

static void test_metrics(void)
{
    struct h_resp r;
    if (!CHECK(h_get(&svc, "/v1/models", &r) == 0))
        return;
    h_resp_free(&r);
    if (!CHECK(h_get(&svc, "/metrics", &r) == 0) || !CHECK_INT(r.status, 200)) {
        h_resp_free(&r);
        return;
    }
    static const char *const want[] = {
        "# TYPE batchd_http_requests_total counter",
        "batchd_http_requests_total{route=\"/v1/models\",method=\"GET\",code=\"200\"}",
        "# TYPE batchd_http_request_duration_seconds histogram",
        "batchd_http_request_duration_seconds_bucket{route=\"/v1/models\",method=\"GET\","
        "code=\"200\",le=\"+Inf\"}",
        "batchd_http_request_duration_seconds_count{route=\"/v1/models\"",
        "# TYPE batchd_jobs gauge",
        "# TYPE batchd_jobs_submitted_total counter",
        "# TYPE batchd_items_done_total counter",
        "# TYPE batchd_items_failed_total counter",
        "# TYPE batchd_queued_items gauge",
        "# TYPE batchd_ring_tasks gauge",
        "# TYPE batchd_ring_slots gauge",
        "batchd_worker_restarts_total{model=\"square\",worker=",
        "# TYPE batchd_worker_recycles_total counter",
        "batchd_worker_recycles_total{model=\"square\",worker=\"",
        "# TYPE batchd_worker_recycle_seconds gauge",
        "batchd_worker_recycle_seconds{model=\"square\",worker=\"",
        "batchd_model_load_seconds{model=\"square\"}",
        "batchd_worker_init_seconds{model=\"echo\",worker=",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(has_line_prefix(r.body, want[i]), "/metrics has no line starting %s", want[i]);

    char path[512];
    snprintf(path, sizeof path, "%s/metrics.txt", h_tmpdir());
    FILE *f = fopen(path, "w");
    if (CHECK(f != NULL)) {
        fwrite(r.body, 1, r.len, f);
        fclose(f);
    }
    h_resp_free(&r);
    /* make integration installs it (scripts/deps.sh promtool); a check
     * that cannot run fails rather than pass unseen */
    if (!CHECKF(system("command -v promtool >/dev/null 2>&1") == 0,
                "promtool is not installed (sh scripts/deps.sh promtool, as root): the /metrics "
                "format cannot be checked by Prometheus's own parser"))
        return;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct h_run_result pr;
    if (CHECK(h_run(argv, NULL, 30, &pr) == 0)) {
        CHECKF(pr.exit_code == 0, "promtool check metrics: exit %d\n%s%s", pr.exit_code, pr.out,
               pr.err);
        h_run_result_free(&pr);
    }
}

static void test_healthcheck(void)
{
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", svc.port);
    const char *argv[] = {bin, "healthcheck", "--listen", where, NULL};
    struct h_run_result r;
    if (CHECK(h_run(argv, NULL, 10, &r) == 0)) {
        CHECKF(r.exit_code == 0, "healthcheck: exit %d: %s", r.exit_code, r.err);
        CHECKF(strstr(r.out, "healthy") != NULL, "healthcheck said: %s", r.out);
        h_run_result_free(&r);
    }
    /* the way the image runs it: the address from the environment, and
     * 0.0.0.0 (where a container listens) reached through 127.0.0.1 */
    char env_listen[80];
    snprintf(env_listen, sizeof env_listen, "BATCHD_LISTEN=0.0.0.0:%d", svc.port);
    const char *argv_env[] = {bin, "healthcheck", NULL};
    const char *env[] = {env_listen, NULL};
    if (CHECK(h_run(argv_env, env, 10, &r) == 0)) {
        CHECKF(r.exit_code == 0, "healthcheck (BATCHD_LISTEN): exit %d: %s", r.exit_code, r.err);
        h_run_result_free(&r);
    }

    /* A port that was free a moment ago (bound, then closed): refused. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (!CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
               getsockname(fd, (struct sockaddr *)&sa, &sl) == 0))
        return;
    snprintf(where, sizeof where, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    close(fd);
    const char *argv_closed[] = {bin, "healthcheck", "--listen", where, NULL};
    if (CHECK(h_run(argv_closed, NULL, 10, &r) == 0)) {
        CHECKF(r.exit_code == 1 && !r.timed_out, "healthcheck of a closed port: exit %d",
               r.exit_code);
        CHECKF(strstr(r.err, "unhealthy") != NULL, "stderr: %s", r.err);
        h_run_result_free(&r);
    }

    /* A port that accepts (the kernel's backlog) but never answers: the
     * healthcheck's own timeout ends it, well before ours. */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_port = 0;
    sl = sizeof sa;
    if (!CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 4) == 0 &&
               getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)) {
        if (fd >= 0)
            close(fd);
        return;
    }
    snprintf(where, sizeof where, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    const char *argv_mute[] = {bin, "healthcheck", "--listen", where, NULL};
    if (CHECK(h_run(argv_mute, NULL, 15, &r) == 0)) {
        CHECKF(r.exit_code == 1 && !r.timed_out, "healthcheck of a mute port: exit %d%s",
               r.exit_code, r.timed_out ? " (timed out)" : "");
        CHECKF(strstr(r.err, "timed out") != NULL, "stderr: %s", r.err);
        h_run_result_free(&r);
    }
    close(fd);

    /* port 0 names no server */
    const char *argv_zero[] = {bin, "healthcheck", "--listen", "127.0.0.1:0", NULL};
    if (CHECK(h_run(argv_zero, NULL, 10, &r) == 0)) {
        CHECK_INT(r.exit_code, 1);
        h_run_result_free(&r);
    }
}

static void no_access_lines(void)
{
    const char *args[] = {"--workers", "1", "--model", "echo", "--access-log", "false", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) == 0) {
        const char *h[] = {"X-Request-Id: obs-quiet", NULL};
        struct h_resp r;
        CHECK(h_get_hdr(&s, "/v1/models", h, &r) == 0 && r.status == 200);
        h_resp_free(&r);
        CHECK_INT(h_service_stop(&s, 0), 0);
        FILE *f = fopen(s.log_file, "r");
        char line[8192];
        bool found = false;
        while (f && fgets(line, sizeof line, f))
            found |= strstr(line, "\"event\":\"access\"") != NULL;
        if (f)
            fclose(f);
        CHECKF(!found, "--access-log false, yet an access line was written");
    }
    h_service_cleanup(&s);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"access log: one JSON line per request", test_access_log},
        {"/metrics: names, labels, histogram; promtool check metrics", test_metrics},
        {"batchd healthcheck: 0 when healthy, 1 when closed or mute", test_healthcheck},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    bin = getenv("BATCHD_BIN");
    const char *args[] = {"--workers", "1", "--model", "square", "--model", "echo", NULL};
    struct h_service_opts o = {.args = args};
    h_run_on_service(&svc, &o, 0, tests, sizeof tests / sizeof tests[0]);
    h_run_one("--access-log false: no access lines", no_access_lines);
    return h_finish();
}
