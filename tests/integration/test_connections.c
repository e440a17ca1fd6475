/*
 * Integration tests of the connection limits (api/conns.h, issue 13 item 4):
 *
 *   - 300 connections trickling their request heads, one header byte each
 *     per second for 20 s, from the same address: all are held, and
 *     /healthz and job submissions on other connections answer every time
 *     (the count and the worst latency are printed, not asserted);
 *   - a head trickled faster than the idle timeout is still closed at
 *     --header-timeout (the time it took is printed);
 *   - at --max-connections, new connections are served by closing the
 *     oldest connections that have not sent their head;
 *   - a body slower than --min-body-rate is closed;
 *   - a --max-connections that does not fit the open-file limit stops the
 *     start with a message that says what to change.
 *
 * Every loop is bounded in count and time; no assertion is about time.
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define TRICKLERS 300
#define TRICKLE_SECONDS 20

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A new TCP connection to the service, or -1. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* True when the server closed (or reset) the connection; never waits. */
static bool closed_by_server(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Opens n connections that have sent a request line and a Host and stop
 * there (heads in progress). Returns how many opened. */
static int open_tricklers(int port, int *fds, int n)
{
    int opened = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = dial(port);
        if (fds[i] < 0)
            continue;
        if (!send_all(fds[i], "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")) {
            close(fds[i]);
            fds[i] = -1;
            continue;
        }
        opened++;
    }
    return opened;
}

static int count_open(const int *fds, int n)
{
    int open = 0;
    for (int i = 0; i < n; i++)
        open += fds[i] >= 0 && !closed_by_server(fds[i]);
    return open;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* h_request on a new connection (a probe's, or a new client's): the
 * service's kept-alive handle is set aside meanwhile. */
static void fresh_request(struct h_service *s, const struct h_req *q, struct h_resp *r)
{
    void *keep = s->curl;
    s->curl = NULL;
    h_request(s, q, r);
    if (s->curl)
        curl_easy_cleanup(s->curl);
    s->curl = keep;
}

/* One GET /healthz on a connection of its own: its status; *secs the time. */
static long healthz(struct h_service *s, double *secs)
{
    struct h_req q = {.method = "GET", .path = "/healthz", .timeout_s = 15};
    struct h_resp r;
    double t0 = now_s();
    /* a fresh connection each time, like a probe */
    fresh_request(s, &q, &r);
    *secs = now_s() - t0;
    long st = r.status;
    if (st != 200)
        h_note("healthz: %ld %s", st, r.error);
    h_resp_free(&r);
    return st;
}

static long submit(struct h_service *s)
{
    struct h_req q = {.method = "POST",
                      .path = "/v1/jobs",
                      .headers = (const char *const[]){"Content-Type: application/json", NULL},
                      .body = "{\"model\":\"square\",\"inputs\":[1,2,3]}",
                      .timeout_s = 15};
    q.body_len = strlen(q.body);
    struct h_resp r;
    fresh_request(s, &q, &r);
    long st = r.status;
    if (st != 202)
        h_note("submit: %ld %s", st, r.error);
    h_resp_free(&r);
    return st;
}

static bool start(struct h_service *s, const char *const *args)
{
    struct h_service_opts o = {.args = args};
    if (h_service_start(s, &o) != 0) {
        h_service_cleanup(s);
        return false;
    }
    return true;
}

static void test_tricklers(void)
{
    /* a head deadline past the attack, so that the test shows the
     * connections are held, not cut */
    static const char *const args[] = {"--workers", "1", "--model", "square", "--header-timeout",
                                       "60", NULL};
    struct h_service s;
    if (!start(&s, args))
        return;
    static int fds[TRICKLERS];
    int opened = open_tricklers(s.port, fds, TRICKLERS);
    CHECK_INT(opened, TRICKLERS);
    int probes = 0, probes_ok = 0, jobs = 0, jobs_ok = 0;
    double worst = 0, t0 = now_s(), next_byte = t0;
    /* bounded: TRICKLE_SECONDS, and a probe count cap */
    while (now_s() - t0 < TRICKLE_SECONDS && probes < 400) {
        if (now_s() >= next_byte) {
            /* one byte of a header line per connection per second */
            for (int i = 0; i < TRICKLERS; i++)
                if (fds[i] >= 0 && send(fds[i], "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
                    close(fds[i]);
                    fds[i] = -1;
                }
            next_byte += 1.0;
        }
        double secs;
        probes++;
        probes_ok += healthz(&s, &secs) == 200;
        if (secs > worst)
            worst = secs;
        if (probes % 4 == 0) {
            jobs++;
            jobs_ok += submit(&s) == 202;
        }
        usleep(200000);
    }
    int held = count_open(fds, TRICKLERS);
    printf("    %d trickling connections for %d s: %d still held at the end; /healthz "
           "answered %d of %d (worst %.3f s); jobs accepted %d of %d\n",
           opened, TRICKLE_SECONDS, held, probes_ok, probes, worst, jobs_ok, jobs);
    CHECK_INT(probes_ok, probes);
    CHECK_INT(jobs_ok, jobs);
    CHECK_INT(held, TRICKLERS);
    close_all(fds, TRICKLERS);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static void test_header_deadline(void)
{
    /* bytes every 200 ms: far inside the 30 s idle timeout */
    static const char *const args[] = {"--workers", "1", "--model", "square", "--header-timeout",
                                       "2", NULL};
    struct h_service s;
    if (!start(&s, args))
        return;
    int fd = dial(s.port);
    CHECK(fd >= 0);
    bool closed = false;
    double t0 = now_s();
    if (fd >= 0 && send_all(fd, "GET /healthz HTTP/1.1\r\n")) {
        for (int i = 0; i < 75 && !closed; i++) { /* bounded: 15 s */
            usleep(200000);
            closed = closed_by_server(fd) || !send_all(fd, "X");
        }
    }
    printf("    a head trickled every 200 ms was closed after %.1f s (--header-timeout 2)\n",
           now_s() - t0);
    CHECKF(closed, "the trickled head was still open after 15 s");
    if (fd >= 0)
        close(fd);
    /* a normal request on a new connection is unaffected */
    double secs;
    CHECK_INT(healthz(&s, &secs), 200);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

#define CEILING 50
#define OVER 150

static void test_ceiling(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", "--header-timeout",
                                       "60", "--max-connections", "50", NULL};
    struct h_service s;
    if (!start(&s, args))
        return;
    static int fds[OVER];
    int opened = open_tricklers(s.port, fds, OVER);
    int ok = 0, tries = 20;
    double worst = 0;
    for (int i = 0; i < tries; i++) {
        double secs;
        ok += healthz(&s, &secs) == 200;
        if (secs > worst)
            worst = secs;
    }
    usleep(500000); /* let the evicted connections' ends arrive */
    int held = count_open(fds, OVER);
    printf("    %d heads in progress at --max-connections %d: %d held, %d closed to make room; "
           "/healthz answered %d of %d (worst %.3f s)\n",
           opened, CEILING, held, opened - held, ok, tries, worst);
    CHECK_INT(ok, tries);
    CHECKF(held <= CEILING, "%d connections held past the ceiling of %d", held, CEILING);
    CHECKF(held > 0, "every connection was closed");
    close_all(fds, OVER);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static void test_slow_body(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "square", "--header-timeout",
                                       "1", "--min-body-rate", "1000", NULL};
    struct h_service s;
    if (!start(&s, args))
        return;
    int fd = dial(s.port);
    CHECK(fd >= 0);
    bool closed = false;
    double t0 = now_s();
    if (fd >= 0 && send_all(fd, "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                "application/json\r\nContent-Length: 100000\r\n\r\n[")) {
        for (int i = 0; i < 75 && !closed; i++) { /* bounded: 15 s, 50 bytes/s */
            usleep(200000);
            closed = closed_by_server(fd) || !send_all(fd, "1,2,3,4,5,");
        }
    }
    printf("    a body at 50 bytes/s (--min-body-rate 1000) was closed after %.1f s\n",
           now_s() - t0);
    CHECKF(closed, "the slow body was still open after 15 s");
    if (fd >= 0)
        close(fd);
    CHECK_INT(submit(&s), 202);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

static void test_fd_limit(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    const char *bin = getenv("BATCHD_BIN");
    const char *argv[] = {bin, "--max-connections", "1000000", "--listen", "127.0.0.1:0",
                          "--data-dir", h_tmpdir(), NULL};
    struct h_run_result r;
    if (CHECK(bin != NULL && h_run(argv, NULL, 20, &r) == 0)) {
        CHECK_INT(r.exit_code, 2);
        CHECKF(r.err && strstr(r.err, "--max-connections 1000000 needs"),
               "start-up error: %s", r.err ? r.err : "(none)");
        CHECKF(r.err && strstr(r.err, "ulimit -Hn"), "the error says what to change: %s",
               r.err ? r.err : "(none)");
        h_run_result_free(&r);
    }
}

int main(void)
{
    static const struct h_test tests[] = {
        {"300 trickling heads for 20 s: /healthz and submissions answer every time",
         test_tricklers},
        {"a trickled head is closed at --header-timeout, bytes or not", test_header_deadline},
        {"at --max-connections the oldest unfinished heads make room", test_ceiling},
        {"a body below --min-body-rate is closed", test_slow_body},
        {"--max-connections past the open-file limit: a clear start-up error", test_fd_limit},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
