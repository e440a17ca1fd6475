/* Unit tests of service/core/jsonfmt.c: the shortest real that reads back, and
 * the in-place rewrite of jansson's text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "service/core/jsonfmt.h"

static void expect_real(double v, const char *want)
{
    char buf[JSONFMT_REAL_MAX];
    size_t n = jsonfmt_real(v, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_real_shortest(void **state)
{
    (void)state;
    expect_real(1.7e-7, "1.7e-7");     /* jansson: 1.6999999999999999e-7 */
    expect_real(0.1, "0.1");           /* jansson: 0.10000000000000001 */
    expect_real(0.3, "0.3");
    expect_real(2.5, "2.5");
    expect_real(5.0, "5.0");           /* stays a real */
    expect_real(-0.0, "-0.0");
    expect_real(1e16, "1e16");
    expect_real(1e300, "1e300");
    expect_real(1.1180339887498949, "1.118033988749895"); /* 16 digits suffice */
    expect_real(0.1 + 0.2, "0.30000000000000004");        /* 17 are needed */
    expect_real(1.1 * 1.1, "1.2100000000000002");
    expect_real(123456789012345678.0, "1.2345678901234568e17");
    expect_real(5e-324, "5e-324");     /* the smallest subnormal */
    expect_real(1.7976931348623157e308, "1.7976931348623157e308");
}

static void test_real_not_finite(void **state)
{
    (void)state;
    char buf[JSONFMT_REAL_MAX] = "x";
    assert_int_equal(jsonfmt_real(1.0 / 0.0, buf), 0);
    assert_string_equal(buf, "");
    assert_int_equal(jsonfmt_real(0.0 / 0.0, buf), 0);
}

/* Every double it writes reads back to itself, for many bit patterns. */
static void test_real_round_trips(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        memcpy(&v, &x, sizeof v);
        char buf[JSONFMT_REAL_MAX];
        size_t n = jsonfmt_real(v, buf);
        if (v != v || v - v != 0) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_true(n > 0);
        assert_true(strtod(buf, NULL) == v);
        /* never longer than jansson's %.17g spelling */
        char g17[64];
        json_t *r = json_real(v);
        assert_non_null(r);
        assert_int_equal(json_dumpb(r, g17, sizeof g17, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) >= n, 1);
        json_decref(r);
    }
}

static void expect_shorten(const char *in, const char *want)
{
    char buf[512];
    size_t len = strlen(in);
    memcpy(buf, in, len);
    size_t n = jsonfmt_shorten(buf, len);
    assert_int_equal(n, strlen(want));
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_shorten_text(void **state)
{
    (void)state;
    expect_shorten("{\"load_seconds\":1.6999999999999999e-7}", "{\"load_seconds\":1.7e-7}");
    expect_shorten("[0.10000000000000001,2,-3,0.20000000000000001]", "[0.1,2,-3,0.2]");
    /* integers, short reals, and numbers inside strings are left alone */
    expect_shorten("[12345678901234567890,1.5,\"0.10000000000000001\"]",
                   "[12345678901234567890,1.5,\"0.10000000000000001\"]");
    /* an escaped quote does not end the string */
    expect_shorten("{\"a\\\"0.10000000000000001\":0.10000000000000001}",
                   "{\"a\\\"0.10000000000000001\":0.1}");
    /* 17 digits that are needed stay */
    expect_shorten("0.30000000000000004", "0.30000000000000004");
    /* a model's real_digits (here 9) is never lengthened */
    expect_shorten("[0.0912345678,0.100000001]", "[0.0912345678,0.100000001]");
    expect_shorten("", "");
    expect_shorten("true", "true");
}

/* jsonfmt_dumps agrees with jansson on everything but the spelling of
 * reals, and what it writes reads back to the same values. */
static void test_dumps(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:f,s:f,s:i,s:s,s:[f,f,b,n]}", "load_seconds", 1.7e-7, "p",
                          0.1 + 0.2, "n", 42, "s", "0.10000000000000001", "a", 0.1, 2.0, 1, NULL);
    assert_non_null(v);
    char *s = jsonfmt_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert_non_null(s);
    assert_string_equal(s, "{\"load_seconds\":1.7e-7,\"p\":0.30000000000000004,\"n\":42,"
                           "\"s\":\"0.10000000000000001\",\"a\":[0.1,2.0,true,null]}");
    json_t *back = json_loads(s, 0, NULL);
    assert_non_null(back);
    assert_true(json_equal(v, back));
    json_decref(back);
    free(s);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_shortest),
        cmocka_unit_test(test_real_not_finite),
        cmocka_unit_test(test_real_round_trips),
        cmocka_unit_test(test_shorten_text),
        cmocka_unit_test(test_dumps),
    };
    return cmocka_run_group_tests_name("jsonfmt", tests, NULL, NULL);
}
