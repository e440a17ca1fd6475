/*
 * Unit tests of service/engine.c with real forked workers (workers/worker.c)
 * running the built-in models over a real shared-memory ring. The test
 * process plays the supervisor: it forks the workers before the engine
 * thread exists (the fork rule), and reclaims a killed worker's tasks.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "service/config/config.h"
#include "service/jobs/engine.h"
#include <batchd/model.h>
#include "workers/models/models_builtin.h"
#include "service/ring/ring.h"
#include "service/ring/shm.h"
#include "workers/worker/worker.h"

#define N_WORKERS 2

struct fixture {
    struct config cfg;
    char dir[64];
    struct shm shm;
    pid_t pids[N_WORKERS];
    struct engine *e;
};

static int setup_model(void **state, const char *model)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.max_item_bytes = 64 * 1024;
    f->cfg.max_attempts = 3;
    f->cfg.max_queued_items = 5000000;
    f->cfg.retention_s = 3600;
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-engine.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.data_dir = f->dir;
    uint32_t gw[1] = { N_WORKERS };
    const char *names[1] = { model };
    struct shm_layout lay = { 1, gw, names, 8, 64 * 1024 + 64, 64 * 1024 + 64 };
    assert_int_equal(shm_create(&f->shm, &lay), 0);
    const struct model_ops *ops = model_builtin_find(model);
    assert_non_null(ops);
    for (uint32_t w = 0; w < N_WORKERS; w++) {
        atomic_store(&shm_worker(&f->shm, w)->state, WORKER_STARTING);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            worker_main(&f->shm, w, ops, NULL, getppid());
        f->pids[w] = pid;
        atomic_store(&shm_worker(&f->shm, w)->pid, pid);
    }
    f->e = engine_create(&f->cfg, &f->shm, NULL);
    assert_non_null(f->e);
    *state = f;
    return 0;
}

static int setup_square(void **state) { return setup_model(state, "square"); }

static int teardown(void **state)
{
    struct fixture *f = *state;
    engine_destroy(f->e);
    for (int w = 0; w < N_WORKERS; w++) {
        if (f->pids[w] > 0) {
            kill(f->pids[w], SIGKILL);
            waitpid(f->pids[w], NULL, 0);
        }
    }
    shm_destroy(&f->shm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *submit_numbers(struct engine *e, uint64_t first, uint64_t n, uint32_t chunk)
{
    struct job_items *items = job_items_new();
    char buf[32];
    for (uint64_t i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)(first + i));
        assert_int_equal(job_items_append(items, buf, (size_t)len), 0);
    }
    struct job_options opt = { .chunk_size = chunk };
    char *id = calloc(1, ENGINE_JOB_ID_LEN + 1);
    json_t *job = NULL;
    assert_int_equal(engine_submit(e, "square", items, &opt, id, &job), 0);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "queued");
    json_decref(job);
    return id;
}

static const char *job_status(struct engine *e, const char *id, json_t **job)
{
    *job = engine_job_json(e, id, NULL);
    assert_non_null(*job);
    return json_string_value(json_object_get(*job, "status"));
}

/* Waits (bounded: 60 s) until the job leaves queued/running. */
static json_t *wait_job(struct engine *e, const char *id)
{
    for (int i = 0; i < 6000; i++) {
        json_t *job;
        const char *st = job_status(e, id, &job);
        if (strcmp(st, "queued") && strcmp(st, "running"))
            return job;
        json_decref(job);
        usleep(10000);
    }
    fail_msg("job %s did not finish in 60 s", id);
    return NULL;
}

/* Reads every result page and checks item i's output is (first+i)^2. */
static void check_squares(struct engine *e, const char *id, uint64_t first, uint64_t n)
{
    uint64_t next = 0, seen = 0;
    while (seen < n) {
        struct sbuf page = SBUF_INIT;
        assert_int_equal(engine_results_page(e, id, next, 10000, &page), 0);
        json_error_t err;
        json_t *doc = json_loads(page.data, 0, &err);
        assert_non_null(doc);
        json_t *results = json_object_get(doc, "results");
        size_t k;
        json_t *r;
        json_array_foreach(results, k, r)
        {
            uint64_t idx = (uint64_t)json_integer_value(json_object_get(r, "index"));
            assert_int_equal(idx, next + k);
            uint64_t v = first + idx;
            assert_int_equal(json_integer_value(json_object_get(r, "output")),
                             (json_int_t)(v * v));
        }
        seen += json_array_size(results);
        json_t *no = json_object_get(doc, "next_offset");
        if (json_is_null(no)) {
            assert_int_equal(seen, n);
        } else {
            assert_int_equal((uint64_t)json_integer_value(no), next + json_array_size(results));
            next = (uint64_t)json_integer_value(no);
        }
        json_decref(doc);
        sbuf_free(&page);
    }
}

static void test_square_job(void **state)
{
    struct fixture *f = *state;
    char *id = submit_numbers(f->e, 0, 50000, 0);
    json_t *job = wait_job(f->e, id);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_t *counts = json_object_get(job, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "done")), 50000);
    assert_int_equal(json_integer_value(json_object_get(counts, "failed")), 0);
    json_decref(job);
    check_squares(f->e, id, 0, 50000);
    /* init() ran once per worker however many tasks they served */
    for (int w = 0; w < N_WORKERS; w++)
        assert_int_equal(atomic_load(&shm_worker(&f->shm, (uint32_t)w)->inits), 1);
    free(id);
}

static void test_item_errors_do_not_fail_the_job(void **state)
{
    struct fixture *f = *state;
    struct job_items *items = job_items_new();
    assert_int_equal(job_items_append(items, "3", 1), 0);
    assert_int_equal(job_items_append(items, "\"x\"", 3), 0);
    assert_int_equal(job_items_append(items, "4", 1), 0);
    char id[ENGINE_JOB_ID_LEN + 1];
    assert_int_equal(engine_submit(f->e, "square", items, NULL, id, NULL), 0);
    json_t *job = wait_job(f->e, id);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_t *counts = json_object_get(job, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "done")), 2);
    assert_int_equal(json_integer_value(json_object_get(counts, "failed")), 1);
    json_decref(job);
    struct sbuf page = SBUF_INIT;
    assert_int_equal(engine_results_page(f->e, id, 0, 10, &page), 0);
    json_t *doc = json_loads(page.data, 0, NULL);
    json_t *r1 = json_array_get(json_object_get(doc, "results"), 1);
    assert_non_null(json_object_get(json_object_get(r1, "error"), "message"));
    assert_null(json_object_get(r1, "output"));
    assert_true(json_is_null(json_object_get(doc, "next_offset")));
    json_decref(doc);
    sbuf_free(&page);
}

/* Admission control: a job that would put more than max_queued_items in
 * the queue is refused whole; finished items stop counting. */
static void test_admission_control(void **state)
{
    struct fixture *f = *state;
    f->cfg.max_queued_items = 100;
    /* Freeze the workers so that nothing finishes while we submit. */
    for (int w = 0; w < N_WORKERS; w++)
        kill(f->pids[w], SIGSTOP);
    char *a = submit_numbers(f->e, 0, 60, 0);
    struct job_items *items = job_items_new();
    for (int i = 0; i < 50; i++)
        assert_int_equal(job_items_append(items, "1", 1), 0);
    char id[ENGINE_JOB_ID_LEN + 1];
    assert_int_equal(engine_submit(f->e, "square", items, NULL, id, NULL), -EBUSY);
    for (int w = 0; w < N_WORKERS; w++)
        kill(f->pids[w], SIGCONT);
    json_decref(wait_job(f->e, a));
    /* a's items are finished: the same submission now fits */
    assert_int_equal(engine_submit(f->e, "square", items, NULL, id, NULL), 0);
    json_t *job = wait_job(f->e, id);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_decref(job);
    free(a);
}

static void test_bad_submissions(void **state)
{
    struct fixture *f = *state;
    char id[ENGINE_JOB_ID_LEN + 1];
    struct job_items *items = job_items_new();
    assert_int_equal(engine_submit(f->e, "nope", items, NULL, id, NULL), -ENOENT);
    assert_int_equal(engine_submit(f->e, "square", items, NULL, id, NULL), -EINVAL);
    job_items_free(items);
    assert_null(engine_job_json(f->e, "aaaaaaaaaaaaaaaaaaaaaaaaaa", NULL));
    assert_null(engine_job_json(f->e, "short", NULL));
    struct sbuf page = SBUF_INIT;
    assert_int_equal(engine_results_page(f->e, "aaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 1, &page),
                     -ENOENT);
    sbuf_free(&page);
    assert_true(engine_model_exists(f->e, "square"));
    assert_false(engine_model_exists(f->e, "echo"));
}

/* A small job submitted behind a big one finishes while the big one still
 * runs: round-robin dispatch between jobs. */
static void test_fairness(void **state)
{
    struct fixture *f = *state;
    char *big = submit_numbers(f->e, 0, 2000000, 0);
    usleep(50000);
    char *small = submit_numbers(f->e, 0, 10, 0);
    json_t *job = wait_job(f->e, small);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_decref(job);
    json_t *bj;
    const char *st = job_status(f->e, big, &bj);
    assert_string_equal(st, "running");
    json_decref(bj);
    json_t *cancelled = NULL;
    assert_int_equal(engine_cancel(f->e, big, &cancelled), 0);
    json_decref(cancelled);
    free(big);
    free(small);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    char *id = submit_numbers(f->e, 0, 3000000, 0);
    usleep(50000);
    json_t *job = NULL;
    assert_int_equal(engine_cancel(f->e, id, &job), 0);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "cancelled");
    json_decref(job);
    /* cancelled once its running tasks returned; the counts add up */
    json_t *counts = NULL;
    for (int i = 0; i < 1000; i++) {
        job = engine_job_json(f->e, id, NULL);
        if (!json_is_null(json_object_get(job, "finished_at")))
            break;
        json_decref(job);
        job = NULL;
        usleep(10000);
    }
    assert_non_null(job);
    counts = json_object_get(job, "counts");
    json_int_t total = json_integer_value(json_object_get(counts, "total"));
    json_int_t sum = json_integer_value(json_object_get(counts, "done")) +
                     json_integer_value(json_object_get(counts, "failed")) +
                     json_integer_value(json_object_get(counts, "cancelled"));
    assert_int_equal(sum, total);
    assert_true(json_integer_value(json_object_get(counts, "cancelled")) > 0);
    json_decref(job);
    assert_int_equal(engine_cancel(f->e, id, NULL), -EALREADY);
    assert_int_equal(engine_cancel(f->e, "bbbbbbbbbbbbbbbbbbbbbbbbbb", NULL), -ENOENT);
    free(id);
}

/* A worker killed mid-job: its tasks are reclaimed (as the supervisor does)
 * and the job still ends with every result exactly once. */
static void test_worker_killed_mid_job(void **state)
{
    struct fixture *f = *state;
    const uint64_t n = 400000;
    char *id = submit_numbers(f->e, 7, n, 0);
    /* wait until worker 0 holds a task, then kill it */
    for (int i = 0; i < 2000 && !atomic_load(&shm_worker(&f->shm, 0)->current_job); i++)
        usleep(1000);
    kill(f->pids[0], SIGKILL);
    int status;
    assert_int_equal(waitpid(f->pids[0], &status, 0), f->pids[0]);
    f->pids[0] = 0;
    ring_reclaim_worker(&f->shm, 0, status);
    json_t *job = wait_job(f->e, id);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "counts"), "done")),
                     (json_int_t)n);
    json_decref(job);
    check_squares(f->e, id, 7, n);
    free(id);
}

/* The test process plays worker 0 (no worker is forked): it claims tasks,
 * commits outputs and "dies" exactly when it chooses. */
static int setup_played(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.max_item_bytes = 64 * 1024;
    f->cfg.max_attempts = 3;
    f->cfg.max_queued_items = 5000000;
    f->cfg.retention_s = 3600;
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-engine.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.data_dir = f->dir;
    uint32_t gw[1] = { 1 };
    const char *names[1] = { "square" };
    struct shm_layout lay = { 1, gw, names, 8, 64 * 1024 + 64, 64 * 1024 + 64 };
    assert_int_equal(shm_create(&f->shm, &lay), 0);
    atomic_store(&shm_worker(&f->shm, 0)->state, WORKER_IDLE);
    f->e = engine_create(&f->cfg, &f->shm, NULL);
    assert_non_null(f->e);
    *state = f;
    return 0;
}

/* Claims the next task as worker 0 (bounded wait: 10 s) and returns its slot. */
static uint32_t play_claim(struct shm *shm)
{
    uint32_t idx;
    for (int i = 0; i < 10000; i++) {
        if (ring_claim(shm, 0, 0, &idx) == 0)
            return idx;
        usleep(1000);
    }
    fail_msg("no task was dispatched in 10 s");
    return 0;
}

/* Commits the square of every input of the claimed slot idx. */
static void play_square(struct shm *shm, uint32_t idx)
{
    uint32_t pos = 0, len;
    const uint8_t *data;
    while (ring_next_input(shm, idx, &pos, &data, &len)) {
        char in[32], out[32];
        assert_true(len < sizeof in);
        memcpy(in, data, len);
        in[len] = '\0';
        long long v = atoll(in);
        int n = snprintf(out, sizeof out, "%lld", v * v);
        assert_int_equal(ring_put_output(shm, idx, RING_OUT_OK, out, (uint32_t)n), 0);
    }
}

/* Asserts that the job's results are exactly [{"index":0,"output":want}]. */
static void check_one_result(struct engine *e, const char *id, long long want)
{
    struct sbuf page = SBUF_INIT;
    assert_int_equal(engine_results_page(e, id, 0, 10, &page), 0);
    json_error_t err;
    json_t *doc = json_loads(page.data, 0, &err);
    assert_non_null(doc);
    json_t *results = json_object_get(doc, "results");
    assert_int_equal(json_array_size(results), 1);
    json_t *r = json_array_get(results, 0);
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 0);
    assert_int_equal(json_integer_value(json_object_get(r, "output")), want);
    assert_true(json_is_null(json_object_get(doc, "next_offset")));
    json_decref(doc);
    sbuf_free(&page);
}


/* A worker that dies inside run_batch (its slot's batch_n > 1) names no
 * item: the batch's items run again in tasks half as big, with no attempt
 * counted; the outputs committed before the call are kept, and every item
 * ends with exactly one result (model.h, "Batches"). */
static void test_batch_death_halves(void **state)
{
    struct fixture *f = *state;
    char *id = submit_numbers(f->e, 0, 16, 16);
    uint32_t t1 = play_claim(&f->shm);
    struct ring_slot *s1 = ring_slot(&f->shm, t1);
    assert_int_equal(s1->n_items, 16);
    /* items 0 and 1 committed by run(), then a batch of the other 14 dies */
    assert_int_equal(ring_put_output(&f->shm, t1, RING_OUT_OK, "0", 1), 0);
    assert_int_equal(ring_put_output(&f->shm, t1, RING_OUT_OK, "1", 1), 0);
    atomic_store(&s1->batch_n, 14);
    assert_int_equal(ring_reclaim_worker(&f->shm, 0, SIGSEGV), 1);
    /* the suspects come back in halves of 7, not blamed: attempt 0 */
    uint32_t t2 = play_claim(&f->shm);
    struct ring_slot *s2 = ring_slot(&f->shm, t2);
    assert_int_equal(s2->first_index, 2);
    assert_int_equal(s2->n_items, 7);
    assert_int_equal(s2->attempt, 0);
    /* that batch dies too: its 7 items come back in tasks of at most 4 */
    atomic_store(&s2->batch_n, 7);
    assert_int_equal(ring_reclaim_worker(&f->shm, 0, SIGSEGV), 1);
    uint32_t done_items = 0, tasks = 0;
    for (int i = 0; i < 10000 && done_items < 14; i++) {
        uint32_t idx;
        if (ring_claim(&f->shm, 0, 0, &idx) != 0) {
            usleep(1000);
            continue;
        }
        struct ring_slot *s = ring_slot(&f->shm, idx);
        assert_true(s->n_items <= 7);
        if (s->first_index < 9)
            assert_true(s->n_items <= 4);
        assert_int_equal(s->attempt, 0);
        done_items += s->n_items;
        tasks++;
        play_square(&f->shm, idx);
        ring_complete(&f->shm, idx, 0);
    }
    assert_int_equal(done_items, 14);
    assert_true(tasks >= 3);
    json_t *job = wait_job(f->e, id);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "counts"), "done")),
                     16);
    json_decref(job);
    check_squares(f->e, id, 0, 16);
    free(id);
}

/* The chaos test's rare lost result, made deterministic: one collect pass
 * takes a task of job A (committed its result, then its worker died) and
 * then, in key order, a task of job B whose worker died before its first
 * commit. A's result run was still open; it must be written as A's, not
 * handed to the store under B's seq (where A lost it for good: its item's
 * bit said it had a result, so it never ran again). */
static void test_open_run_not_given_to_next_job(void **state)
{
    struct fixture *f = *state;
    char *a = submit_numbers(f->e, 3, 1, 1);
    char *b = submit_numbers(f->e, 5, 1, 1);
    /* worker 0 holds both tasks: ring_reclaim_worker marks them DIED in
     * one call, so that the engine (asleep: nothing woke it) collects both
     * in one pass, A's first (lower key) */
    uint32_t s1 = play_claim(&f->shm), s2 = play_claim(&f->shm);
    uint32_t sa = ring_slot(&f->shm, s1)->job_key < ring_slot(&f->shm, s2)->job_key ? s1 : s2;
    play_square(&f->shm, sa);
    assert_int_equal(ring_reclaim_worker(&f->shm, 0, SIGKILL), 2);
    /* B's item comes back alone (attempt 2): run it to the end */
    uint32_t again = play_claim(&f->shm);
    play_square(&f->shm, again);
    ring_complete(&f->shm, again, 0);
    /* B first: before the fix its block at 0 was A's (output 9), and its
     * own was dropped by INSERT OR IGNORE; A never finished (its run was
     * flushed as B's, so A's row never became durable with it) */
    json_t *job = wait_job(f->e, b);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_decref(job);
    check_one_result(f->e, b, 25);
    job = wait_job(f->e, a);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
    json_decref(job);
    check_one_result(f->e, a, 9);
    free(a);
    free(b);
}

static void test_stream(void **state)
{
    struct fixture *f = *state;
    char *id = submit_numbers(f->e, 0, 5000, 0);
    struct engine_stream *s = engine_stream_open(f->e, id);
    assert_non_null(s);
    char *seen = calloc(5000, 1);
    char buf[777]; /* odd size: lines split across reads */
    struct sbuf line = SBUF_INIT;
    unsigned lines = 0;
    for (int guard = 0; guard < 100000; guard++) {
        ssize_t n = engine_stream_read(s, buf, sizeof buf, 200);
        if (n < 0)
            break;
        for (ssize_t k = 0; k < n; k++) {
            if (buf[k] != '\n') {
                sbuf_append(&line, &buf[k], 1);
                continue;
            }
            json_t *r = json_loads(line.data, 0, NULL);
            assert_non_null(r);
            json_int_t idx = json_integer_value(json_object_get(r, "index"));
            assert_true(idx >= 0 && idx < 5000);
            assert_int_equal(seen[idx], 0);
            seen[idx] = 1;
            lines++;
            json_decref(r);
            sbuf_reset(&line);
        }
    }
    assert_int_equal(lines, 5000);
    sbuf_free(&line);
    free(seen);
    engine_stream_close(s);
    assert_null(engine_stream_open(f->e, "cccccccccccccccccccccccccc"));
    free(id);
}

/* Waits (bounded: 30 s) until the engine holds n jobs in memory (finished
 * ones are then served from the store), as /metrics says. */
static void wait_in_memory(struct engine *e, int n)
{
    char want[64];
    snprintf(want, sizeof want, "\nbatchd_jobs_in_memory %d\n", n);
    for (int i = 0; i < 3000; i++) {
        struct sbuf m = SBUF_INIT;
        assert_int_equal(engine_metrics(e, &m), 0);
        bool ok = strstr(m.data, want) != NULL;
        sbuf_free(&m);
        if (ok)
            return;
        usleep(10000);
    }
    fail_msg("the engine never held %d job(s) in memory", n);
}

/* One page: its size and next_offset (-1 for null). */
static void page_of(struct engine *e, const char *id, size_t offset, size_t limit, size_t *n,
                    long long *next)
{
    struct sbuf page = SBUF_INIT;
    assert_int_equal(engine_results_page(e, id, offset, limit, &page), 0);
    json_t *doc = json_loads(page.data, 0, NULL);
    assert_non_null(doc);
    *n = json_array_size(json_object_get(doc, "results"));
    json_t *no = json_object_get(doc, "next_offset");
    *next = json_is_integer(no) ? (long long)json_integer_value(no) : -1;
    json_decref(doc);
    sbuf_free(&page);
}

/* A finished job leaves memory and is served from the store: status,
 * paging (issue 13, item 1: the end of a page), stream, cancel, purge;
 * and the same after the engine is made again on the same store (an api
 * process restart). */
static void test_finished_from_store(void **state)
{
    struct fixture *f = *state;
    char *id = submit_numbers(f->e, 0, 3000, 0);
    json_decref(wait_job(f->e, id));
    char etag[ENGINE_ETAG_LEN + 1], again[ENGINE_ETAG_LEN + 1];
    json_decref(engine_job_json(f->e, id, etag));
    wait_in_memory(f->e, 0);
    for (int round = 0; round < 2; round++) {
        size_t n;
        long long next;
        page_of(f->e, id, 0, 1000, &n, &next);
        assert_int_equal(n, 1000);
        assert_int_equal(next, 1000);
        page_of(f->e, id, 2000, 1000, &n, &next);
        assert_int_equal(n, 1000);
        assert_int_equal(next, -1);
        check_squares(f->e, id, 0, 3000);
        json_t *job = NULL;
        assert_int_equal(engine_cancel(f->e, id, &job), -EALREADY);
        assert_string_equal(json_string_value(json_object_get(job, "status")), "succeeded");
        assert_string_equal(json_string_value(json_object_get(job, "model")), "square");
        json_decref(job);
        json_decref(engine_job_json(f->e, id, again));
        assert_string_equal(etag, again);
        /* the engine again, on the same store: the api process restarted */
        engine_destroy(f->e);
        f->e = engine_create(&f->cfg, &f->shm, NULL);
        assert_non_null(f->e);
    }
    struct engine_stream *st = engine_stream_open(f->e, id);
    assert_non_null(st);
    char buf[4096];
    size_t lines = 0;
    ssize_t got;
    for (int i = 0; i < 100000 && (got = engine_stream_read(st, buf, sizeof buf, 100)) >= 0; i++)
        for (ssize_t k = 0; k < got; k++)
            lines += buf[k] == '\n';
    assert_int_equal(got, -1);
    assert_int_equal(lines, 3000);
    engine_stream_close(st);
    assert_int_equal(engine_purge(f->e, id), 0);
    assert_null(engine_job_json(f->e, id, NULL));
    assert_int_equal(engine_purge(f->e, id), -ENOENT);
    free(id);
}

static void test_list_and_metrics(void **state)
{
    struct fixture *f = *state;
    char *a = submit_numbers(f->e, 0, 10, 0);
    char *b = submit_numbers(f->e, 0, 10, 0);
    json_decref(wait_job(f->e, a));
    json_decref(wait_job(f->e, b));
    int err;
    json_t *list = engine_jobs_json(f->e, -1, 1, NULL, &err);
    assert_non_null(list);
    json_t *jobs = json_object_get(list, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), b);
    assert_string_equal(json_string_value(json_object_get(list, "next_after")), b);
    json_decref(list);
    list = engine_jobs_json(f->e, JOB_SUCCEEDED, 10, b, &err);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(list, "jobs"), 0), "id")),
        a);
    json_decref(list);
    assert_null(engine_jobs_json(f->e, -1, 10, "dddddddddddddddddddddddddd", &err));
    assert_int_equal(err, -ENOENT);

    char etag1[ENGINE_ETAG_LEN + 1], etag2[ENGINE_ETAG_LEN + 1];
    json_decref(engine_job_json(f->e, a, etag1));
    json_decref(engine_job_json(f->e, a, etag2));
    assert_string_equal(etag1, etag2); /* nothing changed: same tag */

    engine_count_request(f->e, "/v1/jobs", "POST", 202, 0.002);
    struct sbuf m = SBUF_INIT;
    assert_int_equal(engine_metrics(f->e, &m), 0);
    assert_non_null(strstr(m.data, "batchd_jobs{status=\"succeeded\"}"));
    assert_non_null(strstr(m.data, "batchd_item_duration_seconds_bucket{model=\"square\""));
    assert_non_null(strstr(m.data, "batchd_http_requests_total{route=\"/v1/jobs\",method=\"POST\",code=\"202\"} 1"));
    sbuf_free(&m);

    char why[256];
    assert_true(engine_ready(f->e, why, sizeof why));
    json_t *workers = engine_workers_json(f->e);
    assert_int_equal(json_array_size(json_object_get(workers, "workers")), N_WORKERS);
    json_decref(workers);
    json_t *models = engine_models_json(f->e);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(models, "models"), 0), "name")),
        "square");
    json_decref(models);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_square_job, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_item_errors_do_not_fail_the_job, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_bad_submissions, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_admission_control, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_fairness, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_worker_killed_mid_job, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_batch_death_halves, setup_played, teardown),
        cmocka_unit_test_setup_teardown(test_open_run_not_given_to_next_job, setup_played,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_and_metrics, setup_square, teardown),
        cmocka_unit_test_setup_teardown(test_finished_from_store, setup_square, teardown),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
