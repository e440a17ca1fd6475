/*
 * Unit tests for service/config/config_values.c: the values of settings as
 * text, called directly (test_config.c reaches them through the parse):
 * numbers with and without size suffixes, seconds to milliseconds and
 * back, HOST:PORT, names, tokens, origins, comma lists, and the small
 * files settings name.
 */
#include "tests/unit/service/config/config_fixture.h"

#include "service/config/config_int.h"

static void test_parse_number(void **unused)
{
    (void)unused;
    unsigned long long v = 7;
    assert_int_equal(config_parse_number("42", false, 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(config_parse_number("64K", true, 0, ~0ull, &v), 0);
    assert_int_equal(v, 64 * 1024);
    assert_int_equal(config_parse_number("2MiB", true, 0, ~0ull, &v), 0);
    assert_int_equal(v, 2ull << 20);
    assert_int_equal(config_parse_number("3g", true, 0, ~0ull, &v), 0);
    assert_int_equal(v, 3ull << 30);
    /* each refused, and *out untouched */
    static const char *const bad[] = {"", " 1", "+1", "-1", "1x", "0x10", "1K", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        assert_int_equal(config_parse_number(bad[i], false, 0, ~0ull, &v), -EINVAL);
        assert_int_equal(v, 7);
    }
    assert_int_equal(config_parse_number("1T", true, 0, ~0ull, &v), -EINVAL);
    assert_int_equal(config_parse_number("17179869184G", true, 0, ~0ull, &v), -EINVAL); /* 2^64 */
    assert_int_equal(config_parse_number("101", false, 0, 100, &v), -EINVAL);
    assert_int_equal(config_parse_number("0", false, 1, 100, &v), -EINVAL);
}

static void test_millis_and_seconds(void **unused)
{
    (void)unused;
    static const struct { const char *text; unsigned long long ms; const char *back; } cases[] = {
        {"0", 0, "0"},       {"2.5", 2500, "2.5"},     {"0.001", 1, "0.001"},
        {"3600", 3600000, "3600"}, {"1.25", 1250, "1.25"}, {"10.100", 10100, "10.1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned long long ms = 0;
        char buf[32];
        assert_int_equal(config_parse_millis(cases[i].text, 0, ~0ull, &ms), 0);
        assert_int_equal(ms, cases[i].ms);
        config_format_seconds(buf, sizeof buf, ms);
        assert_string_equal(buf, cases[i].back);
    }
    unsigned long long ms = 9;
    static const char *const bad[] = {"", ".5", "1.", "1.0001", "1.x", "-1", "1e3", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(config_parse_millis(bad[i], 0, ~0ull, &ms), -EINVAL);
    assert_int_equal(ms, 9);
    assert_int_equal(config_parse_millis("0.5", 1000, 2000, &ms), -EINVAL);
}

static void test_format_size(void **unused)
{
    (void)unused;
    static const struct { unsigned long long v; const char *text; } cases[] = {
        {0, "0"}, {1000, "1000"}, {1024, "1K"}, {1536, "1536"}, {64ull << 20, "64M"},
        {3ull << 30, "3G"}, {(1ull << 30) + 1024, "1048577K"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        config_format_size(buf, sizeof buf, cases[i].v);
        assert_string_equal(buf, cases[i].text);
        /* what it writes reads back as the same number */
        unsigned long long back;
        assert_int_equal(config_parse_number(buf, true, 0, ~0ull, &back), 0);
        assert_int_equal(back, cases[i].v);
    }
}

static void test_listen(void **unused)
{
    (void)unused;
    struct config c = {0};
    char err[256];
    assert_int_equal(config_parse_listen(&c, "--listen", "localhost:0", err, sizeof err), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 0);
    assert_int_equal(config_parse_listen(&c, "--listen", "10.1.2.3:65535", err, sizeof err), 0);
    assert_string_equal(c.listen_host, "10.1.2.3");
    assert_int_equal(c.listen_port, 65535);
    static const char *const bad[] = {"8080", ":80", "host:80", "1.2.3.4:65536", "::1:80",
                                      "1.2.3.4:", "1.2.3.4:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(config_parse_listen(&c, "BATCHD_LISTEN", bad[i], err, sizeof err),
                         -EINVAL);
        assert_non_null(strstr(err, "BATCHD_LISTEN: expected HOST:PORT"));
        assert_non_null(strstr(err, bad[i]));
    }
    /* a failure leaves the earlier value */
    assert_string_equal(c.listen_host, "10.1.2.3");
    free(c.listen_host);
}

static void test_names_tokens_origins(void **unused)
{
    (void)unused;
    assert_true(config_valid_name("mlp_2.v-1", 9));
    assert_false(config_valid_name("", 0));
    assert_false(config_valid_name("a b", 3));
    assert_false(config_valid_name("a/b", 3));
    char longname[CONFIG_MAX_NAME_LEN + 2];
    memset(longname, 'a', sizeof longname);
    assert_true(config_valid_name(longname, CONFIG_MAX_NAME_LEN));
    assert_false(config_valid_name(longname, CONFIG_MAX_NAME_LEN + 1));

    assert_true(config_token_valid("abc-._~+/XYZ09==", 16));
    assert_false(config_token_valid("a b", 3));
    assert_false(config_token_valid("=abc", 4));
    assert_false(config_token_valid("", 0));

    assert_true(config_origin_entry_valid("*", 1));
    assert_true(config_origin_entry_valid("https://example.com", 19));
    assert_true(config_origin_entry_valid("http://127.0.0.1:8080", 21));
    assert_false(config_origin_entry_valid("example.com", 11));
    assert_false(config_origin_entry_valid("https://example.com/", 20));
}

static void test_split_list(void **unused)
{
    (void)unused;
    char **v = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(config_split_list("--api-tokens", " a1 ,, b2 ,c3", "token", 8, config_token_valid,
                                       true, &v, &n, err, sizeof err),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "a1");
    assert_string_equal(v[1], "b2");
    assert_string_equal(v[2], "c3");
    config_strv_free(v, n, true);

    v = NULL;
    assert_int_equal(config_split_list("--api-tokens", "ok,bad token", "token", 8,
                                       config_token_valid, true, &v, &n, err, sizeof err),
                     -EINVAL);
    assert_null(v);
    assert_non_null(strstr(err, "--api-tokens"));
    assert_int_equal(config_split_list("--cors-origins", " , ", "origin", 8,
                                       config_origin_entry_valid, false, &v, &n, err, sizeof err),
                     -EINVAL);
    assert_null(v);
    assert_int_equal(config_split_list("X", "a,b,c", "token", 2, config_token_valid, true, &v, &n,
                                       err, sizeof err),
                     -EINVAL);
    assert_null(v);
    config_strv_free(NULL, 0, true); /* NULL is fine */
}

static void test_small_files(void **unused)
{
    (void)unused;
    const char *path = temp_file(0, "line one\nline two\n");
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(config_read_small_file(path, &text, &len), 0);
    assert_int_equal(len, 18);
    assert_string_equal(text, "line one\nline two\n");
    free(text);
    unlink(path);
    text = NULL;
    assert_true(config_read_small_file(path, &text, &len) < 0);
    assert_null(text);
    char err[256];
    assert_int_equal(config_file_error("--tls-cert", path, -ENOENT, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--tls-cert"));
    assert_non_null(strstr(err, path));

    /* one byte past the limit is refused */
    char big[] = "/tmp/test_config_values_XXXXXX";
    int fd = mkstemp(big);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, CONFIG_MAX_FILE_BYTES + 1), 0);
    close(fd);
    assert_int_equal(config_read_small_file(big, &text, &len), -EFBIG);
    unlink(big);

    /* the tokens file: comments and blank lines skipped */
    path = temp_file(1, "# ops\ntok1\n\n  tok2  \n");
    char **tokens = NULL;
    size_t n = 0;
    assert_int_equal(config_read_tokens_file(path, &tokens, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(tokens[0], "tok1");
    assert_string_equal(tokens[1], "tok2");
    config_tokens_free(tokens, n);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_number),       cmocka_unit_test(test_millis_and_seconds),
        cmocka_unit_test(test_format_size),        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_names_tokens_origins), cmocka_unit_test(test_split_list),
        cmocka_unit_test(test_small_files),
    };
    return cmocka_run_group_tests_name("config_values", tests, NULL, NULL);
}
