/*
 * Unit tests for api/api.c, the api process's main: api_run() runs for
 * real in a forked child (it sets the signal mask and waits in sigwait, as
 * in batchd), over a real ring (shm), engine and listening socket made as
 * the supervisor makes them; no workers are forked (no request here needs
 * one). Covered: the port file written (whole, no PATH.tmp left) with the
 * listener's port, requests served, SIGHUP reloading the tokens file,
 * SIGTERM and SIGINT stopping it with API_EXIT_OK, the start-up log lines,
 * and each failed start's exit code: API_EXIT_FATAL when the port file
 * cannot be written, API_EXIT_FAILED when the engine cannot start or the
 * tokens file vanished since the configuration was read.
 */
#include "tests/unit/child_fixture.h"

#include <errno.h>
#include <sys/stat.h>

#include "api/api.h"
#include "service/config/config.h"
#include "service/core/listener.h"
#include "service/core/process.h"
#include "service/ring/shm.h"

struct fixture {
    char dir[64];
    char tokens[160];
    struct config cfg;
    struct shm shm;
    int listen_fd;
    struct child api;
};

/* Parses a configuration whose data dir, port file and tokens file (when
 * `tokens`) are in a new temporary directory, and extra flags after them. */
static struct fixture *fixture_new(bool tokens, const char *const *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-api.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->api.port_file, sizeof f->api.port_file, "%s/port", f->dir);
    snprintf(f->tokens, sizeof f->tokens, "%s/tokens", f->dir);
    snprintf(f->api.log, sizeof f->api.log, "%s/log", f->dir);
    char data[128];
    snprintf(data, sizeof data, "%s/data", f->dir);
    assert_int_equal(mkdir(data, 0700), 0); /* the supervisor makes it before forking */
    const char *argv[16] = {"batchd", "--data-dir", data, "--listen", "127.0.0.1:0",
                            "--port-file", f->api.port_file};
    int argc = 7;
    if (tokens) {
        write_text(f->tokens, "token-one\n");
        argv[argc++] = "--tokens-file";
        argv[argc++] = f->tokens;
    }
    for (size_t i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    char err[256];
    if (config_parse(&f->cfg, argc, (char **)argv, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    uint32_t gw[1] = {1};
    const char *names[1] = {"echo"};
    struct shm_layout lay = {1, gw, names, 8, 4096, 4096};
    assert_int_equal(shm_create(&f->shm, &lay), 0);
    f->listen_fd = listener_open(f->cfg.listen_host, f->cfg.listen_port, err, sizeof err);
    if (f->listen_fd < 0)
        fail_msg("listen: %s", err);
    f->api.pid = -1;
    return f;
}

static void fixture_free(struct fixture *f)
{
    child_kill(&f->api); /* a test that failed half-way: do not leave it running */
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    shm_destroy(&f->shm);
    config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static int run_api(void *arg)
{
    struct fixture *f = arg;
    return api_run(&f->cfg, &f->shm, NULL, f->listen_fd);
}

/* Forks the api process as the supervisor does. */
static void start_api(struct fixture *f) { child_start(&f->api, run_api, f); }

/* Start-up, serving, SIGHUP and SIGTERM, with authentication on. */
static void test_serve_reload_stop(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(true, NULL);
    start_api(f);
    unsigned port = child_wait_port(&f->api);
    assert_int_equal(port, listener_port(f->listen_fd));
    char tmp[200], buf[8];
    snprintf(tmp, sizeof tmp, "%s.tmp", f->api.port_file);
    assert_string_equal(read_text(tmp, buf, sizeof buf), ""); /* renamed, not left */

    assert_int_equal(http_get(port, "/healthz", NULL), 200);
    assert_int_equal(http_get(port, "/v1/models", NULL), 401);
    assert_int_equal(http_get(port, "/v1/models", "token-one"), 200);

    /* SIGHUP: the tokens file is read again */
    write_text(f->tokens, "token-two\n");
    assert_int_equal(kill(f->api.pid, SIGHUP), 0);
    int status = 0;
    for (int waited = 0; waited < CHILD_WAIT_MS && status != 200; waited += 20) {
        status = http_get(port, "/v1/models", "token-two");
        if (status != 200)
            sleep_ms(20);
    }
    assert_int_equal(status, 200);
    assert_int_equal(http_get(port, "/v1/models", "token-one"), 401);

    char line[128];
    snprintf(line, sizeof line, "listening on http://127.0.0.1:%u", port);
    child_assert_logged(&f->api, line);
    child_assert_logged(&f->api, "authentication is on: the /v1 routes need a bearer token");

    assert_int_equal(kill(f->api.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&f->api), API_EXIT_OK);
    child_assert_logged(&f->api, "SIGTERM received: stopping");
    child_assert_logged(&f->api, "\"msg\":\"stopped\"");
    fixture_free(f);
}

/* SIGINT stops it too; without tokens the log says authentication is off. */
static void test_sigint_without_tokens(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(false, NULL);
    start_api(f);
    unsigned port = child_wait_port(&f->api);
    assert_int_not_equal(port, 0);
    assert_int_equal(http_get(port, "/v1/models", NULL), 200);
    assert_int_equal(kill(f->api.pid, SIGINT), 0);
    assert_int_equal(child_wait(&f->api), API_EXIT_OK);
    child_assert_logged(&f->api, "authentication is off");
    child_assert_logged(&f->api, "SIGINT received: stopping");
    fixture_free(f);
}

/* A port file in a directory that does not exist: fatal (no respawn). */
static void test_port_file_unwritable(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(false, NULL);
    char *bad = strdup("/nonexistent-dir-of-test-api/port");
    assert_non_null(bad);
    free(f->cfg.port_file);
    f->cfg.port_file = bad;
    start_api(f);
    assert_int_equal(child_wait(&f->api), API_EXIT_FATAL);
    child_assert_logged(&f->api, "cannot write the port file /nonexistent-dir-of-test-api/port");
    fixture_free(f);
}

/* The data dir cannot be made (a regular file is in its way): the engine
 * cannot start, an orderly failure the supervisor may retry. */
static void test_engine_cannot_start(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(false, NULL);
    char blocker[128];
    snprintf(blocker, sizeof blocker, "%s/file", f->dir);
    write_text(blocker, "not a directory\n");
    char *data = malloc(200);
    assert_non_null(data);
    snprintf(data, 200, "%s/data", blocker);
    free(f->cfg.data_dir);
    f->cfg.data_dir = data;
    start_api(f);
    assert_int_equal(child_wait(&f->api), API_EXIT_FAILED);
    child_assert_logged(&f->api, "the engine could not start");
    child_assert_logged(&f->api, "/file/data: Not a directory");
    char buf[8];
    assert_string_equal(read_text(f->api.port_file, buf, sizeof buf), ""); /* never listened */
    fixture_free(f);
}

/* The tokens file vanished since the configuration was read (it may be
 * mid-replacement): a failure worth a respawn, not a fatal one. */
static void test_tokens_file_gone(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(true, NULL);
    assert_int_equal(unlink(f->tokens), 0);
    start_api(f);
    assert_int_equal(child_wait(&f->api), API_EXIT_FAILED);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_reload_stop),
        cmocka_unit_test(test_sigint_without_tokens),
        cmocka_unit_test(test_port_file_unwritable),
        cmocka_unit_test(test_engine_cannot_start),
        cmocka_unit_test(test_tokens_file_gone),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
