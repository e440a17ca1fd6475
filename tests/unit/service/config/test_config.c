/*
 * Unit tests for service/config/config.c, the parse: defaults, every flag
 * and variable, precedence, strict numbers, --listen, the rules between
 * settings, and every error message (data-driven). Model specs, the file,
 * --help and --print-config have their own files (test_config_models.c,
 * test_config_file.c, test_config_print.c). Each test starts from an environment
 * without any BATCHD_* variable.
 */
#include "tests/unit/service/config/config_fixture.h"

#include "service/config/config_int.h"

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
    assert_int_equal(c.max_output_size, 64ull << 20);
    assert_null(c.port_file);
    /* chaos is built in but never loaded unless named. */
    assert_non_null(model_builtin_find("chaos"));
    for (size_t i = 0; i < c.n_models; i++)
        assert_string_not_equal(c.models[i].name, "chaos");
    config_free(&c);
    assert_true(is_zeroed(&c));
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
    /* every variable of the settings table, empty */
    for (size_t i = 0; i < config_n_settings; i++)
        setenv(config_settings[i].env, "", 1);
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

/* ---- the config file, the new settings, --print-config ------------------ */

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
    assert_int_equal(PARSE(&c, err, "--max-output-size", "2M"), 0);
    assert_int_equal(c.max_output_size, 2u << 20);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--max-output-size", "0"), -EINVAL);
    assert_string_equal(err, "--max-output-size: expected a size in bytes from 1 to 1G (K, M, G "
                             "suffixes allowed), got '0'");
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
        T(test_errors),
        T(test_repeatable_and_truncated),
        T(test_free_is_safe),
        T(test_new_settings_defaults),
        T(test_new_settings_three_ways),
        T(test_token_and_origin_lists),
        T(test_tokens_file),
        T(test_tls_files),
        T(test_object_settings),
        T(test_webhook_settings),
        T(test_store_setting),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
