/*
 * Unit tests for api/auth.c: the constant-time comparison, the parsing of
 * the Authorization header, which routes are protected, and the reload of
 * the tokens file (kept on failure).
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

#include "api/http/auth.h"
#include "service/config/config.h"

static char tokens_path[64];

static void write_tokens(const char *text)
{
    FILE *f = fopen(tokens_path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **unused)
{
    (void)unused;
    snprintf(tokens_path, sizeof tokens_path, "/tmp/test_auth_XXXXXX");
    int fd = mkstemp(tokens_path);
    assert_true(fd >= 0);
    close(fd);
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    unlink(tokens_path);
    return 0;
}

static void test_equal(void **unused)
{
    (void)unused;
    assert_true(api_auth_equal("abc", 3, "abc", 3));
    assert_false(api_auth_equal("abd", 3, "abc", 3));
    assert_false(api_auth_equal("ab", 2, "abc", 3));
    assert_false(api_auth_equal("abcd", 4, "abc", 3));
    assert_false(api_auth_equal("abcabc", 6, "abc", 3)); /* the wrap-around is no match */
    assert_false(api_auth_equal("", 0, "abc", 3));
    assert_true(api_auth_equal("x", 1, "x", 1));
}

static void test_off_without_tokens(void **unused)
{
    (void)unused;
    struct config cfg = {0};
    char err[128];
    struct api_auth *a = api_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    assert_false(api_auth_enabled(a));
    assert_int_equal(api_auth_check(a, NULL), API_AUTH_OK);
    assert_int_equal(api_auth_check(a, "Bearer whatever"), API_AUTH_OK);
    assert_int_equal(api_auth_reload(a, err, sizeof err), 0);
    api_auth_destroy(a);
    api_auth_destroy(NULL);
}

static void test_check(void **unused)
{
    (void)unused;
    char t1[] = "token-one", t2[] = "two==";
    char *tokens[] = {t1, t2};
    struct config cfg = {.api_tokens = tokens, .n_api_tokens = 2};
    char err[128];
    struct api_auth *a = api_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    assert_true(api_auth_enabled(a));
    assert_int_equal(api_auth_count(a), 2);
    static const struct {
        const char *header;
        enum api_auth_result want;
    } cases[] = {
        {NULL, API_AUTH_MISSING},
        {"", API_AUTH_MISSING},
        {"Bearer", API_AUTH_MISSING},
        {"Bearer   ", API_AUTH_MISSING},
        {"Bearertoken-one", API_AUTH_MISSING},
        {"Basic dG9rZW4tb25l", API_AUTH_MISSING},
        {"token-one", API_AUTH_MISSING},
        {"Bearer token-one", API_AUTH_OK},
        {"bearer token-one", API_AUTH_OK},
        {"BEARER \t token-one \t", API_AUTH_OK},
        {"Bearer two==", API_AUTH_OK},
        {"Bearer two=", API_AUTH_INVALID},
        {"Bearer token-on", API_AUTH_INVALID},
        {"Bearer token-one2", API_AUTH_INVALID},
        {"Bearer token-one two==", API_AUTH_INVALID},
        {"Bearer TOKEN-ONE", API_AUTH_INVALID}, /* tokens are case-sensitive */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (api_auth_check(a, cases[i].header) != cases[i].want)
            fail_msg("case %zu (%s): got %d, want %d", i,
                     cases[i].header ? cases[i].header : "NULL",
                     (int)api_auth_check(a, cases[i].header), (int)cases[i].want);
    /* a token past the longest allowed is refused without comparing */
    char *long_hdr = malloc(CONFIG_MAX_TOKEN_LEN + 20);
    assert_non_null(long_hdr);
    strcpy(long_hdr, "Bearer ");
    memset(long_hdr + 7, 'a', CONFIG_MAX_TOKEN_LEN + 1);
    long_hdr[7 + CONFIG_MAX_TOKEN_LEN + 1] = '\0';
    assert_int_equal(api_auth_check(a, long_hdr), API_AUTH_INVALID);
    free(long_hdr);
    api_auth_destroy(a);
}

static void test_protects(void **unused)
{
    (void)unused;
    struct config cfg = {0};
    assert_true(api_auth_protects(&cfg, API_ROUTE_JOBS, API_METHOD_POST));
    assert_true(api_auth_protects(&cfg, API_ROUTE_JOBS, API_METHOD_OTHER));
    assert_true(api_auth_protects(&cfg, API_ROUTE_JOB, API_METHOD_DELETE));
    assert_true(api_auth_protects(&cfg, API_ROUTE_JOB_RESULTS, API_METHOD_GET));
    assert_true(api_auth_protects(&cfg, API_ROUTE_MODELS, API_METHOD_GET));
    assert_true(api_auth_protects(&cfg, API_ROUTE_WORKERS, API_METHOD_GET));
    assert_false(api_auth_protects(&cfg, API_ROUTE_JOBS, API_METHOD_OPTIONS));
    assert_false(api_auth_protects(&cfg, API_ROUTE_HEALTHZ, API_METHOD_GET));
    assert_false(api_auth_protects(&cfg, API_ROUTE_READYZ, API_METHOD_GET));
    assert_false(api_auth_protects(&cfg, API_ROUTE_METRICS, API_METHOD_GET));
    assert_false(api_auth_protects(&cfg, API_ROUTE_NONE, API_METHOD_GET));
    cfg.auth_metrics = true;
    assert_true(api_auth_protects(&cfg, API_ROUTE_METRICS, API_METHOD_GET));
    assert_false(api_auth_protects(&cfg, API_ROUTE_HEALTHZ, API_METHOD_GET));
}

static void test_file_and_reload(void **unused)
{
    (void)unused;
    write_tokens("# first\nfile-a\n");
    struct config cfg = {.tokens_file = tokens_path};
    char err[256];
    struct api_auth *a = api_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    assert_true(api_auth_enabled(a));
    assert_int_equal(api_auth_check(a, "Bearer file-a"), API_AUTH_OK);

    write_tokens("file-b\nfile-c\n");
    assert_int_equal(api_auth_reload(a, err, sizeof err), 0);
    assert_int_equal(api_auth_count(a), 2);
    assert_int_equal(api_auth_check(a, "Bearer file-a"), API_AUTH_INVALID);
    assert_int_equal(api_auth_check(a, "Bearer file-c"), API_AUTH_OK);

    /* a bad file is not loaded: the tokens in use stay */
    write_tokens("file-d\nnot a token\n");
    assert_int_equal(api_auth_reload(a, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "line 2"));
    assert_int_equal(api_auth_check(a, "Bearer file-b"), API_AUTH_OK);
    assert_int_equal(api_auth_check(a, "Bearer file-d"), API_AUTH_INVALID);

    /* an empty file lets nobody in (auth stays on: it fails closed) */
    write_tokens("# nobody\n");
    assert_int_equal(api_auth_reload(a, err, sizeof err), 0);
    assert_true(api_auth_enabled(a));
    assert_int_equal(api_auth_count(a), 0);
    assert_int_equal(api_auth_check(a, "Bearer file-b"), API_AUTH_INVALID);

    /* a file that vanished: kept, -ENOENT */
    unlink(tokens_path);
    assert_int_equal(api_auth_reload(a, err, sizeof err), -ENOENT);
    api_auth_destroy(a);

    /* and at creation, a missing file is an error */
    assert_null(api_auth_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "cannot read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_off_without_tokens),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_protects),
        cmocka_unit_test_setup_teardown(test_file_and_reload, setup, teardown),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
