/*
 * child_fixture.h: for the unit tests that run one of batchd's process
 * mains for real (api_run, sup_run) in a forked child of the test: the
 * child's log (its stderr) in a file, its port file, its exit code, and
 * plain HTTP requests to it over a socket on 127.0.0.1. Every wait is
 * bounded (CHILD_WAIT_MS) and never asserted on as a time. Everything is
 * static inline: each test program takes what it uses.
 */
#ifndef BATCHD_TEST_CHILD_FIXTURE_H
#define BATCHD_TEST_CHILD_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bound on every wait (the machine is shared: generous). */
#define CHILD_WAIT_MS 60000

struct child {
    pid_t pid;            /* -1 when not running (reaped, or never started) */
    char log[160];        /* its stderr */
    char port_file[160];  /* where it writes its port, if it does */
};

static inline void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static inline void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The whole of a small file into buf ("" when it does not exist). */
static inline const char *read_text(const char *path, char *buf, size_t cap)
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

/* Forks; the child runs fn(arg) with its stderr in c->log and _exits with
 * its return value. */
static inline void child_start(struct child *c, int (*fn)(void *), void *arg)
{
    fflush(NULL);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        int log = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log < 0 || dup2(log, STDERR_FILENO) < 0)
            _exit(99);
        _exit(fn(arg));
    }
}

/* Waits for the child to exit; returns its exit code (-1 when killed by a
 * signal, or still running after CHILD_WAIT_MS: see child_kill). */
static inline int child_wait(struct child *c)
{
    int status = 0;
    for (int waited = 0; waited < CHILD_WAIT_MS; waited += 10) {
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
            c->pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(10);
    }
    return -1;
}

/* For cleanup after a test that failed half-way: SIGKILL and reap. */
static inline void child_kill(struct child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = -1;
    }
}

/* The port the port file names, once it exists (0 if the child exited
 * first or CHILD_WAIT_MS passed). */
static inline unsigned child_wait_port(struct child *c)
{
    char buf[32];
    for (int waited = 0; waited < CHILD_WAIT_MS; waited += 10) {
        if (read_text(c->port_file, buf, sizeof buf)[0] != '\0') {
            unsigned port = 0;
            char nl = 0;
            assert_int_equal(sscanf(buf, "%u%c", &port, &nl), 2);
            assert_int_equal(nl, '\n'); /* whole: "PORT\n", never half a number */
            return port;
        }
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = -1;
            return 0;
        }
        sleep_ms(10);
    }
    return 0;
}

static inline bool child_logged(const struct child *c, const char *text)
{
    static char log[262144];
    return strstr(read_text(c->log, log, sizeof log), text) != NULL;
}

static inline void child_assert_logged(const struct child *c, const char *text)
{
    static char log[262144];
    if (!strstr(read_text(c->log, log, sizeof log), text))
        fail_msg("the log lacks '%s':\n%s", text, log);
}

/* Waits (bounded) until the log holds text; false if it never does. */
static inline bool child_wait_logged(const struct child *c, const char *text)
{
    for (int waited = 0; waited < CHILD_WAIT_MS; waited += 20) {
        if (child_logged(c, text))
            return true;
        sleep_ms(20);
    }
    return false;
}

/* GET path on 127.0.0.1:port with an optional bearer token; the status,
 * or 0 when nothing answers (refused, or closed without an answer). */
static inline int http_get(unsigned port, const char *path, const char *token)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
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
        return 0;
    return status;
}

#endif
