/*
 * Unit tests for api/pump.c against a real libmicrohttpd daemon (epoll, a
 * pool of 2 threads, suspend/resume), on 127.0.0.1 and a kernel-chosen port:
 *   - a response whose reader has nothing yet is suspended and resumed by
 *     the pump when its waiter says so, and the client gets all of it;
 *   - while it waits, the daemon's threads still serve other requests
 *     (nothing blocks);
 *   - api_pump_stop() resumes a waiting connection (its reader then ends
 *     the response) and api_pump_wait() refuses afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/http/pump.h"

struct slow {
    struct api_pump *pump;
    struct api_waiter w;
    atomic_bool ready;    /* the test's "data arrived" */
    atomic_bool stopping; /* the test's "service stops" */
    int step;             /* 0: send "a", 1: wait, then send "b", 2: end */
    atomic_int waits;     /* how often the reader suspended */
};

static bool slow_poll(void *ctx, int timeout_ms)
{
    struct slow *s = ctx;
    if (timeout_ms > 0 && !atomic_load(&s->ready) && !atomic_load(&s->stopping))
        usleep(20000);
    return atomic_load(&s->ready) || atomic_load(&s->stopping);
}

static ssize_t slow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    (void)max;
    struct slow *s = cls;
    if (atomic_load(&s->stopping))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (s->step == 0) {
        s->step = 1;
        buf[0] = 'a';
        return 1;
    }
    if (s->step == 1) {
        if (!atomic_load(&s->ready)) {
            atomic_fetch_add(&s->waits, 1);
            return api_pump_wait(s->pump, &s->w) == 0 ? 0 : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        s->step = 2;
        buf[0] = 'b';
        return 1;
    }
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static struct slow slow;

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **req)
{
    (void)cls, (void)method, (void)version, (void)data, (void)size;
    if (!*req) {
        *req = conn;
        return MHD_YES;
    }
    struct MHD_Response *r;
    if (strcmp(url, "/slow") == 0) {
        slow.w.conn = conn;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, slow_read, &slow, NULL);
    } else {
        r = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    }
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads until the peer closes or 5 s pass; returns the bytes read. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < 100 && n + 1 < cap; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static struct MHD_Daemon *start_daemon(uint16_t *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_access, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(di);
    *port = di->port;
    return d;
}

static void test_resume(void **unused)
{
    (void)unused;
    memset(&slow, 0, sizeof slow);
    slow.pump = api_pump_start();
    assert_non_null(slow.pump);
    slow.w.poll = slow_poll;
    slow.w.ctx = &slow;
    uint16_t port;
    struct MHD_Daemon *d = start_daemon(&port);
    int fd = dial(port);
    const char *get = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_true(send(fd, get, strlen(get), 0) == (ssize_t)strlen(get));
    /* bounded wait for the reader to suspend */
    for (int i = 0; i < 200 && atomic_load(&slow.waits) == 0; i++)
        usleep(10000);
    assert_true(atomic_load(&slow.waits) >= 1);
    /* meanwhile the daemon serves others: nothing is blocked */
    for (int i = 0; i < 4; i++) {
        int o = dial(port);
        const char *q = "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert_true(send(o, q, strlen(q), 0) == (ssize_t)strlen(q));
        char buf[1024];
        read_all(o, buf, sizeof buf);
        assert_non_null(strstr(buf, "200 OK"));
        close(o);
    }
    atomic_store(&slow.ready, true);
    char buf[4096];
    read_all(fd, buf, sizeof buf);
    close(fd);
    /* chunked: "1\r\na\r\n1\r\nb\r\n0\r\n\r\n" */
    assert_non_null(strstr(buf, "\r\na\r\n"));
    assert_non_null(strstr(buf, "\r\nb\r\n"));
    assert_non_null(strstr(buf, "0\r\n\r\n"));
    api_pump_stop(slow.pump);
    MHD_stop_daemon(d);
    api_pump_free(slow.pump);
}

static void test_stop(void **unused)
{
    (void)unused;
    memset(&slow, 0, sizeof slow);
    slow.pump = api_pump_start();
    assert_non_null(slow.pump);
    slow.w.poll = slow_poll;
    slow.w.ctx = &slow;
    uint16_t port;
    struct MHD_Daemon *d = start_daemon(&port);
    int fd = dial(port);
    const char *get = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_true(send(fd, get, strlen(get), 0) == (ssize_t)strlen(get));
    for (int i = 0; i < 200 && atomic_load(&slow.waits) == 0; i++)
        usleep(10000);
    assert_true(atomic_load(&slow.waits) >= 1);
    /* the service stops: the flag first, then the pump resumes everyone */
    atomic_store(&slow.stopping, true);
    api_pump_stop(slow.pump);
    api_pump_stop(slow.pump); /* a second call does nothing */
    char buf[4096];
    read_all(fd, buf, sizeof buf);
    close(fd);
    assert_non_null(strstr(buf, "\r\na\r\n"));
    /* cut, not ended: no final chunk */
    assert_null(strstr(buf, "0\r\n\r\n"));
    /* no new wait after the stop */
    struct api_waiter w = {.conn = NULL, .poll = slow_poll, .ctx = &slow};
    assert_int_equal(api_pump_wait(slow.pump, &w), -ECANCELED);
    MHD_stop_daemon(d);
    api_pump_free(slow.pump);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests_name("api/pump", tests, NULL, NULL);
}
