/*
 * Unit tests for workers/plugin.c: loading real shared objects (the stats
 * example, and tests/plugins/bad_plugin.c built once per mistake) and every
 * start-up error the loader has, with the words the user reads; then the
 * table checks alone, on tables built here.
 *
 * The shared objects are found next to this program's build dir
 * (BUILD/tests/unit/workers/worker/test_plugin -> BUILD/examples/plugins/...), so
 * the sanitizer builds load their own; the Makefile builds them first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <batchd/model.h>
#include "workers/worker/plugin.h"

static char build_dir[PATH_MAX];

/* BUILD from /proc/self/exe, five levels up. */
static void find_build_dir(void)
{
    ssize_t n = readlink("/proc/self/exe", build_dir, sizeof build_dir - 1);
    if (n <= 0)
        fail_msg("cannot read /proc/self/exe");
    build_dir[n] = '\0';
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(build_dir, '/');
        if (!slash)
            fail_msg("unexpected test path %s", build_dir);
        *slash = '\0';
    }
}

static void so_path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", build_dir, rel);
    if (access(buf, R_OK) != 0)
        fail_msg("%s is missing: build it with make (it is a prerequisite of this test)", buf);
}

/* The error text of a failed open; the test fails if the open succeeded. */
static void open_fails(const char *path, const char *name, char *err, size_t errlen)
{
    err[0] = '\0';
    struct plugin *p = plugin_open(path, name, err, errlen);
    if (p) {
        plugin_close(p);
        fail_msg("plugin_open(%s) succeeded, expected an error", path);
    }
    assert_true(err[0] != '\0');
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static void test_open_stats_under_another_name(void **unused)
{
    (void)unused;
    char path[PATH_MAX + 64], err[512] = "";
    so_path(path, sizeof path, "examples/plugins/libstats.so");
    struct plugin *p = plugin_open(path, "summary", err, sizeof err);
    if (!p)
        fail_msg("plugin_open: %s", err);
    const struct model_ops *ops = plugin_ops(p);
    /* batchd's name for it, not the plugin's own */
    assert_string_equal(ops->name, "summary");
    assert_string_equal(plugin_own_name(p), "stats");
    assert_string_equal(plugin_path(p), path);
    assert_int_equal(ops->abi_version, MODEL_ABI_VERSION);
    assert_non_null(ops->description);
    assert_non_null(strstr(ops->description, "median"));

    /* The whole life cycle through the copied table. */
    struct model_params none = {0, NULL, NULL};
    void *shared = NULL, *state = NULL;
    assert_int_equal(ops->load(&none, NULL, &shared, err, sizeof err), 0);
    assert_int_equal(ops->init(shared, NULL, &state, err, sizeof err), 0);
    json_t *item = json_pack("[i,i,i]", 1, 2, 6);
    json_t *out = NULL;
    assert_int_equal(ops->run(state, item, &out, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "n")), 3);
    assert_true(json_real_value(json_object_get(out, "mean")) == 3.0);
    json_decref(out);
    json_decref(item);
    ops->fini(state);
    ops->unload(shared);
    plugin_close(p);
}

static void test_same_object_twice(void **unused)
{
    (void)unused;
    /* Two models from one object: two tables, each with its own name. */
    char path[PATH_MAX + 64], err[512];
    so_path(path, sizeof path, "examples/plugins/libstats.so");
    struct plugin *a = plugin_open(path, "a", err, sizeof err);
    struct plugin *b = plugin_open(path, "b", err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(plugin_ops(a)->name, "a");
    assert_string_equal(plugin_ops(b)->name, "b");
    assert_ptr_equal(plugin_ops(a)->run, plugin_ops(b)->run);
    plugin_close(a);
    /* b's object is still mapped: dlopen counts references. */
    assert_non_null(strstr(plugin_ops(b)->description, "median"));
    plugin_close(b);
}

static void test_relative_path_is_the_current_directory(void **unused)
{
    (void)unused;
    char dir[PATH_MAX + 64], cwd[PATH_MAX], err[512] = "";
    snprintf(dir, sizeof dir, "%s/examples/plugins", build_dir);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    struct plugin *p = plugin_open("libstats.so", "stats", err, sizeof err);
    assert_int_equal(chdir(cwd), 0);
    if (!p)
        fail_msg("plugin_open(libstats.so) in its directory: %s", err);
    assert_string_equal(plugin_path(p), "libstats.so");
    plugin_close(p);
    /* ...and not the library path: from elsewhere it is not found. */
    char err2[512];
    open_fails("libstats.so", "stats", err2, sizeof err2);
    assert_contains(err2, "./libstats.so");
}

static void test_missing_file(void **unused)
{
    (void)unused;
    char err[512];
    open_fails("/nonexistent/dir/libnothing.so", "x", err, sizeof err);
    assert_contains(err, "plugin /nonexistent/dir/libnothing.so cannot be loaded");
    assert_contains(err, "No such file or directory"); /* dlerror's text */
}

static void test_not_a_shared_object(void **unused)
{
    (void)unused;
    char path[] = "/tmp/batchd-test-plugin-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "this is a text file, not an ELF object\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    char err[512];
    open_fails(path, "x", err, sizeof err);
    unlink(path);
    assert_contains(err, "cannot be loaded");
    assert_contains(err, path);
}

static void test_no_symbol(void **unused)
{
    (void)unused;
    char path[PATH_MAX + 64], err[512];
    so_path(path, sizeof path, "tests/plugins/libbad_nosym.so");
    open_fails(path, "x", err, sizeof err);
    assert_contains(err, "does not export the symbol batchd_model");
    assert_contains(err, path);
}

static void test_wrong_abi_version(void **unused)
{
    (void)unused;
    char path[PATH_MAX + 64], err[PATH_MAX + 256], want[PATH_MAX + 256];
    so_path(path, sizeof path, "tests/plugins/libbad_abi1.so");
    open_fails(path, "x", err, sizeof err);
    snprintf(want, sizeof want, "plugin %s has model ABI version 1, this batchd speaks %u", path,
             (unsigned)MODEL_ABI_VERSION);
    assert_string_equal(err, want);
}

static void test_no_run(void **unused)
{
    (void)unused;
    char path[PATH_MAX + 64], err[512];
    so_path(path, sizeof path, "tests/plugins/libbad_norun.so");
    open_fails(path, "x", err, sizeof err);
    assert_contains(err, "run is NULL");
}

static void test_table_too_small(void **unused)
{
    (void)unused;
    char path[PATH_MAX + 64], err[512];
    so_path(path, sizeof path, "tests/plugins/libbad_short.so");
    open_fails(path, "x", err, sizeof err);
    assert_contains(err, "batchd_model is 8 bytes, a model ABI 2 table is at least");
}

/* ------------------------------------------------------- the table checks */

static int fake_run(void *s, const json_t *i, json_t **o, char *e, size_t n)
{
    (void)s, (void)i, (void)e, (void)n;
    *o = json_null();
    return 0;
}
static int fake_acc_run(void *s, void **a, const json_t *i, json_t **o, char *e, size_t n)
{
    (void)s, (void)a, (void)i, (void)e, (void)n;
    *o = json_null();
    return 0;
}
static int fake_acc_export(void *s, void *a, json_t **p, char *e, size_t n)
{
    (void)s, (void)a, (void)e, (void)n;
    *p = json_null();
    return 0;
}
static void fake_acc_free(void *s, void *a) { (void)s, (void)a; }
static int fake_reduce(const void *s, const json_t *p, json_t **r, char *e, size_t n)
{
    (void)s, (void)p, (void)e, (void)n;
    *r = json_null();
    return 0;
}

static void test_check_ops(void **unused)
{
    (void)unused;
    const struct model_ops base = {
        .abi_version = MODEL_ABI_VERSION, .name = "m", .description = "d", .run = fake_run,
    };
    const struct model_ops acc = {
        .abi_version = MODEL_ABI_VERSION, .name = "m", .acc_run = fake_acc_run,
        .acc_export = fake_acc_export, .acc_free = fake_acc_free, .reduce = fake_reduce,
    };
    struct {
        const char *label;
        struct model_ops ops;
        const char *err_has; /* NULL: accepted */
    } cases[] = {
        {"run only", base, NULL},
        {"stateful, no run", acc, NULL},
        {"no description", base, NULL},
        {"version 3", base, "has model ABI version 3, this batchd speaks 2"},
        {"version 0", base, "has model ABI version 0"},
        {"no name", base, "has no name"},
        {"empty name", base, "has no name"},
        {"bad UTF-8 name", base, "model name is not valid UTF-8"},
        {"bad UTF-8 description", base, "description is not valid UTF-8"},
        {"no run, no hooks", base, "run is NULL"},
        {"stateful without reduce", acc, "reduce is NULL"},
        {"stateful without acc_free", acc, "acc_free is NULL"},
        {"stateful without acc_export", acc, "acc_export is NULL"},
        {"acc hooks without acc_run, with run", base, "acc_run is NULL"},
    };
    cases[2].ops.description = NULL;
    cases[3].ops.abi_version = 3;
    cases[4].ops.abi_version = 0;
    cases[5].ops.name = NULL;
    cases[6].ops.name = "";
    cases[7].ops.name = "caf\xc3";
    cases[8].ops.description = "over\xc0\xaflong";
    cases[9].ops.run = NULL;
    cases[10].ops.reduce = NULL;
    cases[11].ops.acc_free = NULL;
    cases[12].ops.acc_export = NULL;
    cases[13].ops.acc_export = fake_acc_export;
    cases[13].ops.acc_free = fake_acc_free;
    cases[13].ops.reduce = fake_reduce;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        int rc = plugin_check_ops(&cases[i].ops, "/p/lib.so", err, sizeof err);
        if (!cases[i].err_has) {
            if (rc != 0)
                fail_msg("%s: refused: %s", cases[i].label, err);
            continue;
        }
        if (rc != -EINVAL)
            fail_msg("%s: accepted (rc %d), expected \"%s\"", cases[i].label, rc,
                     cases[i].err_has);
        assert_contains(err, cases[i].err_has);
        assert_contains(err, "/p/lib.so");
    }
}

static void test_close_null(void **unused)
{
    (void)unused;
    plugin_close(NULL);
}

int main(void)
{
    find_build_dir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_stats_under_another_name),
        cmocka_unit_test(test_same_object_twice),
        cmocka_unit_test(test_relative_path_is_the_current_directory),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_no_symbol),
        cmocka_unit_test(test_wrong_abi_version),
        cmocka_unit_test(test_no_run),
        cmocka_unit_test(test_table_too_small),
        cmocka_unit_test(test_check_ops),
        cmocka_unit_test(test_close_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
