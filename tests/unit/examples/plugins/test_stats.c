/*
 * Unit tests for examples/plugins/stats.c, the example plugin, loaded as
 * batchd loads it (plugin_open on BUILD/examples/plugins/libstats.so): its
 * parameters, every statistic against an independent two-pass computation
 * in long double, the median for odd and even counts, ddof=1 and its null
 * std, the per-worker buffer growing across items, and each item error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <batchd/model.h>
#include "workers/worker/plugin.h"

static struct plugin *plugin;
static const struct model_ops *ops;

/* BUILD/tests/unit/examples/plugins/test_stats -> BUILD/examples/plugins/libstats.so */
static int setup(void **unused)
{
    (void)unused;
    char path[PATH_MAX], err[512];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return -1;
    path[n] = '\0';
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(path, '/');
        if (!slash)
            return -1;
        *slash = '\0';
    }
    strncat(path, "/examples/plugins/libstats.so", sizeof path - strlen(path) - 1);
    plugin = plugin_open(path, "stats", err, sizeof err);
    if (!plugin) {
        fprintf(stderr, "cannot load the example: %s (make builds it)\n", err);
        return -1;
    }
    ops = plugin_ops(plugin);
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    plugin_close(plugin);
    return 0;
}

/* A loaded and initialised model (one "worker"). */
struct inst {
    void *shared, *state;
};

static void inst_start(struct inst *in, const char *key, const char *value)
{
    const char *keys[1] = {key}, *values[1] = {value};
    struct model_params p = {key ? 1 : 0, keys, values};
    char err[256] = "";
    if (ops->load(&p, NULL, &in->shared, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    if (ops->init(in->shared, NULL, &in->state, err, sizeof err) != 0)
        fail_msg("init: %s", err);
}

static void inst_stop(struct inst *in)
{
    ops->fini(in->state);
    ops->unload(in->shared);
}

static json_t *run_ok(struct inst *in, const char *text)
{
    json_error_t jerr;
    json_t *item = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!item)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    json_t *out = NULL;
    char err[256] = "";
    int rc = ops->run(in->state, item, &out, err, sizeof err);
    json_decref(item);
    if (rc != 0)
        fail_msg("run(%s): %d %s", text, rc, err);
    return out;
}

static void run_err(struct inst *in, const char *text, const char *want)
{
    json_t *item = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(item);
    json_t *out = NULL;
    char err[256] = "";
    int rc = ops->run(in->state, item, &out, err, sizeof err);
    json_decref(item);
    if (rc == 0) {
        json_decref(out);
        fail_msg("run(%s) succeeded, expected \"%s\"", text, want);
    }
    assert_null(out);
    assert_string_equal(err, want);
}

static double num(const json_t *out, const char *key)
{
    const json_t *v = json_object_get(out, key);
    if (!json_is_number(v))
        fail_msg("output has no number \"%s\"", key);
    return json_number_value(v);
}

static void assert_close(double got, long double want, const char *what)
{
    if (fabsl((long double)got - want) > 1e-12L * fmaxl(1.0L, fabsl(want)))
        fail_msg("%s: got %.17g, expected %.17Lg", what, got, want);
}

/* Checks out against a two-pass long-double computation over xs. */
static void check_against(const json_t *out, const double *xs, size_t n, unsigned ddof)
{
    long double sum = 0, ss = 0;
    double mn = xs[0], mx = xs[0];
    for (size_t i = 0; i < n; i++) {
        sum += xs[i];
        mn = xs[i] < mn ? xs[i] : mn;
        mx = xs[i] > mx ? xs[i] : mx;
    }
    long double mean = sum / n;
    for (size_t i = 0; i < n; i++)
        ss += (xs[i] - mean) * (xs[i] - mean);
    assert_int_equal(json_integer_value(json_object_get(out, "n")), n);
    assert_close(num(out, "mean"), mean, "mean");
    assert_close(num(out, "std"), sqrtl(ss / (n - ddof)), "std");
    assert_true(num(out, "min") == mn);
    assert_true(num(out, "max") == mx);
    assert_int_equal(json_object_size(out), 6);
}

static void test_example_from_the_header(void **unused)
{
    (void)unused;
    struct inst in;
    inst_start(&in, NULL, NULL);
    json_t *out = run_ok(&in, "[3, 1, 4, 1, 5]");
    const double xs[] = {3, 1, 4, 1, 5};
    check_against(out, xs, 5, 0);
    assert_true(num(out, "median") == 3);
    assert_close(num(out, "std"), 1.6L, "std"); /* NumPy: np.std([3,1,4,1,5]) */
    json_decref(out);
    inst_stop(&in);
}

static void test_median_even_and_mixed_types(void **unused)
{
    (void)unused;
    struct inst in;
    inst_start(&in, NULL, NULL);
    json_t *out = run_ok(&in, "[4, 1.5, -3, 2]");
    const double xs[] = {4, 1.5, -3, 2};
    check_against(out, xs, 4, 0);
    assert_true(num(out, "median") == 1.75); /* (1.5 + 2) / 2 */
    json_decref(out);
    /* one number: everything is that number, std 0 */
    out = run_ok(&in, "[-7]");
    assert_true(num(out, "median") == -7 && num(out, "min") == -7 && num(out, "std") == 0);
    json_decref(out);
    inst_stop(&in);
}

static void test_ddof(void **unused)
{
    (void)unused;
    struct inst in;
    inst_start(&in, "ddof", "1");
    json_t *out = run_ok(&in, "[2, 4, 4, 4, 5, 5, 7, 9]");
    const double xs[] = {2, 4, 4, 4, 5, 5, 7, 9};
    check_against(out, xs, 8, 1);
    assert_close(num(out, "std"), sqrtl(32.0L / 7), "sample std");
    json_decref(out);
    /* one number has no sample deviation: null, and the rest still there */
    out = run_ok(&in, "[5]");
    assert_true(json_is_null(json_object_get(out, "std")));
    assert_true(num(out, "mean") == 5);
    json_decref(out);
    inst_stop(&in);
}

static void test_large_close_numbers(void **unused)
{
    (void)unused;
    /* sum(x^2) - n*mean^2 loses every digit here; Welford does not. */
    struct inst in;
    inst_start(&in, NULL, NULL);
    json_t *out = run_ok(&in, "[1000000004, 1000000007, 1000000013, 1000000016]");
    assert_close(num(out, "mean"), 1000000010.0L, "mean");
    assert_close(num(out, "std"), sqrtl(22.5L), "std");
    json_decref(out);
    inst_stop(&in);
}

static void test_buffer_grows_across_items(void **unused)
{
    (void)unused;
    struct inst in;
    inst_start(&in, NULL, NULL);
    json_decref(run_ok(&in, "[1, 2]"));
    enum { N = 10001 };
    double *xs = malloc(N * sizeof *xs);
    json_t *item = json_array();
    for (int i = 0; i < N; i++) {
        xs[i] = (double)((i * 7919) % N); /* a permutation of 0..N-1 */
        json_array_append_new(item, json_real(xs[i]));
    }
    json_t *out = NULL;
    char err[256];
    assert_int_equal(ops->run(in.state, item, &out, err, sizeof err), 0);
    check_against(out, xs, N, 0);
    assert_true(num(out, "median") == (N - 1) / 2);
    json_decref(out);
    json_decref(item);
    free(xs);
    /* and a small item after the big one reads only its own numbers */
    out = run_ok(&in, "[10, 30, 20]");
    assert_true(num(out, "median") == 20 && num(out, "max") == 30);
    json_decref(out);
    inst_stop(&in);
}

static void test_item_errors(void **unused)
{
    (void)unused;
    struct inst in;
    inst_start(&in, NULL, NULL);
    run_err(&in, "{\"x\": [1]}", "item must be an array of numbers, got an object");
    run_err(&in, "3", "item must be an array of numbers, got a number");
    run_err(&in, "[]", "item is an empty array: need at least one number");
    run_err(&in, "[1, 2, \"3\"]", "item[2] is a string, expected a number");
    run_err(&in, "[1, null]", "item[1] is null, expected a number");
    run_err(&in, "[[1]]", "item[0] is an array, expected a number");
    run_err(&in, "[1e308, -1e308]",
            "the numbers are too large: their mean or variance overflows a double");
    /* the worker goes on after errors */
    json_decref(run_ok(&in, "[1]"));
    inst_stop(&in);
}

static void test_bad_parameters(void **unused)
{
    (void)unused;
    const struct {
        const char *key, *value, *want;
    } cases[] = {
        {"ddof", "2", "stats: ddof must be 0 or 1, got '2'"},
        {"ddof", "01", "stats: ddof must be 0 or 1, got '01'"},
        {"dof", "1", "stats: unknown parameter 'dof' (stats takes ddof=0|1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *keys[1] = {cases[i].key}, *values[1] = {cases[i].value};
        struct model_params p = {1, keys, values};
        void *shared = NULL;
        char err[256] = "";
        assert_int_equal(ops->load(&p, NULL, &shared, err, sizeof err), -EINVAL);
        assert_null(shared);
        assert_string_equal(err, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_from_the_header),
        cmocka_unit_test(test_median_even_and_mixed_types),
        cmocka_unit_test(test_ddof),
        cmocka_unit_test(test_large_close_numbers),
        cmocka_unit_test(test_buffer_grows_across_items),
        cmocka_unit_test(test_item_errors),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
