/*
 * Unit tests of service/core/process.c and the contracts process.h names:
 * the wait-status words (the supervisor's log lines and a job's "worker
 * died: ..." error both come from them), the shutdown timeline's order for
 * any grace period, the exit codes' fatal rule, and the child set-up (in
 * real forked children: the name, and the exit when the parent is not the
 * one expected).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service/core/process.h"

/* Runs fn in a forked child and returns its wait status. */
static int in_child(void (*fn)(void))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void exit_three(void) { _exit(3); }
static void die_by_segv(void) { raise(SIGSEGV); }

static void test_describe_status(void **unused)
{
    (void)unused;
    char buf[64];
    proc_describe_status(in_child(exit_three), buf, sizeof buf);
    assert_string_equal(buf, "exit code 3");
    signal(SIGSEGV, SIG_DFL);
    proc_describe_status(in_child(die_by_segv), buf, sizeof buf);
    assert_true(strncmp(buf, "signal 11 (SIGSEGV)", 19) == 0);
    /* a status that is neither (stopped, as waitpid(WUNTRACED) reports) */
    proc_describe_status(0x137f, buf, sizeof buf);
    assert_string_equal(buf, "status 0x137f");
    /* truncation keeps the buffer a string */
    char small[8];
    proc_describe_status(in_child(exit_three), small, sizeof small);
    assert_string_equal(small, "exit co");
}

static void test_timeline_order(void **unused)
{
    (void)unused;
    /* drain budget < api deadline < kill time <= grace, for every grace
     * the settings allow (down to 0) */
    const uint64_t graces[] = {0, 1, 150, 199, 200, 201, 999, 1000, 1001, 1499, 1500, 1501,
                               2000, 10000, 3600000};
    for (size_t i = 0; i < sizeof graces / sizeof graces[0]; i++) {
        uint64_t g = graces[i];
        uint64_t d = shutdown_drain_budget_ms(g), a = shutdown_api_deadline_ms(g),
                 k = shutdown_kill_ms(g);
        if (!(d <= a && a <= k && k <= g))
            fail_msg("grace %llu ms: drain %llu, api deadline %llu, kill %llu out of order",
                     (unsigned long long)g, (unsigned long long)d, (unsigned long long)a,
                     (unsigned long long)k);
        if (g >= 2000 && !(d < a && a < k))
            fail_msg("grace %llu ms: the steps are not strictly apart", (unsigned long long)g);
    }
    /* the default --grace of 10 s, as docs/architecture.md tells it */
    assert_int_equal(shutdown_drain_budget_ms(10000), 8500);
    assert_int_equal(shutdown_api_deadline_ms(10000), 9000);
    assert_int_equal(shutdown_kill_ms(10000), 9800);
}

static void test_exit_codes(void **unused)
{
    (void)unused;
    /* 2 is fatal for every process (nginx's rule), and nothing else is */
    assert_int_equal(SUP_EXIT_FATAL, 2);
    assert_int_equal(API_EXIT_FATAL, 2);
    assert_int_equal(WORKER_EXIT_FATAL, 2);
    assert_int_not_equal(API_EXIT_FAILED, PROC_EXIT_FATAL);
    assert_int_not_equal(WORKER_EXIT_INIT, PROC_EXIT_FATAL);
    assert_int_not_equal(API_EXIT_OK, API_EXIT_FAILED);
}

static pid_t expected_parent;

static void setup_and_report_name(void)
{
    proc_child_setup("batchd-test", expected_parent);
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f || !fgets(comm, sizeof comm, f))
        _exit(10);
    fclose(f);
    _exit(strcmp(comm, "batchd-test\n") == 0 ? 0 : 11);
}

static void test_child_setup(void **unused)
{
    (void)unused;
    expected_parent = getpid();
    int status = in_child(setup_and_report_name);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* a parent that is not ours: the child must not go on */
    expected_parent = 1;
    status = in_child(setup_and_report_name);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), PROC_EXIT_FATAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_status),
        cmocka_unit_test(test_timeline_order),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_child_setup),
    };
    return cmocka_run_group_tests_name("process", tests, NULL, NULL);
}
