/*
 * Unit tests of service/core/rfc3339.c, the one time formatter of the API
 * and the logs: known instants, millisecond truncation (never rounding up
 * into the next second), a cut buffer, and agreement with an independent
 * strftime spelling over many instants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "service/core/rfc3339.h"

static void test_known(void **unused)
{
    (void)unused;
    char buf[RFC3339_LEN + 1];
    rfc3339_format(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    rfc3339_format(1700000000123456789ull, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
    rfc3339_format(1700000000999999999ull, buf, sizeof buf); /* truncated, not rounded */
    assert_string_equal(buf, "2023-11-14T22:13:20.999Z");
    rfc3339_format(951782400000000000ull, buf, sizeof buf); /* a leap day */
    assert_string_equal(buf, "2000-02-29T00:00:00.000Z");
    assert_int_equal(strlen(buf), RFC3339_LEN);
    char small[11];
    rfc3339_format(0, small, sizeof small);
    assert_string_equal(small, "1970-01-01");
}

static void test_against_strftime(void **unused)
{
    (void)unused;
    uint64_t ns = 12345678901ull;
    for (int i = 0; i < 2000; i++) {
        ns = ns * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t t = ns % 4102444800000000000ull; /* before 2100 */
        char got[RFC3339_LEN + 1], day[32], want[40];
        rfc3339_format(t, got, sizeof got);
        time_t s = (time_t)(t / 1000000000ull);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want, sizeof want, "%s.%03uZ", day, (unsigned)(t / 1000000ull % 1000));
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known),
        cmocka_unit_test(test_against_strftime),
    };
    return cmocka_run_group_tests_name("rfc3339", tests, NULL, NULL);
}
