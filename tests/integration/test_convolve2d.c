/*
 * test_convolve2d: the convolve2d model through the HTTP API, on an image
 * uploaded once as a .npy object (POST /v1/objects) and read in place by
 * the workers.
 *
 *   - several filters over one uploaded float64 image: every result equals
 *     the full 2-D convolution subsampled every 5th row and column, computed
 *     here independently (what scipy.signal.convolve2d(image, f)[::5, ::5]
 *     returns);
 *   - "output": "object": the result is a new float64 object, downloaded
 *     byte for byte and checked the same way;
 *   - the image cannot be deleted while a job that names it runs (409),
 *     and can be afterwards (204);
 *   - bad items (an unknown object, a uint8 object, a ragged filter, no
 *     filter) are per-item errors naming the problem; the job still
 *     succeeds for the others.
 */
#include "tests/integration/harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct h_service svc;

#define H 61
#define W 47

static double image[H][W];

/* A .npy v1.0 file of a C-order float64 array of shape (rows, cols). */
static char *npy_f64(const double *data, size_t rows, size_t cols, size_t *len)
{
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     rows, cols);
    size_t hlen = 10 + (size_t)n + 1;
    size_t pad = (64 - hlen % 64) % 64;
    size_t header = hlen + pad;
    *len = header + rows * cols * sizeof(double);
    char *b = malloc(*len);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = (uint16_t)(header - 10);
    memcpy(b + 8, &hl, 2);
    memcpy(b + 10, dict, (size_t)n);
    memset(b + 10 + n, ' ', pad);
    b[header - 1] = '\n';
    memcpy(b + header, data, rows * cols * sizeof(double));
    return b;
}

/* Uploads a body; returns 1 with the new id, or 0. */
static int upload(const char *type, const char *body, size_t len, char *id)
{
    char ct[96];
    snprintf(ct, sizeof ct, "Content-Type: %s", type);
    const char *hdrs[] = {ct, NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = hdrs, .body = body,
                        .body_len = len};
    struct h_resp r;
    int ok = h_request(&svc, &req, &r) == 0 &&
             CHECKF(r.status == 201, "POST /v1/objects: %ld %s", r.status, r.body);
    if (ok)
        snprintf(id, 32, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    return ok;
}

/* The independent computation: full convolution, every 5th row/col. */
static double expected_at(const double *f, int fh, int fw, int r, int c)
{
    double sum = 0;
    for (int i = 0; i < fh; i++)
        for (int j = 0; j < fw; j++) {
            int y = r - i, x = c - j;
            if (y >= 0 && y < H && x >= 0 && x < W)
                sum += image[y][x] * f[i * fw + j];
        }
    return sum;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

static json_t *filter_json(const double *f, int fh, int fw)
{
    json_t *rows = json_array();
    for (int i = 0; i < fh; i++) {
        json_t *row = json_array();
        for (int j = 0; j < fw; j++)
            json_array_append_new(row, json_real(f[i * fw + j]));
        json_array_append_new(rows, row);
    }
    return rows;
}

/* Runs a job; returns its results array (new reference) or NULL. */
static json_t *run_job(json_t *inputs, char *id_out)
{
    json_t *req = json_pack("{s:s, s:o}", "model", "convolve2d", "inputs", inputs);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    struct h_resp r;
    char id[64] = "";
    if (h_post(&svc, "/v1/jobs", "application/json", body, &r) == 0 &&
        CHECKF(r.status == 202, "POST /v1/jobs: %ld %s", r.status, r.body))
        snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    free(body);
    if (!id[0])
        return NULL;
    if (id_out)
        strcpy(id_out, id);
    json_t *job = h_wait_job(&svc, id, 60);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/results", id);
    json_t *out = NULL;
    if (h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 200))
        out = json_incref(h_jget(h_json(&r), "results"));
    h_resp_free(&r);
    return out;
}

static char image_id[32];

static void test_json_output(void)
{
    static const double f1[] = {1.0};
    static const double f2[] = {0.25, -0.5, 0.125, 2.0, 1.5, -1.0, 0.5, 0.75, -0.25, 1.0, 0.0, 3.0,
                                -2.0, 0.5, 0.25, 1.0};
    static const double f3[] = {1, 2, 3, 4, 5, 6, 7};
    const struct {
        const double *f;
        int fh, fw;
    } cases[] = {{f1, 1, 1}, {f2, 4, 4}, {f3, 1, 7}, {f3, 7, 1}};
    json_t *inputs = json_array();
    for (size_t k = 0; k < 4; k++)
        json_array_append_new(inputs, json_pack("{s:{s:s}, s:o}", "image", "$object", image_id,
                                                "filter",
                                                filter_json(cases[k].f, cases[k].fh, cases[k].fw)));
    json_t *results = run_job(inputs, NULL);
    for (size_t k = 0; results && k < 4; k++) {
        json_t *out = h_jget(json_array_get(results, k), "output");
        int fh = cases[k].fh, fw = cases[k].fw;
        int rows = (H + fh - 1 + 4) / 5, cols = (W + fw - 1 + 4) / 5;
        if (!CHECKF(json_array_size(out) == (size_t)rows, "case %zu: %zu rows, expected %d", k,
                    json_array_size(out), rows))
            continue;
        size_t bad = 0;
        for (int r = 0; r < rows; r++) {
            json_t *row = json_array_get(out, (size_t)r);
            if (json_array_size(row) != (size_t)cols) {
                bad++;
                continue;
            }
            for (int c = 0; c < cols; c++) {
                double want = expected_at(cases[k].f, fh, fw, 5 * r, 5 * c);
                if (!close_to(json_number_value(json_array_get(row, (size_t)c)), want))
                    bad++;
            }
        }
        CHECKF(bad == 0, "case %zu (%dx%d filter): %zu values differ", k, fh, fw, bad);
    }
    json_decref(results);
}

static void test_object_output(void)
{
    static const double f[] = {0.5, -1.0, 2.0, 0.25, 1.0, -0.75};
    json_t *inputs = json_pack("[{s:{s:s}, s:o, s:s}]", "image", "$object", image_id, "filter",
                               filter_json(f, 2, 3), "output", "object");
    json_t *results = run_job(inputs, NULL);
    json_t *out = h_jget(json_array_get(results, 0), "output");
    const char *oid = h_jstr(out, "$object");
    int rows = (H + 2 - 1 + 4) / 5, cols = (W + 3 - 1 + 4) / 5;
    if (CHECKF(oid != NULL, "no object in the output")) {
        char path[128];
        snprintf(path, sizeof path, "/v1/objects/%s", oid);
        struct h_resp r;
        if (h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 200)) {
            CHECK_STR(h_jstr(h_json(&r), "dtype"), "float64");
            long long d0 = -1, d1 = -1;
            h_jint(h_json(&r), "shape/0", &d0);
            h_jint(h_json(&r), "shape/1", &d1);
            CHECK(d0 == rows && d1 == cols);
        }
        h_resp_free(&r);
        snprintf(path, sizeof path, "/v1/objects/%s?download=true", oid);
        const char *raw[] = {"Accept: application/octet-stream", NULL};
        if (h_get_hdr(&svc, path, raw, &r) == 0 && CHECK_INT(r.status, 200) &&
            CHECKF(r.len == (size_t)rows * (size_t)cols * 8, "%zu bytes", r.len)) {
            size_t bad = 0;
            for (int y = 0; y < rows; y++)
                for (int x = 0; x < cols; x++) {
                    double v;
                    memcpy(&v, r.body + ((size_t)y * (size_t)cols + (size_t)x) * 8, 8);
                    if (!close_to(v, expected_at(f, 2, 3, 5 * y, 5 * x)))
                        bad++;
                }
            CHECKF(bad == 0, "%zu values of the output object differ", bad);
        }
        h_resp_free(&r);
        snprintf(path, sizeof path, "/v1/objects/%s", oid);
        if (h_delete(&svc, path, &r) == 0)
            CHECK_INT(r.status, 204);
        h_resp_free(&r);
    }
    json_decref(results);
}

static void test_bad_items(void)
{
    char bytes_id[32] = "";
    upload("application/octet-stream", "0123456789", 10, bytes_id);
    json_t *inputs = json_pack(
        "[{s:{s:s}, s:[[i]]}, {s:{s:s}, s:[[i]]}, {s:{s:s}, s:[[i,i],[i]]}, {s:{s:s}}, "
        "{s:{s:s}, s:[[i]]}]",
        "image", "$object", "aaaaaaaaaaaaaaaaaaaaaaaaaa", "filter", 1, "image", "$object",
        bytes_id, "filter", 1, "image", "$object", image_id, "filter", 1, 2, 3, "image",
        "$object", image_id, "image", "$object", image_id, "filter", 2);
    json_t *results = run_job(inputs, NULL);
    const char *want[] = {"not found", "float64", "filter", "filter"};
    for (size_t k = 0; results && k < 4; k++) {
        const char *msg = h_jstr(json_array_get(results, k), "error/message");
        CHECKF(msg && strstr(msg, want[k]), "item %zu: error %s, expected one naming %s", k,
               msg ? msg : "(none)", want[k]);
    }
    CHECK(results && h_jget(json_array_get(results, 4), "output") != NULL);
    json_decref(results);
}

/* The image is pinned while a job that names it runs. */
static void test_pinned(void)
{
    static const double f[] = {1.0, 1.0};
    json_t *inputs = json_array();
    for (int k = 0; k < 3000; k++)
        json_array_append_new(inputs, json_pack("{s:{s:s}, s:o}", "image", "$object", image_id,
                                                "filter", filter_json(f, 1, 2)));
    json_t *req = json_pack("{s:s, s:o, s:{s:i}}", "model", "convolve2d", "inputs", inputs,
                            "options", "chunk_size", 1);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    struct h_resp r;
    char id[64] = "", path[128];
    if (h_post(&svc, "/v1/jobs", "application/json", body, &r) == 0 && CHECK_INT(r.status, 202))
        snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    free(body);
    snprintf(path, sizeof path, "/v1/objects/%s", image_id);
    long st = 0;
    if (h_delete(&svc, path, &r) == 0)
        st = r.status;
    h_resp_free(&r);
    json_t *job = h_wait_job(&svc, id, 60);
    const char *fin = h_jstr(job, "finished_at");
    (void)fin;
    json_decref(job);
    CHECKF(st == 409, "DELETE of an object a running job names: %ld", st);
    if (h_delete(&svc, path, &r) == 0)
        CHECK_INT(r.status, 204);
    h_resp_free(&r);
}

int main(void)
{
    if (h_init() != 0)
        return 2;
    static const char *const args[] = {"--workers", "2", "--model", "convolve2d", NULL};
    struct h_service_opts o = {.args = args};
    if (h_service_start(&svc, &o) != 0) {
        h_fail_test("start", "batchd did not start");
        return h_finish();
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            image[y][x] = sin(0.1 * y) * 3 + cos(0.37 * x) - 0.01 * x * y;
    size_t len;
    char *npy = npy_f64(&image[0][0], H, W, &len);
    if (upload("application/x-npy", npy, len, image_id)) {
        static const struct h_test tests[] = {
            {"convolve2d: JSON results equal an independent convolution", test_json_output},
            {"convolve2d: output as an object", test_object_output},
            {"convolve2d: bad items are per-item errors", test_bad_items},
            {"convolve2d: an object in use cannot be deleted", test_pinned},
        };
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
    }
    free(npy);
    h_service_stop(&svc, 30);
    h_service_cleanup(&svc);
    return h_finish();
}
