/* Unit tests of api/headers.c: Content-Type, Accept, If-None-Match and
 * X-Request-Id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "api/http/headers.h"

static const struct {
    const char *value;
    int rc;
    enum api_body_type type;
} ct_cases[] = {
    { "application/json", 0, API_BODY_JSON },
    { "Application/JSON", 0, API_BODY_JSON },
    { "application/json; charset=utf-8", 0, API_BODY_JSON },
    { "application/json;charset=UTF-8", 0, API_BODY_JSON },
    { "application/json; charset=\"utf-8\"", 0, API_BODY_JSON },
    { "  application/json  ", 0, API_BODY_JSON },
    { "application/json; foo=bar", 0, API_BODY_JSON },
    { "application/json;", 0, API_BODY_JSON },
    { "application/x-ndjson", 0, API_BODY_NDJSON },
    { "application/x-ndjson; charset=utf-8", 0, API_BODY_NDJSON },
    { NULL, -ENOENT, API_BODY_JSON },
    { "", -ENOENT, API_BODY_JSON },
    { "   ", -ENOENT, API_BODY_JSON },
    { "text/plain", -ENOTSUP, API_BODY_JSON },
    { "application/jsonx", -ENOTSUP, API_BODY_JSON },
    { "application/problem+json", -ENOTSUP, API_BODY_JSON },
    { "application/json; charset=latin1", -ENOTSUP, API_BODY_JSON },
    { "application/json; charset=utf-16", -ENOTSUP, API_BODY_JSON },
    { "application/json, text/plain", -ENOTSUP, API_BODY_JSON },
    { "application/json; charset=\"utf-8", -ENOTSUP, API_BODY_JSON },
    { "application/json; =x", -ENOTSUP, API_BODY_JSON },
    { "application/", -ENOTSUP, API_BODY_JSON },
    { "application", -ENOTSUP, API_BODY_JSON },
    { "/json", -ENOTSUP, API_BODY_JSON },
    { "multipart/form-data; boundary=x", -ENOTSUP, API_BODY_JSON },
};

static void test_content_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ct_cases / sizeof ct_cases[0]; i++) {
        enum api_body_type t = (enum api_body_type)99;
        int rc = api_content_type_parse(ct_cases[i].value, &t);
        if (rc != ct_cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", ct_cases[i].value ? ct_cases[i].value : "(null)",
                     rc, ct_cases[i].rc);
        if (rc == 0)
            assert_int_equal(t, ct_cases[i].type);
    }
}

static const struct {
    const char *accept;
    bool ndjson;
} accept_cases[] = {
    { NULL, false },
    { "", false },
    { "*/*", false },
    { "application/*", false },
    { "application/json", false },
    { "application/x-ndjson", true },
    { "Application/X-NDJSON", true },
    { "application/x-ndjson;q=0", false },
    { "application/x-ndjson;q=0.000", false },
    { "application/x-ndjson;q=0.1", true },
    { "application/json, application/x-ndjson", true },
    { "application/x-ndjson;q=0.5, application/json", false },
    { "application/x-ndjson, application/json;q=0.9", true },
    { "application/json;q=0.5, application/x-ndjson;q=0.5", true },
    { "text/html, application/x-ndjson", true },
    { "garbage, application/x-ndjson", true },
    { ";;;, application/x-ndjson", true },
    { "application/x-ndjson; q=1.0", true },
    { "application/x-ndjson;q=bogus", true },
};

static void test_accept(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
        bool got = api_accept_wants_ndjson(accept_cases[i].accept);
        if (got != accept_cases[i].ndjson)
            fail_msg("\"%s\": got %d", accept_cases[i].accept ? accept_cases[i].accept : "(null)",
                     got);
    }
}

static const struct {
    const char *inm;
    const char *etag;
    bool match;
} etag_cases[] = {
    { "\"abc\"", "\"abc\"", true },
    { "W/\"abc\"", "\"abc\"", true },
    { "\"abc\"", "W/\"abc\"", true },
    { "*", "\"abc\"", true },
    { " * ", "\"abc\"", true },
    { "\"x\", \"abc\"", "\"abc\"", true },
    { "\"x\",\"abc\"", "\"abc\"", true },
    { "\"a,b\", \"abc\"", "\"abc\"", true },
    { "\"a,b\"", "\"a\"", false },
    { "\"abd\"", "\"abc\"", false },
    { "abc", "\"abc\"", false },
    { "\"abc", "\"abc\"", false },
    { "\"ab\"", "\"abc\"", false },
    { "", "\"abc\"", false },
    { NULL, "\"abc\"", false },
    { "\"abc\"", NULL, false },
    { "\"abc\"", "abc", false },
    { "*, \"abc\"", "\"abc\"", false },
};

static void test_etag(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof etag_cases / sizeof etag_cases[0]; i++) {
        bool got = api_etag_matches(etag_cases[i].inm, etag_cases[i].etag);
        if (got != etag_cases[i].match)
            fail_msg("If-None-Match %s vs %s: got %d",
                     etag_cases[i].inm ? etag_cases[i].inm : "(null)",
                     etag_cases[i].etag ? etag_cases[i].etag : "(null)", got);
    }
}

static void test_idempotency_key(void **state)
{
    (void)state;
    char max[API_IDEMPOTENCY_KEY_MAX + 2];
    memset(max, 'k', API_IDEMPOTENCY_KEY_MAX);
    max[API_IDEMPOTENCY_KEY_MAX] = '\0';
    assert_true(api_idempotency_key_valid("order-42"));
    assert_true(api_idempotency_key_valid("3f2a9c1e-7b4d-4e0a-9a61-0c5d2f8e6b11"));
    assert_true(api_idempotency_key_valid("a:b/c=d"));
    assert_true(api_idempotency_key_valid(max));
    max[API_IDEMPOTENCY_KEY_MAX] = 'k';
    max[API_IDEMPOTENCY_KEY_MAX + 1] = '\0';
    assert_false(api_idempotency_key_valid(max));
    assert_false(api_idempotency_key_valid(""));
    assert_false(api_idempotency_key_valid(NULL));
    assert_false(api_idempotency_key_valid("has space"));
    assert_false(api_idempotency_key_valid("tab\there"));
    assert_false(api_idempotency_key_valid("caf\xc3\xa9"));
}

static void test_request_id(void **state)
{
    (void)state;
    assert_true(api_request_id_valid("a"));
    assert_true(api_request_id_valid("Req-1.2_3"));
    char max[API_REQUEST_ID_MAX + 2];
    memset(max, 'x', sizeof max);
    max[API_REQUEST_ID_MAX] = '\0';
    assert_true(api_request_id_valid(max));
    max[API_REQUEST_ID_MAX] = 'x';
    max[API_REQUEST_ID_MAX + 1] = '\0';
    assert_false(api_request_id_valid(max));
    assert_false(api_request_id_valid(""));
    assert_false(api_request_id_valid(NULL));
    assert_false(api_request_id_valid("a b"));
    assert_false(api_request_id_valid("a\r\nX-Evil: 1"));
    assert_false(api_request_id_valid("a/b"));
    assert_false(api_request_id_valid("\xc3\xa9"));

    char a[ID_LEN + 1], b[ID_LEN + 1];
    api_request_id_new(a);
    api_request_id_new(b);
    assert_int_equal(strlen(a), ID_LEN);
    assert_true(id_valid(a, strlen(a)));  /* the one id form: lowercase base32 */
    assert_true(api_request_id_valid(a));
    assert_string_not_equal(a, b);
}

/* POST /v1/objects: octet-stream or x-npy, parameters ignored. */
static void test_object_type(void **state)
{
    (void)state;
    bool npy = true;
    assert_int_equal(api_object_type_parse("application/octet-stream", &npy), 0);
    assert_false(npy);
    assert_int_equal(api_object_type_parse("Application/X-NPY", &npy), 0);
    assert_true(npy);
    assert_int_equal(api_object_type_parse("application/x-npy; version=1", &npy), 0);
    assert_true(npy);
    assert_int_equal(api_object_type_parse(" application/octet-stream ", &npy), 0);
    assert_false(npy);
    assert_int_equal(api_object_type_parse(NULL, &npy), -ENOENT);
    assert_int_equal(api_object_type_parse("  ", &npy), -ENOENT);
    assert_int_equal(api_object_type_parse("application/json", &npy), -ENOTSUP);
    assert_int_equal(api_object_type_parse("application/x-npyz", &npy), -ENOTSUP);
    assert_int_equal(api_object_type_parse("application/octet-stream, application/x-npy", &npy),
                     -ENOTSUP);
    assert_int_equal(api_object_type_parse("application", &npy), -ENOTSUP);
}

static void test_accept_npy(void **state)
{
    (void)state;
    assert_false(api_accept_wants_npy(NULL));
    assert_false(api_accept_wants_npy("*/*"));
    assert_false(api_accept_wants_npy("application/octet-stream"));
    assert_true(api_accept_wants_npy("application/x-npy"));
    assert_true(api_accept_wants_npy("application/octet-stream;q=0.5, application/x-npy"));
    assert_false(api_accept_wants_npy("application/octet-stream, application/x-npy;q=0.5"));
    assert_true(api_accept_wants_npy("application/x-npy, application/octet-stream"));
    assert_false(api_accept_wants_npy("application/x-npy;q=0"));
    assert_true(api_accept_wants_npy("text/html, APPLICATION/X-NPY;q=0.1"));
}

static void test_header_gap(void **state)
{
    (void)state;
    /* libmicrohttpd writes NUL over CR and LF: LF, CRLF, then the empty line */
    assert_true(api_header_gap_clean("\0", 1, false));
    assert_true(api_header_gap_clean("\0\0", 2, false));
    assert_true(api_header_gap_clean("\0\0\0\0", 4, true));
    assert_true(api_header_gap_clean("\0\0", 2, true));
    assert_false(api_header_gap_clean("\0", 1, true)); /* the empty line is missing */
    assert_false(api_header_gap_clean("", 0, false));
    /* "TOKEN\0junk\r\n": the value's C string stops at the client's NUL */
    assert_false(api_header_gap_clean("\0junk\0\0", 7, false));
    assert_false(api_header_gap_clean("\0x\0", 3, false));
    /* "TOKEN\0\r\n": only NULs, but one too many */
    assert_false(api_header_gap_clean("\0\0\0", 3, false));
    assert_false(api_header_gap_clean("\0\0\0\0\0", 5, true));
    assert_false(api_header_gap_clean("\0j\0\0", 4, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_object_type),
        cmocka_unit_test(test_accept_npy),
        cmocka_unit_test(test_header_gap),
    };
    return cmocka_run_group_tests_name("api/headers", tests, NULL, NULL);
}
