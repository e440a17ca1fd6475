/*
 * bench_e2e: end-to-end throughput of a running batchd over HTTP.
 *
 * For each run: POST /v1/jobs with a workload of bench_body.h (square,
 * echo or exp_sinh: n items in one JSON body, optionally with a fixed
 * chunk_size), poll GET /v1/jobs/{id} until the job has
 * succeeded, then read every result with GET /v1/jobs/{id}/results paged
 * (limit=10000, following next_offset), checking that every index is
 * present, in order, once, with the right output. The clock runs from the
 * POST to the last page checked: what a client waits for. Pages are checked
 * by a one-pass scan of the compact form batchd writes (any other form falls
 * back to a full jansson parse), so the figure is batchd's time and not
 * that of building a million-node JSON tree in the client.
 *
 * Usage: bench_e2e --url http://127.0.0.1:PORT [--workload square|echo|exp_sinh]
 *                  [--chunk-size N] [--items N] [--runs R] [--key KEY]
 *                  [--page N] [--poll-ms N] [--timeout S]
 * Prints one line per run on stderr and, on stdout, the median run as
 *   RESULT batchd items=N seconds=S items_per_s=X submit_s=A run_s=B fetch_s=C
 * and, with --key, the line of bench_stats.h (median, min, max items/s)
 * and KEY_submit: the submit's rate in MB/s of JSON body.
 * The expected exp_sinh outputs are computed with the model's own kernel
 * (build/libbatchd.a) before the clock starts; the worker writes reals
 * with 17 significant digits, so they must match exactly.
 * Exit status 0, or 1 on any failure (HTTP error, wrong or missing result,
 * timeout). Every request has a timeout; every wait is bounded.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_body.h"
#include "bench/bench_http.h"
#include "bench/bench_stats.h"
#include "workers/models/models_builtin.h"

#define RESPONSE_CAP ((size_t)512 << 20) /* no page comes near this */

struct resp {
    char *p;
    size_t len, cap;
    bool too_big;
};

struct opts {
    const char *url;
    const char *key;
    enum bench_workload workload;
    uint32_t chunk_size;
    size_t items;
    int runs;
    long page;
    long poll_ms;
    long timeout_s;
};

struct run_times {
    double total, submit, run, fetch;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct resp *r = userp;
    return bench_http_append(&r->p, &r->len, &r->cap, &r->too_big, RESPONSE_CAP, data,
                             size * nmemb);
}

/*
 * One request on the reused handle (keep-alive). body == NULL means GET.
 * Returns the HTTP status, or -1 on a transport error (printed).
 */
static long request(CURL *h, const struct opts *o, const char *path, const char *body,
                    size_t body_len, struct resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", o->url, path);
    r->len = 0;
    r->too_big = false;
    if (r->p)
        r->p[0] = '\0';

    struct curl_slist *hdrs = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (body) {
        /* Without "Expect:" curl waits for a 100 Continue before sending a
         * large body, which would time the handshake, not batchd. */
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    return bench_http_perform(h, hdrs, o->timeout_s, "bench_e2e", body ? "POST" : "GET", path,
                              &r->too_big);
}

static json_t *parse_body(const struct resp *r, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loadb(r->p ? r->p : "", r->len, 0, &jerr);
    if (!v)
        fprintf(stderr, "bench_e2e: %s: invalid JSON: %s\n", what, jerr.text);
    return v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until GET /readyz answers 200. Returns 0 or -1. */
static int wait_ready(CURL *h, const struct opts *o, struct resp *r)
{
    double deadline = bench_now_s() + (double)o->timeout_s;
    long status = -1;
    while (bench_now_s() < deadline) {
        status = request(h, o, "/readyz", NULL, 0, r);
        if (status == 200)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "bench_e2e: /readyz not 200 after %ld s (last status %ld)\n", o->timeout_s,
            status);
    return -1;
}

/* ---- checking result pages ---------------------------------------------- */

/* exp_sinh's 7 distinct answers, computed before the clock starts. */
static double es_expected[7];

/* Checks the output text [p, end) of item idx (a JSON number). Returns
 * true when it is the expected value. */
static bool output_ok(enum bench_workload w, size_t idx, const char *p, const char *end)
{
    char tmp[64];
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *e;
    if (w == BENCH_EXP_SINH) {
        double v = strtod(tmp, &e);
        return *e == '\0' && v == es_expected[idx % 7];
    }
    long long v = strtoll(tmp, &e, 10);
    long long x = bench_square_item(idx);
    return *e == '\0' && v == (w == BENCH_SQUARE ? x * x : x);
}

/* The end of the JSON number at p (no validation: output_ok parses it). */
static const char *number_end(const char *p, const char *end)
{
    while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' ||
                       *p == 'e' || *p == 'E'))
        p++;
    return p;
}

/* Reads a JSON integer at *p (no leading zeros, optional minus), advancing
 * *p. Returns false when the text is not one or does not fit. */
static bool scan_int(const char **p, const char *end, long long *out)
{
    const char *s = *p;
    bool neg = s < end && *s == '-';
    s += neg;
    if (s >= end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] >= '0' &&
                                              s[1] <= '9'))
        return false;
    unsigned long long v = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (unsigned long long)LLONG_MAX / 10)
            return false;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > (unsigned long long)LLONG_MAX)
            return false;
    }
    *out = neg ? -(long long)v : (long long)v;
    *p = s;
    return true;
}

static bool scan_lit(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/*
 * The fast path: a page in exactly the compact form batchd writes,
 * {"results":[{"index":I,"output":O},...],"next_offset":N|null}, checked
 * in one pass over the text. Building a jansson tree of a million small
 * objects would cost the client more than batchd spends on the whole job,
 * and the serial baseline parses no results either; so the common case is
 * scanned, and anything else falls back to the full parse below.
 * Returns 1 (matched and checked; *next_index advanced), 0 (not in that
 * form: nothing changed), -1 (a wrong result, printed).
 */
static int scan_page(const struct opts *o, const struct resp *r, size_t *next_index,
                     long long *next_offset)
{
    const char *p = r->p, *end = r->p + r->len;
    size_t idx = *next_index;
    long long index;

    if (!p || !scan_lit(&p, end, "{\"results\":["))
        return 0;
    if (!scan_lit(&p, end, "]")) {
        for (;;) {
            if (!scan_lit(&p, end, "{\"index\":") || !scan_int(&p, end, &index) ||
                !scan_lit(&p, end, ",\"output\":"))
                return 0;
            const char *out = p;
            p = number_end(p, end);
            if (p == out || !scan_lit(&p, end, "}"))
                return 0;
            if (index != (long long)idx || !output_ok(o->workload, idx, out, p - 1)) {
                fprintf(stderr, "bench_e2e: result for index %lld (expected %zu): wrong output "
                                "%.*s\n", index, idx, (int)(p - 1 - out), out);
                return -1;
            }
            idx++;
            if (scan_lit(&p, end, "]"))
                break;
            if (!scan_lit(&p, end, ","))
                return 0;
        }
    }
    long long next = -1;
    if (!scan_lit(&p, end, ",\"next_offset\":"))
        return 0;
    if (!scan_lit(&p, end, "null") && (!scan_int(&p, end, &next) || next < 0))
        return 0;
    if (!scan_lit(&p, end, "}"))
        return 0;
    while (p < end && (*p == '\n' || *p == '\r' || *p == ' '))
        p++;
    if (p != end)
        return 0;
    *next_index = idx;
    *next_offset = next;
    return 1;
}

/*
 * Checks one ResultPage (the fast scan, else a full jansson parse) and
 * advances *next_index past its results. Returns 0, or -1 on a wrong page
 * (printed). *next_offset is set to the page's next_offset, or -1 for null.
 */
static int check_page(const struct opts *o, const struct resp *r, size_t *next_index,
                      long long *next_offset)
{
    int fast = scan_page(o, r, next_index, next_offset);
    if (fast != 0)
        return fast < 0 ? -1 : 0;
    json_t *page = parse_body(r, "results page");
    if (!page)
        return -1;
    int rc = -1;
    json_t *results = json_object_get(page, "results");
    json_t *next = json_object_get(page, "next_offset");
    if (!json_is_array(results) || !next || !(json_is_integer(next) || json_is_null(next))) {
        fprintf(stderr, "bench_e2e: page without results or next_offset\n");
        goto out;
    }
    size_t k;
    json_t *res;
    json_array_foreach(results, k, res) {
        json_t *index = json_object_get(res, "index");
        json_t *output = json_object_get(res, "output");
        size_t want = *next_index;
        if (!json_is_integer(index)) {
            fprintf(stderr, "bench_e2e: result %zu of the page has no index, expected %zu\n", k,
                    want);
            goto out;
        }
        if (json_integer_value(index) != (json_int_t)want) {
            fprintf(stderr, "bench_e2e: result %zu of the page has index %lld, expected %zu\n",
                    k, (long long)json_integer_value(index), want);
            goto out;
        }
        char text[64];
        size_t tn = output ? json_dumpb(output, text, sizeof text - 1,
                                        JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))
                           : 0;
        if (!json_is_number(output) || tn == 0 || tn >= sizeof text ||
            !output_ok(o->workload, want, text, text + tn)) {
            json_t *e = json_object_get(json_object_get(res, "error"), "message");
            fprintf(stderr, "bench_e2e: item %zu: wrong output (%s)\n", want,
                    json_is_string(e) ? json_string_value(e) : "not the expected value");
            goto out;
        }
        (*next_index)++;
    }
    *next_offset = json_is_null(next) ? -1 : (long long)json_integer_value(next);
    rc = 0;
out:
    json_decref(page);
    return rc;
}

static int run_once(CURL *h, const struct opts *o, const char *body, size_t body_len,
                    struct resp *r, struct run_times *t)
{
    char path[256], id[64];
    double t0 = bench_now_s();

    long status = request(h, o, "/v1/jobs", body, body_len, r);
    if (status != 202) {
        fprintf(stderr, "bench_e2e: POST /v1/jobs: status %ld: %.300s\n", status,
                r->p ? r->p : "");
        return -1;
    }
    json_t *job = parse_body(r, "POST /v1/jobs");
    const char *jid = job ? json_string_value(json_object_get(job, "id")) : NULL;
    if (!jid || strlen(jid) >= sizeof id) {
        fprintf(stderr, "bench_e2e: POST /v1/jobs: no job id\n");
        json_decref(job);
        return -1;
    }
    strcpy(id, jid);
    json_decref(job);
    double t_submit = bench_now_s();

    /* Poll until succeeded; a job that fails or is cancelled ends the run. */
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = t_submit + (double)o->timeout_s;
    for (;;) {
        status = request(h, o, path, NULL, 0, r);
        if (status != 200) {
            fprintf(stderr, "bench_e2e: GET %s: status %ld\n", path, status);
            return -1;
        }
        job = parse_body(r, path);
        const char *st = job ? json_string_value(json_object_get(job, "status")) : NULL;
        if (st && strcmp(st, "succeeded") == 0) {
            json_t *counts = json_object_get(job, "counts");
            json_int_t done = json_integer_value(json_object_get(counts, "done"));
            json_int_t failed = json_integer_value(json_object_get(counts, "failed"));
            json_decref(job);
            if (done != (json_int_t)o->items || failed != 0) {
                fprintf(stderr, "bench_e2e: job %s: done %lld, failed %lld, expected %zu, 0\n",
                        id, (long long)done, (long long)failed, o->items);
                return -1;
            }
            break;
        }
        if (!st || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
            fprintf(stderr, "bench_e2e: job %s ended as %s\n", id, st ? st : "(no status)");
            json_decref(job);
            return -1;
        }
        json_decref(job);
        if (bench_now_s() > deadline) {
            fprintf(stderr, "bench_e2e: job %s not done after %ld s\n", id, o->timeout_s);
            return -1;
        }
        sleep_ms(o->poll_ms);
    }
    double t_done = bench_now_s();

    size_t next_index = 0;
    long long offset = 0;
    while (offset >= 0) {
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%lld&limit=%ld", id, offset,
                 o->page);
        status = request(h, o, path, NULL, 0, r);
        if (status != 200) {
            fprintf(stderr, "bench_e2e: GET %s: status %ld\n", path, status);
            return -1;
        }
        size_t before = next_index;
        long long next;
        if (check_page(o, r, &next_index, &next) < 0)
            return -1;
        /* A finished job has every result, so each page must make progress
         * and end exactly where the next one starts. */
        if (next >= 0 && (next_index == before || (size_t)next != next_index)) {
            fprintf(stderr, "bench_e2e: page at %lld: next_offset %lld after index %zu\n",
                    offset, next, next_index);
            return -1;
        }
        offset = next;
    }
    if (next_index != o->items) {
        fprintf(stderr, "bench_e2e: %zu results for %zu items\n", next_index, o->items);
        return -1;
    }
    double t_end = bench_now_s();
    t->total = t_end - t0;
    t->submit = t_submit - t0;
    t->run = t_done - t_submit;
    t->fetch = t_end - t_done;
    return 0;
}

static int cmp_total(const void *a, const void *b)
{
    double x = ((const struct run_times *)a)->total, y = ((const struct run_times *)b)->total;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_e2e --url http://HOST:PORT [--workload square|echo|exp_sinh] "
                    "[--chunk-size N] [--items N] [--runs R] [--key KEY] [--page N] "
                    "[--poll-ms N] [--timeout S]\n");
    return 1;
}

int main(int argc, char **argv)
{
    struct opts o = {NULL, NULL, BENCH_SQUARE, 0, 1000000, 3, 10000, 5, 600};
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(argv[a], "--url") == 0)
            o.url = v;
        else if (strcmp(argv[a], "--key") == 0)
            o.key = v;
        else if (strcmp(argv[a], "--chunk-size") == 0)
            o.chunk_size = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(argv[a], "--workload") == 0) {
            if (strcmp(v, "square") == 0)
                o.workload = BENCH_SQUARE;
            else if (strcmp(v, "echo") == 0)
                o.workload = BENCH_ECHO;
            else if (strcmp(v, "exp_sinh") == 0)
                o.workload = BENCH_EXP_SINH;
            else
                return usage();
        } else if (strcmp(argv[a], "--items") == 0)
            o.items = strtoull(v, NULL, 10);
        else if (strcmp(argv[a], "--runs") == 0)
            o.runs = atoi(v);
        else if (strcmp(argv[a], "--page") == 0)
            o.page = atol(v);
        else if (strcmp(argv[a], "--poll-ms") == 0)
            o.poll_ms = atol(v);
        else if (strcmp(argv[a], "--timeout") == 0)
            o.timeout_s = atol(v);
        else
            return usage();
        a++;
    }
    if (!o.url || o.items == 0 || o.runs < 1 || o.runs > 100 || o.page < 1 || o.poll_ms < 1 ||
        o.timeout_s < 1)
        return usage();

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "bench_e2e: curl_global_init failed\n");
        return 1;
    }
    CURL *h = curl_easy_init();
    size_t body_len = 0;
    char *body = bench_body(o.workload, o.items, o.chunk_size, &body_len);
    for (size_t k = 0; k < 7; k++)
        es_expected[k] = model_exp_sinh_kernel(bench_es_n(k));
    struct resp r = {0};
    struct run_times times[100];
    int status = 1;
    if (!h || !body) {
        fprintf(stderr, "bench_e2e: out of memory\n");
        goto out;
    }
    if (wait_ready(h, &o, &r) < 0)
        goto out;
    for (int i = 0; i < o.runs; i++) {
        if (run_once(h, &o, body, body_len, &r, &times[i]) < 0)
            goto out;
        fprintf(stderr,
                "batchd run %d: %zu items in %.3f s (%.0f items/s): submit %.3f s, run %.3f s, "
                "fetch %.3f s\n",
                i + 1, o.items, times[i].total, (double)o.items / times[i].total,
                times[i].submit, times[i].run, times[i].fetch);
    }
    double secs[100];
    for (int i = 0; i < o.runs; i++)
        secs[i] = times[i].total;
    qsort(times, (size_t)o.runs, sizeof times[0], cmp_total);
    const struct run_times *m = &times[o.runs / 2];
    printf("RESULT batchd items=%zu seconds=%.6f items_per_s=%.0f submit_s=%.6f run_s=%.6f "
           "fetch_s=%.6f\n",
           o.items, m->total, (double)o.items / m->total, m->submit, m->run, m->fetch);
    if (o.key) {
        bench_print_result(o.key, (double)o.items, secs, o.runs);
        /* The submit's rate in MB/s of JSON (issue 17's target: accepting
         * a job must not cost more than running it). */
        double sub[100];
        for (int i = 0; i < o.runs; i++)
            sub[i] = times[i].submit;
        qsort(sub, (size_t)o.runs, sizeof sub[0], bench_cmp_double);
        double mb = (double)body_len / 1e6;
        int n = o.runs;
        double med = n % 2 ? sub[n / 2] : (sub[n / 2 - 1] + sub[n / 2]) / 2;
        printf("RESULT %s_submit median=%.6g min=%.6g max=%.6g runs=%d unit=MB/s n=%zu\n", o.key,
               mb / med, mb / sub[n - 1], mb / sub[0], n, body_len);
    }
    status = 0;
out:
    free(r.p);
    free(body);
    if (h)
        curl_easy_cleanup(h);
    curl_global_cleanup();
    return status;
}
