/*
 * test_results_stream: whole-result downloads (issue 18).
 *
 *   - GET /v1/jobs/{id}/results?stream=true&order=input of a 1,000,000-item
 *     job: every result, once, in index order, as NDJSON; the api
 *     process's RSS is sampled while the stream runs and printed (it must
 *     stay flat: the stream reads the store a few blocks at a time);
 *   - filter=errors on that stream, on the completion-order stream and on
 *     pages: exactly the failed items (every 1000th item is a string, which
 *     square refuses);
 *   - order=input on a job still running follows its completed prefix and
 *     ends when the job ends;
 *   - bad order and filter values, and order=completion without a stream,
 *     are 400 problems.
 */
#include "tests/integration/harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG 1000000
#define ERR_EVERY 1000

static struct h_service svc;
static char big_id[32];

/* A stream read line by line as it arrives, never kept whole. */
struct reader {
    char line[4096];
    size_t len;
    long long lines, next_index, bad_order, errors, bad_lines;
    bool input_order;
    pid_t api;
    long rss_min, rss_max;
    size_t bytes, sampled_at;
};

static void on_line(struct reader *rd)
{
    rd->line[rd->len] = '\0';
    long long idx = -1;
    if (sscanf(rd->line, "{\"index\":%lld,", &idx) != 1) {
        rd->bad_lines++;
        return;
    }
    if (strstr(rd->line, ",\"error\":"))
        rd->errors++;
    if (rd->input_order && idx < rd->next_index)
        rd->bad_order++;
    rd->next_index = idx + 1;
    rd->lines++;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct reader *rd = arg;
    size_t total = size * n;
    for (size_t i = 0; i < total; i++) {
        if (p[i] == '\n') {
            on_line(rd);
            rd->len = 0;
        } else if (rd->len < sizeof rd->line - 1) {
            rd->line[rd->len++] = p[i];
        }
    }
    rd->bytes += total;
    /* the api process's memory, every 4 MiB of stream */
    if (rd->api && rd->bytes - rd->sampled_at >= (4u << 20)) {
        rd->sampled_at = rd->bytes;
        long kib = h_proc_status(rd->api, "VmRSS");
        if (kib && (!rd->rss_min || kib < rd->rss_min))
            rd->rss_min = kib;
        if (kib > rd->rss_max)
            rd->rss_max = kib;
    }
    return total;
}

/* Streams path into rd; returns the HTTP status. */
static long stream(const char *path, struct reader *rd)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", svc.port, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rd);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        h_note("stream %s: %s", path, curl_easy_strerror(rc));
    curl_easy_cleanup(c);
    return status;
}

static void test_big_job(void)
{
    /* NDJSON body: a number per line, a string every ERR_EVERY items */
    struct h_buf b = {0};
    for (int i = 0; i < BIG; i++) {
        if (i % ERR_EVERY == 0)
            h_buf_add(&b, "\"x\"\n", 4);
        else
            h_buf_printf(&b, "%d\n", i % 1000);
    }
    bool ok = h_submit(&svc, "/v1/jobs?model=square", "application/x-ndjson", b.p, b.len,
                       big_id, 120);
    h_buf_free(&b);
    if (!CHECK(ok))
        return;
    double t0 = h_now();
    json_t *job = h_wait_job(&svc, big_id, 600);
    long long failed = 0;
    CHECK(h_jint(job, "counts/failed", &failed) && failed == BIG / ERR_EVERY);
    json_decref(job);
    h_note("%d items ran in %.1f s", BIG, h_now() - t0);

    pid_t api = h_service_api_pid(&svc);
    struct reader rd = {.input_order = true, .api = api};
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true&order=input", big_id);
    long rss_before = h_proc_status(api, "VmRSS");
    t0 = h_now();
    CHECK_INT(stream(path, &rd), 200);
    CHECK_INT(rd.lines, BIG);
    CHECK_INT(rd.bad_order, 0);
    CHECK_INT(rd.bad_lines, 0);
    CHECK_INT(rd.next_index, BIG);
    CHECK_INT(rd.errors, BIG / ERR_EVERY);
    h_note("order=input: %lld lines, %.1f MB in %.1f s; api RSS %ld KiB before, %ld..%ld KiB "
           "during, %ld KiB after",
           rd.lines, (double)rd.bytes / 1e6, h_now() - t0, rss_before, rd.rss_min, rd.rss_max,
           h_proc_status(api, "VmRSS"));
}

static void test_errors_only(void)
{
    if (!big_id[0]) {
        h_skip("the big job did not run");
        return;
    }
    char path[160];
    struct reader rd = {.input_order = true};
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true&order=input&filter=errors",
             big_id);
    CHECK_INT(stream(path, &rd), 200);
    CHECK_INT(rd.lines, BIG / ERR_EVERY);
    CHECK_INT(rd.errors, BIG / ERR_EVERY);
    CHECK_INT(rd.bad_order, 0);

    struct reader rc = {0};
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true&order=completion&filter=errors",
             big_id);
    CHECK_INT(stream(path, &rc), 200);
    CHECK_INT(rc.lines, BIG / ERR_EVERY);
    CHECK_INT(rc.errors, BIG / ERR_EVERY);

    /* pages of errors: limit counts errors, next_offset goes on from there */
    long long seen = 0, offset = 0;
    for (int page = 0; page < 100; page++) {
        snprintf(path, sizeof path, "/v1/jobs/%s/results?filter=errors&limit=300&offset=%lld",
                 big_id, offset);
        struct h_resp r;
        h_get(&svc, path, &r);
        CHECK_INT(r.status, 200);
        json_t *res = h_jget(h_json(&r), "results");
        for (size_t i = 0; i < json_array_size(res); i++) {
            long long idx = -1;
            h_jint(json_array_get(res, i), "index", &idx);
            CHECKF(idx % ERR_EVERY == 0, "index %lld is an error", idx);
            CHECK(h_jget(json_array_get(res, i), "error") != NULL);
            seen++;
        }
        json_t *next = h_jget(h_json(&r), "next_offset");
        bool end = json_is_null(next);
        offset = end ? 0 : json_integer_value(next);
        h_resp_free(&r);
        if (end)
            break;
    }
    CHECK_INT(seen, BIG / ERR_EVERY);
}

static void test_running_prefix(void)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"exp_sinh\",\"inputs\":[");
    for (int i = 0; i < 60; i++)
        h_buf_printf(&b, "%s{\"n\":%d}", i ? "," : "", i % 7 == 3 ? 0 : 1000000);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":1}}");
    char id[32];
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 10);
    h_buf_free(&b);
    if (!CHECK(ok))
        return;
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true&order=input", id);
    struct reader rd = {.input_order = true};
    double t0 = h_now();
    CHECK_INT(stream(path, &rd), 200);
    CHECK_INT(rd.lines, 60);
    CHECK_INT(rd.bad_order, 0);
    CHECK_INT(rd.errors, 9); /* n = 0 is refused: items 3, 10, ..., 59 */
    h_note("running job followed in order: %lld lines in %.2f s", rd.lines, h_now() - t0);
    json_t *job = h_wait_job(&svc, id, 5);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
}

static void test_bad_params(void)
{
    if (!big_id[0]) {
        h_skip("the big job did not run");
        return;
    }
    const char *bad[] = {"order=random", "filter=failed", "order=completion",
                         "stream=true&order=", "filter="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[192], inst[96];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?%s", big_id, bad[i]);
        snprintf(inst, sizeof inst, "/v1/jobs/%s/results", big_id);
        struct h_resp r;
        h_get(&svc, path, &r);
        CHECK_PROBLEM(&r, 400, "invalid-parameter", inst);
        h_resp_free(&r);
    }
}

int main(void)
{
    static const struct h_test tests[] = {
        {"1M results streamed in input order, memory flat", test_big_job},
        {"filter=errors: streams (both orders) and pages", test_errors_only},
        {"order=input follows a running job's prefix", test_running_prefix},
        {"bad order and filter values are 400", test_bad_params},
    };
    const char *args[] = {"--workers", "2", "--model", "square", "--model", "exp_sinh", NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 0, tests, sizeof tests / sizeof tests[0]);
}
