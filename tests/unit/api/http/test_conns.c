/*
 * Unit tests for api/conns.c: the verdicts (pure), and the table on real
 * sockets (socketpairs): a sweep shuts down the connections past their
 * deadline and only those, and the ceiling evicts the oldest connection
 * still in HEAD. The server's use of it runs in
 * tests/integration/test_connections.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/http/conns.h"

static const struct api_conns_limits LIM = {
    .ceiling = 3, .header_timeout_ms = 1000, .min_body_rate = 100};

static void test_judge_head(void **unused)
{
    (void)unused;
    assert_int_equal(api_conn_judge(&LIM, API_CONN_HEAD, 5000, 0, 5000), API_CONN_KEEP);
    assert_int_equal(api_conn_judge(&LIM, API_CONN_HEAD, 5000, 0, 6000), API_CONN_KEEP);
    assert_int_equal(api_conn_judge(&LIM, API_CONN_HEAD, 5000, 0, 6001), API_CONN_HEAD_LATE);
    /* bytes do not matter in HEAD: trickling cannot buy time */
    assert_int_equal(api_conn_judge(&LIM, API_CONN_HEAD, 5000, 1u << 30, 9000),
                     API_CONN_HEAD_LATE);
    /* a clock that went backwards is no time at all */
    assert_int_equal(api_conn_judge(&LIM, API_CONN_HEAD, 5000, 0, 10), API_CONN_KEEP);
}

static void test_judge_body(void **unused)
{
    (void)unused;
    /* within the grace (the header timeout), nothing is owed */
    assert_int_equal(api_conn_judge(&LIM, API_CONN_BODY, 0, 0, 1000), API_CONN_KEEP);
    /* 2 s after the grace: 200 bytes owed at 100 bytes/s */
    assert_int_equal(api_conn_judge(&LIM, API_CONN_BODY, 0, 199, 3000), API_CONN_BODY_SLOW);
    assert_int_equal(api_conn_judge(&LIM, API_CONN_BODY, 0, 200, 3000), API_CONN_KEEP);
    /* rate 0: no minimum */
    struct api_conns_limits off = LIM;
    off.min_body_rate = 0;
    assert_int_equal(api_conn_judge(&off, API_CONN_BODY, 0, 0, 1000000), API_CONN_KEEP);
    /* the answer is the client's pace */
    assert_int_equal(api_conn_judge(&LIM, API_CONN_ANSWER, 0, 0, 1000000), API_CONN_KEEP);
}

/* True when our end of the pair sees the other end shut down. */
static bool was_shut(int peer)
{
    char c;
    ssize_t n = recv(peer, &c, 1, MSG_DONTWAIT);
    return n == 0;
}

struct pair {
    int fd[2];
};

static void pair_open(struct pair *p)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
}

static void pair_close(struct pair *p)
{
    close(p->fd[0]);
    close(p->fd[1]);
}

static void test_sweep(void **unused)
{
    (void)unused;
    struct api_conns *t = api_conns_create(&LIM);
    assert_non_null(t);
    struct pair a, b, c;
    pair_open(&a);
    pair_open(&b);
    pair_open(&c);
    struct api_conn *ca = api_conn_opened(t, a.fd[0]);
    struct api_conn *cb = api_conn_opened(t, b.fd[0]);
    struct api_conn *cc = api_conn_opened(t, c.fd[0]);
    assert_non_null(ca);
    assert_non_null(cb);
    assert_non_null(cc);
    uint64_t now = api_conns_now_ms();
    api_conn_phase(t, cb, API_CONN_BODY);   /* b sends a body, fast enough */
    api_conn_body(t, cb, 1u << 20);
    api_conn_phase(t, cc, API_CONN_ANSWER); /* c is being answered */
    assert_int_equal(api_conns_sweep(t, now), 0);
    /* 1.5 s on: a's head is late; b has paid; c is the client's */
    assert_int_equal(api_conns_sweep(t, now + 1500), 1);
    assert_true(was_shut(a.fd[1]));
    assert_false(was_shut(b.fd[1]));
    assert_false(was_shut(c.fd[1]));
    /* judged once: a is not counted again */
    assert_int_equal(api_conns_sweep(t, now + 1600), 0);
    /* a request completed: c waits for its next head, on a new clock */
    api_conn_phase(t, cc, API_CONN_HEAD);
    assert_int_equal(api_conns_sweep(t, api_conns_now_ms() + 500), 0);
    assert_int_equal(api_conns_sweep(t, api_conns_now_ms() + 1500), 1);
    assert_true(was_shut(c.fd[1]));
    struct api_conns_stats st;
    api_conns_stats(t, &st);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.head_late, 2);
    assert_int_equal(st.body_slow, 0);
    api_conn_closed(t, ca);
    api_conn_closed(t, cb);
    api_conn_closed(t, cc);
    api_conns_stats(t, &st);
    assert_int_equal(st.open, 0);
    api_conns_destroy(t);
    pair_close(&a);
    pair_close(&b);
    pair_close(&c);
}

static void test_ceiling(void **unused)
{
    (void)unused;
    struct api_conns *t = api_conns_create(&LIM); /* ceiling 3 */
    assert_non_null(t);
    struct pair p[5];
    struct api_conn *c[5];
    for (int i = 0; i < 5; i++)
        pair_open(&p[i]);
    for (int i = 0; i < 3; i++)
        c[i] = api_conn_opened(t, p[i].fd[0]);
    /* the oldest has sent its head: it is kept; the next one in HEAD goes */
    api_conn_phase(t, c[0], API_CONN_ANSWER);
    c[3] = api_conn_opened(t, p[3].fd[0]);
    assert_false(was_shut(p[0].fd[1]));
    assert_true(was_shut(p[1].fd[1]));
    assert_false(was_shut(p[2].fd[1]));
    assert_false(was_shut(p[3].fd[1]));
    /* the evicted one still counts until closed, but not against the ceiling */
    c[4] = api_conn_opened(t, p[4].fd[0]);
    assert_true(was_shut(p[2].fd[1]));
    assert_false(was_shut(p[4].fd[1]));
    struct api_conns_stats st;
    api_conns_stats(t, &st);
    assert_int_equal(st.evicted, 2);
    assert_int_equal(st.open, 5);
    assert_int_equal(st.peak, 5);
    for (int i = 0; i < 5; i++)
        api_conn_closed(t, c[i]);
    /* nothing in HEAD: nothing is evicted (libmicrohttpd's limit refuses) */
    for (int i = 0; i < 4; i++) {
        c[i] = api_conn_opened(t, p[i].fd[0]);
        api_conn_phase(t, c[i], API_CONN_ANSWER);
    }
    api_conns_stats(t, &st);
    assert_int_equal(st.evicted, 2);
    assert_int_equal(st.open, 4);
    for (int i = 0; i < 4; i++)
        api_conn_closed(t, c[i]);
    api_conns_destroy(t);
    for (int i = 0; i < 5; i++)
        pair_close(&p[i]);
}

static void test_thread(void **unused)
{
    (void)unused;
    /* the sweep thread closes a late head by itself */
    struct api_conns_limits lim = {.ceiling = 10, .header_timeout_ms = 100, .min_body_rate = 0};
    struct api_conns *t = api_conns_create(&lim);
    assert_non_null(t);
    assert_int_equal(api_conns_start(t), 0);
    struct pair a;
    pair_open(&a);
    struct api_conn *ca = api_conn_opened(t, a.fd[0]);
    bool shut = false;
    for (int i = 0; i < 100 && !shut; i++) { /* bounded: 5 s */
        usleep(50000);
        shut = was_shut(a.fd[1]);
    }
    assert_true(shut);
    api_conn_closed(t, ca);
    api_conns_destroy(t);
    pair_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge_head), cmocka_unit_test(test_judge_body),
        cmocka_unit_test(test_sweep),      cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_thread),
    };
    return cmocka_run_group_tests_name("api/conns", tests, NULL, NULL);
}
