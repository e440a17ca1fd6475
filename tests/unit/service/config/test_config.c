/*
 * Unit tests for service/config.c: defaults, every flag and variable,
 * precedence, strict numbers, --listen, --model / BATCHD_MODELS specs, and
 * every error message (data-driven). Each test starts from an environment
 * without any BATCHD_* variable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/config/config.h"
#include <batchd/model.h>
#include "workers/models/models_builtin.h"

static const char *const env_names[] = {
    "BATCHD_LISTEN",         "BATCHD_DATA_DIR",      "BATCHD_WORKERS",
    "BATCHD_MODELS",         "BATCHD_MAX_BODY_BYTES", "BATCHD_MAX_ITEMS",
    "BATCHD_MAX_ITEM_BYTES", "BATCHD_MAX_CONNECTIONS", "BATCHD_IDLE_TIMEOUT",
    "BATCHD_HEADER_TIMEOUT", "BATCHD_MIN_BODY_RATE", "BATCHD_HTTP_THREADS",
    "BATCHD_MAX_ATTEMPTS",   "BATCHD_ITEM_TIMEOUT",  "BATCHD_PORT_FILE",
    "BATCHD_MAX_QUEUED_ITEMS", "BATCHD_GRACE",       "BATCHD_MAX_ITEM_TIMEOUT",
    "BATCHD_MAX_JSON_DEPTH", "BATCHD_LOG_LEVEL",     "BATCHD_ACCESS_LOG",
    "BATCHD_CONFIG",         "BATCHD_API_TOKENS",    "BATCHD_TOKENS_FILE",
    "BATCHD_AUTH_METRICS",   "BATCHD_CORS_ORIGINS",  "BATCHD_TLS_CERT",
    "BATCHD_TLS_KEY",        "BATCHD_OBJECT_MEMORY", "BATCHD_MAX_OBJECT_BYTES",
    "BATCHD_MAX_OBJECTS",    "BATCHD_MAX_ITEMS_PER_WORKER", "BATCHD_MAX_WORKER_RSS",
    "BATCHD_STORE",
};

static int clear_env(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    return 0;
}

#define MAX_ARGS 80

/* Parses {"batchd", args..., NULL} (args is NULL-terminated). */
static int parse_argv(struct config *cfg, const char *const *args, char *err, size_t errlen)
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

#define PARSE(cfg, err, ...) \
    parse_argv((cfg), (const char *const[]){__VA_ARGS__, NULL}, (err), sizeof(err))

static unsigned expected_cpu_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > CONFIG_MAX_WORKERS_PER_MODEL ? CONFIG_MAX_WORKERS_PER_MODEL : (unsigned)n;
}

static bool is_zeroed(const struct config *c)
{
    static const struct config zero;
    return memcmp(c, &zero, sizeof zero) == 0;
}

static void assert_default_models(const struct config *c, unsigned workers)
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

/* ---- defaults, flags, environment ---------------------------------------- */

static void test_defaults(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.workers, expected_cpu_workers());
    assert_true(c.workers >= 1);
    assert_int_equal(c.n_models, 6); /* echo, square, sum_squares, exp_sinh, convolve2d, prefix_count */
    assert_default_models(&c, c.workers);
    assert_int_equal(c.max_body_bytes, 64u << 20);
    assert_int_equal(c.max_items, 10000000);
    assert_int_equal(c.max_item_bytes, 256u << 10);
    assert_int_equal(c.max_connections, 4096);
    assert_int_equal(c.idle_timeout_s, 30);
    assert_int_equal(c.header_timeout_s, 20);
    assert_int_equal(c.min_body_rate, 1024);
    assert_int_equal(c.http_threads, 4);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.item_timeout_ms, 0);
    assert_int_equal(c.max_item_timeout_ms, 3600000);
    assert_int_equal(c.max_queued_items, 20000000);
    assert_int_equal(c.grace_ms, 10000);
    assert_int_equal(c.object_memory, 1ull << 30);
    assert_int_equal(c.max_object_bytes, 256ull << 20);
    assert_int_equal(c.max_objects, 4096);
    assert_null(c.port_file);
    /* chaos is built in but never loaded unless named. */
    assert_non_null(model_builtin_find("chaos"));
    for (size_t i = 0; i < c.n_models; i++)
        assert_string_not_equal(c.models[i].name, "chaos");
    config_free(&c);
    assert_true(is_zeroed(&c));
}

static void check_all_set(const struct config *c)
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

static void test_every_flag(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--listen", "0.0.0.0:9001", "--data-dir", "/var/lib/batchd",
                           "--workers", "5", "--model", "square", "--model", "echo:workers=2",
                           "--max-body-bytes", "2M", "--max-items", "1234", "--max-item-bytes",
                           "4K", "--max-connections", "17", "--idle-timeout", "9",
                           "--max-attempts", "7", "--item-timeout", "2.5", "--port-file",
                           "/tmp/port", "--max-queued-items", "10000000000", "--grace", "1.25",
                           "--max-item-timeout", "60.5"),
                     0);
    check_all_set(&c);
    config_free(&c);

    /* The same with --flag=value. */
    assert_int_equal(PARSE(&c, err, "--listen=0.0.0.0:9001", "--data-dir=/var/lib/batchd",
                           "--workers=5", "--model=square", "--model=echo:workers=2",
                           "--max-body-bytes=2M", "--max-items=1234", "--max-item-bytes=4096",
                           "--max-connections=17", "--idle-timeout=9", "--max-attempts=7",
                           "--item-timeout=2.500", "--port-file=/tmp/port",
                           "--max-queued-items=10000000000", "--grace=1.250",
                           "--max-item-timeout=60.500"),
                     0);
    check_all_set(&c);
    config_free(&c);
}

/* The connection settings (api/conns.h): flags, variables, and where each
 * value came from (main.c lowers only a default --max-connections). */
static void test_connection_settings(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--header-timeout", "7", "--min-body-rate", "2K",
                           "--http-threads", "8", "--max-connections", "10000"),
                     0);
    assert_int_equal(c.header_timeout_s, 7);
    assert_int_equal(c.min_body_rate, 2048);
    assert_int_equal(c.http_threads, 8);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(config_source_of(&c, "max-connections"), CONFIG_SRC_FLAG);
    assert_int_equal(config_source_of(&c, "header-timeout"), CONFIG_SRC_FLAG);
    assert_int_equal(config_source_of(&c, "no-such-setting"), CONFIG_SRC_DEFAULT);
    config_free(&c);
    setenv("BATCHD_HEADER_TIMEOUT", "11", 1);
    setenv("BATCHD_MIN_BODY_RATE", "0", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_int_equal(c.header_timeout_s, 11);
    assert_int_equal(c.min_body_rate, 0);
    assert_int_equal(config_source_of(&c, "header-timeout"), CONFIG_SRC_ENV);
    assert_int_equal(config_source_of(&c, "max-connections"), CONFIG_SRC_DEFAULT);
    config_free(&c);
    unsetenv("BATCHD_HEADER_TIMEOUT");
    unsetenv("BATCHD_MIN_BODY_RATE");
}

static void test_every_variable(void **unused)
{
    (void)unused;
    setenv("BATCHD_LISTEN", "0.0.0.0:9001", 1);
    setenv("BATCHD_DATA_DIR", "/var/lib/batchd", 1);
    setenv("BATCHD_WORKERS", "5", 1);
    setenv("BATCHD_MODELS", "square echo:workers=2", 1);
    setenv("BATCHD_MAX_BODY_BYTES", "2MiB", 1);
    setenv("BATCHD_MAX_ITEMS", "1234", 1);
    setenv("BATCHD_MAX_ITEM_BYTES", "4k", 1);
    setenv("BATCHD_MAX_CONNECTIONS", "17", 1);
    setenv("BATCHD_IDLE_TIMEOUT", "9", 1);
    setenv("BATCHD_MAX_ATTEMPTS", "7", 1);
    setenv("BATCHD_ITEM_TIMEOUT", "2.50", 1);
    setenv("BATCHD_PORT_FILE", "/tmp/port", 1);
    setenv("BATCHD_MAX_QUEUED_ITEMS", "10000000000", 1);
    setenv("BATCHD_GRACE", "1.25", 1);
    setenv("BATCHD_MAX_ITEM_TIMEOUT", "60.5", 1);
    struct config c;
    char err[256];
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), 0);
    check_all_set(&c);
    config_free(&c);
}

static void test_flags_win_over_env_over_defaults(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    setenv("BATCHD_WORKERS", "3", 1);
    setenv("BATCHD_DATA_DIR", "/env/dir", 1);
    setenv("BATCHD_MODELS", "echo", 1);
    setenv("BATCHD_PORT_FILE", "/env/port", 1);

    /* Env over defaults. */
    assert_int_equal(PARSE(&c, err, "--max-attempts", "2"), 0);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.data_dir, "/env/dir");
    assert_string_equal(c.port_file, "/env/port");
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "echo");
    assert_int_equal(c.models[0].workers, 3);
    assert_int_equal(c.max_attempts, 2);
    assert_int_equal(c.max_connections, 4096);
    config_free(&c);

    /* Flags over env; --model replaces BATCHD_MODELS, it does not add. */
    assert_int_equal(PARSE(&c, err, "--workers", "4", "--data-dir", "/flag/dir", "--model",
                           "square", "--port-file", "/flag/port"),
                     0);
    assert_int_equal(c.workers, 4);
    assert_string_equal(c.data_dir, "/flag/dir");
    assert_string_equal(c.port_file, "/flag/port");
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "square");
    assert_int_equal(c.models[0].workers, 4);
    config_free(&c);

    /* A bad variable does not matter when the flag overrides it. */
    setenv("BATCHD_WORKERS", "many", 1);
    setenv("BATCHD_MODELS", "nope", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "2", "--model", "echo"), 0);
    assert_int_equal(c.workers, 2);
    config_free(&c);
}

static void test_last_repeated_flag_wins(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--workers", "2", "--workers", "3", "--data-dir", "a",
                           "--data-dir", "b", "--listen", "1.2.3.4:5", "--listen", "localhost:6"),
                     0);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.data_dir, "b");
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 6);
    config_free(&c);
}

static void test_empty_variable_is_unset(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        setenv(env_names[i], "", 1);
    struct config c;
    char err[256];
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), 0);
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.workers, expected_cpu_workers());
    assert_null(c.port_file);
    assert_int_equal(c.max_queued_items, 20000000);
    assert_int_equal(c.grace_ms, 10000);
    assert_int_equal(c.max_item_timeout_ms, 3600000);
    assert_default_models(&c, c.workers);
    config_free(&c);
}

static void test_abbreviated_flag(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    /* getopt_long takes an unambiguous prefix. */
    assert_int_equal(PARSE(&c, err, "--work", "6", "--max-c", "9"), 0);
    assert_int_equal(c.workers, 6);
    assert_int_equal(c.max_connections, 9);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--gr", "3", "--max-q", "5", "--max-item-t", "7"), 0);
    assert_int_equal(c.grace_ms, 3000);
    assert_int_equal(c.max_queued_items, 5);
    assert_int_equal(c.max_item_timeout_ms, 7000);
    config_free(&c);
}

/* ---- numbers ------------------------------------------------------------- */

struct size_case {
    const char *text;
    size_t want;
};

static void test_sizes_and_suffixes(void **unused)
{
    (void)unused;
    const struct size_case cases[] = {
        {"1", 1},
        {"1000", 1000},
        {"1K", 1024},
        {"1k", 1024},
        {"3KiB", 3072},
        {"3kib", 3072},
        {"2M", 2u << 20},
        {"2MiB", 2u << 20},
        {"1G", 1u << 30},
        {"1gib", 1u << 30},
        {"1024G", (size_t)1 << 40},
        {"007", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char err[256];
        int rc = PARSE(&c, err, "--max-body-bytes", cases[i].text);
        if (rc != 0)
            fail_msg("'%s': rc %d, %s", cases[i].text, rc, err);
        assert_int_equal(c.max_body_bytes, cases[i].want);
        config_free(&c);
    }
}

static void test_item_timeout_seconds(void **unused)
{
    (void)unused;
    const struct {
        const char *text;
        unsigned want_ms;
    } cases[] = {
        {"0", 0},         {"0.0", 0},      {"0.001", 1},         {"1", 1000},
        {"1.05", 1050},   {"1.5", 1500},   {"30.125", 30125},    {"86400", 86400000},
        {"86400.000", 86400000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char err[256];
        /* The largest cases need a --max-item-timeout above its default. */
        int rc = PARSE(&c, err, "--item-timeout", cases[i].text, "--max-item-timeout", "86400");
        if (rc != 0)
            fail_msg("'%s': rc %d, %s", cases[i].text, rc, err);
        assert_int_equal(c.item_timeout_ms, cases[i].want_ms);
        config_free(&c);
    }
}

/* --grace and --max-item-timeout: the same seconds syntax, their own ranges
 * (0 allowed for the grace, never for the max). */
static void test_grace_and_max_item_timeout_seconds(void **unused)
{
    (void)unused;
    const struct {
        const char *flag;
        const char *text;
        unsigned want_ms;
    } cases[] = {
        {"--grace", "0", 0},
        {"--grace", "0.000", 0},
        {"--grace", "0.5", 500},
        {"--grace", "10", 10000},
        {"--grace", "3600", 3600000},
        {"--grace", "3600.000", 3600000},
        {"--max-item-timeout", "0.001", 1},
        {"--max-item-timeout", "1", 1000},
        {"--max-item-timeout", "2.25", 2250},
        {"--max-item-timeout", "86400", 86400000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char err[256];
        int rc = PARSE(&c, err, cases[i].flag, cases[i].text);
        if (rc != 0)
            fail_msg("%s '%s': rc %d, %s", cases[i].flag, cases[i].text, rc, err);
        unsigned got = strcmp(cases[i].flag, "--grace") == 0 ? c.grace_ms : c.max_item_timeout_ms;
        if (got != cases[i].want_ms)
            fail_msg("%s '%s': got %u ms, want %u", cases[i].flag, cases[i].text, got,
                     cases[i].want_ms);
        config_free(&c);
    }
}

static void test_max_queued_items_values(void **unused)
{
    (void)unused;
    const struct size_case cases[] = {
        {"1", 1},
        {"20000000", 20000000},
        {"4294967296", 4294967296ull}, /* past 32 bits */
        {"10000000000", 10000000000ull},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char err[256];
        int rc = PARSE(&c, err, "--max-queued-items", cases[i].text);
        if (rc != 0)
            fail_msg("'%s': rc %d, %s", cases[i].text, rc, err);
        assert_int_equal(c.max_queued_items, cases[i].want);
        config_free(&c);
    }
}

/* A non-zero --item-timeout must not exceed --max-item-timeout, whatever
 * the order and whichever source (flag, variable, default) each comes from. */
static void test_item_timeout_within_max(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];

    /* Accepted: equal, below, 0 (no limit) even with the smallest max. */
    assert_int_equal(PARSE(&c, err, "--item-timeout", "3600"), 0);
    assert_int_equal(c.item_timeout_ms, 3600000);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--item-timeout", "2.5", "--max-item-timeout", "2.5"), 0);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--max-item-timeout", "100", "--item-timeout", "99.999"), 0);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--item-timeout", "0", "--max-item-timeout", "0.001"), 0);
    assert_int_equal(c.item_timeout_ms, 0);
    assert_int_equal(c.max_item_timeout_ms, 1);
    config_free(&c);

    /* The check runs on the final values: a flag that fixes a bad variable
     * wins, whichever of the two it overrides. */
    setenv("BATCHD_ITEM_TIMEOUT", "7200", 1);
    assert_int_equal(PARSE(&c, err, "--item-timeout", "60"), 0);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--max-item-timeout", "7200"), 0);
    assert_int_equal(c.item_timeout_ms, 7200000);
    config_free(&c);

    /* Both from the environment. */
    setenv("BATCHD_MAX_ITEM_TIMEOUT", "7199.999", 1);
    memset(&c, 0xA5, sizeof c);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), -EINVAL);
    assert_string_equal(err, "BATCHD_ITEM_TIMEOUT: 7200 seconds exceeds BATCHD_MAX_ITEM_TIMEOUT "
                             "(7199.999 seconds), the longest item timeout a job may ask for");
    assert_true(is_zeroed(&c));
    setenv("BATCHD_MAX_ITEM_TIMEOUT", "7200", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    config_free(&c);
}


/* ---- --listen ------------------------------------------------------------ */

struct listen_case {
    const char *text;
    const char *host;
    unsigned port;
};

static void test_listen_values(void **unused)
{
    (void)unused;
    const struct listen_case cases[] = {
        {"127.0.0.1:0", "127.0.0.1", 0},
        {"0.0.0.0:80", "0.0.0.0", 80},
        {"localhost:9000", "127.0.0.1", 9000},
        {"10.1.2.3:65535", "10.1.2.3", 65535},
        {"192.168.0.1:08080", "192.168.0.1", 8080},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char err[256];
        int rc = PARSE(&c, err, "--listen", cases[i].text);
        if (rc != 0)
            fail_msg("'%s': rc %d, %s", cases[i].text, rc, err);
        assert_string_equal(c.listen_host, cases[i].host);
        assert_int_equal(c.listen_port, cases[i].port);
        config_free(&c);
    }
}

/* ---- models -------------------------------------------------------------- */

static void test_model_params(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--workers", "2", "--model",
                           "mlp:plugin=/opt/mlp.so,weights=/w.safetensors,workers=3,alpha=0.5",
                           "--model", "square:workers=1", "--model", "echo"),
                     0);
    assert_int_equal(c.n_models, 3);
    const struct config_model *m = &c.models[0];
    assert_string_equal(m->name, "mlp");
    assert_string_equal(m->plugin, "/opt/mlp.so");
    assert_int_equal(m->workers, 3);
    assert_int_equal(m->n_params, 2);
    assert_string_equal(m->keys[0], "weights");
    assert_string_equal(m->values[0], "/w.safetensors");
    assert_string_equal(m->keys[1], "alpha");
    assert_string_equal(m->values[1], "0.5");
    assert_string_equal(c.models[1].name, "square");
    assert_null(c.models[1].plugin);
    assert_int_equal(c.models[1].workers, 1);
    assert_int_equal(c.models[1].n_params, 0);
    assert_string_equal(c.models[2].name, "echo");
    assert_int_equal(c.models[2].workers, 2);
    config_free(&c);

    /* Parameters of a built-in model are kept; its load() judges them. */
    assert_int_equal(PARSE(&c, err, "--model", "square:k=v=w"), 0);
    assert_int_equal(c.models[0].n_params, 1);
    assert_string_equal(c.models[0].keys[0], "k");
    assert_string_equal(c.models[0].values[0], "v=w");
    config_free(&c);

    /* A plugin may take any valid name, even a built-in one. */
    assert_int_equal(PARSE(&c, err, "--model", "my-model.v2:plugin=./x.so"), 0);
    assert_string_equal(c.models[0].name, "my-model.v2");
    config_free(&c);
}

struct models_env_case {
    const char *env;
    const char *names; /* space-separated expected names, in order */
    const char *workers; /* space-separated expected workers */
};

static void test_models_variable(void **unused)
{
    (void)unused;
    const struct models_env_case cases[] = {
        {"square", "square", "4"},
        {"square echo", "square echo", "4 4"},
        {"square;echo", "square echo", "4 4"},
        {" ; square:workers=2 ;;\texp_sinh\n", "square exp_sinh", "2 4"},
        {"sum_squares;square;echo;exp_sinh", "sum_squares square echo exp_sinh", "4 4 4 4"},
        {"x:plugin=/p.so,a=1;echo", "x echo", "4 4"},
        {" ; ", "echo square sum_squares exp_sinh convolve2d prefix_count", "4 4 4 4 4 4"},
    };
    setenv("BATCHD_WORKERS", "4", 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("BATCHD_MODELS", cases[i].env, 1);
        struct config c;
        char err[256];
        char *argv[] = {(char *)"batchd", NULL};
        int rc = config_parse(&c, 1, argv, err, sizeof err);
        if (rc != 0)
            fail_msg("BATCHD_MODELS='%s': rc %d, %s", cases[i].env, rc, err);
        char names[256] = "", workers[256] = "";
        for (size_t k = 0; k < c.n_models; k++) {
            size_t nl = strlen(names), wl = strlen(workers);
            snprintf(names + nl, sizeof names - nl, "%s%s", k ? " " : "", c.models[k].name);
            snprintf(workers + wl, sizeof workers - wl, "%s%u", k ? " " : "",
                     c.models[k].workers);
        }
        if (strcmp(names, cases[i].names) != 0 || strcmp(workers, cases[i].workers) != 0)
            fail_msg("BATCHD_MODELS='%s': got [%s] [%s], want [%s] [%s]", cases[i].env, names,
                     workers, cases[i].names, cases[i].workers);
        config_free(&c);
    }
}

static void test_max_models(void **unused)
{
    (void)unused;
    const char *args[CONFIG_MAX_MODELS * 2 + 3];
    char specs[CONFIG_MAX_MODELS + 1][32];
    size_t n = 0;
    for (int i = 0; i < CONFIG_MAX_MODELS; i++) {
        snprintf(specs[i], sizeof specs[i], "m%d:plugin=/p.so", i);
        args[n++] = "--model";
        args[n++] = specs[i];
    }
    args[n] = NULL;
    struct config c;
    char err[256];
    assert_int_equal(parse_argv(&c, args, err, sizeof err), 0);
    assert_int_equal(c.n_models, CONFIG_MAX_MODELS);
    config_free(&c);

    snprintf(specs[CONFIG_MAX_MODELS], sizeof specs[0], "extra:plugin=/p.so");
    args[n++] = "--model";
    args[n++] = specs[CONFIG_MAX_MODELS];
    args[n] = NULL;
    assert_int_equal(parse_argv(&c, args, err, sizeof err), -EINVAL);
    assert_string_equal(err, "--model: at most 32 models, got more");
    assert_true(is_zeroed(&c));

    /* The same limit through the variable. */
    char env[2048] = "";
    for (int i = 0; i <= CONFIG_MAX_MODELS; i++) {
        size_t l = strlen(env);
        snprintf(env + l, sizeof env - l, "m%d:plugin=/p.so;", i);
    }
    setenv("BATCHD_MODELS", env, 1);
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), -EINVAL);
    assert_string_equal(err, "BATCHD_MODELS: at most 32 models, got more");
    assert_true(is_zeroed(&c));
}

/* ---- errors, data-driven ------------------------------------------------- */

struct error_case {
    const char *args[6];  /* NULL-terminated */
    const char *env_name; /* optional variable to set */
    const char *env_value;
    const char *message;
};

static const struct error_case error_cases[] = {
    /* getopt level */
    {{"--bogus", NULL}, NULL, NULL, "unknown or ambiguous option '--bogus' (see --help)"},
    {{"--bogus=1", NULL}, NULL, NULL, "unknown or ambiguous option '--bogus' (see --help)"},
    {{"--max", "5", NULL}, NULL, NULL, "unknown or ambiguous option '--max' (see --help)"},
    {{"--max-item", "5", NULL}, NULL, NULL,
     "unknown or ambiguous option '--max-item' (see --help)"},
    {{"-x", NULL}, NULL, NULL, "unknown option '-x' (see --help)"},
    {{"-w", "3", NULL}, NULL, NULL, "unknown option '-w' (see --help)"},
    {{"--workers", NULL}, NULL, NULL, "option '--workers' needs a value"},
    {{"--data-dir", "d", "--model", NULL}, NULL, NULL, "option '--model' needs a value"},
    {{"--version=2", NULL}, NULL, NULL, "option '--version' takes no value"},
    {{"serve", NULL}, NULL, NULL, "unexpected argument 'serve' (batchd takes only options)"},
    {{"--workers", "2", "--", "x", NULL}, NULL, NULL,
     "unexpected argument 'x' (batchd takes only options)"},
    /* integers */
    {{"--workers", "abc", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got 'abc'"},
    {{"--workers", "0", NULL}, NULL, NULL, "--workers: expected an integer from 1 to 256, got '0'"},
    {{"--workers", "257", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '257'"},
    {{"--workers", "-1", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '-1'"},
    {{"--workers", "+2", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '+2'"},
    {{"--workers", " 2", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got ' 2'"},
    {{"--workers", "2 ", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '2 '"},
    {{"--workers", "2x", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '2x'"},
    {{"--workers", "0x10", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '0x10'"},
    {{"--workers", "", NULL}, NULL, NULL, "--workers: expected an integer from 1 to 256, got ''"},
    {{"--workers", "2K", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '2K'"},
    {{"--workers", "18446744073709551617", NULL}, NULL, NULL,
     "--workers: expected an integer from 1 to 256, got '18446744073709551617'"},
    {{NULL}, "BATCHD_WORKERS", "abc",
     "BATCHD_WORKERS: expected an integer from 1 to 256, got 'abc'"},
    {{"--max-items", "0", NULL}, NULL, NULL,
     "--max-items: expected an integer from 1 to 1000000000, got '0'"},
    {{"--max-items", "1K", NULL}, NULL, NULL,
     "--max-items: expected an integer from 1 to 1000000000, got '1K'"},
    {{"--max-connections", "1000001", NULL}, NULL, NULL,
     "--max-connections: expected an integer from 1 to 1000000, got '1000001'"},
    {{"--header-timeout", "0", NULL}, NULL, NULL,
     "--header-timeout: expected an integer from 1 to 3600, got '0'"},
    {{"--http-threads", "0", NULL}, NULL, NULL,
     "--http-threads: expected an integer from 1 to 256, got '0'"},
    {{"--idle-timeout", "0", NULL}, NULL, NULL,
     "--idle-timeout: expected an integer from 1 to 86400, got '0'"},
    {{"--idle-timeout", "1.5", NULL}, NULL, NULL,
     "--idle-timeout: expected an integer from 1 to 86400, got '1.5'"},
    {{"--max-attempts", "101", NULL}, NULL, NULL,
     "--max-attempts: expected an integer from 1 to 100, got '101'"},
    {{NULL}, "BATCHD_MAX_ATTEMPTS", "0",
     "BATCHD_MAX_ATTEMPTS: expected an integer from 1 to 100, got '0'"},
    {{"--max-queued-items", "0", NULL}, NULL, NULL,
     "--max-queued-items: expected an integer from 1 to 10000000000, got '0'"},
    {{"--max-queued-items", "10000000001", NULL}, NULL, NULL,
     "--max-queued-items: expected an integer from 1 to 10000000000, got '10000000001'"},
    {{"--max-queued-items", "20M", NULL}, NULL, NULL,
     "--max-queued-items: expected an integer from 1 to 10000000000, got '20M'"},
    {{"--max-queued-items", "-1", NULL}, NULL, NULL,
     "--max-queued-items: expected an integer from 1 to 10000000000, got '-1'"},
    {{NULL}, "BATCHD_MAX_QUEUED_ITEMS", "1e6",
     "BATCHD_MAX_QUEUED_ITEMS: expected an integer from 1 to 10000000000, got '1e6'"},
    /* seconds with milliseconds */
#define SECONDS_ERR(x) \
    "--item-timeout: expected seconds from 0 to 86400 (up to 3 decimals), got '" x "'"
    {{"--item-timeout", "abc", NULL}, NULL, NULL, SECONDS_ERR("abc")},
    {{"--item-timeout", "1.2345", NULL}, NULL, NULL, SECONDS_ERR("1.2345")},
    {{"--item-timeout", "1.", NULL}, NULL, NULL, SECONDS_ERR("1.")},
    {{"--item-timeout", ".5", NULL}, NULL, NULL, SECONDS_ERR(".5")},
    {{"--item-timeout", "-1", NULL}, NULL, NULL, SECONDS_ERR("-1")},
    {{"--item-timeout", "86400.001", NULL}, NULL, NULL, SECONDS_ERR("86400.001")},
    {{"--item-timeout", "86401", NULL}, NULL, NULL, SECONDS_ERR("86401")},
    {{"--item-timeout", "1.5s", NULL}, NULL, NULL, SECONDS_ERR("1.5s")},
    {{"--item-timeout", "1e3", NULL}, NULL, NULL, SECONDS_ERR("1e3")},
    {{"--item-timeout", "1.-5", NULL}, NULL, NULL, SECONDS_ERR("1.-5")},
    {{"--item-timeout", "99999999999999999999", NULL}, NULL, NULL,
     SECONDS_ERR("99999999999999999999")},
    {{NULL}, "BATCHD_ITEM_TIMEOUT", "soon",
     "BATCHD_ITEM_TIMEOUT: expected seconds from 0 to 86400 (up to 3 decimals), got 'soon'"},
#define GRACE_ERR(x) \
    "--grace: expected seconds from 0 to 3600 (up to 3 decimals), got '" x "'"
    {{"--grace", "3600.001", NULL}, NULL, NULL, GRACE_ERR("3600.001")},
    {{"--grace", "3601", NULL}, NULL, NULL, GRACE_ERR("3601")},
    {{"--grace", "-1", NULL}, NULL, NULL, GRACE_ERR("-1")},
    {{"--grace", "0.0001", NULL}, NULL, NULL, GRACE_ERR("0.0001")},
    {{"--grace", "10s", NULL}, NULL, NULL, GRACE_ERR("10s")},
    {{"--grace", "", NULL}, NULL, NULL, GRACE_ERR("")},
    {{NULL}, "BATCHD_GRACE", "forever",
     "BATCHD_GRACE: expected seconds from 0 to 3600 (up to 3 decimals), got 'forever'"},
#define MAX_TIMEOUT_ERR(x) \
    "--max-item-timeout: expected seconds from 0.001 to 86400 (up to 3 decimals), got '" x "'"
    {{"--max-item-timeout", "0", NULL}, NULL, NULL, MAX_TIMEOUT_ERR("0")},
    {{"--max-item-timeout", "0.000", NULL}, NULL, NULL, MAX_TIMEOUT_ERR("0.000")},
    {{"--max-item-timeout", "86400.001", NULL}, NULL, NULL, MAX_TIMEOUT_ERR("86400.001")},
    {{"--max-item-timeout", "1.5e3", NULL}, NULL, NULL, MAX_TIMEOUT_ERR("1.5e3")},
    {{NULL}, "BATCHD_MAX_ITEM_TIMEOUT", "0",
     "BATCHD_MAX_ITEM_TIMEOUT: expected seconds from 0.001 to 86400 (up to 3 decimals), "
     "got '0'"},
    /* --item-timeout within --max-item-timeout */
#define OVER_MAX(a, b) \
    a " seconds exceeds " b " seconds), the longest item timeout a job may ask for"
    {{"--item-timeout", "3600.001", NULL}, NULL, NULL,
     OVER_MAX("--item-timeout: 3600.001", "the default --max-item-timeout (3600")},
    {{"--item-timeout", "86400", NULL}, NULL, NULL,
     OVER_MAX("--item-timeout: 86400", "the default --max-item-timeout (3600")},
    {{"--item-timeout", "2.5", "--max-item-timeout", "2", NULL}, NULL, NULL,
     OVER_MAX("--item-timeout: 2.5", "--max-item-timeout (2")},
    {{"--max-item-timeout", "0.001", "--item-timeout", "0.002", NULL}, NULL, NULL,
     OVER_MAX("--item-timeout: 0.002", "--max-item-timeout (0.001")},
    {{"--max-item-timeout", "30", NULL}, "BATCHD_ITEM_TIMEOUT", "30.05",
     OVER_MAX("BATCHD_ITEM_TIMEOUT: 30.05", "--max-item-timeout (30")},
    {{"--item-timeout", "5", NULL}, "BATCHD_MAX_ITEM_TIMEOUT", "4.9",
     OVER_MAX("--item-timeout: 5", "BATCHD_MAX_ITEM_TIMEOUT (4.9")},
    /* sizes */
    {{"--max-body-bytes", "0", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '0'"},
    {{"--max-body-bytes", "1.5M", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '1.5M'"},
    {{"--max-body-bytes", "1T", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '1T'"},
    {{"--max-body-bytes", "1KB", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '1KB'"},
    {{"--max-body-bytes", "1Ki", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '1Ki'"},
    {{"--max-body-bytes", "1025G", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '1025G'"},
    {{"--max-body-bytes", "17179869184G", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got '17179869184G'"},
    {{"--max-body-bytes", "K", NULL}, NULL, NULL,
     "--max-body-bytes: expected a size in bytes from 1 to 1024G (K, M, G suffixes allowed), "
     "got 'K'"},
    {{"--max-item-bytes", "2G", NULL}, NULL, NULL,
     "--max-item-bytes: expected a size in bytes from 1 to 1G (K, M, G suffixes allowed), "
     "got '2G'"},
    {{NULL}, "BATCHD_MAX_ITEM_BYTES", "-5",
     "BATCHD_MAX_ITEM_BYTES: expected a size in bytes from 1 to 1G (K, M, G suffixes allowed), "
     "got '-5'"},
    /* --listen */
#define LISTEN_ERR(x) \
    "--listen: expected HOST:PORT (an IPv4 address or localhost, and a port from 0 to 65535), " \
    "got '" x "'"
    {{"--listen", "127.0.0.1", NULL}, NULL, NULL, LISTEN_ERR("127.0.0.1")},
    {{"--listen", ":80", NULL}, NULL, NULL, LISTEN_ERR(":80")},
    {{"--listen", "127.0.0.1:", NULL}, NULL, NULL, LISTEN_ERR("127.0.0.1:")},
    {{"--listen", "127.0.0.1:65536", NULL}, NULL, NULL, LISTEN_ERR("127.0.0.1:65536")},
    {{"--listen", "127.0.0.1:-1", NULL}, NULL, NULL, LISTEN_ERR("127.0.0.1:-1")},
    {{"--listen", "127.0.0.1:80x", NULL}, NULL, NULL, LISTEN_ERR("127.0.0.1:80x")},
    {{"--listen", "example.com:80", NULL}, NULL, NULL, LISTEN_ERR("example.com:80")},
    {{"--listen", "[::1]:80", NULL}, NULL, NULL, LISTEN_ERR("[::1]:80")},
    {{"--listen", "1.2.3:80", NULL}, NULL, NULL, LISTEN_ERR("1.2.3:80")},
    {{"--listen", "256.0.0.1:80", NULL}, NULL, NULL, LISTEN_ERR("256.0.0.1:80")},
    {{"--listen", "", NULL}, NULL, NULL, LISTEN_ERR("")},
    {{NULL}, "BATCHD_LISTEN", "8080",
     "BATCHD_LISTEN: expected HOST:PORT (an IPv4 address or localhost, and a port from 0 to "
     "65535), got '8080'"},
    /* paths */
    {{"--data-dir", "", NULL}, NULL, NULL, "--data-dir: expected a non-empty path, got ''"},
    {{"--port-file=", NULL}, NULL, NULL, "--port-file: expected a non-empty path, got ''"},
    /* models */
#define NO_MODEL(src, x) \
    src ": no built-in model named '" x "' (built-in: echo, square, sum_squares, exp_sinh, " \
    "convolve2d, prefix_count, chaos, mlp; a plugin needs plugin=PATH, a Python model python=PATH)"
    {{"--model", "nope", NULL}, NULL, NULL, NO_MODEL("--model", "nope")},
    {{"--model", "nope:a=1", NULL}, NULL, NULL, NO_MODEL("--model", "nope")},
    {{"--model", "Square", NULL}, NULL, NULL, NO_MODEL("--model", "Square")},
    {{NULL}, "BATCHD_MODELS", "echo nope", NO_MODEL("BATCHD_MODELS", "nope")},
    /* coprocess models (docs/coprocess.md) */
    {{"--model", "m:python=a.py,plugin=b.so", NULL}, NULL, NULL,
     "--model m: plugin= is a C model, python= a python model: give one of them"},
    {{"--model", "m:python=a.py,node=b.js", NULL}, NULL, NULL,
     "--model m: a model is in one language: python= and node= both given"},
    {{"--model", "m:python=a.py,python=b.py", NULL}, NULL, NULL,
     "--model m: 'python' given twice"},
    {{"--model", "nope:interpreter=python3", NULL}, NULL, NULL,
     "--model nope: interpreter= goes with python=PATH or node=PATH"},
#define BAD_NAME(src, x) \
    src ": expected NAME[:key=value,...] with a NAME of 1 to 64 letters, digits, '_', '-' or " \
    "'.', got '" x "'"
    {{"--model", "", NULL}, NULL, NULL, BAD_NAME("--model", "")},
    {{"--model", ":workers=2", NULL}, NULL, NULL, BAD_NAME("--model", ":workers=2")},
    {{"--model", "bad name", NULL}, NULL, NULL, BAD_NAME("--model", "bad name")},
    {{"--model", "sq/uare", NULL}, NULL, NULL, BAD_NAME("--model", "sq/uare")},
    {{"--model",
      "a234567890123456789012345678901234567890123456789012345678901234x:plugin=p", NULL},
     NULL, NULL,
     BAD_NAME("--model",
              "a234567890123456789012345678901234567890123456789012345678901234x:plugin=p")},
#define BAD_PAIR(x) "--model square: expected key=value with a non-empty value, got '" x "'"
    {{"--model", "square:", NULL}, NULL, NULL, BAD_PAIR("")},
    {{"--model", "square:workers", NULL}, NULL, NULL, BAD_PAIR("workers")},
    {{"--model", "square:=1", NULL}, NULL, NULL, BAD_PAIR("=1")},
    {{"--model", "square:a=", NULL}, NULL, NULL, BAD_PAIR("a=")},
    {{"--model", "square:a=1,,b=2", NULL}, NULL, NULL, BAD_PAIR("")},
    {{"--model", "square:a=1,", NULL}, NULL, NULL, BAD_PAIR("")},
    {{"--model", "square:a b=1", NULL}, NULL, NULL, BAD_PAIR("a b=1")},
    {{"--model", "square:a=1,a=2", NULL}, NULL, NULL, "--model square: 'a' given twice"},
    {{"--model", "square:workers=1,workers=2", NULL}, NULL, NULL,
     "--model square: 'workers' given twice"},
    {{"--model", "x:plugin=a,plugin=b", NULL}, NULL, NULL, "--model x: 'plugin' given twice"},
    {{"--model", "square:workers=0", NULL}, NULL, NULL,
     "--model square: workers: expected an integer from 1 to 256, got '0'"},
    {{"--model", "square:workers=257", NULL}, NULL, NULL,
     "--model square: workers: expected an integer from 1 to 256, got '257'"},
    {{"--model", "square:workers=two", NULL}, NULL, NULL,
     "--model square: workers: expected an integer from 1 to 256, got 'two'"},
    {{"--model", "square", "--model", "square:workers=2", NULL}, NULL, NULL,
     "--model: model 'square' is named twice"},
    {{NULL}, "BATCHD_MODELS", "echo;square echo", "BATCHD_MODELS: model 'echo' is named twice"},
    {{NULL}, "BATCHD_MODELS", "echo:workers=0",
     "BATCHD_MODELS echo: workers: expected an integer from 1 to 256, got '0'"},
    /* recycling limits: the global flags, their variables, a model's keys */
    {{"--max-items-per-worker", "-1", NULL}, NULL, NULL,
     "--max-items-per-worker: expected an integer from 0 to 1000000000000, got '-1'"},
    {{"--max-items-per-worker", "50x", NULL}, NULL, NULL,
     "--max-items-per-worker: expected an integer from 0 to 1000000000000, got '50x'"},
    {{"--max-items-per-worker", "1000000000001", NULL}, NULL, NULL,
     "--max-items-per-worker: expected an integer from 0 to 1000000000000, got '1000000000001'"},
    {{NULL}, "BATCHD_MAX_ITEMS_PER_WORKER", "many",
     "BATCHD_MAX_ITEMS_PER_WORKER: expected an integer from 0 to 1000000000000, got 'many'"},
    {{"--max-worker-rss", "12X", NULL}, NULL, NULL,
     "--max-worker-rss: expected a size in bytes from 0 to 1024G (K, M, G suffixes allowed), "
     "got '12X'"},
    {{"--max-worker-rss", "2048G", NULL}, NULL, NULL,
     "--max-worker-rss: expected a size in bytes from 0 to 1024G (K, M, G suffixes allowed), "
     "got '2048G'"},
    {{NULL}, "BATCHD_MAX_WORKER_RSS", "1.5G",
     "BATCHD_MAX_WORKER_RSS: expected a size in bytes from 0 to 1024G (K, M, G suffixes "
     "allowed), got '1.5G'"},
    {{"--model", "echo:max_items=ten", NULL}, NULL, NULL,
     "--model echo: max_items: expected an integer from 0 to 1000000000000 (0 = no limit), "
     "got 'ten'"},
    {{"--model", "echo:max_items=-3", NULL}, NULL, NULL,
     "--model echo: max_items: expected an integer from 0 to 1000000000000 (0 = no limit), "
     "got '-3'"},
    {{"--model", "echo:max_rss=64Q", NULL}, NULL, NULL,
     "--model echo: max_rss: expected a size in bytes from 0 to 1024G (K, M, G suffixes "
     "allowed; 0 = no limit), got '64Q'"},
    {{"--model", "echo:max_rss=1,max_rss=2", NULL}, NULL, NULL,
     "--model echo: 'max_rss' given twice"},
    {{"--model", "echo:max_items=1,max_items=2", NULL}, NULL, NULL,
     "--model echo: 'max_items' given twice"},
    {{NULL}, "BATCHD_MODELS", "echo:max_rss=lots",
     "BATCHD_MODELS echo: max_rss: expected a size in bytes from 0 to 1024G (K, M, G suffixes "
     "allowed; 0 = no limit), got 'lots'"},
};

static void test_errors(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const struct error_case *t = &error_cases[i];
        clear_env(NULL);
        if (t->env_name)
            setenv(t->env_name, t->env_value, 1);
        struct config c;
        memset(&c, 0xA5, sizeof c); /* must come back zeroed */
        char err[512];
        int rc = parse_argv(&c, t->args, err, sizeof err);
        if (rc != -EINVAL || strcmp(err, t->message) != 0)
            fail_msg("case %zu (%s%s%s): rc %d, err\n  '%s'\nwant\n  '%s'", i,
                     t->args[0] ? t->args[0] : "", t->env_name ? " env " : "",
                     t->env_name ? t->env_name : "", rc, err, t->message);
        assert_true(is_zeroed(&c));
        assert_null(strchr(err, '\n'));
        config_free(&c); /* safe on what a failure leaves */
    }
}

/* A failed parse leaves getopt reusable, and err is always cut to fit. */
static void test_repeatable_and_truncated(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--bogus"), -EINVAL);
    assert_int_equal(PARSE(&c, err, "--workers"), -EINVAL);
    assert_int_equal(PARSE(&c, err, "--workers", "7"), 0);
    assert_int_equal(c.workers, 7);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--workers", "7"), 0);
    assert_int_equal(c.workers, 7);
    config_free(&c);

    char small[10];
    assert_int_equal(PARSE(&c, small, "--workers", "abc"), -EINVAL);
    assert_string_equal(small, "--workers");
    assert_int_equal(PARSE(&c, small, "--workers", "1"), 0);
    config_free(&c);

    /* No error buffer at all is allowed. */
    const char *args[] = {"--workers", "abc", NULL};
    assert_int_equal(parse_argv(&c, args, NULL, 0), -EINVAL);
}

static void test_free_is_safe(void **unused)
{
    (void)unused;
    struct config c = {0};
    config_free(&c);
    config_free(&c);
    config_free(NULL);
    char err[64];
    assert_int_equal(PARSE(&c, err, "--model", "x:plugin=/p,a=1,b=2"), 0);
    config_free(&c);
    assert_true(is_zeroed(&c));
    config_free(&c);
}

/* ---- --help, --version --------------------------------------------------- */

/* Runs config_parse with stdout sent to a temporary file; returns its text
 * (new, caller frees). */
static char *capture_stdout(const char *const *args, int *rc)
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

static void test_help(void **unused)
{
    (void)unused;
    int rc;
    const char *args[] = {"--help", NULL};
    char *text = capture_stdout(args, &rc);
    assert_int_equal(rc, CONFIG_PRINTED);
    assert_non_null(strstr(text, "Usage: batchd"));
    const char *flags[] = {"--listen", "--data-dir", "--workers", "--model", "--max-body-bytes",
                           "--max-items", "--max-item-bytes", "--max-connections",
                           "--idle-timeout", "--max-attempts", "--item-timeout",
                           "--port-file", "--max-queued-items", "--grace",
                           "--max-item-timeout", "--help", "--version",
                           "echo, square, sum_squares, exp_sinh, convolve2d, prefix_count, "
                           "chaos (only when named)",
                           "[BATCHD_MAX_ITEM_TIMEOUT; default 3600; 0.001 to 86400]",
                           "[BATCHD_GRACE; default 10; 0 to 3600]",
                           "[BATCHD_MAX_QUEUED_ITEMS; default 20000000; 1 to 10000000000]"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strstr(text, flags[i]))
            fail_msg("--help does not mention %s", flags[i]);
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        if (!strstr(text, env_names[i]))
            fail_msg("--help does not mention %s", env_names[i]);
    free(text);

    /* The same text through config_usage. */
    const char *short_args[] = {"-h", NULL};
    text = capture_stdout(short_args, &rc);
    assert_int_equal(rc, CONFIG_PRINTED);
    assert_non_null(strstr(text, "Usage: batchd"));
    free(text);
}

static void test_version(void **unused)
{
    (void)unused;
    int rc;
    const char *args[] = {"--version", NULL};
    char *text = capture_stdout(args, &rc);
    assert_int_equal(rc, CONFIG_PRINTED);
    assert_string_equal(text, "batchd 0.1.0\n");
    free(text);

    const char *short_args[] = {"-V", "--help", NULL};
    text = capture_stdout(short_args, &rc);
    assert_int_equal(rc, CONFIG_PRINTED);
    assert_string_equal(text, "batchd 0.1.0\n"); /* the first one asked wins */
    free(text);
}

static void test_help_wins_over_errors(void **unused)
{
    (void)unused;
    int rc;
    setenv("BATCHD_WORKERS", "many", 1);
    const char *cases[][4] = {
        {"--workers", "abc", "--help", NULL},
        {"--bogus", "--help", NULL, NULL},
        {"--help", "stray", NULL, NULL},
        {"--help", NULL, NULL, NULL}, /* with a bad BATCHD_WORKERS */
        {"--model", "nope", "--version", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = capture_stdout(cases[i], &rc);
        if (rc != CONFIG_PRINTED)
            fail_msg("case %zu: rc %d", i, rc);
        assert_true(strlen(text) > 0);
        free(text);
    }
}

/* ---- the config file, the new settings, --print-config ------------------ */

/* Writes `text` to a new temporary file; returns its path (static, per slot). */
static const char *temp_file(int slot, const char *text)
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

static void test_new_settings_defaults(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), 0);
    assert_int_equal(c.log_level, 1); /* info */
    assert_true(c.access_log);
    assert_null(c.config_file);
    assert_int_equal(c.n_api_tokens, 0);
    assert_null(c.tokens_file);
    assert_false(c.auth_metrics);
    assert_int_equal(c.n_cors_origins, 0);
    assert_null(c.tls_cert);
    assert_null(c.tls_cert_pem);
    assert_false(c.print_config);
    for (size_t i = 0; i < CONFIG_MAX_SETTINGS; i++)
        assert_int_equal(c.source[i], CONFIG_SRC_DEFAULT);
    config_free(&c);
}

static void test_new_settings_three_ways(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    /* flag */
    assert_int_equal(PARSE(&c, err, "--log-level", "WARN", "--access-log", "false",
                           "--api-tokens", " a1 ,b2==, ", "--auth-metrics", "true",
                           "--cors-origins", "https://x.example,http://127.0.0.1:3000",
                           "--print-config"),
                     0);
    assert_int_equal(c.log_level, 2);
    assert_false(c.access_log);
    assert_int_equal(c.n_api_tokens, 2);
    assert_string_equal(c.api_tokens[0], "a1");
    assert_string_equal(c.api_tokens[1], "b2==");
    assert_true(c.auth_metrics);
    assert_int_equal(c.n_cors_origins, 2);
    assert_string_equal(c.cors_origins[1], "http://127.0.0.1:3000");
    assert_true(c.print_config);
    config_free(&c);
    /* variable */
    setenv("BATCHD_LOG_LEVEL", "debug", 1);
    setenv("BATCHD_ACCESS_LOG", "false", 1);
    setenv("BATCHD_API_TOKENS", "tok", 1);
    setenv("BATCHD_CORS_ORIGINS", "*", 1);
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), 0);
    assert_int_equal(c.log_level, 0);
    assert_false(c.access_log);
    assert_int_equal(c.n_api_tokens, 1);
    assert_string_equal(c.cors_origins[0], "*");
    config_free(&c);
    clear_env(NULL);
    /* file */
    const char *f = temp_file(0, "{\"log-level\": \"error\", \"access-log\": false,"
                                 " \"auth-metrics\": true, \"api-tokens\": [\"t1\", \"t2\"],"
                                 " \"cors-origins\": [\"https://[::1]:8443\"]}");
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    assert_int_equal(c.log_level, 3);
    assert_false(c.access_log);
    assert_true(c.auth_metrics);
    assert_int_equal(c.n_api_tokens, 2);
    assert_string_equal(c.api_tokens[1], "t2");
    assert_string_equal(c.cors_origins[0], "https://[::1]:8443");
    assert_string_equal(c.config_file, f);
    config_free(&c);
    unlink(f);
}

/* Every setting of test_every_flag, from a file instead. */
static void test_file_every_setting(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\n"
                                 "  \"listen\": \"0.0.0.0:9001\",\n"
                                 "  \"data-dir\": \"/var/lib/batchd\",\n"
                                 "  \"workers\": 5,\n"
                                 "  \"models\": [\"square\", \"echo:workers=2\"],\n"
                                 "  \"max-body-bytes\": \"2M\",\n"
                                 "  \"max-items\": 1234,\n"
                                 "  \"max-item-bytes\": 4096,\n"
                                 "  \"max-connections\": 17,\n"
                                 "  \"idle-timeout\": 9,\n"
                                 "  \"max-attempts\": 7,\n"
                                 "  \"item-timeout\": 2.5,\n"
                                 "  \"port-file\": \"/tmp/port\",\n"
                                 "  \"max-queued-items\": 10000000000,\n"
                                 "  \"grace\": \"1.25\",\n"
                                 "  \"max-item-timeout\": 60.5\n"
                                 "}\n");
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    check_all_set(&c);
    for (size_t i = 0; i < CONFIG_MAX_SETTINGS; i++)
        assert_true(c.source[i] == CONFIG_SRC_DEFAULT || c.source[i] == CONFIG_SRC_FILE ||
                    c.source[i] == CONFIG_SRC_FLAG /* --config itself */);
    config_free(&c);
    /* "model" (the flag's name) is accepted too, and a string of specs */
    const char *g = temp_file(1, "{\"model\": \"square echo:workers=2\", \"workers\": 5}");
    assert_int_equal(PARSE(&c, err, "--config", g), 0);
    assert_int_equal(c.n_models, 2);
    assert_int_equal(c.models[1].workers, 2);
    config_free(&c);
    unlink(f);
    unlink(g);
}

static void test_file_precedence(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\"workers\": 2, \"max-items\": 100, \"idle-timeout\": 7,"
                                 " \"models\": [\"echo\"], \"port-file\": null}");
    const char *g = temp_file(1, "{\"workers\": 3}");
    struct config c;
    char err[256];
    setenv("BATCHD_MAX_ITEMS", "200", 1);
    setenv("BATCHD_IDLE_TIMEOUT", "8", 1);
    setenv("BATCHD_CONFIG", g, 1);
    assert_int_equal(PARSE(&c, err, "--config", f, "--idle-timeout", "9"), 0);
    assert_string_equal(c.config_file, f);  /* the flag's file, not the variable's */
    assert_int_equal(c.workers, 2);          /* file */
    assert_int_equal(c.max_items, 200);      /* env over file */
    assert_int_equal(c.idle_timeout_s, 9);   /* flag over env over file */
    assert_null(c.port_file);                /* null is unset */
    assert_int_equal(c.n_models, 1);
    assert_int_equal(c.models[0].workers, 2);
    config_free(&c);
    /* BATCHD_MODELS replaces the file's models whole; --model replaces both */
    setenv("BATCHD_MODELS", "square", 1);
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "square");
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--config", f, "--model", "sum_squares"), 0);
    assert_string_equal(c.models[0].name, "sum_squares");
    config_free(&c);
    /* the variable's file when there is no flag */
    assert_int_equal(PARSE(&c, err, "--max-attempts", "2"), 0);
    assert_string_equal(c.config_file, g);
    assert_int_equal(c.workers, 3);
    config_free(&c);
    unlink(f);
    unlink(g);
}

struct file_error_case {
    const char *text;
    const char *message; /* after "<path>: "; PATH stands for the file's path */
};

static void test_file_errors(void **unused)
{
    (void)unused;
    static const struct file_error_case cases[] = {
        {"{\"wokers\": 2}",
         "unknown key 'wokers' (the keys are the flags' names, see --help; \"models\" for "
         "--model)"},
        {"{\"help\": true}",
         "unknown key 'help' (the keys are the flags' names, see --help; \"models\" for --model)"},
        {"{\"config\": \"x\"}", "key 'config' cannot be set in a config file"},
        {"[]", "expected a JSON object of settings keyed by flag name"},
        {"{\"model\": \"echo\", \"models\": [\"square\"]}",
         "give \"models\" or \"model\", not both"},
        {"{\"workers\": 0}", "key 'workers': expected an integer from 1 to 256, got '0'"},
        {"{\"workers\": -3}", "key 'workers': expected an integer from 1 to 256, got '-3'"},
        {"{\"workers\": true}", "key 'workers': expected an integer, got a JSON boolean"},
        {"{\"data-dir\": 5}", "key 'data-dir': expected a string, got a JSON integer"},
        {"{\"max-body-bytes\": [1]}",
         "key 'max-body-bytes': expected an integer or a string such as \"64M\", got a JSON "
         "array"},
        {"{\"grace\": 1.0005}",
         "key 'grace': expected seconds from 0 to 3600 (up to 3 decimals), got '1.0005'"},
        {"{\"access-log\": 1}", "key 'access-log': expected true or false, got a JSON integer"},
        {"{\"log-level\": \"loud\"}",
         "key 'log-level': expected debug, info, warn or error, got 'loud'"},
        {"{\"api-tokens\": [\"ok\", 3]}", "key 'api-tokens': expected an array of strings"},
        {"{\"api-tokens\": \",,\"}", "key 'api-tokens': expected at least one token, got none"},
        {"{\"models\": {\"a\": 1}}",
         "key 'models': expected an array of model specs such as \"square:workers=2\""},
        {"{\"item-timeout\": 5, \"max-item-timeout\": 4}",
         "key 'item-timeout': 5 seconds exceeds PATH: key 'max-item-timeout' (4 seconds), the "
         "longest item timeout a job may ask for"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f = temp_file(0, cases[i].text);
        char want[700], with_path[512];
        const char *pp = strstr(cases[i].message, "PATH");
        if (pp)
            snprintf(with_path, sizeof with_path, "%.*s%s%s", (int)(pp - cases[i].message),
                     cases[i].message, f, pp + 4);
        else
            snprintf(with_path, sizeof with_path, "%s", cases[i].message);
        snprintf(want, sizeof want, "%s: %s", f, with_path);
        struct config c;
        memset(&c, 0xA5, sizeof c);
        char err[512];
        int rc = PARSE(&c, err, "--config", f);
        if (rc != -EINVAL || strcmp(err, want) != 0)
            fail_msg("case %zu: rc %d, err\n  '%s'\nwant\n  '%s'", i, rc, err, want);
        assert_true(is_zeroed(&c));
        unlink(f);
    }
    /* syntax errors name the line; an unreadable file says why */
    const char *f = temp_file(0, "{\n\"workers\": 2,\n}");
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--config", f), -EINVAL);
    assert_non_null(strstr(err, ": line 3, column"));
    unlink(f);
    assert_int_equal(PARSE(&c, err, "--config", "/nonexistent/batchd.json"), -EINVAL);
    assert_string_equal(err, "config file: cannot read /nonexistent/batchd.json: No such file or "
                             "directory");
    setenv("BATCHD_CONFIG", "", 1); /* empty: unset */
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_null(c.config_file);
    config_free(&c);
}

static void test_token_and_origin_lists(void **unused)
{
    (void)unused;
#define BAD_TOKEN(n)                                                                            \
    "--api-tokens: token " n " is not a valid bearer token (1 to 512 characters of letters, " \
    "digits, - . _ ~ + / and a trailing =)"
#define BAD_ORIGIN(x) "--cors-origins: expected * or origins such as https://host[:port], got '" x "'"
    static const struct {
        const char *flag, *value, *message;
    } bad[] = {
        {"--api-tokens", "a b", BAD_TOKEN("1")},
        {"--api-tokens", "ok,=x", BAD_TOKEN("2")},
        {"--api-tokens", "a=b", BAD_TOKEN("1")},
        {"--api-tokens", " , ", "--api-tokens: expected at least one token, got none"},
        {"--cors-origins", "example.com", BAD_ORIGIN("example.com")},
        {"--cors-origins", "https://a.example/", BAD_ORIGIN("https://a.example/")},
        {"--cors-origins", "ftp://a.example", BAD_ORIGIN("ftp://a.example")},
        {"--cors-origins", "https://a.example:123456", BAD_ORIGIN("https://a.example:123456")},
        {"--cors-origins", "https://", BAD_ORIGIN("https://")},
        {"--cors-origins", "https://[::1", BAD_ORIGIN("https://[::1")},
        {"--access-log", "yes", "--access-log: expected true or false, got 'yes'"},
        {"--log-level", "verbose",
         "--log-level: expected debug, info, warn or error, got 'verbose'"},
    };
#undef BAD_TOKEN
#undef BAD_ORIGIN
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config c;
        char err[512];
        int rc = PARSE(&c, err, bad[i].flag, bad[i].value);
        if (rc != -EINVAL || strcmp(err, bad[i].message) != 0)
            fail_msg("case %zu: rc %d, err\n  '%s'\nwant\n  '%s'", i, rc, err, bad[i].message);
        /* a secret is never quoted back */
        if (strcmp(bad[i].flag, "--api-tokens") == 0 && strlen(bad[i].value) > 2)
            assert_null(strstr(err, bad[i].value));
    }
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--api-tokens", "abc-DEF_123.~+/xyz==",
                           "--cors-origins", "HTTPS://A.example:1,http://h-1.example"),
                     0);
    assert_int_equal(c.n_api_tokens, 1);
    assert_int_equal(c.n_cors_origins, 2);
    config_free(&c);
}

static void test_tokens_file(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "# comment\n\n  tok-1  \r\n\t# indented comment\ntok2==\n"
                                 "last-without-newline");
    char **t = NULL;
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(config_read_tokens_file(f, &t, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(t[0], "tok-1");
    assert_string_equal(t[1], "tok2==");
    assert_string_equal(t[2], "last-without-newline");
    config_tokens_free(t, n);
    unlink(f);

    f = temp_file(0, "# only comments\n\n");
    assert_int_equal(config_read_tokens_file(f, &t, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(t);
    unlink(f);

    f = temp_file(0, "good\nbad token\n");
    assert_int_equal(config_read_tokens_file(f, &t, &n, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ", line 2: not a valid bearer token"));
    assert_null(strstr(err, "bad token"));
    unlink(f);

    assert_int_equal(config_read_tokens_file("/nonexistent/tokens", &t, &n, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "cannot read /nonexistent/tokens"));

    /* config_parse reads it at start: a bad file is a start-up error */
    f = temp_file(0, "bad token\n");
    struct config c;
    assert_int_equal(PARSE(&c, err, "--tokens-file", f), -EINVAL);
    assert_true(is_zeroed(&c));
    unlink(f);
}

static void test_tls_files(void **unused)
{
    (void)unused;
    const char *cert = temp_file(0, "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n");
    const char *key = temp_file(1, "-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n");
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--tls-cert", cert, "--tls-key", key), 0);
    assert_non_null(strstr(c.tls_cert_pem, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(c.tls_key_pem, "BEGIN PRIVATE KEY"));
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--tls-cert", cert), -EINVAL);
    assert_string_equal(err, "--tls-cert: --tls-cert and --tls-key go together, got only the "
                             "certificate");
    setenv("BATCHD_TLS_KEY", key, 1);
    assert_int_equal(PARSE(&c, err, "--tls-cert", "/nonexistent.pem"), -EINVAL);
    assert_string_equal(err, "--tls-cert: cannot read /nonexistent.pem: No such file or directory");
    assert_int_equal(PARSE(&c, err, "--tls-cert", "/tmp"), -EINVAL);
    assert_string_equal(err, "--tls-cert: cannot read /tmp: Is a directory");
    unlink(cert);
    unlink(key);
}

/* The object store's three settings: each source, the size suffixes, the
 * ranges, and max-object-bytes <= object-memory whichever source each
 * came from (the message names both). */
static void test_object_settings(void **unused)
{
    (void)unused;
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--object-memory", "2G", "--max-object-bytes", "512K",
                           "--max-objects", "10"),
                     0);
    assert_int_equal(c.object_memory, 2ull << 30);
    assert_int_equal(c.max_object_bytes, 512ull << 10);
    assert_int_equal(c.max_objects, 10);
    config_free(&c);

    setenv("BATCHD_OBJECT_MEMORY", "64M", 1);
    setenv("BATCHD_MAX_OBJECT_BYTES", "1048576", 1);
    setenv("BATCHD_MAX_OBJECTS", "7", 1);
    assert_int_equal(PARSE(&c, err, "--max-objects", "8"), 0);
    assert_int_equal(c.object_memory, 64ull << 20);
    assert_int_equal(c.max_object_bytes, 1ull << 20);
    assert_int_equal(c.max_objects, 8); /* the flag wins */
    config_free(&c);
    clear_env(NULL);

    const char *f = temp_file(0, "{\"object-memory\": \"128M\", \"max-object-bytes\": 4096, "
                                 "\"max-objects\": 99}");
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    assert_int_equal(c.object_memory, 128ull << 20);
    assert_int_equal(c.max_object_bytes, 4096);
    assert_int_equal(c.max_objects, 99);
    config_free(&c);

    /* Equal is fine; one byte more is not, from any source. */
    assert_int_equal(PARSE(&c, err, "--object-memory", "1M", "--max-object-bytes", "1M"), 0);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--object-memory", "1M", "--max-object-bytes", "1048577"),
                     -EINVAL);
    assert_string_equal(err, "--max-object-bytes: 1048577 exceeds --object-memory (1M), the "
                             "memory all objects share");
    assert_true(is_zeroed(&c));
    setenv("BATCHD_OBJECT_MEMORY", "100M", 1);
    assert_int_equal(PARSE(&c, err, "--max-object-bytes", "200M"), -EINVAL);
    assert_string_equal(err, "--max-object-bytes: 200M exceeds BATCHD_OBJECT_MEMORY (100M), the "
                             "memory all objects share");
    /* the default limit (256M) shrinks to a smaller object memory: the
     * user set only one of the two */
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_int_equal(c.max_object_bytes, 100ull << 20);
    config_free(&c);
    clear_env(NULL);
    assert_int_equal(PARSE(&c, err, "--config", f, "--object-memory", "2K"), -EINVAL);
    assert_string_equal(err, "--object-memory: expected a size in bytes from 64K to 1024G (K, M, "
                             "G suffixes allowed), got '2K'");

    /* ranges */
    assert_int_equal(PARSE(&c, err, "--max-objects", "0"), -EINVAL);
    assert_string_equal(err, "--max-objects: expected an integer from 1 to 1048576, got '0'");
    assert_int_equal(PARSE(&c, err, "--max-objects", "1048577"), -EINVAL);
    assert_int_equal(PARSE(&c, err, "--max-object-bytes", "0"), -EINVAL);
    assert_int_equal(PARSE(&c, err, "--object-memory", "2T"), -EINVAL);
    assert_int_equal(PARSE(&c, err, "--object-memory", "1024G", "--max-objects", "1048576"), 0);
    assert_int_equal(c.object_memory, 1ull << 40);
    config_free(&c);
    unlink(f);
}

static void test_print_config(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\"workers\": 2, \"api-tokens\": \"secret-a,secret-b\"}");
    setenv("BATCHD_MAX_ITEMS", "7", 1);
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--config", f, "--grace", "2.5", "--print-config"), 0);
    assert_true(c.print_config);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_print(&c, out);
    fclose(out);
    config_free(&c);
    assert_non_null(strstr(text, "\nworkers            2  [file]\n"));
    assert_non_null(strstr(text, "\nmax-items          7  [env BATCHD_MAX_ITEMS]\n"));
    assert_non_null(strstr(text, "\ngrace              2.5  [flag --grace]\n"));
    assert_non_null(strstr(text, "\nmax-body-bytes     64M  [default]\n"));
    assert_non_null(strstr(text, "\napi-tokens         ******** (2 tokens)  [file]\n"));
    assert_non_null(strstr(text, "\nobject-memory      1G  [default]\n"));
    assert_non_null(strstr(text, "\nmax-object-bytes   256M  [default]\n"));
    assert_non_null(strstr(text, "\nmax-objects        4096  [default]\n"));
    assert_null(strstr(text, "secret-a"));
    assert_null(strstr(text, "secret-b"));
    /* one line per setting (39 of them), after the heading */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 40);
    free(text);
    unlink(f);
}

/* The recycling limits: off by default; the global flag, variable and file
 * key reach every model; a model's own max_items= / max_rss= win, an
 * explicit 0 included; they are taken out of the model's parameters. */
static void test_recycle_limits(void **unused)
{
    (void)unused;
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--model", "echo"), 0);
    assert_int_equal(c.max_items_per_worker, 0);
    assert_int_equal(c.max_worker_rss, 0);
    assert_int_equal(c.models[0].max_items, 0);
    assert_int_equal(c.models[0].max_rss, 0);
    config_free(&c);

    assert_int_equal(PARSE(&c, err, "--max-items-per-worker", "100", "--max-worker-rss", "512M",
                           "--model", "echo:max_items=50,a=1", "--model", "square:max_rss=1G",
                           "--model", "sum_squares:max_items=0,max_rss=0", "--model",
                           "exp_sinh"),
                     0);
    assert_int_equal(c.max_items_per_worker, 100);
    assert_int_equal(c.max_worker_rss, 512ull << 20);
    assert_int_equal(c.models[0].max_items, 50);        /* its own */
    assert_int_equal(c.models[0].max_rss, 512ull << 20); /* the global one */
    assert_int_equal(c.models[0].n_params, 1);          /* only a=1 reaches the model */
    assert_string_equal(c.models[0].keys[0], "a");
    assert_int_equal(c.models[1].max_items, 100);
    assert_int_equal(c.models[1].max_rss, 1ull << 30);
    assert_int_equal(c.models[2].max_items, 0); /* an explicit 0 turns the global off */
    assert_int_equal(c.models[2].max_rss, 0);
    assert_int_equal(c.models[3].max_items, 100);
    assert_int_equal(c.models[3].max_rss, 512ull << 20);
    config_free(&c);

    setenv("BATCHD_MAX_ITEMS_PER_WORKER", "7", 1);
    setenv("BATCHD_MAX_WORKER_RSS", "64K", 1);
    setenv("BATCHD_MODELS", "echo:max_rss=2M", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_int_equal(c.models[0].max_items, 7);
    assert_int_equal(c.models[0].max_rss, 2ull << 20);
    assert_int_equal(c.max_worker_rss, 64ull << 10);
    config_free(&c);
    clear_env(NULL);

    const char *f = temp_file(0, "{\"max-items-per-worker\": 1000, \"max-worker-rss\": \"1G\","
                                 " \"models\": [\"echo\", \"square:max_items=3\"]}");
    assert_int_equal(PARSE(&c, err, "--config", f, "--max-worker-rss", "0"), 0);
    assert_int_equal(c.models[0].max_items, 1000);
    assert_int_equal(c.models[0].max_rss, 0); /* the flag beats the file */
    assert_int_equal(c.models[1].max_items, 3);
    config_free(&c);
    unlink(f);
}

/* Webhooks (issue 18): off by default; hosts need a secret; the secret
 * is whsec_ + base64 of 24..64 bytes, never printed or quoted back. */
static void test_webhook_settings(void **unused)
{
    (void)unused;
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_null(c.webhook_hosts);
    assert_null(c.webhook_secret);
    assert_int_equal(c.webhook_retry_for_s, 86400);
    config_free(&c);

    setenv("BATCHD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    assert_int_equal(PARSE(&c, err, "--webhook-hosts", "hooks.example:443,127.0.0.1:9000,[::1]:80",
                           "--webhook-retry-for", "60"),
                     0);
    assert_string_equal(c.webhook_hosts, "hooks.example:443,127.0.0.1:9000,[::1]:80");
    assert_int_equal(c.webhook_retry_for_s, 60);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    config_print(&c, out);
    fclose(out);
    assert_null(strstr(text, "MfKQ9r8"));
    assert_non_null(strstr(text, "\nwebhook-secret     ********  [env BATCHD_WEBHOOK_SECRET]\n"));
    free(text);
    config_free(&c);

    /* a bad secret is refused without being quoted back */
    setenv("BATCHD_WEBHOOK_SECRET", "whsec_c2hvcnQ=", 1); /* 5 bytes: too short */
    assert_int_equal(PARSE(&c, err, "--webhook-hosts", "a:1"), -EINVAL);
    assert_null(strstr(err, "c2hvcnQ"));
    assert_non_null(strstr(err, "BATCHD_WEBHOOK_SECRET"));
    setenv("BATCHD_WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1); /* no whsec_ */
    assert_int_equal(PARSE(&c, err, "--webhook-hosts", "a:1"), -EINVAL);
    unsetenv("BATCHD_WEBHOOK_SECRET");
    /* hosts without a secret, and malformed hosts */
    assert_int_equal(PARSE(&c, err, "--webhook-hosts", "a:1"), -EINVAL);
    assert_non_null(strstr(err, "signing secret"));
    setenv("BATCHD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    const char *bad[] = { "a", "a:0", "a:65536", "http://a:1", "a:1,,b:2", ":80", "a b:1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(PARSE(&c, err, "--webhook-hosts", bad[i]), -EINVAL);
        assert_non_null(strstr(err, "--webhook-hosts"));
    }
    unsetenv("BATCHD_WEBHOOK_SECRET");
    clear_env(NULL);
}

/* --store / BATCHD_STORE: sqlite by default, or a PostgreSQL URI (both
 * schemes); anything else is refused without being quoted back; the
 * URI's password never shows in --print-config; webhooks (whose outbox
 * is SQLite's) are refused beside PostgreSQL. */
static void test_store_setting(void **unused)
{
    (void)unused;
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_string_equal(c.store, "sqlite");
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--store", "postgres://u@db:5432/b"), 0);
    assert_string_equal(c.store, "postgres://u@db:5432/b");
    config_free(&c);
    setenv("BATCHD_STORE", "postgresql://batchd:hunter2@db:5432/batchd", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    config_print(&c, out);
    fclose(out);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(
        strstr(text, "\nstore              postgresql://batchd:********@db:5432/batchd  [env "));
    free(text);
    config_free(&c);
    setenv("BATCHD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    assert_int_equal(PARSE(&c, err, "--webhook-hosts", "a:1"), -EINVAL);
    assert_non_null(strstr(err, "PostgreSQL"));
    unsetenv("BATCHD_WEBHOOK_SECRET");
    unsetenv("BATCHD_STORE");
    assert_int_equal(PARSE(&c, err, "--store", "mysql://pw@x"), -EINVAL);
    assert_non_null(strstr(err, "--store"));
    assert_null(strstr(err, "pw@x"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_every_flag),
        T(test_every_variable),
        T(test_connection_settings),
        T(test_flags_win_over_env_over_defaults),
        T(test_last_repeated_flag_wins),
        T(test_empty_variable_is_unset),
        T(test_abbreviated_flag),
        T(test_sizes_and_suffixes),
        T(test_item_timeout_seconds),
        T(test_grace_and_max_item_timeout_seconds),
        T(test_max_queued_items_values),
        T(test_item_timeout_within_max),
        T(test_listen_values),
        T(test_model_params),
        T(test_models_variable),
        T(test_max_models),
        T(test_errors),
        T(test_repeatable_and_truncated),
        T(test_free_is_safe),
        T(test_help),
        T(test_version),
        T(test_help_wins_over_errors),
        T(test_new_settings_defaults),
        T(test_new_settings_three_ways),
        T(test_file_every_setting),
        T(test_file_precedence),
        T(test_file_errors),
        T(test_token_and_origin_lists),
        T(test_tokens_file),
        T(test_tls_files),
        T(test_object_settings),
        T(test_print_config),
        T(test_recycle_limits),
        T(test_webhook_settings),
        T(test_store_setting),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
