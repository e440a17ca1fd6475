/*
 * Unit tests for api/cors.c: which Origin values a configured list allows
 * (the headers themselves are checked by tests/integration/test_auth.c
 * against the real server).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "service/config/config.h"
#include "api/http/cors.h"

static void test_nothing_by_default(void **unused)
{
    (void)unused;
    struct config cfg = {0};
    assert_false(api_cors_origin_allowed(&cfg, "https://a.example"));
    assert_false(api_cors_origin_allowed(&cfg, NULL));
    assert_false(api_cors_origin_allowed(&cfg, "null"));
}

static void test_list(void **unused)
{
    (void)unused;
    char o1[] = "https://a.example", o2[] = "http://127.0.0.1:3000";
    char *origins[] = {o1, o2};
    struct config cfg = {.cors_origins = origins, .n_cors_origins = 2};
    assert_true(api_cors_origin_allowed(&cfg, "https://a.example"));
    assert_true(api_cors_origin_allowed(&cfg, "HTTPS://A.EXAMPLE"));
    assert_true(api_cors_origin_allowed(&cfg, "http://127.0.0.1:3000"));
    assert_false(api_cors_origin_allowed(&cfg, "http://a.example"));      /* other scheme */
    assert_false(api_cors_origin_allowed(&cfg, "https://a.example:443")); /* other text */
    assert_false(api_cors_origin_allowed(&cfg, "https://a.example.evil"));
    assert_false(api_cors_origin_allowed(&cfg, "https://b.example"));
    assert_false(api_cors_origin_allowed(&cfg, "http://127.0.0.1:30001"));
    assert_false(api_cors_origin_allowed(&cfg, ""));
    assert_false(api_cors_origin_allowed(&cfg, NULL));
}

static void test_any(void **unused)
{
    (void)unused;
    char star[] = "*";
    char *origins[] = {star};
    struct config cfg = {.cors_origins = origins, .n_cors_origins = 1};
    assert_true(api_cors_origin_allowed(&cfg, "https://anything.example"));
    assert_false(api_cors_origin_allowed(&cfg, ""));
    assert_false(api_cors_origin_allowed(&cfg, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_by_default),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_any),
    };
    return cmocka_run_group_tests_name("cors", tests, NULL, NULL);
}
