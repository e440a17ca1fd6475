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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "service/config/config.h"
#include "service/core/listener.h"
#include "service/core/process.h"
#include "service/ring/shm.h"

/* Bounds on every wait (the machine is shared: generous, never asserted
 * on as a time). */
#define WAIT_MS 60000

struct fixture {
    char dir[64];
    char path[3][160]; /* port file, tokens file, log */
    struct config cfg;
    struct shm shm;
    int listen_fd;
    pid_t pid;
};

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The whole of a small file into buf ("" when it does not exist). */
static const char *read_text(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Parses a configuration whose data dir, port file and tokens file (when
 * `tokens`) are in a new temporary directory, and extra flags after them. */
static struct fixture *fixture_new(bool tokens, const char *const *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-api.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path[0], sizeof f->path[0], "%s/port", f->dir);
    snprintf(f->path[1], sizeof f->path[1], "%s/tokens", f->dir);
    snprintf(f->path[2], sizeof f->path[2], "%s/log", f->dir);
    char data[128];
    snprintf(data, sizeof data, "%s/data", f->dir);
    assert_int_equal(mkdir(data, 0700), 0); /* the supervisor makes it before forking */
    const char *argv[16] = {"batchd", "--data-dir", data, "--listen", "127.0.0.1:0",
                            "--port-file", f->path[0]};
    int argc = 7;
    if (tokens) {
        write_text(f->path[1], "token-one\n");
        argv[argc++] = "--tokens-file";
        argv[argc++] = f->path[1];
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
    f->pid = -1;
    return f;
}

static void fixture_free(struct fixture *f)
{
    if (f->pid > 0) { /* a test that failed half-way: do not leave it running */
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    shm_destroy(&f->shm);
    config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

/* Forks the api process as the supervisor does: the child runs api_run()
 * with its log (stderr) in path[2] and _exits with its return value. */
static void start_api(struct fixture *f)
{
    fflush(NULL);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        int log = open(f->path[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (log < 0 || dup2(log, STDERR_FILENO) < 0)
            _exit(99);
        _exit(api_run(&f->cfg, &f->shm, NULL, f->listen_fd));
    }
}

/* Waits for the api process to exit; returns its exit code (-1 when it
 * was killed by a signal, or still running after WAIT_MS: then killed). */
static int wait_api(struct fixture *f)
{
    int status = 0;
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        pid_t r = waitpid(f->pid, &status, WNOHANG);
        if (r == f->pid) {
            f->pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(10);
    }
    return -1; /* fixture_free kills it */
}

/* The port the port file names, once it exists (0 if the api process
 * exited first or WAIT_MS passed). */
static unsigned wait_port_file(struct fixture *f)
{
    char buf[32];
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        if (read_text(f->path[0], buf, sizeof buf)[0] != '\0') {
            unsigned port = 0;
            char nl = 0;
            assert_int_equal(sscanf(buf, "%u%c", &port, &nl), 2);
            assert_int_equal(nl, '\n'); /* whole: "PORT\n", never half a number */
            return port;
        }
        if (waitpid(f->pid, NULL, WNOHANG) == f->pid) {
            f->pid = -1;
            return 0;
        }
        sleep_ms(10);
    }
    return 0;
}

/* GET path on 127.0.0.1:port with an optional bearer token; the status. */
static int http_get(unsigned port, const char *path, const char *token)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    assert_int_equal(write(fd, req, (size_t)n), n);
    char resp[64] = "";
    size_t got = 0;
    while (got < 12) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    resp[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        fail_msg("not an HTTP answer: '%s'", resp);
    return status;
}

static void assert_logged(struct fixture *f, const char *text)
{
    static char log[65536];
    if (!strstr(read_text(f->path[2], log, sizeof log), text))
        fail_msg("the log lacks '%s':\n%s", text, log);
}

/* Start-up, serving, SIGHUP and SIGTERM, with authentication on. */
static void test_serve_reload_stop(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(true, NULL);
    start_api(f);
    unsigned port = wait_port_file(f);
    assert_int_equal(port, listener_port(f->listen_fd));
    char tmp[200], buf[8];
    snprintf(tmp, sizeof tmp, "%s.tmp", f->path[0]);
    assert_string_equal(read_text(tmp, buf, sizeof buf), ""); /* renamed, not left */

    assert_int_equal(http_get(port, "/healthz", NULL), 200);
    assert_int_equal(http_get(port, "/v1/models", NULL), 401);
    assert_int_equal(http_get(port, "/v1/models", "token-one"), 200);

    /* SIGHUP: the tokens file is read again */
    write_text(f->path[1], "token-two\n");
    assert_int_equal(kill(f->pid, SIGHUP), 0);
    int status = 0;
    for (int waited = 0; waited < WAIT_MS && status != 200; waited += 20) {
        status = http_get(port, "/v1/models", "token-two");
        if (status != 200)
            sleep_ms(20);
    }
    assert_int_equal(status, 200);
    assert_int_equal(http_get(port, "/v1/models", "token-one"), 401);

    char line[128];
    snprintf(line, sizeof line, "listening on http://127.0.0.1:%u", port);
    assert_logged(f, line);
    assert_logged(f, "authentication is on: the /v1 routes need a bearer token");

    assert_int_equal(kill(f->pid, SIGTERM), 0);
    assert_int_equal(wait_api(f), API_EXIT_OK);
    assert_logged(f, "SIGTERM received: stopping");
    assert_logged(f, "\"msg\":\"stopped\"");
    fixture_free(f);
}

/* SIGINT stops it too; without tokens the log says authentication is off. */
static void test_sigint_without_tokens(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(false, NULL);
    start_api(f);
    unsigned port = wait_port_file(f);
    assert_int_not_equal(port, 0);
    assert_int_equal(http_get(port, "/v1/models", NULL), 200);
    assert_int_equal(kill(f->pid, SIGINT), 0);
    assert_int_equal(wait_api(f), API_EXIT_OK);
    assert_logged(f, "authentication is off");
    assert_logged(f, "SIGINT received: stopping");
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
    assert_int_equal(wait_api(f), API_EXIT_FATAL);
    assert_logged(f, "cannot write the port file /nonexistent-dir-of-test-api/port");
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
    assert_int_equal(wait_api(f), API_EXIT_FAILED);
    assert_logged(f, "the engine could not start");
    assert_logged(f, "/file/data: Not a directory");
    char buf[8];
    assert_string_equal(read_text(f->path[0], buf, sizeof buf), ""); /* never listened */
    fixture_free(f);
}

/* The tokens file vanished since the configuration was read (it may be
 * mid-replacement): a failure worth a respawn, not a fatal one. */
static void test_tokens_file_gone(void **unused)
{
    (void)unused;
    struct fixture *f = fixture_new(true, NULL);
    assert_int_equal(unlink(f->path[1]), 0);
    start_api(f);
    assert_int_equal(wait_api(f), API_EXIT_FAILED);
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
