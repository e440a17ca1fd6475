/*
 * Unit tests for service/supervisor/supervisor.c: sup_run() for real in a
 * forked child of the test (it blocks its signals and waits in
 * sigtimedwait, forks a worker of the built-in echo model and the api
 * process, as batchd does). Covered: start-up to serving (the state
 * transitions logged), a worker killed by SIGKILL re-forked, the api
 * process killed and restarted on the same port, SIGTERM to exit 0 with
 * no child left; and the start-up refusals that exit 2 (fatal, not
 * retried): a data directory in use by another batchd, one that is a
 * regular file. tests/unit/service/supervisor/test_respawn.c covers the
 * exit classes and back-off alone.
 */
#include "tests/unit/child_fixture.h"

#include <errno.h>
#include <sys/stat.h>

#include "service/config/config.h"
#include "service/core/process.h"
#include "service/supervisor/supervisor.h"

struct fixture {
    char dir[64];
    char data[128];
    struct config cfg;
    struct child sup;
};

/* The fixtures of the running test, freed by teardown() even when the
 * test fails half-way (no supervisor is left running). */
static struct fixture *live[2];

/* A configuration of one echo worker on a port the kernel picks, its data
 * under a new temporary directory (data_sub below it). */
static struct fixture *fixture_new(const char *data_sub, const char *name)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-sup.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof f->data, "%s/%s", f->dir, data_sub);
    snprintf(f->sup.port_file, sizeof f->sup.port_file, "%s/%s.port", f->dir, name);
    snprintf(f->sup.log, sizeof f->sup.log, "%s/%s.log", f->dir, name);
    const char *argv[] = {"batchd", "--data-dir", f->data, "--listen", "127.0.0.1:0",
                          "--port-file", f->sup.port_file, "--workers", "1", "--model", "echo",
                          "--grace", "1", NULL};
    char err[256];
    if (config_parse(&f->cfg, 13, (char **)argv, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    f->sup.pid = -1;
    live[live[0] ? 1 : 0] = f;
    return f;
}

static void fixture_free(struct fixture *f)
{
    /* SIGTERM first: the supervisor stops its own children */
    if (f->sup.pid > 0 && kill(f->sup.pid, SIGTERM) == 0 && child_wait(&f->sup) == -1)
        child_kill(&f->sup);
    config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static int teardown(void **unused)
{
    (void)unused;
    /* the second first: it may share the first's data directory */
    for (int i = 1; i >= 0; i--) {
        if (live[i])
            fixture_free(live[i]);
        live[i] = NULL;
    }
    return 0;
}

static int run_sup(void *arg)
{
    struct fixture *f = arg;
    return sup_run(&f->cfg);
}

/* The last pid after `mark` in the log ("... pid N"), or 0. */
static pid_t logged_pid(const struct child *c, const char *mark)
{
    static char log[262144];
    read_text(c->log, log, sizeof log);
    pid_t pid = 0;
    for (const char *p = strstr(log, mark); p; p = strstr(p + 1, mark))
        pid = (pid_t)atoi(p + strlen(mark));
    return pid;
}

/* Waits (bounded) until the last pid after `mark` is a new one. */
static pid_t wait_new_pid(const struct child *c, const char *mark, pid_t old)
{
    for (int waited = 0; waited < CHILD_WAIT_MS; waited += 20) {
        pid_t now = logged_pid(c, mark);
        if (now != 0 && now != old)
            return now;
        sleep_ms(20);
    }
    return 0;
}

static void test_lifecycle(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new("data", "a");
    child_start(&f->sup, run_sup, f);
    unsigned port = child_wait_port(&f->sup);
    assert_int_not_equal(port, 0);
    assert_int_equal(http_get(port, "/healthz", NULL), 200);
    child_assert_logged(&f->sup, "supervisor: starting -> running");
    child_assert_logged(&f->sup, "batchd running: 1 model(s), 1 worker(s)");

    /* a worker killed: classified, logged, re-forked */
    static const char wmark[] = "worker 0 (model echo) started, pid ";
    pid_t worker = logged_pid(&f->sup, wmark);
    assert_true(worker > 0);
    assert_int_equal(kill(worker, SIGKILL), 0);
    pid_t worker2 = wait_new_pid(&f->sup, wmark, worker);
    assert_true(worker2 > 0);
    char died[128];
    snprintf(died, sizeof died, "worker 0 (model echo) pid %d died: signal 9 (SIGKILL)",
             (int)worker);
    child_assert_logged(&f->sup, died);

    /* the api process killed: restarted, on the same port */
    static const char amark[] = "api process started, pid ";
    pid_t api = logged_pid(&f->sup, amark);
    assert_true(api > 0);
    assert_int_equal(kill(api, SIGKILL), 0);
    pid_t api2 = wait_new_pid(&f->sup, amark, api);
    assert_true(api2 > 0);
    int status = 0;
    for (int waited = 0; waited < CHILD_WAIT_MS && status != 200; waited += 20) {
        status = http_get(port, "/healthz", NULL);
        if (status != 200)
            sleep_ms(20);
    }
    assert_int_equal(status, 200);
    child_assert_logged(&f->sup, "api process died: signal 9 (SIGKILL)");

    /* SIGTERM: every child stopped and reaped, exit 0 */
    assert_int_equal(kill(f->sup.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&f->sup), 0);
    child_assert_logged(&f->sup, "supervisor: running -> stopping");
    child_assert_logged(&f->sup, "supervisor: stopping -> stopped");
    child_assert_logged(&f->sup, "batchd exits with code 0");
    /* no child left: the new worker and api pids are gone */
    assert_int_equal(kill(worker2, 0), -1);
    assert_int_equal(kill(api2, 0), -1);
}

/* One batchd per data directory: a second one exits 2, naming the first. */
static void test_data_dir_in_use(void **unused)
{
    (void)unused;
    struct fixture *a = fixture_new("data", "a");
    child_start(&a->sup, run_sup, a);
    assert_int_not_equal(child_wait_port(&a->sup), 0);

    struct fixture *b = fixture_new("data", "b");
    /* b's data dir is a's */
    snprintf(b->data, sizeof b->data, "%s", a->data);
    free(b->cfg.data_dir);
    b->cfg.data_dir = strdup(a->data);
    assert_non_null(b->cfg.data_dir);
    child_start(&b->sup, run_sup, b);
    assert_int_equal(child_wait(&b->sup), PROC_EXIT_FATAL);
    char why[256];
    snprintf(why, sizeof why, "data directory %s is in use by another batchd (pid %d)", a->data,
             (int)a->sup.pid);
    child_assert_logged(&b->sup, why);

    assert_int_equal(kill(a->sup.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&a->sup), 0);
}

static void test_data_dir_is_a_file(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new("file", "a");
    write_text(f->data, "not a directory\n");
    child_start(&f->sup, run_sup, f);
    assert_int_equal(child_wait(&f->sup), PROC_EXIT_FATAL);
    char why[256];
    snprintf(why, sizeof why, "data directory %s is not a directory", f->data);
    child_assert_logged(&f->sup, why);
    char buf[8];
    assert_string_equal(read_text(f->sup.port_file, buf, sizeof buf), ""); /* never served */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lifecycle, teardown),
        cmocka_unit_test_teardown(test_data_dir_in_use, teardown),
        cmocka_unit_test_teardown(test_data_dir_is_a_file, teardown),
    };
    return cmocka_run_group_tests_name("supervisor", tests, NULL, NULL);
}
