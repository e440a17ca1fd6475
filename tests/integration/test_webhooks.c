/*
 * test_webhooks: completion webhooks (issue 18), against a real receiver.
 *
 * The receiver is a small HTTP server of this test on 127.0.0.1: a port
 * chosen free, and "down" (nothing listening) until the test brings it up.
 * Every delivery it takes is checked like a Standard Webhooks receiver
 * would: the webhook-signature is recomputed here with libcrypto's HMAC
 * (independently of batchd's code) over "id.timestamp.body" with the key
 * of the configured whsec_ secret, and the body is the event of the job.
 *
 *   - a receiver that is down at first, then up: the delivery is retried
 *     (attempts and last_error show on the job) and arrives, signed;
 *     a 500 answer is retried too; the job then shows "delivered";
 *   - a restart of batchd between the job's end and the delivery: the
 *     event is in the store, and the new api process delivers it;
 *   - 422 for a URL whose host:port is not in --webhook-hosts, for a URL
 *     that is not http(s), and when webhooks are off (no --webhook-hosts).
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* The Standard Webhooks specification's example secret. */
#define SECRET_B64 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET "whsec_" SECRET_B64

static struct h_service svc;
static bool svc_up;
static int recv_port;
static char hosts_arg[64], secret_env[128];
static const char *svc_args[16];
static const char *svc_env[4];

/* A free port on 127.0.0.1 (bound, then closed: the receiver is down). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Brings the receiver up on recv_port. Returns the listening socket or -1. */
static int receiver_up(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)recv_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        h_note("receiver cannot listen on %d: %s", recv_port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

struct delivery {
    char id[128], ts[32], sig[128], path[256];
    char *body;
    size_t len;
};

/* Value of header `name` in the head text (case-insensitive), into out. */
static void header(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t n = strlen(name);
    for (const char *p = head; (p = strchr(p, '\n')) != NULL;) {
        p++;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)l, v);
            return;
        }
    }
}

/* Accepts one request (bounded by timeout_ms), reads it whole, answers
 * `status`. Returns true with *d filled (d->body new). */
static bool receive(int lfd, int timeout_ms, int status, struct delivery *d)
{
    memset(d, 0, sizeof *d);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        return false;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[65536];
    size_t got = 0;
    char *end = NULL;
    while (!end && got < sizeof buf - 1) {
        ssize_t n = recv(c, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    bool ok = false;
    if (end) {
        *end = '\0';
        char cl[32];
        header(buf, "Content-Length", cl, sizeof cl);
        size_t want = (size_t)strtoul(cl, NULL, 10);
        size_t have = got - (size_t)(end + 4 - buf);
        d->body = malloc(want + 1);
        memcpy(d->body, end + 4, have < want ? have : want);
        while (have < want) {
            ssize_t n = recv(c, d->body + have, want - have, 0);
            if (n <= 0)
                break;
            have += (size_t)n;
        }
        d->len = have;
        d->body[have] = '\0';
        sscanf(buf, "POST %255s", d->path);
        header(buf, "webhook-id", d->id, sizeof d->id);
        header(buf, "webhook-timestamp", d->ts, sizeof d->ts);
        header(buf, "webhook-signature", d->sig, sizeof d->sig);
        ok = have == want;
    }
    char resp[128];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                     status);
    if (send(c, resp, (size_t)n, MSG_NOSIGNAL) < 0)
        ok = false;
    close(c);
    return ok;
}

/* The signature a Standard Webhooks receiver expects, computed here. */
static void expected_signature(const struct delivery *d, char *out, size_t cap)
{
    unsigned char key[64];
    int klen = EVP_DecodeBlock(key, (const unsigned char *)SECRET_B64, (int)strlen(SECRET_B64));
    size_t n = strlen(d->id) + strlen(d->ts) + d->len + 2;
    char *content = malloc(n + 1);
    snprintf(content, n + 1, "%s.%s.", d->id, d->ts);
    memcpy(content + strlen(d->id) + strlen(d->ts) + 2, d->body, d->len);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, klen, (unsigned char *)content, n, mac, &maclen);
    free(content);
    char b64[64];
    EVP_EncodeBlock((unsigned char *)b64, mac, (int)maclen);
    snprintf(out, cap, "v1,%s", b64);
}

/* Checks a delivery of job `id`'s completion: headers, signature, body. */
static void check_delivery(const struct delivery *d, const char *id, const char *type)
{
    char want_id[64], sig[128];
    snprintf(want_id, sizeof want_id, "evt_%s", id);
    CHECK_STR(d->id, want_id);
    CHECK_STR(d->path, "/hook");
    long long ts = strtoll(d->ts, NULL, 10);
    long long now = (long long)time(NULL);
    CHECKF(ts > now - 300 && ts <= now + 5, "webhook-timestamp %s is the attempt's time", d->ts);
    expected_signature(d, sig, sizeof sig);
    CHECKF(strcmp(d->sig, sig) == 0, "signature %s, computed here %s", d->sig, sig);
    json_t *ev = h_json_loads(d->body, d->len);
    CHECK_STR(h_jstr(ev, "type"), type);
    CHECK(h_is_timestamp(h_jstr(ev, "timestamp")));
    CHECK_STR(h_jstr(ev, "data/id"), id);
    CHECK(h_jstr(ev, "data/finished_at") != NULL);
    CHECK_STR(h_jstr(ev, "timestamp"), h_jstr(ev, "data/finished_at"));
    json_decref(ev);
}

static bool has_attempts(const json_t *job, void *arg)
{
    long long a = 0, want = *(int *)arg;
    return h_jint(job, "webhook/attempts", &a) && a >= want;
}

static bool delivered(const json_t *job, void *arg)
{
    (void)arg;
    const char *st = h_jstr(job, "webhook/state");
    return st && strcmp(st, "delivered") == 0;
}

static void start_with_hooks(void)
{
    recv_port = free_port();
    CHECK(recv_port > 0);
    snprintf(hosts_arg, sizeof hosts_arg, "127.0.0.1:%d", recv_port);
    snprintf(secret_env, sizeof secret_env, "BATCHD_WEBHOOK_SECRET=%s", SECRET);
    const char *args[] = {"--workers", "1", "--model", "echo", "--model", "square",
                          "--webhook-hosts", hosts_arg, NULL};
    memcpy(svc_args, args, sizeof args);
    svc_env[0] = secret_env;
    svc_env[1] = NULL;
    struct h_service_opts o = {.args = svc_args, .env = svc_env};
    svc_up = h_service_start(&svc, &o) == 0;
    CHECK(svc_up);
}

/* Submits a one-item job with a webhook to the receiver; id out. */
static bool submit_hooked(const char *model, const char *item, char *id)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"inputs\":[%s],\"webhook\":{\"url\":\"http://127.0.0.1:%d/hook\"}}",
             model, item, recv_port);
    return h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 10);
}

static void test_down_then_up(void)
{
    char id[32];
    if (!CHECK(submit_hooked("echo", "1", id)))
        return;
    json_t *job = h_wait_job(&svc, id, 30);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    /* down: two attempts fail, and the job says so */
    int two = 2;
    job = h_poll_job(&svc, id, 30, has_attempts, &two);
    if (!CHECK(job != NULL))
        return;
    CHECK_STR(h_jstr(job, "webhook/state"), "pending");
    CHECK(h_jstr(job, "webhook/last_error") != NULL);
    CHECK(h_is_timestamp(h_jstr(job, "webhook/next_attempt_at")));
    h_note("while down: %s", h_jstr(job, "webhook/last_error"));
    json_decref(job);

    /* up, but answering 500 first: that is retried too */
    int lfd = receiver_up();
    if (!CHECK(lfd >= 0))
        return;
    struct delivery d;
    double t0 = h_now();
    CHECK(receive(lfd, 30000, 500, &d));
    free(d.body);
    CHECK(receive(lfd, 30000, 204, &d));
    h_note("delivered %.1f s after the receiver came up", h_now() - t0);
    check_delivery(&d, id, "job.succeeded");
    free(d.body);
    close(lfd);
    job = h_poll_job(&svc, id, 10, delivered, NULL);
    if (CHECK(job != NULL)) {
        long long status = 0, attempts = 0;
        CHECK(h_jint(job, "webhook/last_status", &status) && status == 204);
        CHECK(h_jint(job, "webhook/attempts", &attempts) && attempts >= 4);
        CHECK(h_is_timestamp(h_jstr(job, "webhook/delivered_at")));
    }
    json_decref(job);
}

static void test_failed_job_event(void)
{
    /* a job with a failed item still succeeds; a cancelled one says so */
    char id[32];
    int lfd = receiver_up();
    if (!CHECK(lfd >= 0))
        return;
    if (CHECK(submit_hooked("square", "\"x\"", id))) {
        struct delivery d;
        CHECK(receive(lfd, 30000, 200, &d));
        check_delivery(&d, id, "job.succeeded");
        json_t *ev = h_json_loads(d.body, d.len);
        long long failed = 0;
        CHECK(h_jint(ev, "data/counts/failed", &failed) && failed == 1);
        json_decref(ev);
        free(d.body);
    }
    close(lfd);
}

static void test_restart_before_delivery(void)
{
    char id[32];
    if (!CHECK(submit_hooked("echo", "2", id)))
        return;
    json_t *job = h_wait_job(&svc, id, 30);
    json_decref(job);
    int one = 1;
    job = h_poll_job(&svc, id, 30, has_attempts, &one);
    CHECK(job != NULL);
    json_decref(job);
    /* the service goes down with the event undelivered */
    CHECK_INT(h_service_stop(&svc, 0), 0);
    int lfd = receiver_up();
    struct h_service_opts o = {.args = svc_args, .env = svc_env};
    svc_up = h_service_restart(&svc, &o) == 0;
    if (!CHECK(svc_up) || !CHECK(lfd >= 0)) {
        if (lfd >= 0)
            close(lfd);
        return;
    }
    struct delivery d;
    CHECK(receive(lfd, 30000, 200, &d));
    check_delivery(&d, id, "job.succeeded");
    free(d.body);
    close(lfd);
    job = h_poll_job(&svc, id, 10, delivered, NULL);
    CHECK(job != NULL);
    json_decref(job);
}

static void test_not_allowed(void)
{
    const char *bad[] = {
        "http://127.0.0.2:80/hook",  /* another host */
        "http://127.0.0.1:1/hook",   /* another port */
        "ftp://127.0.0.1/hook",      /* not http(s) */
        "http://user:pw@127.0.0.1/", /* credentials */
        "/relative",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"%s\"}}", bad[i]);
        struct h_resp r;
        h_post(&svc, "/v1/jobs", "application/json", body, &r);
        CHECK_PROBLEM(&r, 422, "invalid-job", "/v1/jobs");
        CHECK_STR(h_jstr(h_json(&r), "pointer"), "/webhook/url");
        h_resp_free(&r);
    }
    /* the same host and port in another spelling is the same host */
    char body[512], id[32];
    snprintf(body, sizeof body,
             "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"HTTP://127.0.0.1:%d/x?y=1\"}}",
             recv_port);
    CHECK(h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 10));
    /* a webhook that is not {"url": string} is a 422 too */
    struct h_resp r;
    h_post(&svc, "/v1/jobs", "application/json",
           "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"http://a/\",\"x\":1}}", &r);
    CHECK_PROBLEM(&r, 422, "invalid-job", "/v1/jobs");
    h_resp_free(&r);
}

static void test_off_by_default(void)
{
    struct h_service plain;
    const char *args[] = {"--workers", "1", "--model", "echo", NULL};
    struct h_service_opts o = {.args = args};
    if (!CHECK(h_service_start(&plain, &o) == 0)) {
        h_service_cleanup(&plain);
        return;
    }
    struct h_resp r;
    h_post(&plain, "/v1/jobs", "application/json",
           "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"http://127.0.0.1:9/\"}}", &r);
    CHECK_PROBLEM(&r, 422, "invalid-job", "/v1/jobs");
    CHECKF(strstr(h_jstr(h_json(&r), "detail"), "webhooks are off") != NULL, "%s",
           h_jstr(h_json(&r), "detail"));
    h_resp_free(&r);
    CHECK_INT(h_service_stop(&plain, 0), 0);
    h_service_cleanup(&plain);
}

static void stop(void)
{
    CHECK_INT(h_service_stop(&svc, 0), 0);
    svc_up = false;
}

int main(void)
{
    static const struct h_test tests[] = {
        {"receiver down, then 500, then up: retried, signed, delivered", test_down_then_up},
        {"the event of a job with a failed item", test_failed_job_event},
        {"a restart between the job's end and the delivery still delivers",
         test_restart_before_delivery},
        {"422: a webhook URL whose host:port is not allowed", test_not_allowed},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_one("start batchd with --webhook-hosts", start_with_hooks);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        if (svc_up)
            h_run_one("stop batchd (SIGTERM, exit 0)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    h_run_one("webhooks are off without --webhook-hosts (422)", test_off_by_default);
    return h_finish();
}
