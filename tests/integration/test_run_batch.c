/*
 * test_run_batch: models with run_batch (include/batchd/model.h,
 * "Batches"), end to end, with the test plugin tests/plugins/batch_plugin.c
 * ("batchy": integers doubled, -1 an item error, -666 a crash, -777 a
 * sleeper) loaded as --model batchy:plugin=BUILD/tests/plugins/libbatch.so.
 *
 *   - a job whose items run in batches: every output is right, and most
 *     items went through run_batch (their "batch" is > 1);
 *   - one item errors and one crashes its worker in the middle of large
 *     batches: the job finishes; the error item has its message, the
 *     poison item ends `worker died: ... on attempt N/N` (isolated by
 *     halving the batches it crashed, then alone), and every other item
 *     has exactly one result, its right output; the same with
 *     max_attempts 1;
 *   - an item past its deadline inside a batch: the batch is split until
 *     the item is alone, it gets `timed out after S s`, the others their
 *     outputs.
 */
#include "tests/integration/harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_TIMEOUT_S 60

static struct h_service svc;
static bool svc_up;
static char batch_so[PATH_MAX + 64];

/* {"model":"batchy","inputs":[0..n-1 with specials],"options":{...}}. */
static char *body(size_t n, long long err_at, long long crash_at, long long sleep_at,
                  const char *options)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"batchy\",\"inputs\":[");
    for (size_t i = 0; i < n; i++) {
        long long x = (long long)i;
        if ((long long)i == err_at)
            x = -1;
        else if ((long long)i == crash_at)
            x = -666;
        else if ((long long)i == sleep_at)
            x = -777;
        h_buf_printf(&b, "%s%lld", i ? "," : "", x);
    }
    h_buf_printf(&b, "]%s%s}", options ? ",\"options\":" : "", options ? options : "");
    return b.p;
}

struct tally {
    size_t n, outputs, errors, batched;
    long long err_at, crash_at, sleep_at;
    const char *crash_msg, *sleep_msg; /* expected prefixes */
    bool bad;
};

static bool check_one(const json_t *res, void *arg)
{
    struct tally *t = arg;
    long long index;
    json_t *out;
    const char *msg;
    if (!CHECK_RESULT(res, &index, &out, &msg))
        return false;
    if (index == t->err_at) {
        t->bad |= !CHECKF(msg && strcmp(msg, "negative item -1") == 0, "item %lld: %s", index,
                          msg ? msg : "an output");
    } else if (index == t->crash_at) {
        t->bad |= !CHECKF(msg && strncmp(msg, t->crash_msg, strlen(t->crash_msg)) == 0,
                          "poison item %lld: %s", index, msg ? msg : "an output");
    } else if (index == t->sleep_at) {
        t->bad |= !CHECKF(msg && strncmp(msg, t->sleep_msg, strlen(t->sleep_msg)) == 0,
                          "sleeper %lld: %s", index, msg ? msg : "an output");
    } else {
        long long x = -1, twice = -1, batch = 0;
        t->bad |= !CHECKF(out && h_jint(out, "x", &x) && h_jint(out, "twice", &twice) &&
                              h_jint(out, "batch", &batch) && x == index && twice == 2 * index,
                          "item %lld: %s", index, msg ? msg : "a wrong output");
        t->batched += batch > 1;
    }
    t->outputs += out != NULL;
    t->errors += msg != NULL;
    t->n++;
    return !t->bad;
}

/* Submits, waits, and walks every result with check_one. */
static void run_job(size_t n, struct tally *t, const char *options, long long want_failed)
{
    char *b = body(n, t->err_at, t->crash_at, t->sleep_at, options);
    char id[32];
    double t0 = h_now();
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b, strlen(b), id, 10);
    free(b);
    if (!ok)
        return;
    json_t *job = h_wait_job(&svc, id, RUN_TIMEOUT_S);
    if (!CHECK(job != NULL))
        return;
    long long done = -1, failed = -1;
    CHECK(h_jint(job, "counts/done", &done) && h_jint(job, "counts/failed", &failed));
    CHECK_INT(failed, want_failed);
    CHECK_INT(done + failed, (long long)n);
    json_decref(job);
    /* h_each_result checks index == position: each item exactly once */
    CHECK(h_each_result(&svc, id, n, 1000, check_one, t));
    CHECK_INT(t->n, n);
    h_note("%zu items, %zu outputs (%zu from batches of more than one), %zu errors, in %.2f s",
           n, t->outputs, t->batched, t->errors, h_now() - t0);
}

static void test_batches(void)
{
    struct tally t = { .err_at = -2, .crash_at = -2, .sleep_at = -2 };
    run_job(5000, &t, "{\"chunk_size\":500}", 0);
    /* chunks of 500 go to run_batch whole: nearly every item is batched */
    CHECKF(t.batched >= 4000, "only %zu of 5000 items came from batches", t.batched);
}

static void test_error_and_poison(void)
{
    struct tally t = { .err_at = 10, .crash_at = 700, .sleep_at = -2,
                       .crash_msg = "worker died: signal 11 (SIGSEGV) on attempt 3/3" };
    run_job(2000, &t, "{\"chunk_size\":1000,\"max_attempts\":3}", 2);
    CHECK(t.batched > 1500);
}

static void test_poison_one_attempt(void)
{
    struct tally t = { .err_at = 1999, .crash_at = 1, .sleep_at = -2,
                       .crash_msg = "worker died: signal 11 (SIGSEGV) on attempt 1/1" };
    run_job(2000, &t, "{\"chunk_size\":2000,\"max_attempts\":1}", 2);
}

static void test_deadline_in_batch(void)
{
    struct tally t = { .err_at = -2, .crash_at = -2, .sleep_at = 37,
                       .sleep_msg = "timed out after 0.5" };
    run_job(64, &t, "{\"chunk_size\":64,\"item_timeout_s\":0.5}", 1);
}

static void start(void)
{
    char spec[PATH_MAX + 128];
    snprintf(spec, sizeof spec, "batchy:plugin=%s,workers=2", batch_so);
    const char *const args[] = {"--model", spec, NULL};
    struct h_service_opts o = {.args = args};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void) { CHECK_INT(h_service_stop(&svc, 15), 0); }

int main(void)
{
    static const struct h_test tests[] = {
        {"items run in batches, each output right", test_batches},
        {"an item error and a poison item in batches: isolated, one result each",
         test_error_and_poison},
        {"a poison item with max_attempts 1: isolated, one result each",
         test_poison_one_attempt},
        {"an item past its deadline inside a batch times out alone", test_deadline_in_batch},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    char build_dir[PATH_MAX];
    snprintf(build_dir, sizeof build_dir, "%s", getenv("BATCHD_BIN") ? getenv("BATCHD_BIN") : "");
    char *slash = strrchr(build_dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(batch_so, sizeof batch_so, "%s/tests/plugins/libbatch.so", build_dir);
    if (access(batch_so, R_OK) != 0) {
        h_fail_test("plugin built", "BUILD/tests/plugins/libbatch.so is missing (make builds it)");
        return h_finish();
    }
    h_run_with_service(tests, sizeof tests / sizeof tests[0], start, &svc_up, stop);
    h_service_cleanup(&svc);
    return h_finish();
}
