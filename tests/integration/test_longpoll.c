/*
 * test_longpoll: GET /v1/jobs/{id}?wait=S (issue 18).
 *
 *   - bad wait values are 400 problems naming the parameter;
 *   - a finished job answers at once; a running one as soon as it
 *     finishes (the latency from finished_at to the answer is printed,
 *     never asserted: the machine is shared);
 *   - with If-None-Match: 304 after S seconds when the ETag did not
 *     change, 200 with the new ETag as soon as it does;
 *   - 1,000 waiters at once on loopback (raw sockets, one request each):
 *     all are answered when the job ends; the api process's memory before
 *     and while they wait is printed (batchd_longpoll_waiting counts them).
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAITERS 1000

static struct h_service svc;

static double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "2026-12-07T16:21:57.587Z" as Unix seconds. */
static double parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

/* A job of exp_sinh items, each about `n` loop iterations. */
static bool submit_slow(int items, long long n, char *id)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < items; i++)
        h_buf_printf(&b, "%s{\"n\":%lld}", i ? "," : "", n);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":1}}");
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 10);
    h_buf_free(&b);
    return ok;
}

static bool submit_echo(char *id)
{
    const char *body = "{\"model\":\"echo\",\"inputs\":[1]}";
    return h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 10);
}

static void test_bad_values(void)
{
    char id[32];
    if (!CHECK(submit_echo(id)))
        return;
    const char *bad[] = {"0", "61", "60.001", "-1", "abc", "1.2345", "", "1e1", "0.000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128], inst[64];
        snprintf(path, sizeof path, "/v1/jobs/%s?wait=%s", id, bad[i]);
        snprintf(inst, sizeof inst, "/v1/jobs/%s", id);
        struct h_resp r;
        h_get(&svc, path, &r);
        CHECK_PROBLEM(&r, 400, "invalid-parameter", inst);
        const char *detail = h_jstr(h_json(&r), "detail");
        CHECKF(detail && strstr(detail, "wait"), "detail names wait: %s", detail);
        h_resp_free(&r);
    }
    /* an unknown job is 404 at once, wait or not */
    struct h_resp r;
    h_get(&svc, "/v1/jobs/aaaaaaaaaaaaaaaaaaaaaaaaaa?wait=5", &r);
    CHECK_PROBLEM(&r, 404, "not-found", "/v1/jobs/aaaaaaaaaaaaaaaaaaaaaaaaaa");
    h_resp_free(&r);
}

static void test_answers_at_the_end(void)
{
    char id[32], path[96];
    /* finished already: at once */
    if (!CHECK(submit_echo(id)))
        return;
    json_decref(h_wait_job(&svc, id, 30));
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=30", id);
    struct h_resp r;
    double t0 = h_now();
    h_get(&svc, path, &r);
    CHECK_INT(r.status, 200);
    h_note("finished job: answered in %.3f s", h_now() - t0);
    h_resp_free(&r);

    /* running: answered when it ends */
    if (!CHECK(submit_slow(4, 10000000LL, id)))
        return;
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=60", id);
    struct h_req req = {.method = "GET", .path = path, .timeout_s = 90};
    t0 = h_now();
    h_request(&svc, &req, &r);
    double answered = real_now();
    CHECK_INT(r.status, 200);
    CHECK_STR(h_jstr(h_json(&r), "status"), "succeeded");
    double fin = parse_time(h_jstr(h_json(&r), "finished_at"));
    CHECK(fin > 0);
    h_note("waited %.3f s; answer %.1f ms after finished_at (latency, not asserted)",
           h_now() - t0, (answered - fin) * 1000.0);
    h_resp_free(&r);
}

static void test_etag(void)
{
    char id[32], path[96], hdr[128];
    if (!CHECK(submit_echo(id)))
        return;
    json_decref(h_wait_job(&svc, id, 30));
    struct h_resp r;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    h_get(&svc, path, &r);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", h_resp_header(&r, "ETag"));
    h_resp_free(&r);
    const char *hs[] = {hdr, NULL};
    /* nothing changes: 304 after the wait */
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=0.5", id);
    double t0 = h_now();
    h_get_hdr(&svc, path, hs, &r);
    CHECK_INT(r.status, 304);
    CHECK(h_resp_header(&r, "ETag") != NULL);
    h_note("unchanged job: 304 after %.3f s (wait=0.5)", h_now() - t0);
    h_resp_free(&r);

    /* a running job changes: 200 with another ETag, before the deadline */
    if (!CHECK(submit_slow(6, 20000000LL, id)))
        return;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    h_get(&svc, path, &r);
    char etag[96];
    snprintf(etag, sizeof etag, "%s", h_resp_header(&r, "ETag"));
    h_resp_free(&r);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=60", id);
    t0 = h_now();
    h_get_hdr(&svc, path, hs, &r);
    CHECK_INT(r.status, 200);
    const char *now_tag = h_resp_header(&r, "ETag");
    CHECKF(now_tag && strcmp(now_tag, etag) != 0, "ETag %s after %s", now_tag, etag);
    h_note("running job: its next change answered after %.3f s", h_now() - t0);
    h_resp_free(&r);
    json_decref(h_wait_job(&svc, id, 60));
}

static long long waiting_now(void)
{
    struct h_resp r;
    h_get(&svc, "/metrics", &r);
    long long n = -1;
    const char *p = r.body ? strstr(r.body, "\nbatchd_longpoll_waiting ") : NULL;
    if (p)
        n = atoll(p + strlen("\nbatchd_longpoll_waiting "));
    h_resp_free(&r);
    return n;
}

static void test_thousand_waiters(void)
{
    char id[32];
    /* long enough to outlast the set-up; cancelled to end it */
    if (!CHECK(submit_slow(400, 5000000LL, id)))
        return;
    pid_t api = h_service_api_pid(&svc);
    CHECK(api > 0);
    long rss0 = h_proc_status(api, "VmRSS"), thr0 = h_proc_status(api, "Threads");
    static int fds[WAITERS];
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /v1/jobs/%s?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n", id);
    int opened = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)svc.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < WAITERS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            send(fds[i], req, (size_t)n, MSG_NOSIGNAL) != n) {
            h_note("waiter %d: %s", i, strerror(errno));
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = -1;
            continue;
        }
        opened++;
    }
    CHECK_INT(opened, WAITERS);
    long long w = 0;
    for (int k = 0; k < 300 && (w = waiting_now()) < opened; k++)
        h_sleep_ms(100);
    CHECK_INT(w, opened);
    long rss1 = h_proc_status(api, "VmRSS"), thr1 = h_proc_status(api, "Threads");
    h_note("api process: RSS %ld KiB before, %ld KiB with %lld waiters (%.1f KiB each); "
           "threads %ld -> %ld",
           rss0, rss1, w, w > 0 ? (double)(rss1 - rss0) / (double)w : 0.0, thr0, thr1);

    /* the job ends (cancelled): every waiter is answered */
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    struct h_resp r;
    double t0 = h_now();
    h_delete(&svc, path, &r);
    CHECK_INT(r.status, 200);
    h_resp_free(&r);
    int answered = 0, final = 0;
    static char buf[8192];
    struct pollfd pfd[WAITERS];
    static size_t got[WAITERS];
    double last = t0;
    while (answered < opened && h_now() - t0 < 60) {
        int m = 0;
        for (int i = 0; i < WAITERS; i++)
            if (fds[i] >= 0)
                pfd[m++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, (nfds_t)m, 1000) <= 0)
            continue;
        for (int k = 0; k < m; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int i = 0;
            while (fds[i] != pfd[k].fd)
                i++;
            ssize_t len = recv(fds[i], buf, sizeof buf - 1, 0);
            if (len > 0) {
                buf[len] = '\0';
                if (got[i] == 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0)
                    final++;
                got[i] += (size_t)len;
                continue;
            }
            /* closed by the server (Connection: close): answered */
            close(fds[i]);
            fds[i] = -1;
            answered++;
            last = h_now();
        }
    }
    CHECK_INT(answered, opened);
    CHECK_INT(final, opened);
    h_note("%d waiters answered; the last %.3f s after the cancel", answered, last - t0);
    for (int i = 0; i < WAITERS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CHECK_INT(waiting_now(), 0);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"wait: bad values are 400", test_bad_values},
        {"wait: answered when the job finishes", test_answers_at_the_end},
        {"wait + If-None-Match: 304 when unchanged, 200 on change", test_etag},
        {"1,000 waiters at once", test_thousand_waiters},
    };
    const char *args[] = {"--workers", "2", "--model", "exp_sinh", "--model", "echo",
                          "--max-connections", "1200", NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 0, tests, sizeof tests / sizeof tests[0]);
}
