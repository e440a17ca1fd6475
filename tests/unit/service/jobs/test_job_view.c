/*
 * Unit tests of service/jobs/job_view.c (Job and JobList JSON):
 *
 *   - a stored row becomes the Job object it was while in memory: the
 *     model it was submitted to, status, counts (cancelled = what never
 *     ran), timestamps, error, links (result only for a stateful model);
 *   - a finished job's ETag depends on its seq and status only, and never
 *     looks like a running job's tag;
 *   - the list merges memory and store newest first, shows a job in both
 *     once (memory's copy), stops at the limit and names the last job
 *     shown as next_after only when more remain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "service/jobs/job_view.h"

static void row(struct store_job *r, uint64_t seq, int status)
{
    memset(r, 0, sizeof *r);
    r->seq = seq;
    snprintf(r->id, sizeof r->id, "job%023llu", (unsigned long long)seq);
    snprintf(r->model, sizeof r->model, "square");
    r->status = status;
    r->total = 10;
    r->done = 6;
    r->failed = 1;
    r->created_ns = 1700000000000000000ull;
    r->started_ns = 1700000001000000000ull;
    r->finished_ns = 1700000002500000000ull;
}

static void test_from_row(void **state)
{
    (void)state;
    struct store_job r;
    row(&r, 7, JOB_CANCELLED);
    snprintf(r.model, sizeof r.model, "a-model-not-loaded");
    snprintf(r.error, sizeof r.error, "why");
    struct job_view v;
    job_view_from_row(&v, &r, false);
    json_t *j = job_view_json(&v);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), r.id);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "a-model-not-loaded");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "cancelled");
    json_t *c = json_object_get(j, "counts");
    assert_int_equal(json_integer_value(json_object_get(c, "total")), 10);
    assert_int_equal(json_integer_value(json_object_get(c, "done")), 6);
    assert_int_equal(json_integer_value(json_object_get(c, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "cancelled")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "finished_at")),
                        "2023-11-14T22:13:22.500Z");
    assert_string_equal(json_string_value(json_object_get(j, "error")), "why");
    assert_true(json_is_null(json_object_get(j, "eta_seconds")));
    assert_null(json_object_get(json_object_get(j, "links"), "result"));
    json_decref(j);
    job_view_from_row(&v, &r, true);
    j = job_view_json(&v);
    assert_non_null(json_object_get(json_object_get(j, "links"), "result"));
    json_decref(j);
}

static void test_row_etag(void **state)
{
    (void)state;
    struct store_job a, b;
    row(&a, 7, JOB_SUCCEEDED);
    row(&b, 7, JOB_SUCCEEDED);
    char ta[ENGINE_ETAG_LEN + 1], tb[ENGINE_ETAG_LEN + 1];
    job_view_final_etag(a.seq, a.status, ta);
    job_view_final_etag(b.seq, b.status, tb);
    assert_string_equal(ta, tb);
    assert_int_equal(ta[0], '"');
    assert_int_equal(ta[1], 's');
    b.seq = 8;
    job_view_final_etag(b.seq, b.status, tb);
    assert_string_not_equal(ta, tb);
    b.seq = 7;
    b.status = JOB_FAILED;
    job_view_final_etag(b.seq, b.status, tb);
    assert_string_not_equal(ta, tb);
}

static void views(struct job_view *v, const uint64_t *seqs, size_t n, const char *model)
{
    for (size_t i = 0; i < n; i++) {
        struct store_job r;
        row(&r, seqs[i], JOB_SUCCEEDED);
        snprintf(r.model, sizeof r.model, "%s", model);
        job_view_from_row(&v[i], &r, false);
    }
}

/* The list's ids as "seq:source seq:source ..." and its next_after seq. */
static void list_str(json_t *l, char *out, size_t len, long long *next)
{
    out[0] = '\0';
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(l, "jobs"), i, j) {
        size_t at = strlen(out);
        snprintf(out + at, len - at, "%s%lld:%s", i ? " " : "",
                 atoll(json_string_value(json_object_get(j, "id")) + 3),
                 json_string_value(json_object_get(j, "model")));
    }
    json_t *na = json_object_get(l, "next_after");
    *next = json_is_string(na) ? atoll(json_string_value(na) + 3) : -1;
}

static void test_list_merge(void **state)
{
    (void)state;
    struct job_view mem[3], st[4];
    static const uint64_t ms[] = { 9, 6, 4 }, ss[] = { 8, 6, 5, 1 };
    views(mem, ms, 3, "m");
    views(st, ss, 4, "s");
    char s[256];
    long long next;
    json_t *l = job_view_list_json(mem, 3, st, 4, 10);
    list_str(l, s, sizeof s, &next);
    assert_string_equal(s, "9:m 8:s 6:m 5:s 4:m 1:s");
    assert_int_equal(next, -1);
    json_decref(l);
    l = job_view_list_json(mem, 3, st, 4, 3);
    list_str(l, s, sizeof s, &next);
    assert_string_equal(s, "9:m 8:s 6:m");
    assert_int_equal(next, 6);
    json_decref(l);
    /* exactly the limit: nothing more, no cursor */
    l = job_view_list_json(mem, 3, st, 4, 6);
    list_str(l, s, sizeof s, &next);
    assert_int_equal(next, -1);
    json_decref(l);
    /* one side empty */
    l = job_view_list_json(NULL, 0, st, 4, 2);
    list_str(l, s, sizeof s, &next);
    assert_string_equal(s, "8:s 6:s");
    assert_int_equal(next, 6);
    json_decref(l);
    l = job_view_list_json(mem, 3, NULL, 0, 5);
    list_str(l, s, sizeof s, &next);
    assert_string_equal(s, "9:m 6:m 4:m");
    json_decref(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_row),
        cmocka_unit_test(test_row_etag),
        cmocka_unit_test(test_list_merge),
    };
    return cmocka_run_group_tests_name("job_view", tests, NULL, NULL);
}
