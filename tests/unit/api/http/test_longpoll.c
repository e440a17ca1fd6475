/*
 * Unit tests of api/http/longpoll.c in its blocking mode (the mode used
 * while libmicrohttpd runs a thread per connection; the suspending mode
 * needs a daemon and is covered by tests/integration/test_longpoll.c):
 * a change notified after the mark ends the wait at once, no wake-up is
 * lost between the mark and the wait, the deadline ends it, shutdown ends
 * every wait and refuses new ones, and entries are freed with their last
 * watcher.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/http/longpoll.h"

#define JOB "aaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HOUR_NS 3600000000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_change_before_wait(void **unused)
{
    (void)unused;
    struct api_longpoll *lp = api_longpoll_create(false);
    assert_non_null(lp);
    struct api_longpoll_wait w = { 0 };
    assert_int_equal(api_longpoll_watch(lp, &w, JOB), 0);
    uint64_t mark = api_longpoll_mark(lp, &w);
    /* the job changes between the look and the wait: not lost */
    api_longpoll_notify(lp, JOB);
    /* another job's change is not this one's */
    api_longpoll_notify(lp, "bbbbbbbbbbbbbbbbbbbbbbbbbb");
    /* an hour's deadline: a lost wake-up would hang here (no timing is
     * asserted: the machine is shared) */
    assert_int_equal(api_longpoll_suspend(lp, &w, mark, NULL, mono_ns() + HOUR_NS), -EAGAIN);
    api_longpoll_unwatch(lp, &w);
    assert_null(w.entry);
    api_longpoll_destroy(lp);
}

static void test_deadline(void **unused)
{
    (void)unused;
    struct api_longpoll *lp = api_longpoll_create(false);
    struct api_longpoll_wait w = { 0 };
    assert_int_equal(api_longpoll_watch(lp, &w, JOB), 0);
    uint64_t mark = api_longpoll_mark(lp, &w);
    uint64_t deadline = mono_ns() + 50000000ull;
    assert_int_equal(api_longpoll_suspend(lp, &w, mark, NULL, deadline), -EAGAIN);
    assert_true(mono_ns() >= deadline);
    assert_int_equal(api_longpoll_waiting(lp), 0);
    api_longpoll_unwatch(lp, &w);
    api_longpoll_destroy(lp);
}

struct waiter_arg {
    struct api_longpoll *lp;
    int rc;
};

static void *waiter(void *p)
{
    struct waiter_arg *a = p;
    struct api_longpoll_wait w = { 0 };
    api_longpoll_watch(a->lp, &w, JOB);
    uint64_t mark = api_longpoll_mark(a->lp, &w);
    a->rc = api_longpoll_suspend(a->lp, &w, mark, NULL, mono_ns() + HOUR_NS);
    api_longpoll_unwatch(a->lp, &w);
    return NULL;
}

static void wait_for_waiters(struct api_longpoll *lp, unsigned n)
{
    for (int i = 0; i < 5000 && api_longpoll_waiting(lp) < n; i++)
        usleep(1000);
    assert_int_equal(api_longpoll_waiting(lp), n);
}

static void test_notify_wakes_every_waiter(void **unused)
{
    (void)unused;
    struct api_longpoll *lp = api_longpoll_create(false);
    pthread_t t[4];
    struct waiter_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct waiter_arg){ .lp = lp };
        pthread_create(&t[i], NULL, waiter, &a[i]);
    }
    wait_for_waiters(lp, 4);
    api_longpoll_notify(lp, JOB);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].rc, -EAGAIN); /* woken: the deadline is an hour away */
    }
    assert_int_equal(api_longpoll_waiting(lp), 0);
    api_longpoll_destroy(lp);
}

static void test_shutdown(void **unused)
{
    (void)unused;
    struct api_longpoll *lp = api_longpoll_create(false);
    pthread_t t;
    struct waiter_arg a = { .lp = lp };
    pthread_create(&t, NULL, waiter, &a);
    wait_for_waiters(lp, 1);
    api_longpoll_shutdown(lp);
    pthread_join(t, NULL); /* woken: the deadline is an hour away */
    assert_int_equal(a.rc, -EAGAIN);
    /* after shutdown a wait is refused at once */
    struct api_longpoll_wait w = { 0 };
    assert_int_equal(api_longpoll_watch(lp, &w, JOB), 0);
    assert_int_equal(api_longpoll_suspend(lp, &w, api_longpoll_mark(lp, &w), NULL,
                                          mono_ns() + HOUR_NS),
                     -ESHUTDOWN);
    api_longpoll_unwatch(lp, &w);
    api_longpoll_destroy(lp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_before_wait),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_notify_wakes_every_waiter),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests_name("longpoll", tests, NULL, NULL);
}
