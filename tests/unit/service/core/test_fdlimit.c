/*
 * Unit tests for service/fdlimit.c: what a ceiling needs, the fit (a set
 * ceiling that does not fit is an error naming what to change; the
 * default is lowered), and the raise of the soft limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "service/core/fdlimit.h"

static void test_needed(void **unused)
{
    (void)unused;
    assert_int_equal(fdlimit_library_limit(8), 24);     /* at least 16 more */
    assert_int_equal(fdlimit_library_limit(4096), 4608); /* an eighth more */
    assert_true(fdlimit_needed(4096, 4) == 4608 + FDLIMIT_RESERVE + 8);
}

static void test_fit(void **unused)
{
    (void)unused;
    char err[256] = "";
    unsigned c = 4096;
    assert_int_equal(fdlimit_fit(&c, true, 4, 20000, err, sizeof err), 0);
    assert_int_equal(c, 4096);
    /* set by the user and too big: an error that says what fits */
    c = 30000;
    assert_int_equal(fdlimit_fit(&c, true, 4, 20000, err, sizeof err), -EMFILE);
    assert_int_equal(c, 30000);
    assert_non_null(strstr(err, "--max-connections 30000 needs"));
    assert_non_null(strstr(err, "limit is 20000"));
    /* the default: lowered to the most that fits */
    c = 4096;
    assert_int_equal(fdlimit_fit(&c, false, 4, 1024, err, sizeof err), 1);
    assert_true(fdlimit_needed(c, 4) <= 1024);
    assert_true(fdlimit_needed(c + 1, 4) > 1024);
    /* not even 16 fit: an error even for the default */
    c = 4096;
    assert_int_equal(fdlimit_fit(&c, false, 4, 100, err, sizeof err), -EMFILE);
}

static void test_raise(void **unused)
{
    (void)unused;
    struct rlimit before;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
    /* lower the soft limit, then raise it back to the hard one */
    struct rlimit low = before;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t soft = 0;
    assert_int_equal(fdlimit_raise(&soft), 0);
    struct rlimit after;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
    assert_true(after.rlim_cur > 256);
    assert_true(soft == (uint64_t)after.rlim_cur);
    if (before.rlim_max != RLIM_INFINITY)
        assert_true(after.rlim_cur == before.rlim_max);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &before), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_needed),
        cmocka_unit_test(test_fit),
        cmocka_unit_test(test_raise),
    };
    return cmocka_run_group_tests_name("service/fdlimit", tests, NULL, NULL);
}
