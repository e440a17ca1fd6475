/*
 * Unit tests of service/listener.c: the supervisor's listening socket.
 *
 * Binds port 0 on the loopback and reads the real port back, as the
 * integration tests do; checks that the descriptor is what listener.h
 * promises (listening, close-on-exec, SO_REUSEADDR, reachable by connect),
 * and each failure: a host that is not an address (-EINVAL), a port in use
 * (-EADDRINUSE), both with a one-line reason. IPv6 needs a ::1 on this
 * machine; without one those tests say so and are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "service/core/listener.h"

#define POLL_MS 10000 /* generous: only a broken socket takes this long */

/* Opens host:port and fails the test with the module's reason on error. */
static int open_ok(const char *host, uint16_t port)
{
    char err[256] = "";
    int fd = listener_open(host, port, err, sizeof err);
    if (fd < 0)
        fail_msg("listener_open(%s, %u): %d %s", host, (unsigned)port, fd, err);
    return fd;
}

/* Connects a client to addr:port (blocking: the kernel completes a
 * loopback connect from the backlog, nobody needs to accept). Returns the
 * client descriptor. */
static int connect_to(int family, const char *addr, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, addr, &in4->sin_addr), 1);
        len = sizeof *in4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        len = sizeof *in6;
    }
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    if (connect(c, (struct sockaddr *)&ss, len) != 0)
        fail_msg("connect to %s port %u: %s", addr, (unsigned)port, strerror(errno));
    return c;
}

/* Accepts one connection from the listener (bounded wait) and checks that
 * bytes flow from the client to it. Closes both ends. */
static void accept_and_talk(int lfd, int client)
{
    struct pollfd pfd = { lfd, POLLIN, 0 };
    assert_int_equal(poll(&pfd, 1, POLL_MS), 1);
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    assert_int_equal(write(client, "ping", 4), 4);
    pfd.fd = s;
    assert_int_equal(poll(&pfd, 1, POLL_MS), 1);
    char buf[8];
    assert_int_equal(read(s, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    close(s);
    close(client);
}

/* The properties listener.h promises of every descriptor it returns. */
static void check_listening_socket(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    assert_true(flags >= 0);
    assert_true(flags & FD_CLOEXEC);
    int v = 0;
    socklen_t vl = sizeof v;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
    assert_true(v);
    v = 0;
    vl = sizeof v;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl), 0);
    assert_true(v);
    vl = sizeof v;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl), 0);
    assert_int_equal(v, SOCK_STREAM);
}

/* True when this machine can bind ::1 (a container may have no IPv6). */
static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void skip_without_ipv6(void)
{
    if (!have_ipv6_loopback()) {
        printf("[  NOTE    ] no IPv6 loopback (::1) on this machine: IPv6 listener test "
               "SKIPPED\n");
        fflush(stdout);
        skip();
    }
}

/* ---- IPv4 ----------------------------------------------------------------- */

static void test_port_zero_gets_a_real_port(void **unused)
{
    (void)unused;
    int fd = open_ok("127.0.0.1", 0);
    check_listening_socket(fd);
    uint16_t port = listener_port(fd);
    assert_true(port != 0);
    assert_false(listener_is_ipv6(fd));
    accept_and_talk(fd, connect_to(AF_INET, "127.0.0.1", port));
    /* Two listeners on port 0 get two ports. */
    int fd2 = open_ok("127.0.0.1", 0);
    assert_true(listener_port(fd2) != 0);
    assert_true(listener_port(fd2) != port);
    close(fd2);
    close(fd);
}

static void test_localhost(void **unused)
{
    (void)unused;
    int fd = open_ok("localhost", 0);
    check_listening_socket(fd);
    uint16_t port = listener_port(fd);
    assert_true(port != 0);
    assert_false(listener_is_ipv6(fd));
    accept_and_talk(fd, connect_to(AF_INET, "127.0.0.1", port));
    close(fd);
}

static void test_port_in_use(void **unused)
{
    (void)unused;
    int fd = open_ok("127.0.0.1", 0);
    uint16_t port = listener_port(fd);
    char err[256] = "";
    assert_int_equal(listener_open("127.0.0.1", port, err, sizeof err), -EADDRINUSE);
    /* One line that names the address and the reason. */
    char want_port[16];
    snprintf(want_port, sizeof want_port, ":%u", (unsigned)port);
    if (!strstr(err, "127.0.0.1") || !strstr(err, want_port) ||
        !strstr(err, strerror(EADDRINUSE)) || strchr(err, '\n'))
        fail_msg("unexpected message: '%s'", err);
    /* Also through the other spelling of the same address. */
    err[0] = '\0';
    assert_int_equal(listener_open("localhost", port, err, sizeof err), -EADDRINUSE);
    assert_true(err[0] != '\0');
    /* The first listener is unharmed. */
    accept_and_talk(fd, connect_to(AF_INET, "127.0.0.1", port));
    close(fd);
}

/* A port that was just used (and left a connection in TIME_WAIT, as a
 * restarted service does) can be listened on again at once. */
static void test_reopen_same_port(void **unused)
{
    (void)unused;
    int fd = open_ok("127.0.0.1", 0);
    uint16_t port = listener_port(fd);
    int client = connect_to(AF_INET, "127.0.0.1", port);
    struct pollfd pfd = { fd, POLLIN, 0 };
    assert_int_equal(poll(&pfd, 1, POLL_MS), 1);
    int s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    close(s); /* the server side closes first: its end goes to TIME_WAIT */
    close(client);
    close(fd);

    int again = open_ok("127.0.0.1", port);
    assert_int_equal(listener_port(again), port);
    accept_and_talk(again, connect_to(AF_INET, "127.0.0.1", port));
    close(again);
}

static void test_bad_hosts(void **unused)
{
    (void)unused;
    static const char *const hosts[] = {
        "example.com", "not an address", "256.0.0.1", "127.0.0.1:80", "::1]", "[::1",
        "[127.0.0.1]", "[]", "localhost.", "LOCALHOST ", "1.2.3.4.5", "[[::1]]",
    };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        char err[256] = "";
        int rc = listener_open(hosts[i], 0, err, sizeof err);
        if (rc != -EINVAL)
            fail_msg("host '%s': %d, want -EINVAL", hosts[i], rc);
        if (!strstr(err, hosts[i]) || strchr(err, '\n'))
            fail_msg("host '%s': message '%s' does not name it", hosts[i], err);
    }
    /* A short buffer gets a cut, terminated message. */
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(listener_open("bogus", 0, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* An address this machine does not have is a bind error, not -EINVAL. */
static void test_address_not_here(void **unused)
{
    (void)unused;
    /* With net.ipv4.ip_nonlocal_bind set, the kernel lets any address be
     * bound; there is no error to see then. */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_nonlocal_bind", "r");
    int nonlocal = 0;
    if (f) {
        if (fscanf(f, "%d", &nonlocal) != 1)
            nonlocal = 0;
        fclose(f);
    }
    if (nonlocal) {
        printf("[  NOTE    ] net.ipv4.ip_nonlocal_bind is set on this machine: "
               "test_address_not_here SKIPPED\n");
        fflush(stdout);
        skip();
    }
    char err[256] = "";
    /* 192.0.2.0/24 is TEST-NET-1: documentation only, never assigned. */
    int rc = listener_open("192.0.2.1", 0, err, sizeof err);
    assert_int_equal(rc, -EADDRNOTAVAIL);
    assert_non_null(strstr(err, "192.0.2.1"));
}

static void test_port_of_a_non_socket(void **unused)
{
    (void)unused;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(listener_port(p[0]), 0);
    assert_false(listener_is_ipv6(p[0]));
    close(p[0]);
    close(p[1]);
    assert_int_equal(listener_port(-1), 0);
    assert_false(listener_is_ipv6(-1));
}

/* ---- IPv6 ----------------------------------------------------------------- */

static void test_ipv6_loopback(void **unused)
{
    (void)unused;
    skip_without_ipv6();
    static const char *const spellings[] = { "[::1]", "::1", "[0:0:0:0:0:0:0:1]" };
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        int fd = open_ok(spellings[i], 0);
        check_listening_socket(fd);
        assert_true(listener_is_ipv6(fd));
        uint16_t port = listener_port(fd);
        assert_true(port != 0);
        accept_and_talk(fd, connect_to(AF_INET6, "::1", port));
        close(fd);
    }
}

/* The port of a [::1] listener is refused to a second IPv6 open (in the
 * other spelling) with the same error as for IPv4. */
static void test_ipv6_port_in_use(void **unused)
{
    (void)unused;
    skip_without_ipv6();
    int fd6 = open_ok("[::1]", 0);
    uint16_t port = listener_port(fd6);
    char err[256] = "";
    assert_int_equal(listener_open("::1", port, err, sizeof err), -EADDRINUSE);
    assert_non_null(strstr(err, strerror(EADDRINUSE)));
    assert_non_null(strstr(err, "::1"));
    close(fd6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_zero_gets_a_real_port),
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_reopen_same_port),
        cmocka_unit_test(test_bad_hosts),
        cmocka_unit_test(test_address_not_here),
        cmocka_unit_test(test_port_of_a_non_socket),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_ipv6_port_in_use),
    };
    return cmocka_run_group_tests_name("listener", tests, NULL, NULL);
}
