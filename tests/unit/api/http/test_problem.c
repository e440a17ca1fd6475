/* Unit tests of api/problem.c: the kinds table, the setters and the
 * problem+json encoder (including what it does with bytes from clients). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/http/problem.h"

/* Every kind, its slug and status as openapi.yaml lists them. */
static const struct {
    enum api_problem_kind kind;
    const char *slug;
    int status;
} kinds[] = {
    { API_PROBLEM_INVALID_JSON, "invalid-json", 400 },
    { API_PROBLEM_INVALID_PARAMETER, "invalid-parameter", 400 },
    { API_PROBLEM_NOT_FOUND, "not-found", 404 },
    { API_PROBLEM_METHOD_NOT_ALLOWED, "method-not-allowed", 405 },
    { API_PROBLEM_NOT_ACCEPTABLE, "not-acceptable", 406 },
    { API_PROBLEM_CONFLICT, "conflict", 409 },
    { API_PROBLEM_TOO_LARGE, "too-large", 413 },
    { API_PROBLEM_UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", 415 },
    { API_PROBLEM_INVALID_JOB, "invalid-job", 422 },
    { API_PROBLEM_UNKNOWN_MODEL, "unknown-model", 422 },
    { API_PROBLEM_OVERLOADED, "overloaded", 429 },
    { API_PROBLEM_INTERNAL, "internal", 500 },
    { API_PROBLEM_NOT_READY, "not-ready", 503 },
    { API_PROBLEM_SHUTTING_DOWN, "shutting-down", 503 },
    { API_PROBLEM_MODEL_UNAVAILABLE, "model-unavailable", 503 },
    { API_PROBLEM_UNAUTHORIZED, "unauthorized", 401 },
    { API_PROBLEM_INSUFFICIENT_STORAGE, "insufficient-storage", 507 },
    { API_PROBLEM_INVALID_OBJECT, "invalid-object", 400 },
};

static void test_kinds(void **state)
{
    (void)state;
    assert_int_equal(sizeof kinds / sizeof kinds[0], API_PROBLEM_KIND_COUNT);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        assert_string_equal(api_problem_slug(kinds[i].kind), kinds[i].slug);
        assert_int_equal(api_problem_status(kinds[i].kind), kinds[i].status);
        assert_non_null(api_problem_title(kinds[i].kind));
        assert_true(strlen(api_problem_title(kinds[i].kind)) > 0);
    }
    /* out of range is "internal", never a crash */
    assert_string_equal(api_problem_slug((enum api_problem_kind)999), "internal");
    assert_int_equal(api_problem_status((enum api_problem_kind)-1), 500);
}

static char *encode(const struct api_problem *p, const char *instance)
{
    struct sbuf b = SBUF_INIT;
    assert_int_equal(api_problem_encode(p, instance, &b), 0);
    return sbuf_steal(&b);
}

static void test_encode_minimal(void **state)
{
    (void)state;
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_NOT_FOUND, "no job %s", "abc");
    char *s = encode(&p, "/v1/jobs/abc");
    assert_string_equal(s, "{\"type\":\"urn:batchd:problem:not-found\",\"title\":\"Not found\","
                           "\"status\":404,\"detail\":\"no job abc\",\"instance\":\"/v1/jobs/abc\"}");
    free(s);
    /* a NULL instance is still a string member */
    s = encode(&p, NULL);
    assert_non_null(strstr(s, "\"instance\":\"\""));
    free(s);
}

static void test_encode_all_members(void **state)
{
    (void)state;
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_TOO_LARGE, "item %d is too large", 3);
    api_problem_set_pointer(&p, "/inputs/%d", 3);
    api_problem_set_index(&p, 3);
    api_problem_set_position(&p, 4, 17);
    api_problem_set_limit(&p, 262144);
    char *s = encode(&p, "/v1/jobs");
    json_error_t err;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "urn:batchd:problem:too-large");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 413);
    assert_string_equal(json_string_value(json_object_get(j, "pointer")), "/inputs/3");
    assert_int_equal(json_integer_value(json_object_get(j, "index")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "column")), 17);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 262144);
    assert_int_equal(json_object_size(j), 10);
    json_decref(j);
    free(s);
}

static void test_detail_cut(void **state)
{
    (void)state;
    char big[3000];
    /* "é" is two bytes: a cut at an odd offset must back off a whole char */
    for (size_t i = 0; i + 2 < sizeof big; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof big - 2] = '\0';
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_INVALID_JSON, "x%s", big);
    size_t n = strlen(p.detail);
    assert_true(n < API_PROBLEM_DETAIL_MAX);
    assert_string_equal(p.detail + n - 3, "...");
    char *s = encode(&p, "/");
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j); /* still valid UTF-8, so jansson takes it */
    assert_null(strstr(s, "\xef\xbf\xbd")); /* and nothing was replaced */
    json_decref(j);
    free(s);
}

static const struct {
    const char *parent;
    const char *key;
    const char *want;
} pointer_cases[] = {
    { "", "model", "/model" },
    { "", "a/b", "/a~1b" },
    { "", "m~n", "/m~0n" },
    { "/options", "chunk", "/options/chunk" },
    { "/options", "~/", "/options/~0~1" },
    { "", "", "/" },
};

static void test_pointer_key(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pointer_cases / sizeof pointer_cases[0]; i++) {
        struct api_problem p;
        api_problem_set(&p, API_PROBLEM_INVALID_JOB, "x");
        api_problem_set_pointer_key(&p, pointer_cases[i].parent, pointer_cases[i].key);
        assert_true(p.has & API_PROBLEM_HAS_POINTER);
        assert_string_equal(p.pointer, pointer_cases[i].want);
    }
    /* a key too long to quote: the parent, which is still true */
    char key[API_PROBLEM_POINTER_MAX * 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_INVALID_JOB, "x");
    api_problem_set_pointer_key(&p, "/options", key);
    assert_string_equal(p.pointer, "/options");
    /* escapes count: 127 '/' need 254 bytes plus the leading '/' */
    char slashes[128];
    memset(slashes, '/', sizeof slashes - 1);
    slashes[sizeof slashes - 1] = '\0';
    api_problem_set_pointer_key(&p, "", slashes);
    assert_int_equal(strlen(p.pointer), 255);
    /* a formatted pointer that does not fit is left unset */
    api_problem_set(&p, API_PROBLEM_INVALID_JOB, "x");
    api_problem_set_pointer(&p, "/%s", key);
    assert_false(p.has & API_PROBLEM_HAS_POINTER);
}

static const struct {
    const char *in;
    size_t len;
    const char *want;
} sanitize_cases[] = {
    { "plain", 5, "\"plain\"" },
    { "q\"b\\", 4, "\"q\\\"b\\\\\"" },
    { "\n\t\x01\x7f", 4, "\"\\u000a\\u0009\\u0001\\u007f\"" },
    { "caf\xc3\xa9", 5, "\"caf\xc3\xa9\"" },
    { "\xe2\x82\xac", 3, "\"\xe2\x82\xac\"" },             /* € */
    { "\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"" },     /* 😀 */
    { "\xff", 1, "\"\xef\xbf\xbd\"" },                     /* never valid */
    { "\xc0\x80", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },     /* overlong NUL */
    { "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* surrogate */
    { "\xf4\x90\x80\x80", 4,
      "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* past U+10FFFF */
    { "a\xc3", 2, "\"a\xef\xbf\xbd\"" },                   /* cut sequence */
    { "a\0b", 3, "\"a\\u0000b\"" },                        /* NUL inside n bytes */
};

static void test_sanitize(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sanitize_cases / sizeof sanitize_cases[0]; i++) {
        struct sbuf b = SBUF_INIT;
        assert_int_equal(api_json_string_sanitized(&b, sanitize_cases[i].in, sanitize_cases[i].len),
                         0);
        assert_string_equal(b.data, sanitize_cases[i].want);
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        json_decref(j);
        sbuf_free(&b);
    }
}

static void test_client_bytes_in_detail(void **state)
{
    (void)state;
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_INVALID_PARAMETER, "unknown query parameter %s",
                    "\xff\"\n");
    char *s = encode(&p, "/v1/\xfe");
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "unknown query parameter \xef\xbf\xbd\"\n");
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "/v1/\xef\xbf\xbd");
    json_decref(j);
    free(s);
}

static void test_encode_failure_leaves_buffer(void **state)
{
    (void)state;
    struct api_problem p;
    api_problem_set(&p, API_PROBLEM_INTERNAL, "out of memory");
    struct sbuf b = SBUF_INIT;
    sbuf_set_limit(&b, 40);
    assert_int_equal(sbuf_puts(&b, "prefix"), 0);
    assert_int_equal(api_problem_encode(&p, "/x", &b), -E2BIG);
    assert_string_equal(b.data, "prefix");
    assert_int_equal(b.len, 6);
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_encode_minimal),
        cmocka_unit_test(test_encode_all_members),
        cmocka_unit_test(test_detail_cut),
        cmocka_unit_test(test_pointer_key),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_client_bytes_in_detail),
        cmocka_unit_test(test_encode_failure_leaves_buffer),
    };
    return cmocka_run_group_tests_name("api/problem", tests, NULL, NULL);
}
