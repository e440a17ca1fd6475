/*
 * config_fixture.h: what the config module's unit tests share (one header,
 * included by each tests/unit/service/config/test_config*.c): a clean
 * environment, config_parse() over a literal argument list, --help's
 * output captured, temporary files, and the default model list.
 * Everything is static inline: each test program takes what it uses.
 */
#ifndef BATCHD_TEST_CONFIG_FIXTURE_H
#define BATCHD_TEST_CONFIG_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/config/config.h"
#include <batchd/model.h>
#include "workers/models/models_builtin.h"

#define MAX_ARGS 80

#define PARSE(cfg, err, ...) \
    parse_argv((cfg), (const char *const[]){__VA_ARGS__, NULL}, (err), sizeof(err))

/* cmocka setup and teardown: unsets every BATCHD_* variable, so that each
 * test starts from an environment that configures nothing. */
static inline int clear_env(void **unused)
{
    (void)unused;
    extern char **environ;
    for (size_t i = 0; environ[i];) {
        if (strncmp(environ[i], "BATCHD_", 7) == 0) {
            char name[128];
            size_t n = strcspn(environ[i], "=");
            if (n >= sizeof name) { /* no such variable of batchd's */
                i++;
                continue;
            }
            snprintf(name, sizeof name, "%.*s", (int)n, environ[i]);
            unsetenv(name); /* environ shifts: look at index i again */
        } else {
            i++;
        }
    }
    return 0;
}

/* Parses {"batchd", args..., NULL} (args is NULL-terminated). */
static inline int parse_argv(struct config *cfg, const char *const *args, char *err, size_t errlen)
{
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)"batchd";
    for (size_t i = 0; args[i]; i++) {
        assert_true(argc <= MAX_ARGS);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    return config_parse(cfg, argc, argv, err, errlen);
}

static inline unsigned expected_cpu_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > CONFIG_MAX_WORKERS_PER_MODEL ? CONFIG_MAX_WORKERS_PER_MODEL : (unsigned)n;
}

static inline bool is_zeroed(const struct config *c)
{
    static const struct config zero;
    return memcmp(c, &zero, sizeof zero) == 0;
}

static inline void assert_default_models(const struct config *c, unsigned workers)
{
    size_t n = 0;
    const struct model_ops *m;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++) {
        if (m->flags & MODEL_FLAG_NOT_DEFAULT)
            continue;
        assert_true(n < c->n_models);
        assert_string_equal(c->models[n].name, m->name);
        assert_null(c->models[n].plugin);
        assert_int_equal(c->models[n].workers, workers);
        assert_int_equal(c->models[n].n_params, 0);
        n++;
    }
    assert_int_equal(c->n_models, n);
}

/* Runs config_parse with stdout sent to a temporary file; returns its text
 * (new, caller frees). */
static inline char *capture_stdout(const char *const *args, int *rc)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    struct config c;
    char err[256];
    *rc = parse_argv(&c, args, err, sizeof err);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    assert_true(is_zeroed(&c));

    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    return text;
}

/* Writes `text` to a new temporary file; returns its path (static, per slot). */
static inline const char *temp_file(int slot, const char *text)
{
    static char paths[4][64];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/test_config_file_XXXXXX");
    int fd = mkstemp(paths[slot]);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return paths[slot];
}

static inline void check_all_set(const struct config *c)
{
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9001);
    assert_string_equal(c->data_dir, "/var/lib/batchd");
    assert_int_equal(c->workers, 5);
    assert_int_equal(c->n_models, 2);
    assert_string_equal(c->models[0].name, "square");
    assert_int_equal(c->models[0].workers, 5);
    assert_string_equal(c->models[1].name, "echo");
    assert_int_equal(c->models[1].workers, 2);
    assert_int_equal(c->max_body_bytes, 2u << 20);
    assert_int_equal(c->max_items, 1234);
    assert_int_equal(c->max_item_bytes, 4096);
    assert_int_equal(c->max_connections, 17);
    assert_int_equal(c->idle_timeout_s, 9);
    assert_int_equal(c->max_attempts, 7);
    assert_int_equal(c->item_timeout_ms, 2500);
    assert_int_equal(c->max_item_timeout_ms, 60500);
    assert_int_equal(c->max_queued_items, 10000000000ull);
    assert_int_equal(c->grace_ms, 1250);
    assert_string_equal(c->port_file, "/tmp/port");
}

#endif
