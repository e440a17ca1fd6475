/* test_model_util: the built-in models' message helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "workers/models/model_util.h"

static void test_err(void **unused)
{
    (void)unused;
    char err[16];
    model_err(err, sizeof err, "item %d: %s", 7, "too long for the buffer");
    assert_string_equal(err, "item 7: too lon"); /* cut, NUL-terminated */
    model_err(NULL, 10, "ignored %d", 1);         /* no buffer: nothing */
    err[0] = 'x';
    model_err(err, 0, "ignored");
    assert_int_equal(err[0], 'x');
}

static void test_kind(void **unused)
{
    (void)unused;
    static const struct {
        const char *json, *kind;
    } cases[] = {
        {"{}", "an object"}, {"[]", "an array"},  {"\"s\"", "a string"}, {"1", "a number"},
        {"1.5", "a number"}, {"true", "a boolean"}, {"false", "a boolean"}, {"null", "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        assert_string_equal(model_json_kind(v), cases[i].kind);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
