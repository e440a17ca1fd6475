/*
 * Unit tests for workers/models_builtin.c: the table (at/find, which models
 * are defaults), parameter rejection, and every model's outputs and item
 * errors (chaos, convolve2d, prefix_count and mlp are tested in their own
 * test_model_*.c, beyond their table entries and parameters). Outputs are checked
 * as JSON values (integer vs real matters); exp_sinh is checked against its
 * closed form and a long-double loop, both computed here independently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <batchd/model.h>
#include "workers/models/models_builtin.h"

static const struct {
    const char *name;
    bool is_default; /* loaded when no --model names any */
} expected[] = {
    {"echo", true},
    {"square", true},
    {"sum_squares", true},
    {"exp_sinh", true},
    {"convolve2d", true},
    {"prefix_count", true},
    {"chaos", false},
    {"mlp", false},
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, jerr.text);
    return v;
}

/* Runs model `name` on the item given as JSON text. Returns run's result;
 * *output is set on success, err holds the message on failure. */
static int run_text(const char *name, const char *item_text, json_t **output, char *err,
                    size_t errlen)
{
    const struct model_ops *m = model_builtin_find(name);
    assert_non_null(m);
    json_t *item = parse(item_text);
    void *state = NULL;
    if (m->init) {
        char ierr[256];
        assert_int_equal(m->init(NULL, NULL, &state, ierr, sizeof ierr), 0);
    }
    *output = NULL;
    err[0] = '\0';
    int rc = m->run(state, item, output, err, errlen);
    if (m->fini)
        m->fini(state);
    json_decref(item);
    return rc;
}

/* ---- the table ----------------------------------------------------------- */

static void test_at_lists_the_builtins(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        const struct model_ops *m = model_builtin_at(i);
        assert_non_null(m);
        assert_string_equal(m->name, expected[i].name);
        assert_int_equal(m->abi_version, MODEL_ABI_VERSION);
        assert_int_equal((m->flags & MODEL_FLAG_NOT_DEFAULT) == 0, expected[i].is_default);
        /* a stateful model has acc_run (and its three other hooks) instead */
        if (m->acc_run)
            assert_true(m->acc_export && m->acc_free && m->reduce);
        else
            assert_non_null(m->run);
        assert_non_null(m->load);
        assert_non_null(m->description);
        assert_true(strlen(m->description) > 0);
    }
    assert_null(model_builtin_at(N_EXPECTED));
    assert_null(model_builtin_at((size_t)-1));
}

static void test_find(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < N_EXPECTED; i++)
        assert_ptr_equal(model_builtin_find(expected[i].name), model_builtin_at(i));
    assert_null(model_builtin_find("nope"));
    assert_null(model_builtin_find(""));
    assert_null(model_builtin_find("Square"));
    assert_null(model_builtin_find("square "));
    assert_null(model_builtin_find(NULL));
}

/* ---- parameters ---------------------------------------------------------- */

static void test_params_none_helper(void **unused)
{
    (void)unused;
    char err[128] = "";
    struct model_params empty = {0, NULL, NULL};
    assert_int_equal(model_params_none("x", &empty, err, sizeof err), 0);
    assert_int_equal(model_params_none("x", NULL, err, sizeof err), 0);

    const char *keys[] = {"alpha", "beta"};
    const char *values[] = {"1", "2"};
    struct model_params two = {2, keys, values};
    assert_int_equal(model_params_none("mymodel", &two, err, sizeof err), -EINVAL);
    assert_string_equal(err, "model mymodel takes no parameter 'alpha'");

    /* A short buffer is truncated, still NUL-terminated. */
    char small[8];
    assert_int_equal(model_params_none("mymodel", &two, small, sizeof small), -EINVAL);
    assert_string_equal(small, "model m");
}

static void test_every_builtin_loads_without_params_and_rejects_any(void **unused)
{
    (void)unused;
    const char *keys[] = {"workers_per_thing"};
    const char *values[] = {"3"};
    struct model_params one = {1, keys, values};
    struct model_params empty = {0, NULL, NULL};
    for (size_t i = 0; i < N_EXPECTED; i++) {
        const struct model_ops *m = model_builtin_at(i);
        char err[128] = "";
        void *shared = (void *)&err; /* must be overwritten */
        if (strcmp(m->name, "mlp") == 0) {
            /* mlp needs its weights file (test_model_mlp.c tests its loading) */
            assert_int_equal(m->load(&empty, NULL, &shared, err, sizeof err), -EINVAL);
            assert_null(shared);
            assert_non_null(strstr(err, "weights=PATH"));
            assert_int_equal(m->load(&one, NULL, &shared, err, sizeof err), -EINVAL);
            assert_non_null(strstr(err, "unknown parameter 'workers_per_thing'"));
            continue;
        }
        assert_int_equal(m->load(&empty, NULL, &shared, err, sizeof err), 0);
        /* prefix_count keeps its threshold (and the host) for reduce() */
        if (strcmp(m->name, "prefix_count") == 0)
            assert_true(shared != NULL && shared != (void *)&err);
        else
            assert_null(shared);
        if (m->unload)
            m->unload(shared);

        char want[160];
        /* chaos has one parameter (init_fail, test_model_chaos.c) and says so;
         * so does prefix_count (threshold, test_model_prefix_count.c) */
        if (strcmp(m->name, "prefix_count") == 0)
            snprintf(want, sizeof want,
                     "model prefix_count has no parameter 'workers_per_thing' (its only one is "
                     "threshold=N)");
        else if (strcmp(m->name, "chaos") == 0)
            snprintf(want, sizeof want,
                     "model chaos has no parameter 'workers_per_thing' (its only one is "
                     "init_fail=MESSAGE)");
        else
            snprintf(want, sizeof want, "model %s takes no parameter 'workers_per_thing'",
                     m->name);
        assert_int_equal(m->load(&one, NULL, &shared, err, sizeof err), -EINVAL);
        assert_string_equal(err, want);
    }
}

/* ---- echo ---------------------------------------------------------------- */

static void test_echo_returns_the_item(void **unused)
{
    (void)unused;
    const char *items[] = {"1", "-2.5", "\"text\"", "null", "true", "[1,[2,{}]]",
                           "{\"a\":{\"b\":[null]}}", "\"\""};
    const struct model_ops *m = model_builtin_find("echo");
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        json_t *item = parse(items[i]);
        json_t *out = NULL;
        char err[64] = "";
        assert_int_equal(m->run(NULL, item, &out, err, sizeof err), 0);
        assert_ptr_equal(out, item);
        /* null/true are singletons with no count; others were incref'ed. */
        if (json_is_object(item) || json_is_array(item) || json_is_string(item) ||
            json_is_number(item))
            assert_int_equal(item->refcount, 2);
        json_decref(out);
        json_decref(item);
    }
}

/* ---- square, sum_squares: data-driven ------------------------------------ */

struct exact_case {
    const char *model;
    const char *item;
    const char *want; /* expected output as JSON text (type matters) */
};

static const struct exact_case exact_cases[] = {
    {"square", "0", "0"},
    {"square", "3", "9"},
    {"square", "-4", "16"},
    {"square", "1.5", "2.25"},
    {"square", "-0.5", "0.25"},
    {"square", "0.0", "0.0"},
    {"square", "2.0", "4.0"},
    /* The largest integer whose square fits in int64. */
    {"square", "3037000499", "9223372030926249001"},
    {"square", "-3037000499", "9223372030926249001"},
    {"sum_squares", "[]", "0"},
    {"sum_squares", "[7]", "49"},
    {"sum_squares", "[1,2,3]", "14"},
    {"sum_squares", "[-1,-2,-3,4]", "30"},
    {"sum_squares", "[1.5,2]", "6.25"},
    {"sum_squares", "[2,0.5]", "4.25"},
    {"sum_squares", "[3037000499]", "9223372030926249001"},
};

static void test_exact_outputs(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof exact_cases / sizeof exact_cases[0]; i++) {
        const struct exact_case *c = &exact_cases[i];
        json_t *out;
        char err[256];
        int rc = run_text(c->model, c->item, &out, err, sizeof err);
        if (rc != 0)
            fail_msg("%s(%s): rc %d, err '%s'", c->model, c->item, rc, err);
        json_t *want = parse(c->want);
        if (!json_equal(out, want)) {
            char *got = json_dumps(out, JSON_ENCODE_ANY);
            fail_msg("%s(%s): got %s, want %s", c->model, c->item, got, c->want);
        }
        json_decref(want);
        json_decref(out);
    }
}

/* Integer results that overflow int64 become reals, computed in double. */
struct real_case {
    const char *model;
    const char *item;
    double want;
};

static void test_integer_overflow_becomes_real(void **unused)
{
    (void)unused;
    const struct real_case cases[] = {
        {"square", "3037000500", 3037000500.0 * 3037000500.0},
        {"square", "-3037000500", 3037000500.0 * 3037000500.0},
        {"square", "9223372036854775807", 9223372036854775807.0 * 9223372036854775807.0},
        {"square", "-9223372036854775808", 9223372036854775808.0 * 9223372036854775808.0},
        /* Each square fits; their sum does not. */
        {"sum_squares", "[3037000499,3037000499]", 2.0 * 3037000499.0 * 3037000499.0},
        /* The first square overflows; later elements still count. */
        {"sum_squares", "[3037000500,1,2]", 3037000500.0 * 3037000500.0 + 5.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out;
        char err[256];
        int rc = run_text(cases[i].model, cases[i].item, &out, err, sizeof err);
        if (rc != 0)
            fail_msg("%s(%s): rc %d, err '%s'", cases[i].model, cases[i].item, rc, err);
        assert_true(json_is_real(out));
        assert_true(json_real_value(out) == cases[i].want);
        json_decref(out);
    }
}

struct error_case {
    const char *model;
    const char *item;
    int rc;
    const char *message;
};

static const struct error_case error_cases[] = {
    {"square", "\"3\"", -EINVAL, "square expects a number, got a string"},
    {"square", "null", -EINVAL, "square expects a number, got null"},
    {"square", "true", -EINVAL, "square expects a number, got a boolean"},
    {"square", "false", -EINVAL, "square expects a number, got a boolean"},
    {"square", "[3]", -EINVAL, "square expects a number, got an array"},
    {"square", "{\"x\":3}", -EINVAL, "square expects a number, got an object"},
    {"square", "1e200", -ERANGE, "square: the result overflows a double"},
    {"square", "-1e155", -ERANGE, "square: the result overflows a double"},
    {"sum_squares", "5", -EINVAL, "sum_squares expects an array of numbers, got a number"},
    {"sum_squares", "\"[1]\"", -EINVAL, "sum_squares expects an array of numbers, got a string"},
    {"sum_squares", "{}", -EINVAL, "sum_squares expects an array of numbers, got an object"},
    {"sum_squares", "null", -EINVAL, "sum_squares expects an array of numbers, got null"},
    {"sum_squares", "[\"a\"]", -EINVAL, "sum_squares: element 0 is a string, expected a number"},
    {"sum_squares", "[1,2,null]", -EINVAL, "sum_squares: element 2 is null, expected a number"},
    {"sum_squares", "[1,[2]]", -EINVAL, "sum_squares: element 1 is an array, expected a number"},
    {"sum_squares", "[1,2,3,{}]", -EINVAL,
     "sum_squares: element 3 is an object, expected a number"},
    {"sum_squares", "[1,false]", -EINVAL,
     "sum_squares: element 1 is a boolean, expected a number"},
    {"sum_squares", "[1e200]", -ERANGE, "sum_squares: the result overflows a double"},
    {"sum_squares", "[1e154,1e154,1e154]", -ERANGE, "sum_squares: the result overflows a double"},
    {"exp_sinh", "5", -EINVAL, "exp_sinh expects an object {\"n\": N}, got a number"},
    {"exp_sinh", "[5]", -EINVAL, "exp_sinh expects an object {\"n\": N}, got an array"},
    {"exp_sinh", "null", -EINVAL, "exp_sinh expects an object {\"n\": N}, got null"},
    {"exp_sinh", "{}", -EINVAL, "exp_sinh: missing \"n\" (expects {\"n\": N})"},
    {"exp_sinh", "{\"N\":5}", -EINVAL, "exp_sinh: unexpected key \"N\" (expects {\"n\": N})"},
    {"exp_sinh", "{\"n\":5,\"m\":1}", -EINVAL,
     "exp_sinh: unexpected key \"m\" (expects {\"n\": N})"},
    {"exp_sinh", "{\"n\":0}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got 0"},
    {"exp_sinh", "{\"n\":-3}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got -3"},
    {"exp_sinh", "{\"n\":100000001}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got 100000001"},
    {"exp_sinh", "{\"n\":9223372036854775807}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got 9223372036854775807"},
    {"exp_sinh", "{\"n\":2.5}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got 2.5"},
    {"exp_sinh", "{\"n\":10.0}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got 10"},
    {"exp_sinh", "{\"n\":\"10\"}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got a string"},
    {"exp_sinh", "{\"n\":null}", -EINVAL,
     "exp_sinh: \"n\" must be an integer from 1 to 100000000, got null"},
    /* A long key is quoted up to 64 bytes, never half a character: the
     * message goes into the results' JSON as it is (fuzz_items found the
     * key whose 64th byte was the first of "\u00e9"). */
    {"exp_sinh", "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9\":1}", -EINVAL,
     "exp_sinh: unexpected key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (expects {\"n\": N})"},
    {"exp_sinh", "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabc\":1}", -EINVAL,
     "exp_sinh: unexpected key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\" (expects {\"n\": N})"},
};

static void test_item_errors(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const struct error_case *c = &error_cases[i];
        json_t *out;
        char err[256];
        int rc = run_text(c->model, c->item, &out, err, sizeof err);
        if (rc != c->rc || strcmp(err, c->message) != 0)
            fail_msg("%s(%s): rc %d err '%s', want rc %d err '%s'", c->model, c->item, rc, err,
                     c->rc, c->message);
        assert_null(out);
    }
}

/* An error message longer than the caller's buffer is cut, not overrun. */
static void test_error_message_truncated(void **unused)
{
    (void)unused;
    json_t *out;
    char err[16];
    memset(err, 'x', sizeof err);
    assert_int_equal(run_text("square", "\"s\"", &out, err, 12), -EINVAL);
    assert_string_equal(err, "square expe");
    assert_int_equal(err[12], 'x');
}

/* ---- exp_sinh ------------------------------------------------------------ */

/* sum_{i=1..n} e^{x} sinh(x) with x = i/n equals sum (e^{2i/n} - 1) / 2, a
 * geometric series: (r (e^2 - 1) / (r - 1) - n) / 2 with r = e^{2/n}. */
static long double closed_form(long n)
{
    long double r = expl(2.0L / (long double)n);
    return (r * expm1l(2.0L) / expm1l(2.0L / (long double)n) - (long double)n) / 2.0L;
}

static long double long_double_loop(long n)
{
    long double s = 0.0L;
    for (long i = 1; i <= n; i++) {
        long double x = (long double)i / (long double)n;
        s += expl(x) * sinhl(x);
    }
    return s;
}

static void test_exp_sinh_kernel(void **unused)
{
    (void)unused;
    assert_true(model_exp_sinh_kernel(0) == 0.0);
    assert_true(model_exp_sinh_kernel(-7) == 0.0);
    assert_true(model_exp_sinh_kernel(1) == exp(1.0) * sinh(1.0));

    const long ns[] = {1, 2, 3, 10, 1000, 123457, 1000000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        long n = ns[i];
        long double got = model_exp_sinh_kernel(n);
        long double cf = closed_form(n);
        long double ld = long_double_loop(n);
        /* A plain double sum's worst case is ~n ulps; rounding errors that
         * are not biased grow like sqrt(n) ulps, which is what we hold it to
         * (with a 10x margin). */
        long double tol = 1e-15L * sqrtl((long double)n) + 1e-14L;
        long double rel_cf = fabsl(got - cf) / cf;
        long double rel_ld = fabsl(got - ld) / ld;
        if (rel_cf > tol || rel_ld > tol)
            fail_msg("n=%ld: got %.17Lg, closed form %.17Lg (rel %Lg), long double %.17Lg "
                     "(rel %Lg)", n, got, cf, rel_cf, ld, rel_ld);
        /* The two references agree with each other much more tightly. */
        assert_true(fabsl(cf - ld) / cf < 1e-12L);
    }
}

static void test_exp_sinh_model(void **unused)
{
    (void)unused;
    const long ns[] = {1, 100, 100000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"n\": %ld}", ns[i]);
        json_t *out;
        char err[256];
        assert_int_equal(run_text("exp_sinh", text, &out, err, sizeof err), 0);
        assert_true(json_is_real(out));
        assert_true(json_real_value(out) == model_exp_sinh_kernel(ns[i]));
        long double cf = closed_form(ns[i]);
        assert_true(fabsl((long double)json_real_value(out) - cf) / cf < 1e-12L);
        json_decref(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_lists_the_builtins),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_params_none_helper),
        cmocka_unit_test(test_every_builtin_loads_without_params_and_rejects_any),
        cmocka_unit_test(test_echo_returns_the_item),
        cmocka_unit_test(test_exact_outputs),
        cmocka_unit_test(test_integer_overflow_becomes_real),
        cmocka_unit_test(test_item_errors),
        cmocka_unit_test(test_error_message_truncated),
        cmocka_unit_test(test_exp_sinh_kernel),
        cmocka_unit_test(test_exp_sinh_model),
    };
    return cmocka_run_group_tests_name("models_builtin", tests, NULL, NULL);
}
