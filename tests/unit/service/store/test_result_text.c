/*
 * Unit tests of service/result_text.c: telling an error Result from an
 * output by its text, and filtering NDJSON lines down to the errors, on
 * the two shapes the engine writes and on texts that are neither.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "service/store/result_text.h"

static bool is_err(const char *s) { return result_text_is_error(s, strlen(s)); }

static void test_is_error(void **unused)
{
    (void)unused;
    assert_true(is_err("{\"index\":0,\"error\":{\"message\":\"boom\"}}"));
    assert_true(is_err("{\"index\":1234567,\"error\":{\"message\":\"\"}}"));
    assert_false(is_err("{\"index\":0,\"output\":1}"));
    /* an output that mentions "error" is still an output */
    assert_false(is_err("{\"index\":3,\"output\":{\"error\":1}}"));
    assert_false(is_err("{\"index\":3,\"output\":\",\\\"error\\\":\"}"));
    /* not the engine's shapes */
    assert_false(is_err(""));
    assert_false(is_err("{\"index\":,\"error\":{}}"));
    assert_false(is_err("{\"index\":7"));
    assert_false(is_err("{\"error\":{},\"index\":7}"));
    /* the length bounds the look, not a NUL */
    const char *t = "{\"index\":5,\"error\":{\"message\":\"x\"}}";
    assert_false(result_text_is_error(t, 12));
    assert_true(result_text_is_error(t, 19));
}

static void test_keep_errors(void **unused)
{
    (void)unused;
    char buf[] = "{\"index\":0,\"output\":1}\n"
                 "{\"index\":1,\"error\":{\"message\":\"a\"}}\n"
                 "{\"index\":2,\"output\":2}\n"
                 "{\"index\":3,\"error\":{\"message\":\"b\"}}\n"
                 "{\"index\":4,\"output\":3}\n";
    size_t n = result_text_keep_errors(buf, strlen(buf));
    const char *want = "{\"index\":1,\"error\":{\"message\":\"a\"}}\n"
                       "{\"index\":3,\"error\":{\"message\":\"b\"}}\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);

    char none[] = "{\"index\":0,\"output\":1}\n";
    assert_int_equal(result_text_keep_errors(none, strlen(none)), 0);

    /* a last line without its newline is judged too */
    char tail[] = "{\"index\":0,\"output\":1}\n{\"index\":9,\"error\":{\"message\":\"z\"}}";
    n = result_text_keep_errors(tail, strlen(tail));
    assert_int_equal(n, strlen("{\"index\":9,\"error\":{\"message\":\"z\"}}"));
    assert_memory_equal(tail, "{\"index\":9,\"error\"", 18);
    assert_int_equal(result_text_keep_errors(tail, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_error),
        cmocka_unit_test(test_keep_errors),
    };
    return cmocka_run_group_tests_name("result_text", tests, NULL, NULL);
}
