/* Unit tests of service/utf8.c: RFC 3629's table, byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "service/core/utf8.h"

static size_t len_of(const char *s, size_t n) { return utf8_seq_len((const unsigned char *)s, n); }

static void test_well_formed(void **state)
{
    (void)state;
    assert_int_equal(len_of("a", 1), 1);
    assert_int_equal(len_of("\xc3\xa9", 2), 2);         /* é */
    assert_int_equal(len_of("\xe2\x82\xac", 3), 3);     /* € */
    assert_int_equal(len_of("\xf0\x9f\x98\x80", 4), 4); /* 😀 */
    assert_int_equal(len_of("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
}

static void test_ill_formed(void **state)
{
    (void)state;
    assert_int_equal(len_of("\x80", 1), 0);             /* lone continuation */
    assert_int_equal(len_of("\xc0\xaf", 2), 0);         /* overlong */
    assert_int_equal(len_of("\xe0\x80\xaf", 3), 0);     /* overlong */
    assert_int_equal(len_of("\xed\xa0\x80", 3), 0);     /* surrogate */
    assert_int_equal(len_of("\xf4\x90\x80\x80", 4), 0); /* past U+10FFFF */
    assert_int_equal(len_of("\xf5\x80\x80\x80", 4), 0);
    assert_int_equal(len_of("\xe2\x82\xac", 2), 0);     /* cut short by n */
    assert_int_equal(len_of("\xe2\x82", 3), 0);         /* cut short by the NUL */
    assert_int_equal(len_of("\xc3\x41", 2), 0);         /* not a continuation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_ill_formed),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
