/*
 * Unit tests of service/supervisor/respawn.c: the supervisor's child
 * classification (from real wait statuses of forked children: exit codes
 * and signals) and its respawn policy (failures in a row, the stable age
 * that forgives them, the back-off's doubling and cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service/core/process.h"
#include "service/supervisor/respawn.h"

/* The wait status of a child that exits with `code`, or dies by `sig`. */
static int status_of(int code, int sig)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (sig) {
            signal(sig, SIG_DFL);
            raise(sig);
        }
        _exit(code);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_classify_worker(void **unused)
{
    (void)unused;
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(0, 0)), SUP_EXITED_ORDERLY);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(WORKER_EXIT_FATAL, 0)),
                     SUP_EXITED_FATAL);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(WORKER_EXIT_INIT, 0)),
                     SUP_EXITED_INIT);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(WORKER_EXIT_RECYCLE, 0)),
                     SUP_EXITED_RECYCLED);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(1, 0)), SUP_EXITED_CRASH);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(0, SIGKILL)), SUP_EXITED_CRASH);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(0, SIGTERM)), SUP_EXITED_CRASH);
    assert_int_equal(sup_classify(SUP_CHILD_WORKER, status_of(0, SIGABRT)), SUP_EXITED_CRASH);
}

static void test_classify_api(void **unused)
{
    (void)unused;
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(API_EXIT_OK, 0)), SUP_EXITED_ORDERLY);
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(API_EXIT_FATAL, 0)), SUP_EXITED_FATAL);
    /* an engine that could not start is worth a respawn, not a stop */
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(API_EXIT_FAILED, 0)), SUP_EXITED_CRASH);
    /* 3 means init() failed only for a worker */
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(3, 0)), SUP_EXITED_CRASH);
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(4, 0)), SUP_EXITED_CRASH);
    assert_int_equal(sup_classify(SUP_CHILD_API, status_of(0, SIGSEGV)), SUP_EXITED_CRASH);
    assert_string_equal(sup_exit_class_name(SUP_EXITED_FATAL), "fatal");
    assert_string_equal(sup_exit_class_name(SUP_EXITED_INIT), "init failed");
}

static void test_failures_in_a_row(void **unused)
{
    (void)unused;
    struct sup_child c = { .started_ms = 1000 };
    /* young failures add up */
    for (unsigned i = 1; i <= 4; i++) {
        sup_count_failure(&c, true, c.started_ms + 50);
        assert_int_equal(c.failures, i);
        c.started_ms += 200;
    }
    /* one that lived past SUP_STABLE_MS starts the count again */
    sup_count_failure(&c, true, c.started_ms + SUP_STABLE_MS + 1);
    assert_int_equal(c.failures, 1);
    /* a death that is no failure (a crash while serving) resets it */
    sup_count_failure(&c, true, c.started_ms + 1);
    assert_int_equal(c.failures, 2);
    sup_count_failure(&c, false, c.started_ms + 1);
    assert_int_equal(c.failures, 0);
    /* exactly SUP_STABLE_MS old is still young */
    c.failures = 3;
    sup_count_failure(&c, true, c.started_ms + SUP_STABLE_MS);
    assert_int_equal(c.failures, 4);
}

static void test_backoff(void **unused)
{
    (void)unused;
    struct sup_child c = { 0 };
    assert_int_equal(sup_backoff(&c), SUP_BACKOFF_MIN_MS);
    c.failures = 1;
    assert_int_equal(sup_backoff(&c), SUP_BACKOFF_MIN_MS);
    uint64_t prev = SUP_BACKOFF_MIN_MS;
    for (c.failures = 2; c.failures < 40; c.failures++) {
        uint64_t d = sup_backoff(&c);
        assert_true(d == 2 * prev || d == SUP_BACKOFF_MAX_MS);
        assert_true(d <= SUP_BACKOFF_MAX_MS);
        prev = d;
    }
    assert_int_equal(prev, SUP_BACKOFF_MAX_MS);
    c.failures = 4;
    assert_int_equal(sup_backoff(&c), 800);
    c.failures = ~0u; /* no overflow, however long it has failed */
    assert_int_equal(sup_backoff(&c), SUP_BACKOFF_MAX_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_worker),
        cmocka_unit_test(test_classify_api),
        cmocka_unit_test(test_failures_in_a_row),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests_name("respawn", tests, NULL, NULL);
}
