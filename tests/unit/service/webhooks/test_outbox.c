/*
 * Unit tests of service/webhooks/outbox.c against a real store: the
 * event appears exactly when the flush that finishes the job commits (the
 * trigger of store.c's schema), with the job's row copied; only for jobs
 * with a webhook; attempts are recorded and shown as the job's "webhook"
 * member; an event outlives a purge of its job.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service/jobs/engine.h"
#include "service/store/store.h"
#include "service/webhooks/outbox.h"

struct fixture {
    char dir[64];
    struct store *s;
    struct outbox *o;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-outbox.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512];
    f->s = store_open(NULL, f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    f->o = outbox_open(f->dir, err, sizeof err);
    assert_non_null(f->o);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    outbox_close(f->o);
    store_close(f->s);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Creates a job of 3 items (with a webhook when url != NULL). */
static void create(struct fixture *f, struct store_job *j, const char *id, const char *url)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->model, sizeof j->model, "echo");
    j->total = 3;
    j->created_ns = 1000000000ull;
    j->webhook_url = url;
    struct job_items *it = job_items_new();
    for (int i = 0; i < 3; i++)
        assert_int_equal(job_items_append(it, "1", 1), 0);
    assert_int_equal(store_job_create(f->s, j, it, NULL), 0);
    job_items_free(it);
}

static void test_event_with_the_finishing_flush(void **state)
{
    struct fixture *f = *state;
    struct store_job j, plain;
    create(f, &j, "aaaaaaaaaaaaaaaaaaaaaaaaaa", "http://127.0.0.1:9/hook");
    create(f, &plain, "bbbbbbbbbbbbbbbbbbbbbbbbbb", NULL);
    uint64_t next;
    bool any;
    struct outbox_event ev[4];
    size_t n;

    /* a job with a webhook shows it, waiting */
    json_t *w = outbox_job_state(f->o, j.id, NULL);
    assert_non_null(w);
    assert_string_equal(json_string_value(json_object_get(w, "state")), "waiting");
    assert_string_equal(json_string_value(json_object_get(w, "url")), "http://127.0.0.1:9/hook");
    json_decref(w);
    assert_null(outbox_job_state(f->o, plain.id, NULL));

    /* running: no event */
    j.status = JOB_RUNNING;
    j.started_ns = 2000000000ull;
    j.done = 2;
    assert_int_equal(store_job_update(f->s, &j), 0);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(outbox_next_due(f->o, &next, &any), 0);
    assert_false(any);

    /* finished, buffered but not flushed: still none */
    j.status = JOB_SUCCEEDED;
    j.done = 2;
    j.failed = 1;
    j.finished_ns = 3000000000ull;
    assert_int_equal(store_job_update(f->s, &j), 0);
    plain.status = JOB_SUCCEEDED;
    plain.finished_ns = 3000000000ull;
    assert_int_equal(store_job_update(f->s, &plain), 0);
    assert_int_equal(outbox_take_due(f->o, UINT64_MAX, ev, 4, &n), 0);
    assert_int_equal(n, 0);
    /* the flush that finishes it writes the event; the plain job has none */
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(outbox_next_due(f->o, &next, &any), 0);
    assert_true(any);
    assert_int_equal(outbox_take_due(f->o, UINT64_MAX, ev, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "job.succeeded");
    assert_string_equal(ev[0].url, "http://127.0.0.1:9/hook");
    assert_string_equal(ev[0].row.id, j.id);
    assert_int_equal(ev[0].row.failed, 1);
    assert_int_equal(ev[0].row.finished_ns, 3000000000ull);
    assert_null(ev[0].body);
    int64_t id = ev[0].id;
    outbox_event_clear(&ev[0]);

    /* a later update of the finished job does not make a second event */
    assert_int_equal(store_job_update(f->s, &j), 0);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(outbox_take_due(f->o, UINT64_MAX, ev, 4, &n), 0);
    assert_int_equal(n, 1);
    outbox_event_clear(&ev[0]);

    /* an attempt that failed: pending, with when and why */
    assert_int_equal(outbox_save_body(f->o, id, "{\"type\":\"job.succeeded\"}"), 0);
    assert_int_equal(outbox_record(f->o, id, OUTBOX_PENDING, 1, 5000000000ull, 503, "the receiver answered 503", 0), 0);
    uint64_t v1 = 0, v2 = 0;
    w = outbox_job_state(f->o, j.id, &v1);
    assert_string_equal(json_string_value(json_object_get(w, "state")), "pending");
    assert_int_equal(json_integer_value(json_object_get(w, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(w, "last_status")), 503);
    assert_string_equal(json_string_value(json_object_get(w, "next_attempt_at")), "1970-01-01T00:00:05.000Z");
    json_decref(w);
    /* not due before its time; due after, with its body */
    assert_int_equal(outbox_take_due(f->o, 4000000000ull, ev, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(outbox_take_due(f->o, 5000000000ull, ev, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].body, "{\"type\":\"job.succeeded\"}");
    outbox_event_clear(&ev[0]);

    /* delivered: no longer due, and the state says so (its version moved) */
    assert_int_equal(outbox_record(f->o, id, OUTBOX_DELIVERED, 2, 0, 204, NULL, 6000000000ull), 0);
    w = outbox_job_state(f->o, j.id, &v2);
    assert_string_equal(json_string_value(json_object_get(w, "state")), "delivered");
    assert_true(json_is_null(json_object_get(w, "last_error")));
    assert_true(v1 != v2);
    json_decref(w);
    assert_int_equal(outbox_next_due(f->o, &next, &any), 0);
    assert_false(any);
}

static void test_cancelled_event_survives_purge(void **state)
{
    struct fixture *f = *state;
    struct store_job j;
    create(f, &j, "cccccccccccccccccccccccccc", "https://hooks.example:443/");
    j.status = JOB_CANCELLED;
    j.finished_ns = 7000000000ull;
    assert_int_equal(store_job_update(f->s, &j), 0);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(store_job_delete(f->s, j.seq), 0);
    /* the job and its webhook row are gone; the event is not */
    assert_null(outbox_job_state(f->o, j.id, NULL));
    struct outbox_event ev[2];
    size_t n;
    assert_int_equal(outbox_take_due(f->o, UINT64_MAX, ev, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "job.cancelled");
    outbox_event_clear(&ev[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_with_the_finishing_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_event_survives_purge, setup, teardown),
    };
    return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
