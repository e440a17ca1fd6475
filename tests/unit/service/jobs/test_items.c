/*
 * Unit tests of service/jobs/items.c: a job's inputs in one arena. Texts
 * come back exactly as appended and back to back, the offsets grow past
 * their first allocation, JSON values are stored compact with every digit
 * of a double in its shortest form, and an empty or NULL list counts as empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <errno.h>
#include <string.h>

#include "service/jobs/items.h"

static void test_append_and_get(void **unused)
{
    (void)unused;
    struct job_items *it = job_items_new();
    assert_non_null(it);
    assert_int_equal(job_items_count(it), 0);
    enum { N = 1000 }; /* past the 16 offsets of a new list */
    for (int i = 0; i < N; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "[%d,\"x\"]", i);
        assert_int_equal(job_items_append(it, t, (size_t)n), 0);
    }
    assert_int_equal(job_items_count(it), N);
    size_t prev_end = 0;
    for (int i = 0; i < N; i++) {
        char want[32];
        int n = snprintf(want, sizeof want, "[%d,\"x\"]", i);
        size_t len;
        const char *t = job_items_get(it, (size_t)i, &len);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(t, want, len);
        assert_int_equal((size_t)(t - it->data), prev_end); /* back to back */
        prev_end += len;
    }
    assert_int_equal(it->len, prev_end);
    job_items_free(it);
}

static void test_append_json(void **unused)
{
    (void)unused;
    struct job_items *it = job_items_new();
    json_t *v = json_pack("{s:f,s:[i,i]}", "x", 0.1, "y", 1, 2);
    assert_int_equal(job_items_append_json(it, v), 0);
    size_t len;
    const char *t = job_items_get(it, 0, &len);
    /* compact, and 0.1 in its shortest exact form (service/core/jsonfmt.h) */
    assert_true(len == strlen("{\"x\":0.1,\"y\":[1,2]}"));
    assert_memory_equal(t, "{\"x\":0.1,\"y\":[1,2]}", len);
    json_decref(v);
    job_items_free(it);
}

/* job_items_reserve: appends within the room never move the arena (no
 * realloc, no copy); past it, appending still works; an absurd reservation
 * fails and changes nothing. */
static void test_reserve(void **unused)
{
    (void)unused;
    struct job_items *it = job_items_new();
    assert_non_null(it);
    assert_int_equal(job_items_reserve(it, 1000, 200), 0);
    const char *data = it->data;
    const uint64_t *off = it->off;
    for (int i = 0; i < 200; i++)
        assert_int_equal(job_items_append(it, "12345", 5), 0);
    assert_ptr_equal(it->data, data);
    assert_ptr_equal(it->off, off);
    /* past the room */
    for (int i = 0; i < 100; i++)
        assert_int_equal(job_items_append(it, "\"abc\"", 5), 0);
    assert_int_equal(job_items_count(it), 300);
    size_t len;
    const char *t = job_items_get(it, 199, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(t, "12345", 5);
    t = job_items_get(it, 299, &len);
    assert_memory_equal(t, "\"abc\"", 5);
    size_t cap = it->cap;
    assert_int_equal(job_items_reserve(it, (size_t)1 << 40, 1), -E2BIG);
    assert_int_equal(it->cap, cap);
    assert_int_equal(job_items_count(it), 300);
    job_items_free(it);
}

static void test_empty(void **unused)
{
    (void)unused;
    assert_int_equal(job_items_count(NULL), 0);
    job_items_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_get),
        cmocka_unit_test(test_append_json),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_reserve),
    };
    return cmocka_run_group_tests_name("items", tests, NULL, NULL);
}
