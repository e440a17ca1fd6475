/*
 * e2e_objects: batchd's client for workloads 4-6 of make bench, end to end
 * over HTTP: upload, submit, wait, fetch every result and check it. What a
 * C user of batchd pays (libcurl on one keep-alive connection, jansson for
 * the JSON), so that the table measures batchd and not the client. The
 * expected answers are computed before the clock by the models' own C code
 * (build/libbatchd.a), on the same seeded data the Python baselines use
 * (numpy_rng.h makes numpy's default_rng arrays bit for bit).
 *
 *   e2e_objects --url URL mlp --weights FILE [--batches B] [--images N] [--split S]
 *       Batch k is default_rng(1000 + k).random((N, 784), float32)
 *       (bench/mlp_data.py's batch), cut into S parts as np.array_split
 *       cuts it; each part is uploaded as a float32 .npy object [n, 784]
 *       (POST /v1/objects, Content-Type application/x-npy) and is one item
 *       {"$object": ID}, so the S items of a batch spread over both
 *       workers. Every batch is uploaded and its job submitted before the
 *       first job is awaited; then each job is awaited, its results read
 *       (paged), every class checked against the serial forward pass
 *       (mlp_forward, workers/model_mlp.h) of the same weights, and its
 *       objects deleted. Items counted: images.
 *   e2e_objects --url URL convolve [--size N] [--rounds R]
 *       The image is default_rng(2000).random((N, N)) (py_convolve.py's
 *       image 0), uploaded once per run as a float64 .npy object, inside
 *       the clock: a user pays that upload once for all the rounds. Per
 *       round, a job of two items {"image": {"$object": ID}, "filter": F,
 *       "output": "object"} with py_convolve.py's two 4x4 filters; all
 *       rounds are submitted before the first is awaited. Each output
 *       object is downloaded raw (GET /v1/objects/{id}?download=true; its
 *       X-Object-Dtype and X-Object-Shape are checked), compared in full
 *       with model_convolve2d_kernel's answer, and deleted; the image is
 *       deleted at the end of the run. Items counted: convolutions.
 *   e2e_objects --url URL prefix --docs FILE --expect FILE
 *       POSTs the job body FILE (py_prefix.py --write) as it is, waits,
 *       reads every item's result and the reduced result
 *       (GET /v1/jobs/{id}/result), which must equal FILE --expect (both
 *       parsed by jansson, compared with json_equal). Items counted:
 *       documents.
 *
 * Common options: --runs R (default 5), --poll-ms N (GET /v1/jobs/{id}
 * every N ms while waiting, default 2), --timeout S (every request and
 * every wait for a job, default 120), --key KEY (default w4/w5/w6.batchd),
 * --parse scan|jansson (mlp: check result pages by the one-pass scan of
 * batchd's compact form, the default, or always by a jansson tree).
 * Prints one line per run on stderr (with where the time went) and the
 * RESULT line of bench_stats.h on stdout. Exit status 0, or 1 on any
 * failure: an HTTP error, a wrong or missing result, a timeout. No figure
 * is printed for work that was not done right.
 *
 * Memory: the batches (mlp) or the image and expected outputs (convolve)
 * are held for the whole program; every HTTP response is capped at
 * RESPONSE_CAP.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bench/bench_http.h"
#include "bench/bench_stats.h"
#include "workers/models/model_convolve2d.h"
#include "workers/models/model_mlp.h"
#include "bench/numpy_rng.h"

#define RESPONSE_CAP ((size_t)300 << 20) /* a results page is refused past 256 MiB */
#define MAX_RUNS 100
#define CONV_FILTER 4

/* ---- HTTP ----------------------------------------------------------------- */

struct resp {
    char *p;
    size_t len, cap;
    bool too_big;
    char dtype[32], shape[64]; /* X-Object-Dtype, X-Object-Shape of a download */
};

/* A request body sent from two pieces (a .npy header and the array's
 * bytes) without copying them into one buffer. */
struct body_src {
    const char *part[2];
    size_t len[2];
    size_t at; /* bytes sent so far */
};

struct client {
    CURL *h;
    const char *url;
    long timeout_s;
    long poll_ms;
    struct resp r;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct resp *r = userp;
    return bench_http_append(&r->p, &r->len, &r->cap, &r->too_big, RESPONSE_CAP, data,
                             size * nmemb);
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && *v == ' ')
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    struct resp *r = userp;
    size_t n = size * nmemb;
    header_value(line, n, "X-Object-Dtype", r->dtype, sizeof r->dtype);
    header_value(line, n, "X-Object-Shape", r->shape, sizeof r->shape);
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *userp)
{
    struct body_src *b = userp;
    size_t room = size * nmemb, done = 0, skip = b->at;
    for (int i = 0; i < 2 && room > 0; i++) {
        if (skip >= b->len[i]) {
            skip -= b->len[i];
            continue;
        }
        size_t n = b->len[i] - skip < room ? b->len[i] - skip : room;
        memcpy(buf + done, b->part[i] + skip, n);
        done += n;
        room -= n;
        skip = 0;
    }
    b->at += done;
    return done;
}

/*
 * One request on the client's handle (keep-alive). method is "GET", "POST"
 * or "DELETE"; a POST sends src (ctype its Content-Type). The response is
 * in c->r (NUL-terminated). Returns the HTTP status, or -1 on a transport
 * error (printed).
 */
static long request(struct client *c, const char *method, const char *path, const char *ctype,
                    const char *accept, struct body_src *src)
{
    char url[512], h1[128], h2[128];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    struct resp *r = &c->r;
    r->len = 0;
    r->too_big = false;
    r->dtype[0] = r->shape[0] = '\0';
    if (r->p)
        r->p[0] = '\0';

    CURL *h = c->h;
    struct curl_slist *hdrs = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(method, "POST") == 0) {
        snprintf(h1, sizeof h1, "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, h1);
        /* Without "Expect:" curl waits for a 100 Continue before sending a
         * large body, which would time the handshake, not batchd. */
        hdrs = curl_slist_append(hdrs, "Expect:");
        src->at = 0;
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, src);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(src->len[0] + src->len[1]));
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (strcmp(method, "GET") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (accept) {
        snprintf(h2, sizeof h2, "Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, h2);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    return bench_http_perform(h, hdrs, c->timeout_s, "e2e_objects", method, path, &r->too_big);
}

/* request() that must answer `want`; anything else is printed. Returns 0
 * or -1. */
static int expect_status(struct client *c, const char *method, const char *path,
                         const char *ctype, struct body_src *src, long want)
{
    long st = request(c, method, path, ctype, NULL, src);
    if (st == want)
        return 0;
    if (st >= 0)
        fprintf(stderr, "e2e_objects: %s %s: status %ld (expected %ld): %.300s\n", method, path,
                st, want, c->r.p ? c->r.p : "");
    return -1;
}

/* The response parsed as JSON: a new reference, or NULL (printed). */
static json_t *parse_resp(const struct client *c, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loadb(c->r.p ? c->r.p : "", c->r.len, 0, &jerr);
    if (!v)
        fprintf(stderr, "e2e_objects: %s: invalid JSON: %s\n", what, jerr.text);
    return v;
}

/* Copies the string member `key` of the response's JSON object into out.
 * Returns 0 or -1 (printed). */
static int resp_string(const struct client *c, const char *what, const char *key, char *out,
                       size_t cap)
{
    json_t *v = parse_resp(c, what);
    const char *s = json_string_value(json_object_get(v, key));
    int rc = s && strlen(s) < cap ? 0 : -1;
    if (rc == 0)
        strcpy(out, s);
    else
        fprintf(stderr, "e2e_objects: %s: no \"%s\" in %.200s\n", what, key, c->r.p);
    json_decref(v);
    return rc;
}

/*
 * Uploads an array as a .npy object (version 1.0, C order): descr is
 * numpy's ("<f4", "<f8"), shape rows x cols, data rows*cols*itemsize
 * bytes (borrowed). Writes the new object's id into id (cap >= 64).
 * Returns 0 or -1 (printed).
 */
static int upload_npy(struct client *c, const char *descr, size_t rows, size_t cols,
                      const void *data, size_t bytes, char *id)
{
    char hdr[128];
    int n = snprintf(hdr + 10, sizeof hdr - 10,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                     rows, cols);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64; /* numpy aligns the data to 64 bytes */
    if (padded > sizeof hdr)
        return -1;
    memset(hdr + 10 + n, ' ', padded - 10 - (size_t)n);
    hdr[padded - 1] = '\n';
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    hdr[8] = (char)((padded - 10) & 0xff);
    hdr[9] = (char)((padded - 10) >> 8);
    struct body_src src = {{hdr, data}, {padded, bytes}, 0};
    if (expect_status(c, "POST", "/v1/objects", "application/x-npy", &src, 201) < 0)
        return -1;
    return resp_string(c, "POST /v1/objects", "id", id, 64);
}

static int delete_object(struct client *c, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", id);
    return expect_status(c, "DELETE", path, NULL, NULL, 204);
}

/* POSTs a job body (JSON text, borrowed); its id goes into id (cap >= 64).
 * Returns 0 or -1 (printed). */
static int submit(struct client *c, const char *body, size_t len, char *id)
{
    struct body_src src = {{body, ""}, {len, 0}, 0};
    if (expect_status(c, "POST", "/v1/jobs", "application/json", &src, 202) < 0)
        return -1;
    return resp_string(c, "POST /v1/jobs", "id", id, 64);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Polls GET /v1/jobs/{id} every poll_ms until the job has succeeded with
 * n items done and none failed (bounded by timeout_s). Returns 0, or -1
 * (printed) when it failed, was cancelled, has other counts or is late.
 */
static int wait_job(struct client *c, const char *id, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = bench_now_s() + (double)c->timeout_s;
    for (;;) {
        if (expect_status(c, "GET", path, NULL, NULL, 200) < 0)
            return -1;
        json_t *job = parse_resp(c, path);
        const char *st = json_string_value(json_object_get(job, "status"));
        if (st && strcmp(st, "succeeded") == 0) {
            json_t *counts = json_object_get(job, "counts");
            json_int_t done = json_integer_value(json_object_get(counts, "done"));
            json_int_t failed = json_integer_value(json_object_get(counts, "failed"));
            json_decref(job);
            if (done != (json_int_t)n || failed != 0) {
                fprintf(stderr, "e2e_objects: job %s: done %lld, failed %lld, expected %zu, 0\n",
                        id, (long long)done, (long long)failed, n);
                return -1;
            }
            return 0;
        }
        if (!st || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
            fprintf(stderr, "e2e_objects: job %s ended as %s: %.300s\n", id,
                    st ? st : "(no status)", c->r.p);
            json_decref(job);
            return -1;
        }
        json_decref(job);
        if (bench_now_s() > deadline) {
            fprintf(stderr, "e2e_objects: job %s not done after %ld s\n", id, c->timeout_s);
            return -1;
        }
        sleep_ms(c->poll_ms);
    }
}

/*
 * Reads every result of a finished job of n items (GET
 * /v1/jobs/{id}/results, pages of 10000, following next_offset), checking
 * that each index comes once, in order, with an output. Returns the
 * outputs as a new array of n, or NULL (printed).
 */
static json_t *job_outputs(struct client *c, const char *id, size_t n)
{
    json_t *outs = json_array();
    long long off = 0;
    char path[192];
    while (outs && off >= 0) {
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%lld&limit=10000", id, off);
        json_t *page = NULL;
        if (expect_status(c, "GET", path, NULL, NULL, 200) < 0 || !(page = parse_resp(c, path)))
            goto fail;
        json_t *results = json_object_get(page, "results");
        json_t *next = json_object_get(page, "next_offset");
        size_t k;
        json_t *res;
        if (!json_is_array(results) || !(json_is_null(next) || json_is_integer(next))) {
            fprintf(stderr, "e2e_objects: %s: not a results page\n", path);
            json_decref(page);
            goto fail;
        }
        json_array_foreach(results, k, res) {
            json_t *out = json_object_get(res, "output");
            json_t *index = json_object_get(res, "index");
            if (!out || !json_is_integer(index) ||
                json_integer_value(index) != (json_int_t)json_array_size(outs)) {
                char *txt = json_dumps(res, JSON_COMPACT);
                fprintf(stderr, "e2e_objects: job %s: result %zu: %.300s\n", id,
                        json_array_size(outs), txt ? txt : "?");
                free(txt);
                json_decref(page);
                goto fail;
            }
            json_array_append(outs, out);
        }
        off = json_is_null(next) ? -1 : (long long)json_integer_value(next);
        json_decref(page);
    }
    if (outs && json_array_size(outs) == n)
        return outs;
    fprintf(stderr, "e2e_objects: job %s: %zu results for %zu items\n", id,
            outs ? json_array_size(outs) : 0, n);
fail:
    json_decref(outs);
    return NULL;
}

/* ---- the workloads ---------------------------------------------------------- */

struct opts {
    const char *workload, *key;
    const char *weights, *docs, *expect;
    size_t batches, images, split, size, rounds;
    int runs;
    bool jansson_only; /* --parse jansson: no fast scan of mlp pages */
};

/* One timed run of a workload: 0, or -1 on any failure (printed). The
 * phases (seconds) say where the time went. */
struct workload {
    double n; /* items a run counts */
    int (*once)(struct client *c, void *ctx, double phase[3]);
    const char *phases[3];
    void *ctx;
};

/* mlp ------------------------------------------------------------------------ */

struct mlp_ctx {
    const struct opts *o;
    uint32_t in, out;
    float *x;     /* batches x images x in */
    float *probs; /* batches x images x out, the serial forward pass */
    char (*ids)[64];
    char (*jobs)[64];
};

/* np.array_split's part p of n rows in s parts: its first row and count. */
static void split_part(size_t n, size_t s, size_t p, size_t *first, size_t *count)
{
    size_t base = n / s, extra = n % s;
    *first = p * base + (p < extra ? p : extra);
    *count = base + (p < extra);
}

/* A class k for image i is right when it is the argmax of the serial
 * forward pass, or ties with it to float32 rounding (batchd multiplies 64
 * images at a time, the serial pass a whole batch: sums may round apart). */
static bool class_ok(const float *p, uint32_t classes, json_int_t k)
{
    if (k < 0 || k >= (json_int_t)classes)
        return false;
    uint32_t want = mlp_argmax(p, classes);
    return (json_int_t)want == k || p[want] - p[k] <= 1e-5f;
}

/* Checks the class of image i (0-based within batch b). Returns 0 or -1
 * (printed). */
static int mlp_check_class(const struct mlp_ctx *m, size_t b, size_t i, json_int_t k)
{
    const float *pr = m->probs + (b * m->o->images + i) * m->out;
    if (class_ok(pr, m->out, k))
        return 0;
    fprintf(stderr, "e2e_objects: mlp job %s: image %zu: class %lld, the serial forward pass "
                    "says %u\n", m->jobs[b], i, (long long)k, mlp_argmax(pr, m->out));
    return -1;
}

static bool scan_lit(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* A JSON non-negative integer at *p (no leading zeros), advancing *p. */
static bool scan_uint(const char **p, const char *end, long long *out)
{
    const char *s = *p;
    long long v = 0;
    if (s >= end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] >= '0' &&
                                              s[1] <= '9'))
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > 100000000000LL)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    *p = s;
    return true;
}

/*
 * The fast path for a results page of an mlp job whose items are objects:
 * exactly the compact form batchd writes,
 *   {"results":[{"index":I,"output":[{"class":K,"probabilities":[...]},
 *    ...]},...],"next_offset":N|null}
 * checked in one pass over the text (the probabilities are skipped up to
 * their closing bracket, which no number contains). A jansson tree of a
 * page (10000 images, 2.3 MB) costs the client 50-100 ms, about a fifth of
 * what batchd spends on the batch, on the same two cores as the workers;
 * the serial baseline parses nothing. Anything else falls back to the full
 * parse (mlp_check_page). Returns 1 (matched and checked; *item advanced,
 * *next set, -1 for null), 0 (not in that form: nothing changed), -1 (a
 * wrong result, printed).
 */
static int mlp_scan_page(const struct mlp_ctx *m, const struct resp *r, size_t b, size_t *item,
                         long long *next)
{
    const char *p = r->p, *end = r->p + r->len;
    size_t it = *item, s = m->o->split;
    long long v;
    if (!p || !scan_lit(&p, end, "{\"results\":["))
        return 0;
    if (!scan_lit(&p, end, "]")) {
        for (;;) {
            size_t first, count, i = 0;
            if (it >= s || !scan_lit(&p, end, "{\"index\":") || !scan_uint(&p, end, &v) ||
                v != (long long)it || !scan_lit(&p, end, ",\"output\":["))
                return 0;
            split_part(m->o->images, s, it, &first, &count);
            while (!scan_lit(&p, end, "]")) {
                if (i > 0 && !scan_lit(&p, end, ","))
                    return 0;
                if (i >= count || !scan_lit(&p, end, "{\"class\":") || !scan_uint(&p, end, &v) ||
                    !scan_lit(&p, end, ",\"probabilities\":["))
                    return 0;
                const char *close = memchr(p, ']', (size_t)(end - p));
                if (!close)
                    return 0;
                p = close + 1;
                if (!scan_lit(&p, end, "}"))
                    return 0;
                if (mlp_check_class(m, b, first + i, v) < 0)
                    return -1;
                i++;
            }
            if (i != count || !scan_lit(&p, end, "}"))
                return 0;
            it++;
            if (scan_lit(&p, end, "]"))
                break;
            if (!scan_lit(&p, end, ","))
                return 0;
        }
    }
    long long nx = -1;
    if (!scan_lit(&p, end, ",\"next_offset\":") ||
        (!scan_lit(&p, end, "null") && !scan_uint(&p, end, &nx)) || !scan_lit(&p, end, "}"))
        return 0;
    while (p < end && (*p == '\n' || *p == '\r' || *p == ' '))
        p++;
    if (p != end)
        return 0;
    *item = it;
    *next = nx;
    return 1;
}

/* The full parse of a page (any JSON form of it). Same contract as
 * mlp_scan_page, except that it never returns 0. */
static int mlp_check_page(const struct client *c, const struct mlp_ctx *m, size_t b,
                          size_t *item, long long *next)
{
    json_t *page = parse_resp(c, "mlp results page");
    json_t *results = json_object_get(page, "results");
    json_t *nx = json_object_get(page, "next_offset");
    int rc = -1;
    size_t k, it = *item;
    json_t *res;
    if (!json_is_array(results) || !(json_is_null(nx) || json_is_integer(nx))) {
        fprintf(stderr, "e2e_objects: mlp job %s: not a results page\n", m->jobs[b]);
        goto out;
    }
    json_array_foreach(results, k, res) {
        json_t *imgs = json_object_get(res, "output");
        size_t first, count;
        if (it >= m->o->split ||
            json_integer_value(json_object_get(res, "index")) != (json_int_t)it)
            goto bad;
        split_part(m->o->images, m->o->split, it, &first, &count);
        if (json_array_size(imgs) != count)
            goto bad;
        for (size_t i = 0; i < count; i++) {
            json_t *cls = json_object_get(json_array_get(imgs, i), "class");
            if (!json_is_integer(cls) ||
                mlp_check_class(m, b, first + i, json_integer_value(cls)) < 0)
                goto out;
        }
        it++;
    }
    *item = it;
    *next = json_is_null(nx) ? -1 : (long long)json_integer_value(nx);
    rc = 0;
    goto out;
bad: {
    char *txt = json_dumps(res, JSON_COMPACT);
    fprintf(stderr, "e2e_objects: mlp job %s: result %zu: %.300s\n", m->jobs[b], it,
            txt ? txt : "?");
    free(txt);
}
out:
    json_decref(page);
    return rc;
}

/* Reads and checks every result of batch b's finished job. Returns 0 or
 * -1 (printed). */
static int mlp_check_results(struct client *c, const struct mlp_ctx *m, size_t b)
{
    char path[192];
    size_t item = 0;
    long long off = 0;
    while (off >= 0) {
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%lld&limit=10000", m->jobs[b],
                 off);
        if (expect_status(c, "GET", path, NULL, NULL, 200) < 0)
            return -1;
        size_t before = item;
        long long next;
        int fast = m->o->jansson_only ? 0 : mlp_scan_page(m, &c->r, b, &item, &next);
        if (fast < 0 || (fast == 0 && mlp_check_page(c, m, b, &item, &next) < 0))
            return -1;
        /* A finished job has every result: each page makes progress and
         * ends where the next one starts. */
        if (next >= 0 && (item == before || (size_t)next != item)) {
            fprintf(stderr, "e2e_objects: mlp job %s: page at %lld: next_offset %lld after "
                            "item %zu\n", m->jobs[b], off, next, item);
            return -1;
        }
        off = next;
    }
    if (item != m->o->split) {
        fprintf(stderr, "e2e_objects: mlp job %s: %zu results for %zu items\n", m->jobs[b], item,
                m->o->split);
        return -1;
    }
    return 0;
}

static int mlp_once(struct client *c, void *vctx, double phase[3])
{
    struct mlp_ctx *m = vctx;
    const struct opts *o = m->o;
    size_t s = o->split;
    double t0 = bench_now_s();
    char *body = malloc(64 + s * 80);
    if (!body)
        return -1;
    for (size_t b = 0; b < o->batches; b++) {
        size_t len = (size_t)sprintf(body, "{\"model\":\"mlp\",\"inputs\":[");
        for (size_t p = 0; p < s; p++) {
            size_t first, count;
            split_part(o->images, s, p, &first, &count);
            const float *x = m->x + (b * o->images + first) * m->in;
            char *id = m->ids[b * s + p];
            if (upload_npy(c, "<f4", count, m->in, x, count * m->in * sizeof *x, id) < 0)
                goto fail;
            len += (size_t)sprintf(body + len, "%s{\"$object\":\"%s\"}", p ? "," : "", id);
        }
        len += (size_t)sprintf(body + len, "]}");
        if (submit(c, body, len, m->jobs[b]) < 0)
            goto fail;
    }
    double t1 = bench_now_s(), wait = 0;
    for (size_t b = 0; b < o->batches; b++) {
        double tw = bench_now_s();
        if (wait_job(c, m->jobs[b], s) < 0)
            goto fail;
        wait += bench_now_s() - tw;
        if (mlp_check_results(c, m, b) < 0)
            goto fail;
        for (size_t p = 0; p < s; p++)
            if (delete_object(c, m->ids[b * s + p]) < 0)
                goto fail;
    }
    free(body);
    double t2 = bench_now_s();
    phase[0] = t1 - t0;
    phase[1] = wait;
    phase[2] = t2 - t1 - wait;
    return 0;
fail:
    free(body);
    return -1;
}

static int mlp_setup(const struct opts *o, struct workload *w, struct mlp_model **model)
{
    char err[512];
    if (!o->weights || o->split == 0 || o->split > o->images) {
        fprintf(stderr, "e2e_objects: mlp needs --weights and 1 <= --split <= --images\n");
        return -1;
    }
    if (mlp_open(o->weights, model, err, sizeof err) < 0) {
        fprintf(stderr, "e2e_objects: %s\n", err);
        return -1;
    }
    const struct mlp_net *net = mlp_model_net(*model);
    struct mlp_ctx *m = calloc(1, sizeof *m);
    size_t all = o->batches * o->images;
    float *work = m ? malloc(mlp_work_floats(net, o->images) * sizeof *work) : NULL;
    if (!work || !(m->x = malloc(all * net->in * sizeof *m->x)) ||
        !(m->probs = malloc(all * net->out * sizeof *m->probs)) ||
        !(m->ids = calloc(o->batches * o->split, sizeof *m->ids)) ||
        !(m->jobs = calloc(o->batches, sizeof *m->jobs))) {
        fprintf(stderr, "e2e_objects: out of memory\n");
        return -1; /* the process ends: nothing to free */
    }
    m->o = o;
    m->in = net->in;
    m->out = net->out;
    if (net->in != 784) {
        fprintf(stderr, "e2e_objects: the weights take %u inputs, mlp_data.py's images 784\n",
                net->in);
        return -1;
    }
    for (size_t b = 0; b < o->batches; b++) {
        float *x = m->x + b * o->images * net->in;
        npy_random_f32((uint32_t)(1000 + b), x, o->images * net->in);
        mlp_forward(net, x, o->images, m->probs + b * o->images * net->out, work);
    }
    free(work);
    *w = (struct workload){(double)all, mlp_once, {"upload+submit", "wait", "fetch+check+delete"},
                           m};
    return 0;
}

/* convolve ------------------------------------------------------------------- */

struct conv_ctx {
    const struct opts *o;
    double *image;
    double filters[2][CONV_FILTER * CONV_FILTER];
    double *want[2]; /* od x od each */
    size_t od;
    char (*jobs)[64];
};

static int conv_check(struct client *c, struct conv_ctx *v, const char *jid, json_t *out, int f)
{
    const char *oid = json_string_value(json_object_get(out, "$object"));
    char path[160], shape[64];
    if (!oid || strlen(oid) > 64) {
        fprintf(stderr, "e2e_objects: convolve2d job %s: output %d is not an object\n", jid, f);
        return -1;
    }
    snprintf(path, sizeof path, "/v1/objects/%s?download=true", oid);
    if (expect_status(c, "GET", path, NULL, NULL, 200) < 0)
        return -1;
    snprintf(shape, sizeof shape, "%zu,%zu", v->od, v->od);
    size_t bytes = v->od * v->od * sizeof(double);
    if (strcmp(c->r.dtype, "float64") != 0 || strcmp(c->r.shape, shape) != 0 ||
        c->r.len != bytes) {
        fprintf(stderr, "e2e_objects: convolve2d job %s: output %d is %s [%s], %zu bytes; "
                        "expected float64 [%s], %zu bytes\n",
                jid, f, c->r.dtype, c->r.shape, c->r.len, shape, bytes);
        return -1;
    }
    /* The worker runs the same kernel on the same bytes: the answer must be
     * the same bits (memcmp); a difference is shown with its size. */
    if (memcmp(c->r.p, v->want[f], bytes) != 0) {
        const double *got = (const double *)(const void *)c->r.p;
        size_t i = 0, all = v->od * v->od;
        while (i + 1 < all && memcmp(&got[i], &v->want[f][i], sizeof got[i]) == 0)
            i++;
        fprintf(stderr, "e2e_objects: convolve2d job %s: output %d differs at [%zu][%zu]: %.17g, "
                        "the kernel says %.17g\n",
                jid, f, i / v->od, i % v->od, got[i], v->want[f][i]);
        return -1;
    }
    return delete_object(c, oid);
}

static int conv_once(struct client *c, void *vctx, double phase[3])
{
    struct conv_ctx *v = vctx;
    const struct opts *o = v->o;
    size_t n = o->size;
    char img[64], body[2048];
    double t0 = bench_now_s();
    if (upload_npy(c, "<f8", n, n, v->image, n * n * sizeof(double), img) < 0)
        return -1;
    double t1 = bench_now_s();
    /* The body of every round: the same image, the two filters. */
    size_t len = (size_t)snprintf(body, sizeof body, "{\"model\":\"convolve2d\",\"inputs\":[");
    for (int f = 0; f < 2; f++) {
        len += (size_t)snprintf(body + len, sizeof body - len,
                                "%s{\"image\":{\"$object\":\"%s\"},\"output\":\"object\","
                                "\"filter\":[", f ? "," : "", img);
        for (int i = 0; i < CONV_FILTER; i++)
            for (int j = 0; j < CONV_FILTER; j++)
                len += (size_t)snprintf(body + len, sizeof body - len, "%s%.17g%s",
                                        j ? "," : i ? ",[" : "[",
                                        v->filters[f][i * CONV_FILTER + j],
                                        j == CONV_FILTER - 1 ? "]" : "");
        len += (size_t)snprintf(body + len, sizeof body - len, "]}");
    }
    len += (size_t)snprintf(body + len, sizeof body - len, "]}");
    if (len >= sizeof body)
        return -1;
    for (size_t r = 0; r < o->rounds; r++)
        if (submit(c, body, len, v->jobs[r]) < 0)
            return -1;
    double t2 = bench_now_s(), wait = 0;
    for (size_t r = 0; r < o->rounds; r++) {
        double tw = bench_now_s();
        if (wait_job(c, v->jobs[r], 2) < 0)
            return -1;
        wait += bench_now_s() - tw;
        json_t *outs = job_outputs(c, v->jobs[r], 2);
        if (!outs)
            return -1;
        for (int f = 0; f < 2; f++)
            if (conv_check(c, v, v->jobs[r], json_array_get(outs, (size_t)f), f) < 0) {
                json_decref(outs);
                return -1;
            }
        json_decref(outs);
    }
    if (delete_object(c, img) < 0)
        return -1;
    double t3 = bench_now_s();
    phase[0] = t1 - t0;
    phase[1] = wait + (t2 - t1);
    phase[2] = t3 - t2 - wait;
    return 0;
}

static int conv_setup(const struct opts *o, struct workload *w)
{
    size_t n = o->size;
    struct conv_ctx *v = calloc(1, sizeof *v);
    if (!v || n == 0 || o->rounds == 0)
        return -1;
    v->o = o;
    v->od = model_convolve2d_out_dim(n, CONV_FILTER);
    if (!(v->image = malloc(n * n * sizeof *v->image)) ||
        !(v->want[0] = malloc(v->od * v->od * sizeof(double))) ||
        !(v->want[1] = malloc(v->od * v->od * sizeof(double))) ||
        !(v->jobs = calloc(o->rounds, sizeof *v->jobs))) {
        fprintf(stderr, "e2e_objects: out of memory\n");
        return -1;
    }
    npy_random_f64(2000, v->image, n * n);                  /* py_convolve.image(0, n) */
    npy_random_f64(7, &v->filters[0][0], 2 * CONV_FILTER * CONV_FILTER); /* .filters() */
    for (int f = 0; f < 2; f++)
        model_convolve2d_kernel(v->image, n, n, v->filters[f], CONV_FILTER, CONV_FILTER,
                                v->want[f]);
    *w = (struct workload){2.0 * (double)o->rounds, conv_once,
                           {"upload", "submit+wait", "fetch+check+delete"}, v};
    return 0;
}

/* prefix --------------------------------------------------------------------- */

struct prefix_ctx {
    char *body;
    size_t len, docs;
    json_t *want;
};

static int prefix_once(struct client *c, void *vctx, double phase[3])
{
    struct prefix_ctx *p = vctx;
    char id[64], path[128];
    double t0 = bench_now_s();
    if (submit(c, p->body, p->len, id) < 0)
        return -1;
    double t1 = bench_now_s();
    if (wait_job(c, id, p->docs) < 0)
        return -1;
    double t2 = bench_now_s();
    json_t *outs = job_outputs(c, id, p->docs);
    if (!outs)
        return -1;
    json_decref(outs);
    snprintf(path, sizeof path, "/v1/jobs/%s/result", id);
    json_t *got = NULL;
    if (expect_status(c, "GET", path, NULL, NULL, 200) < 0 || !(got = parse_resp(c, path)))
        return -1;
    bool same = json_equal(got, p->want);
    json_decref(got);
    if (!same) {
        fprintf(stderr, "e2e_objects: prefix_count job %s: the reduced result differs from the "
                        "expected one (%zu bytes): %.200s\n", id, c->r.len, c->r.p);
        return -1;
    }
    phase[0] = t1 - t0;
    phase[1] = t2 - t1;
    phase[2] = bench_now_s() - t2;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
        fprintf(stderr, "e2e_objects: cannot read %s\n", path);
    }
    if (f)
        fclose(f);
    return buf;
}

static int prefix_setup(const struct opts *o, struct workload *w)
{
    struct prefix_ctx *p = calloc(1, sizeof *p);
    json_error_t jerr;
    if (!p || !o->docs || !o->expect) {
        fprintf(stderr, "e2e_objects: prefix needs --docs and --expect\n");
        return -1;
    }
    if (!(p->body = read_file(o->docs, &p->len)))
        return -1;
    json_t *root = json_loadb(p->body, p->len, 0, &jerr);
    p->docs = json_array_size(json_object_get(root, "inputs"));
    json_decref(root);
    if (!(p->want = json_load_file(o->expect, 0, &jerr)) || p->docs == 0) {
        fprintf(stderr, "e2e_objects: %s or %s: %s\n", o->docs, o->expect, jerr.text);
        return -1;
    }
    *w = (struct workload){(double)p->docs, prefix_once, {"submit", "wait", "fetch+check"}, p};
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: e2e_objects --url URL mlp --weights FILE [--batches B] [--images N] "
            "[--split S]\n"
            "       e2e_objects --url URL convolve [--size N] [--rounds R]\n"
            "       e2e_objects --url URL prefix --docs FILE --expect FILE\n"
            "  and: [--runs R] [--poll-ms N] [--timeout S] [--key KEY] [--parse scan|jansson]\n");
    return 1;
}

int main(int argc, char **argv)
{
    struct opts o = {.batches = 10, .images = 10000, .split = 4, .size = 3000, .rounds = 10,
                     .runs = 5};
    struct client c = {.timeout_s = 120, .poll_ms = 2};
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (k[0] != '-' && !o.workload) {
            o.workload = k;
            continue;
        }
        if (!v)
            return usage();
        a++;
        if (strcmp(k, "--url") == 0)
            c.url = v;
        else if (strcmp(k, "--key") == 0)
            o.key = v;
        else if (strcmp(k, "--weights") == 0)
            o.weights = v;
        else if (strcmp(k, "--docs") == 0)
            o.docs = v;
        else if (strcmp(k, "--expect") == 0)
            o.expect = v;
        else if (strcmp(k, "--batches") == 0)
            o.batches = strtoull(v, NULL, 10);
        else if (strcmp(k, "--images") == 0)
            o.images = strtoull(v, NULL, 10);
        else if (strcmp(k, "--split") == 0)
            o.split = strtoull(v, NULL, 10);
        else if (strcmp(k, "--size") == 0)
            o.size = strtoull(v, NULL, 10);
        else if (strcmp(k, "--rounds") == 0)
            o.rounds = strtoull(v, NULL, 10);
        else if (strcmp(k, "--runs") == 0)
            o.runs = atoi(v);
        else if (strcmp(k, "--parse") == 0 &&
                 (strcmp(v, "scan") == 0 || strcmp(v, "jansson") == 0))
            o.jansson_only = strcmp(v, "jansson") == 0;
        else if (strcmp(k, "--poll-ms") == 0)
            c.poll_ms = atol(v);
        else if (strcmp(k, "--timeout") == 0)
            c.timeout_s = atol(v);
        else
            return usage();
    }
    if (!c.url || !o.workload || o.runs < 1 || o.runs > MAX_RUNS || c.poll_ms < 1 ||
        c.timeout_s < 1 || o.batches == 0 || o.images == 0)
        return usage();

    struct workload w;
    struct mlp_model *model = NULL;
    const char *key;
    int rc;
    if (strcmp(o.workload, "mlp") == 0)
        rc = mlp_setup(&o, &w, &model), key = "w4.batchd";
    else if (strcmp(o.workload, "convolve") == 0)
        rc = conv_setup(&o, &w), key = "w5.batchd";
    else if (strcmp(o.workload, "prefix") == 0)
        rc = prefix_setup(&o, &w), key = "w6.batchd";
    else
        return usage();
    if (rc < 0)
        return 1;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(c.h = curl_easy_init())) {
        fprintf(stderr, "e2e_objects: cannot start libcurl\n");
        return 1;
    }
    double secs[MAX_RUNS];
    for (int r = 0; r < o.runs; r++) {
        double ph[3], t = bench_now_s();
        if (w.once(&c, w.ctx, ph) < 0)
            return 1; /* printed; the process ends */
        secs[r] = bench_now_s() - t;
        fprintf(stderr, "batchd %s run %d: %.0f items in %.3f s (%.1f items/s): %s %.3f s, "
                        "%s %.3f s, %s %.3f s\n",
                o.workload, r + 1, w.n, secs[r], w.n / secs[r], w.phases[0], ph[0], w.phases[1],
                ph[1], w.phases[2], ph[2]);
    }
    bench_print_result(o.key ? o.key : key, w.n, secs, o.runs);
    free(c.r.p);
    curl_easy_cleanup(c.h);
    curl_global_cleanup();
    if (model)
        mlp_close(model);
    return 0;
}
