/*
 * Unit tests for service/config/config_print.c: --help (every row of the
 * settings table, its variable, default and range; --help wins over any
 * error), --version, and --print-config (each value, where it came from,
 * secrets masked).
 */
#include "tests/unit/service/config/config_fixture.h"

#include "service/config/config_int.h"

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
    /* every row of the table: its flag and its variable */
    for (size_t i = 0; i < config_n_settings; i++) {
        char flag[80];
        snprintf(flag, sizeof flag, "  --%s %s\n", config_settings[i].flag, config_settings[i].arg);
        if (!strstr(text, flag))
            fail_msg("--help does not show %s", flag);
        if (!strstr(text, config_settings[i].env))
            fail_msg("--help does not mention %s", config_settings[i].env);
    }
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
    assert_non_null(strstr(text, "\nmax-output-size    64M  [default]\n"));
    /* one line per setting (40 of them), after the heading */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 41);
    free(text);
    unlink(f);
}

/* config_print's text straight to a file: one line per row, in table
 * order, each naming its source; a token never appears. */
static void test_print_lines(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    setenv("BATCHD_API_TOKENS", "sekrit-token-1", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "3", "--max-body-bytes", "2M", "--grace", "2.5",
                           "--model", "square:workers=2,max_rss=64M,gain=2"),
                     0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_print(&c, f);
    fclose(f);
    assert_null(strstr(text, "sekrit"));
    const char *line = strchr(text, '\n') + 1; /* past the title */
    for (size_t i = 0; i < config_n_settings; i++) {
        char start[64];
        snprintf(start, sizeof start, "%-18s ", config_settings[i].flag);
        if (strncmp(line, start, strlen(start)) != 0)
            fail_msg("row %zu: expected a line for --%s, got %.40s", i, config_settings[i].flag,
                     line);
        line = strchr(line, '\n') + 1;
    }
    assert_int_equal(*line, '\0');
    assert_non_null(strstr(text, "workers            3  [flag --workers]\n"));
    assert_non_null(strstr(text, "max-body-bytes     2M  [flag --max-body-bytes]\n"));
    assert_non_null(strstr(text, "grace              2.5  [flag --grace]\n"));
    assert_non_null(strstr(text, "api-tokens         ******** (1 token)  [env BATCHD_API_TOKENS]\n"));
    assert_non_null(strstr(text, "model              square:workers=2,max_rss=64M,gain=2  [flag --model]\n"));
    assert_non_null(strstr(text, "data-dir           ./data  [default]\n"));
    free(text);
    config_free(&c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_help), T(test_version), T(test_help_wins_over_errors), T(test_print_config),
        T(test_print_lines),
    };
    return cmocka_run_group_tests_name("config_print", tests, NULL, NULL);
}
