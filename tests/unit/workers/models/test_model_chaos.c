/*
 * Unit tests for workers/model_chaos.c: its table entry (registered, not a
 * default), its one parameter (init_fail=MESSAGE: load accepts it and
 * nothing else, then init fails with MESSAGE, also in a real forked
 * worker), echo, fail, hang_ms and sleep_ms in process
 * (timed, and under a storm of signals for EINTR), every item error
 * (data-driven; none may crash), and each crash kind in a forked child whose
 * end is read with waitpid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <batchd/model.h>
#include "workers/models/model_chaos.h"
#include "service/ring/shm.h"
#include "workers/worker/worker.h"

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, jerr.text);
    return v;
}

/* Runs chaos on the item given as JSON text. Returns run's result; *output
 * is set on success (new), err holds the message on failure. */
static int run_text(const char *item_text, json_t **output, char *err, size_t errlen)
{
    json_t *item = parse(item_text);
    *output = NULL;
    err[0] = '\0';
    int rc = model_chaos.run(NULL, item, output, err, errlen);
    json_decref(item);
    return rc;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the table ----------------------------------------------------------- */

static void test_registered_not_default(void **unused)
{
    (void)unused;
    assert_ptr_equal(model_builtin_find("chaos"), &model_chaos);
    bool listed = false;
    const struct model_ops *m;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++)
        listed |= m == &model_chaos;
    assert_true(listed);
    assert_int_equal(model_chaos.abi_version, MODEL_ABI_VERSION);
    assert_true(model_chaos.flags & MODEL_FLAG_NOT_DEFAULT);
    assert_string_equal(model_chaos.name, "chaos");
    assert_non_null(strstr(model_chaos.description, "Fault injection"));
    assert_non_null(strstr(model_chaos.description, "init_fail=MESSAGE"));
    assert_non_null(model_chaos.load);
    assert_non_null(model_chaos.init);
    assert_non_null(model_chaos.run);
    assert_null(model_chaos.fini);
    assert_non_null(model_chaos.unload);
}

/* ---- load, init, unload: the init_fail parameter ------------------------- */

/* Without parameters: no shared state, and init succeeds (every time). */
static void test_load_without_params_init_succeeds(void **unused)
{
    (void)unused;
    char err[128] = "";
    void *shared = (void *)&err; /* must be overwritten */
    struct model_params empty = {0, NULL, NULL};
    assert_int_equal(model_chaos.load(&empty, NULL, &shared, err, sizeof err), 0);
    assert_null(shared);
    shared = (void *)&err;
    assert_int_equal(model_chaos.load(NULL, NULL, &shared, err, sizeof err), 0);
    assert_null(shared);

    for (int i = 0; i < 3; i++) {
        void *state = (void *)&err; /* must be overwritten */
        err[0] = '\0';
        assert_int_equal(model_chaos.init(shared, NULL, &state, err, sizeof err), 0);
        assert_null(state);
        assert_string_equal(err, "");
    }
    /* The items still work after such an init. */
    json_t *item = json_pack("{s:i}", "a", 1), *out = NULL;
    assert_int_equal(model_chaos.run(NULL, item, &out, err, sizeof err), 0);
    assert_ptr_equal(out, item);
    json_decref(out);
    json_decref(item);
    model_chaos.unload(shared);
}

/* init_fail=MESSAGE: load succeeds, then every init fails with MESSAGE. */
static void test_init_fail_param(void **unused)
{
    (void)unused;
    /* The parameters are borrowed during load() only: build them in
     * buffers that are overwritten afterwards, as the config's are freed. */
    char key[] = "init_fail", value[] = "boom: weights not found";
    const char *keys[] = {key};
    const char *values[] = {value};
    struct model_params params = {1, keys, values};
    char err[128] = "";
    void *shared = NULL;
    assert_int_equal(model_chaos.load(&params, NULL, &shared, err, sizeof err), 0);
    assert_non_null(shared);
    memset(key, 'x', sizeof key - 1);
    memset(value, 'y', sizeof value - 1);

    for (int i = 0; i < 3; i++) {
        void *state = (void *)&err; /* must be overwritten */
        err[0] = '\0';
        int rc = model_chaos.init(shared, NULL, &state, err, sizeof err);
        assert_true(rc < 0);
        assert_string_equal(err, "boom: weights not found");
        assert_null(state);
    }
    /* Cut to the caller's buffer, still terminated. */
    char small[5];
    void *state;
    assert_true(model_chaos.init(shared, NULL, &state, small, sizeof small) < 0);
    assert_string_equal(small, "boom");
    model_chaos.unload(shared);

    /* What a deployment types: --model chaos:init_fail=boom */
    const char *k1[] = {"init_fail"}, *v1[] = {"boom"};
    struct model_params boom = {1, k1, v1};
    assert_int_equal(model_chaos.load(&boom, NULL, &shared, err, sizeof err), 0);
    assert_true(model_chaos.init(shared, NULL, &state, err, sizeof err) < 0);
    assert_string_equal(err, "boom");
    model_chaos.unload(shared);
}

/* Anything but one non-empty init_fail is refused, naming the key, with
 * no shared state left behind (valgrind checks that nothing leaks). */
static void test_load_refuses_other_params(void **unused)
{
    (void)unused;
    static const struct {
        size_t n;
        const char *keys[3];
        const char *values[3];
        const char *message;
    } cases[] = {
        {1, {"rate"}, {"0.5"},
         "model chaos has no parameter 'rate' (its only one is init_fail=MESSAGE)"},
        {1, {"Init_fail"}, {"x"},
         "model chaos has no parameter 'Init_fail' (its only one is init_fail=MESSAGE)"},
        {1, {"init_fail_"}, {"x"},
         "model chaos has no parameter 'init_fail_' (its only one is init_fail=MESSAGE)"},
        /* A good key first does not excuse a bad one after it. */
        {2, {"init_fail", "crash"}, {"boom", "segv"},
         "model chaos has no parameter 'crash' (its only one is init_fail=MESSAGE)"},
        {2, {"init_fail", "init_fail"}, {"a", "b"}, "model chaos: 'init_fail' given twice"},
        {1, {"init_fail"}, {""}, "model chaos: init_fail needs a non-empty message"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct model_params params = {cases[i].n, cases[i].keys, cases[i].values};
        char err[256] = "";
        void *shared = (void *)&err; /* must be overwritten */
        int rc = model_chaos.load(&params, NULL, &shared, err, sizeof err);
        if (rc != -EINVAL || strcmp(err, cases[i].message) != 0)
            fail_msg("case %zu: rc %d err '%s', want -EINVAL '%s'", i, rc, err,
                     cases[i].message);
        assert_null(shared);
    }
}

/*
 * The point of init_fail: a real worker (worker_main, forked as the
 * supervisor forks it) cannot start. It exits with WORKER_EXIT_INIT and
 * leaves the message where the supervisor reads it. The same worker
 * without the parameter starts (reaches IDLE) and stops on SIGTERM.
 */
static int run_worker(const void *shared, struct shm *shm, bool stop_when_idle)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(30);
        worker_main(shm, 0, &model_chaos, shared, parent);
    }
    struct shm_worker *sw = shm_worker(shm, 0);
    if (stop_when_idle) {
        /* Bounded: 20 s of 10 ms naps for init to finish. */
        for (int i = 0; i < 2000; i++) {
            uint32_t st = atomic_load(&sw->state);
            if (st == WORKER_IDLE || st == WORKER_FAILED)
                break;
            struct timespec nap = {0, 10000000L};
            nanosleep(&nap, NULL);
        }
        assert_int_equal(atomic_load(&sw->state), WORKER_IDLE);
        kill(pid, SIGTERM);
    }
    int status;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    assert_int_equal(got, pid);
    return status;
}

static void test_init_fail_in_a_worker(void **unused)
{
    (void)unused;
    uint32_t gw[1] = {1};
    const char *names[1] = {"chaos"};
    struct shm_layout lay = {1, gw, names, 1, 4096, 4096};
    struct shm shm;
    char err[128] = "";

    assert_int_equal(shm_create(&shm, &lay), 0);
    const char *keys[] = {"init_fail"}, *values[] = {"boom"};
    struct model_params params = {1, keys, values};
    void *shared = NULL;
    assert_int_equal(model_chaos.load(&params, NULL, &shared, err, sizeof err), 0);
    int status = run_worker(shared, &shm, false);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != WORKER_EXIT_INIT)
        fail_msg("want exit %d (init failed), got status 0x%x", WORKER_EXIT_INIT,
                 (unsigned)status);
    struct shm_worker *sw = shm_worker(&shm, 0);
    assert_string_equal(sw->init_error, "boom");
    assert_int_equal(atomic_load(&sw->state), WORKER_FAILED);
    assert_int_equal(atomic_load(&sw->inits), 0);
    model_chaos.unload(shared);
    shm_destroy(&shm);

    assert_int_equal(shm_create(&shm, &lay), 0);
    assert_int_equal(model_chaos.load(NULL, NULL, &shared, err, sizeof err), 0);
    status = run_worker(shared, &shm, true);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("want exit 0 (stopped), got status 0x%x", (unsigned)status);
    sw = shm_worker(&shm, 0);
    assert_int_equal(atomic_load(&sw->inits), 1);
    assert_string_equal(sw->init_error, "");
    model_chaos.unload(shared);
    shm_destroy(&shm);
}

/* ---- echo, fail ---------------------------------------------------------- */

static void test_echoes_everything_else(void **unused)
{
    (void)unused;
    const char *items[] = {"1",  "-2.5", "\"segv\"", "null", "true", "[{\"crash\":\"segv\"}]",
                           "{}", "{\"value\":3}", "{\"crash_\":\"segv\",\"Fail\":\"x\"}",
                           "{\"a\":{\"hang_ms\":5}}"};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        json_t *item = parse(items[i]);
        json_t *out = NULL;
        char err[64] = "";
        assert_int_equal(model_chaos.run(NULL, item, &out, err, sizeof err), 0);
        assert_ptr_equal(out, item);
        json_decref(out);
        json_decref(item);
    }
}

static void test_fail_returns_the_message(void **unused)
{
    (void)unused;
    json_t *out;
    char err[256];
    assert_true(run_text("{\"fail\": \"disk on fire\"}", &out, err, sizeof err) < 0);
    assert_string_equal(err, "disk on fire");
    assert_null(out);

    /* Cut to the caller's buffer, still terminated. */
    char small[8];
    assert_true(run_text("{\"fail\": \"a long message\"}", &out, small, sizeof small) < 0);
    assert_string_equal(small, "a long ");
    assert_null(out);
}

/* ---- hang_ms, sleep_ms --------------------------------------------------- */

static void test_hang_returns_hung_ms(void **unused)
{
    (void)unused;
    json_t *out;
    char err[256];
    assert_int_equal(run_text("{\"hang_ms\": 0}", &out, err, sizeof err), 0);
    json_t *want = parse("{\"hung_ms\": 0}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);

    uint64_t t0 = now_ms();
    assert_int_equal(run_text("{\"hang_ms\": 120}", &out, err, sizeof err), 0);
    uint64_t dt = now_ms() - t0;
    assert_true(dt >= 120);
    assert_true(dt < 120 + 2000); /* generous: a loaded CI machine */
    want = parse("{\"hung_ms\": 120}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);
}

/* leak_kb: the memory is really resident and stays so (the RSS limit's
 * test model), and the item's value comes back. */
static void test_leak_keeps_memory(void **unused)
{
    (void)unused;
    json_t *out = NULL;
    char err[256] = "";
    uint64_t before = worker_rss_bytes();
    assert_int_equal(run_text("{\"leak_kb\": 16384, \"value\": [7]}", &out, err, sizeof err), 0);
    json_t *want = parse("[7]");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);
    assert_int_equal(run_text("{\"leak_kb\": 0}", &out, err, sizeof err), 0);
    assert_true(json_is_null(out));
    json_decref(out);
    uint64_t after = worker_rss_bytes();
    print_message("RSS %llu -> %llu bytes after leak_kb 16384\n", (unsigned long long)before,
                  (unsigned long long)after);
    assert_true(after >= before + (16u << 20) - (2u << 20));
}

static void test_sleep_returns_the_value(void **unused)
{
    (void)unused;
    const struct {
        const char *item;
        const char *want;
    } cases[] = {
        {"{\"sleep_ms\": 0, \"value\": 42}", "42"},
        {"{\"value\": [1, {\"a\": null}], \"sleep_ms\": 1}", "[1, {\"a\": null}]"},
        {"{\"sleep_ms\": 0, \"value\": {\"crash\": \"segv\"}}", "{\"crash\": \"segv\"}"},
        {"{\"sleep_ms\": 0, \"value\": null}", "null"},
        {"{\"sleep_ms\": 0}", "null"},
        {"{\"sleep_ms\": 3}", "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out;
        char err[256];
        int rc = run_text(cases[i].item, &out, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: rc %d, err '%s'", cases[i].item, rc, err);
        json_t *want = parse(cases[i].want);
        if (!json_equal(out, want))
            fail_msg("%s: wrong output", cases[i].item);
        json_decref(want);
        json_decref(out);
    }

    uint64_t t0 = now_ms();
    json_t *out;
    char err[256];
    assert_int_equal(run_text("{\"sleep_ms\": 80, \"value\": \"late\"}", &out, err, sizeof err),
                     0);
    assert_true(now_ms() - t0 >= 80);
    assert_string_equal(json_string_value(out), "late");
    json_decref(out);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* A caught signal every 2 ms (no SA_RESTART, so each one is an EINTR)
 * neither cuts the wait short nor stretches it much. */
static void test_wait_survives_signals(void **unused)
{
    (void)unused;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval every = {{0, 2000}, {0, 2000}}, off = {{0, 0}, {0, 0}};
    alarms = 0;
    assert_int_equal(setitimer(ITIMER_REAL, &every, NULL), 0);

    const char *items[] = {"{\"hang_ms\": 150}", "{\"sleep_ms\": 150, \"value\": 1}"};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        sig_atomic_t before = alarms;
        uint64_t t0 = now_ms();
        json_t *out;
        char err[256];
        assert_int_equal(run_text(items[i], &out, err, sizeof err), 0);
        uint64_t dt = now_ms() - t0;
        json_decref(out);
        if (dt < 150 || dt > 150 + 2000)
            fail_msg("%s took %llu ms", items[i], (unsigned long long)dt);
        /* The storm really happened during the wait. */
        if (alarms - before < 5)
            fail_msg("%s: only %d signals arrived", items[i], (int)(alarms - before));
    }
    assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
    /* A tick generated before the disarm may still be pending: ignoring the
     * signal discards it, where restoring the default would let it end the
     * test process (valgrind, which delays delivery, shows this). */
    signal(SIGALRM, SIG_IGN);
    assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
}

/* ---- item errors, data-driven -------------------------------------------- */

struct error_case {
    const char *item;
    const char *message;
};

#define MS_ERR(key, got) "chaos: \"" key "\" must be an integer from 0 to 3600000, got " got

static const struct error_case error_cases[] = {
    /* crash kinds */
    {"{\"crash\": \"SEGV\"}",
     "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got \"SEGV\""},
    {"{\"crash\": \"kill\"}",
     "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got \"kill\""},
    {"{\"crash\": \"\"}", "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got \"\""},
    {"{\"crash\": 11}", "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got a number"},
    {"{\"crash\": null}", "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got null"},
    {"{\"crash\": [\"segv\"]}",
     "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got an array"},
    /* durations */
    {"{\"hang_ms\": -1}", MS_ERR("hang_ms", "-1")},
    {"{\"hang_ms\": 3600001}", MS_ERR("hang_ms", "3600001")},
    {"{\"hang_ms\": 9223372036854775807}", MS_ERR("hang_ms", "9223372036854775807")},
    {"{\"hang_ms\": 1.5}", MS_ERR("hang_ms", "1.5")},
    {"{\"hang_ms\": 10.0}", MS_ERR("hang_ms", "10")},
    {"{\"hang_ms\": \"10\"}", MS_ERR("hang_ms", "a string")},
    {"{\"hang_ms\": null}", MS_ERR("hang_ms", "null")},
    {"{\"sleep_ms\": -5, \"value\": 1}", MS_ERR("sleep_ms", "-5")},
    {"{\"sleep_ms\": 3600001}", MS_ERR("sleep_ms", "3600001")},
    {"{\"sleep_ms\": true, \"value\": 1}", MS_ERR("sleep_ms", "a boolean")},
    {"{\"sleep_ms\": {}}", MS_ERR("sleep_ms", "an object")},
    /* fail */
    {"{\"fail\": \"\"}", "chaos: \"fail\" must be a non-empty string, got \"\""},
    {"{\"fail\": 1}", "chaos: \"fail\" must be a non-empty string, got a number"},
    {"{\"fail\": null}", "chaos: \"fail\" must be a non-empty string, got null"},
    {"{\"fail\": false}", "chaos: \"fail\" must be a non-empty string, got a boolean"},
    /* one instruction per item, nothing beside it (a crash item with a typo
     * must not crash) */
    {"{\"crash\": \"segv\", \"fail\": \"x\"}", "chaos: \"crash\" and \"fail\" cannot be combined"},
    {"{\"hang_ms\": 1, \"sleep_ms\": 1}", "chaos: \"hang_ms\" and \"sleep_ms\" cannot be combined"},
    {"{\"crash\": \"exit\", \"id\": 7}", "chaos: unexpected key \"id\" beside \"crash\""},
    {"{\"id\": 7, \"crash\": \"abort\"}", "chaos: unexpected key \"id\" beside \"crash\""},
    {"{\"crash\": \"segv\", \"value\": 1}", "chaos: unexpected key \"value\" beside \"crash\""},
    {"{\"hang_ms\": 1, \"value\": 2}", "chaos: unexpected key \"value\" beside \"hang_ms\""},
    {"{\"fail\": \"x\", \"value\": 2}", "chaos: unexpected key \"value\" beside \"fail\""},
    {"{\"sleep_ms\": 1, \"vlaue\": 2}", "chaos: unexpected key \"vlaue\" beside \"sleep_ms\""},
    /* leak_kb */
    {"{\"leak_kb\": -1}", "chaos: \"leak_kb\" must be an integer from 0 to 1048576, got one outside that range"},
    {"{\"leak_kb\": 1048577}", "chaos: \"leak_kb\" must be an integer from 0 to 1048576, got one outside that range"},
    {"{\"leak_kb\": 1.5}", "chaos: \"leak_kb\" must be an integer from 0 to 1048576, got a number"},
    {"{\"leak_kb\": \"8\"}", "chaos: \"leak_kb\" must be an integer from 0 to 1048576, got a string"},
    {"{\"leak_kb\": 8, \"id\": 1}", "chaos: unexpected key \"id\" beside \"leak_kb\""},
    {"{\"leak_kb\": 8, \"fail\": \"x\"}", "chaos: \"leak_kb\" and \"fail\" cannot be combined"},
    /* quoted strings are cut at 64 bytes, never inside a character: the
     * message goes into the results' JSON as it is */
    {"{\"crash\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9\"}",
     "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
    {"{\"fail\": \"x\", \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9\": 2}",
     "chaos: unexpected key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" beside \"fail\""},
};

static void test_item_errors(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const struct error_case *c = &error_cases[i];
        json_t *out;
        char err[256];
        int rc = run_text(c->item, &out, err, sizeof err);
        if (rc != -EINVAL || strcmp(err, c->message) != 0)
            fail_msg("%s: rc %d err '%s', want rc %d err '%s'", c->item, rc, err, -EINVAL,
                     c->message);
        assert_null(out);
    }
}

/* ---- crashes, in a child ------------------------------------------------- */

static void on_signal_return(int sig)
{
    (void)sig;
}

/* Forks, runs chaos on item_text in the child, returns the child's wait
 * status. When hostile_sig is not 0 the child first gives that signal a
 * handler that just returns, and blocks it, as a worker or a library might:
 * the crash must happen anyway. A child whose run() returns exits with 99;
 * one that is stuck (a fault re-run forever under that handler) is ended by
 * SIGALRM after 10 s, so either shows up as a wrong status. */
static int crash_in_child(const char *item_text, int hostile_sig)
{
    json_t *item = parse(item_text);
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No core files from the deliberate crashes. */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(SIGALRM, SIG_DFL);
        alarm(10);
        if (hostile_sig) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal_return;
            sigemptyset(&sa.sa_mask);
            sigaction(hostile_sig, &sa, NULL);
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, hostile_sig);
            sigprocmask(SIG_BLOCK, &set, NULL);
        }
        json_t *out = NULL;
        char err[256];
        model_chaos.run(NULL, item, &out, err, sizeof err);
        _exit(99);
    }
    json_decref(item);
    int status;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    assert_int_equal(got, pid);
    return status;
}

static void test_crash_segv(void **unused)
{
    (void)unused;
    int status = crash_in_child("{\"crash\": \"segv\"}", 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        fail_msg("want death by SIGSEGV, got status 0x%x", (unsigned)status);
    status = crash_in_child("{\"crash\": \"segv\"}", SIGSEGV);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        fail_msg("want death by SIGSEGV, got status 0x%x", (unsigned)status);
}

static void test_crash_abort(void **unused)
{
    (void)unused;
    int status = crash_in_child("{\"crash\": \"abort\"}", 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("want death by SIGABRT, got status 0x%x", (unsigned)status);
    status = crash_in_child("{\"crash\": \"abort\"}", SIGABRT);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("want death by SIGABRT, got status 0x%x", (unsigned)status);
}

static void test_crash_exit(void **unused)
{
    (void)unused;
    int status = crash_in_child("{\"crash\": \"exit\"}", 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
        fail_msg("want exit status 1, got status 0x%x", (unsigned)status);
}

/* The same forks with a bad crash item: the child survives run() (99). */
static void test_bad_crash_item_does_not_crash(void **unused)
{
    (void)unused;
    int status = crash_in_child("{\"crash\": \"segv\", \"id\": 1}", 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_not_default),
        cmocka_unit_test(test_load_without_params_init_succeeds),
        cmocka_unit_test(test_init_fail_param),
        cmocka_unit_test(test_load_refuses_other_params),
        cmocka_unit_test(test_init_fail_in_a_worker),
        cmocka_unit_test(test_echoes_everything_else),
        cmocka_unit_test(test_fail_returns_the_message),
        cmocka_unit_test(test_hang_returns_hung_ms),
        cmocka_unit_test(test_sleep_returns_the_value),
        cmocka_unit_test(test_leak_keeps_memory),
        cmocka_unit_test(test_wait_survives_signals),
        cmocka_unit_test(test_item_errors),
        cmocka_unit_test(test_crash_segv),
        cmocka_unit_test(test_crash_abort),
        cmocka_unit_test(test_crash_exit),
        cmocka_unit_test(test_bad_crash_item_does_not_crash),
    };
    return cmocka_run_group_tests_name("model_chaos", tests, NULL, NULL);
}
