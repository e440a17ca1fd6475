/*
 * Unit tests for service/cmd/healthcheck.c, `batchd healthcheck`: the
 * probe against a real socket on 127.0.0.1 (a port the kernel picks),
 * served by a thread of this test that answers one connection with a
 * canned reply (or says nothing): 200 is healthy, another status
 * -EBADMSG, a reply that is not HTTP -EPROTO, silence -ETIMEDOUT (or
 * healthy with connect_only), a closed port -ECONNREFUSED, a host that is
 * not an IPv4 literal or port 0 -EINVAL; and healthcheck_main's exit
 * codes (0, 1, 1 for a bad configuration, 0 after --help).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "service/cmd/healthcheck.h"

struct server {
    int fd;
    uint16_t port;
    const char *reply; /* NULL: accept, read, say nothing until closed */
    char request[1024];
    pthread_t thread;
};

static void *serve_one(void *arg)
{
    struct server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t got = 0;
    /* the request head, up to its blank line */
    while (got < sizeof s->request - 1 && !strstr(s->request, "\r\n\r\n")) {
        ssize_t n = read(c, s->request + got, sizeof s->request - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        s->request[got] = '\0';
    }
    if (s->reply) {
        ssize_t w = write(c, s->reply, strlen(s->reply));
        (void)w;
    } else {
        char b[64];
        while (read(c, b, sizeof b) > 0) /* until the prober gives up */
            ;
    }
    close(c);
    return NULL;
}

static void server_start(struct server *s, const char *reply)
{
    memset(s, 0, sizeof *s);
    s->reply = reply;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve_one, s), 0);
}

static void server_stop(struct server *s)
{
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static void test_healthy(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}");
    char msg[256] = "";
    assert_int_equal(healthcheck_probe("127.0.0.1", s.port, false, 30000, msg, sizeof msg), 0);
    assert_true(msg[0] != '\0');
    server_stop(&s);
    assert_non_null(strstr(s.request, "GET /healthz HTTP/1."));
}

static void test_any_address_is_loopback(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, "HTTP/1.0 200 OK\r\n\r\n");
    char msg[256];
    assert_int_equal(healthcheck_probe("0.0.0.0", s.port, false, 30000, msg, sizeof msg), 0);
    server_stop(&s);
}

static void test_other_status(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    char msg[256] = "";
    assert_int_equal(healthcheck_probe("127.0.0.1", s.port, false, 30000, msg, sizeof msg),
                     -EBADMSG);
    assert_non_null(strstr(msg, "503"));
    server_stop(&s);
}

static void test_not_http(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, "SSH-2.0-OpenSSH_9.2\r\n");
    char msg[256];
    assert_int_equal(healthcheck_probe("127.0.0.1", s.port, false, 30000, msg, sizeof msg),
                     -EPROTO);
    server_stop(&s);
}

static void test_silence(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, NULL);
    char msg[256];
    assert_int_equal(healthcheck_probe("127.0.0.1", s.port, false, 200, msg, sizeof msg),
                     -ETIMEDOUT);
    server_stop(&s);
    /* with TLS the port accepting a connection is the whole check */
    server_start(&s, NULL);
    assert_int_equal(healthcheck_probe("127.0.0.1", s.port, true, 30000, msg, sizeof msg), 0);
    server_stop(&s);
}

static void test_refused_and_bad_targets(void **unused)
{
    (void)unused;
    /* a port that was just free: bound, then closed without listening */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    char msg[256];
    assert_int_equal(healthcheck_probe("127.0.0.1", ntohs(a.sin_port), false, 30000, msg,
                                       sizeof msg),
                     -ECONNREFUSED);
    assert_int_equal(healthcheck_probe("localhost.example", 80, false, 1000, msg, sizeof msg),
                     -EINVAL);
    assert_int_equal(healthcheck_probe("127.0.0.1", 0, false, 1000, msg, sizeof msg), -EINVAL);
}

/* The subcommand: the server's options, its exit codes. */
static void test_main(void **unused)
{
    (void)unused;
    struct server s;
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)s.port);
    char *ok[] = {"healthcheck", "--listen", listen, NULL};
    assert_int_equal(healthcheck_main(3, ok), 0);
    server_stop(&s);

    server_start(&s, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)s.port);
    char *sick[] = {"healthcheck", "--listen", listen, NULL};
    assert_int_equal(healthcheck_main(3, sick), 1);
    server_stop(&s);

    char *bad[] = {"healthcheck", "--listen", "nowhere", NULL};
    assert_int_equal(healthcheck_main(3, bad), 1);
    char *help[] = {"healthcheck", "--help", NULL};
    assert_int_equal(healthcheck_main(2, help), 0);
}

int main(void)
{
    unsetenv("BATCHD_LISTEN");
    unsetenv("BATCHD_CONFIG");
    unsetenv("BATCHD_TLS_CERT");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy),      cmocka_unit_test(test_any_address_is_loopback),
        cmocka_unit_test(test_other_status), cmocka_unit_test(test_not_http),
        cmocka_unit_test(test_silence),      cmocka_unit_test(test_refused_and_bad_targets),
        cmocka_unit_test(test_main),
    };
    return cmocka_run_group_tests_name("healthcheck", tests, NULL, NULL);
}
