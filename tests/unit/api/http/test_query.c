/* Unit tests of api/query.c: declared parameters, strict integers and
 * booleans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "api/http/query.h"

static const struct {
    const char *in;
    uint64_t min, max;
    int rc;
    uint64_t want;
} u64_cases[] = {
    { "0", 0, 10, 0, 0 },
    { "7", 0, 10, 0, 7 },
    { "10", 0, 10, 0, 10 },
    { "007", 0, 10, 0, 7 },
    { "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
    { "11", 0, 10, -ERANGE, 0 },
    { "0", 1, 1000, -ERANGE, 0 },
    { "18446744073709551616", 0, UINT64_MAX, -ERANGE, 0 },
    { "99999999999999999999999999", 0, UINT64_MAX, -ERANGE, 0 },
    { "", 0, 10, -EINVAL, 0 },
    { " 1", 0, 10, -EINVAL, 0 },
    { "1 ", 0, 10, -EINVAL, 0 },
    { "+1", 0, 10, -EINVAL, 0 },
    { "-1", 0, 10, -EINVAL, 0 },
    { "-0", 0, 10, -EINVAL, 0 },
    { "0x1", 0, 10, -EINVAL, 0 },
    { "1.0", 0, 10, -EINVAL, 0 },
    { "1e2", 0, 1000, -EINVAL, 0 },
    { "5abc", 0, 10, -EINVAL, 0 },
    { "\t5", 0, 10, -EINVAL, 0 },
};

static void test_parse_u64(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof u64_cases / sizeof u64_cases[0]; i++) {
        uint64_t out = 12345;
        int rc = api_parse_u64(u64_cases[i].in, u64_cases[i].min, u64_cases[i].max, &out);
        if (rc != u64_cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", u64_cases[i].in, rc, u64_cases[i].rc);
        if (rc == 0)
            assert_true(out == u64_cases[i].want);
        else
            assert_true(out == 12345); /* untouched on failure */
    }
    uint64_t out;
    assert_int_equal(api_parse_u64(NULL, 0, 1, &out), -EINVAL);
}

static void test_parse_bool(void **state)
{
    (void)state;
    bool b = false;
    assert_int_equal(api_parse_bool("true", &b), 0);
    assert_true(b);
    assert_int_equal(api_parse_bool("false", &b), 0);
    assert_false(b);
    static const char *const bad[] = { "", "TRUE", "True", "1", "0", "yes", "true ", " false",
                                       "t", NULL };
    for (size_t i = 0; bad[i]; i++) {
        b = true;
        assert_int_equal(api_parse_bool(bad[i], &b), -EINVAL);
        assert_true(b);
    }
    assert_int_equal(api_parse_bool(NULL, &b), -EINVAL);
}

static const char *const names[] = { "offset", "limit", "stream", NULL };

static void test_query_known(void **state)
{
    (void)state;
    struct api_query q;
    api_query_init(&q, names);
    assert_int_equal(api_query_add(&q, "limit", "5"), 0);
    assert_int_equal(api_query_add(&q, "stream", NULL), 0);
    assert_string_equal(api_query_get(&q, "limit"), "5");
    assert_string_equal(api_query_get(&q, "stream"), ""); /* bare key: fails to parse later */
    assert_null(api_query_get(&q, "offset"));
    assert_null(api_query_get(&q, "nope"));
    assert_null(q.bad_key);
}

static void test_query_refused(void **state)
{
    (void)state;
    struct api_query q;
    api_query_init(&q, names);
    assert_int_equal(api_query_add(&q, "limt", "5"), -ENOENT);
    assert_int_equal(api_query_add(&q, "limit", "5"), 0);
    assert_int_equal(api_query_add(&q, "limit", "6"), -EEXIST);
    /* the first refusal is the one reported */
    assert_string_equal(q.bad_key, "limt");
    assert_int_equal(q.bad_err, -ENOENT);
    assert_string_equal(api_query_get(&q, "limit"), "5");

    api_query_init(&q, names);
    assert_int_equal(api_query_add(&q, "offset", "1"), 0);
    assert_int_equal(api_query_add(&q, "offset", "1"), -EEXIST);
    assert_string_equal(q.bad_key, "offset");
    assert_int_equal(q.bad_err, -EEXIST);

    /* names are case-sensitive */
    api_query_init(&q, names);
    assert_int_equal(api_query_add(&q, "Limit", "1"), -ENOENT);
}

static void test_query_empty_key(void **state)
{
    (void)state;
    struct api_query q;
    api_query_init(&q, names);
    assert_int_equal(api_query_add(&q, "", NULL), 0);
    assert_int_equal(api_query_add(&q, "", ""), 0);
    assert_null(q.bad_key);
    /* "=value" carries something that has no name: refused */
    assert_int_equal(api_query_add(&q, "", "x"), -ENOENT);
    assert_string_equal(q.bad_key, "");
}

static void test_query_no_names(void **state)
{
    (void)state;
    struct api_query q;
    api_query_init(&q, NULL);
    assert_int_equal(api_query_add(&q, "anything", "1"), -ENOENT);
    assert_null(api_query_get(&q, "anything"));

    /* names past the maximum are not declared */
    static const char *const many[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", NULL };
    api_query_init(&q, many);
    assert_int_equal(q.n_names, API_QUERY_MAX_PARAMS);
    assert_int_equal(api_query_add(&q, "h", "1"), 0);
    assert_int_equal(api_query_add(&q, "i", "1"), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64),     cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_query_known),   cmocka_unit_test(test_query_refused),
        cmocka_unit_test(test_query_empty_key), cmocka_unit_test(test_query_no_names),
    };
    return cmocka_run_group_tests_name("api/query", tests, NULL, NULL);
}
