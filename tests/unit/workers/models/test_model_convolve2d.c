/*
 * Unit tests for workers/model_convolve2d.c: the kernel and the model
 * (both outputs) against a naive full 2-D convolution computed here and
 * then subsampled, as scipy.signal.convolve2d(image, f)[::5, ::5] is, over
 * many image and filter shapes (1x1 filters, non-square ones, images
 * smaller than the filter); non-finite results; and every item error
 * (data-driven). Objects come from a test-only model_host backed by
 * malloc'ed arrays (the real object store is not needed here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <batchd/model.h>
#include "workers/models/model_convolve2d.h"

#include "tests/unit/workers/models/host_double.h"


/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* A deterministic value in [-1, 1). */
static double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* The reference: the whole full convolution, then every 5th row and
 * column of it. */
static double *naive_subsampled(const double *img, size_t h, size_t w, const double *f, size_t fh,
                                size_t fw, size_t *oh, size_t *ow)
{
    size_t H = h + fh - 1, W = w + fw - 1;
    double *full = calloc(H * W, sizeof *full);
    assert_non_null(full);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            for (size_t a = 0; a < fh; a++)
                for (size_t b = 0; b < fw; b++)
                    full[(y + a) * W + (x + b)] += img[y * w + x] * f[a * fw + b];
    *oh = 0;
    *ow = 0;
    for (size_t i = 0; i < H; i += 5)
        (*oh)++;
    for (size_t j = 0; j < W; j += 5)
        (*ow)++;
    double *out = malloc(*oh * *ow * sizeof *out);
    assert_non_null(out);
    for (size_t r = 0; r < *oh; r++)
        for (size_t c = 0; c < *ow; c++)
            out[r * *ow + c] = full[r * 5 * W + c * 5];
    free(full);
    return out;
}

static void assert_close(double got, double want, size_t r, size_t c)
{
    double tol = 1e-12 * (1.0 + fabs(want)) * 64;
    if (!(fabs(got - want) <= tol))
        fail_msg("[%zu][%zu]: got %.17g, want %.17g", r, c, got, want);
}

static json_t *filter_json(const double *f, size_t fh, size_t fw)
{
    json_t *rows = json_array();
    for (size_t a = 0; a < fh; a++) {
        json_t *row = json_array();
        for (size_t b = 0; b < fw; b++)
            json_array_append_new(row, json_real(f[a * fw + b]));
        json_array_append_new(rows, row);
    }
    return rows;
}

static void *model_init(const struct model_host *host)
{
    char err[256] = "";
    void *shared = (void *)&err, *state = NULL;
    assert_int_equal(model_convolve2d.load(NULL, host, &shared, err, sizeof err), 0);
    assert_null(shared);
    assert_int_equal(model_convolve2d.init(shared, host, &state, err, sizeof err), 0);
    assert_non_null(state);
    return state;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, jerr.text);
    return v;
}

/* ---- the table ----------------------------------------------------------- */

static void test_registered(void **unused)
{
    (void)unused;
    assert_ptr_equal(model_builtin_find("convolve2d"), &model_convolve2d);
    assert_int_equal(model_convolve2d.abi_version, MODEL_ABI_VERSION);
    assert_int_equal(model_convolve2d.flags & MODEL_FLAG_NOT_DEFAULT, 0);
    assert_non_null(model_convolve2d.run);
    assert_null(model_convolve2d.acc_run);

    const char *keys[] = {"size"};
    const char *values[] = {"3"};
    struct model_params one = {1, keys, values};
    char err[128] = "";
    void *shared = NULL;
    assert_int_equal(model_convolve2d.load(&one, &th_host, &shared, err, sizeof err), -EINVAL);
    assert_string_equal(err, "model convolve2d takes no parameter 'size'");
}

/* ---- the kernel and the model against the naive convolution ------------- */

static const struct {
    size_t h, w, fh, fw;
} shapes[] = {
    {1, 1, 1, 1},   {1, 1, 3, 3},   {7, 9, 3, 3},  {20, 13, 1, 1}, {2, 3, 5, 7},
    {4, 4, 9, 2},   {33, 17, 9, 2}, {50, 50, 1, 8}, {6, 6, 64, 64}, {12, 1, 3, 1},
    {1, 40, 1, 5},  {25, 26, 5, 5}, {11, 31, 6, 4}, {64, 3, 2, 11},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void test_kernel_matches_naive(void **unused)
{
    (void)unused;
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t h = shapes[s].h, w = shapes[s].w, fh = shapes[s].fh, fw = shapes[s].fw;
        double *img = malloc(h * w * sizeof *img), *f = malloc(fh * fw * sizeof *f);
        for (size_t k = 0; k < h * w; k++)
            img[k] = rnd() * 100.0;
        for (size_t k = 0; k < fh * fw; k++)
            f[k] = rnd();
        size_t oh, ow;
        double *want = naive_subsampled(img, h, w, f, fh, fw, &oh, &ow);
        assert_int_equal(model_convolve2d_out_dim(h, fh), oh);
        assert_int_equal(model_convolve2d_out_dim(w, fw), ow);
        double *got = malloc(oh * ow * sizeof *got);
        for (size_t k = 0; k < oh * ow; k++)
            got[k] = NAN; /* the kernel must overwrite every value */
        model_convolve2d_kernel(img, h, w, f, fh, fw, got);
        for (size_t r = 0; r < oh; r++)
            for (size_t c = 0; c < ow; c++)
                assert_close(got[r * ow + c], want[r * ow + c], r, c);
        free(got);
        free(want);
        free(img);
        free(f);
    }
}

/* Runs the model on every shape, with "output" absent, "json" and
 * "object", and checks the result against the naive convolution. */
static void test_model_matches_naive(void **unused)
{
    (void)unused;
    void *state = model_init(&th_host);
    static const char *const modes[] = {NULL, "json", "object"};
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t h = shapes[s].h, w = shapes[s].w, fh = shapes[s].fh, fw = shapes[s].fw;
        double *img = malloc(h * w * sizeof *img), *f = malloc(fh * fw * sizeof *f);
        for (size_t k = 0; k < h * w; k++)
            img[k] = rnd() * 10.0;
        for (size_t k = 0; k < fh * fw; k++)
            f[k] = (s % 2) ? (double)(long)(rnd() * 8) : rnd(); /* integer filters too */
        uint64_t shape[2] = {h, w};
        size_t idx = th_add(MODEL_DTYPE_F64, 2, shape, img);
        size_t oh, ow;
        double *want = naive_subsampled(img, h, w, f, fh, fw, &oh, &ow);

        for (size_t m = 0; m < 3; m++) {
            json_t *item = json_object();
            json_object_set_new(item, "image", json_pack("{s:s}", "$object", th_objs[idx].id));
            json_t *jf;
            if (s % 2) { /* as JSON integers */
                jf = json_array();
                for (size_t a = 0; a < fh; a++) {
                    json_t *row = json_array();
                    for (size_t b = 0; b < fw; b++)
                        json_array_append_new(row, json_integer((json_int_t)f[a * fw + b]));
                    json_array_append_new(jf, row);
                }
            } else {
                jf = filter_json(f, fh, fw);
            }
            json_object_set_new(item, "filter", jf);
            if (modes[m])
                json_object_set_new(item, "output", json_string(modes[m]));
            json_t *out = NULL;
            char err[512] = "";
            int rc = model_convolve2d.run(state, item, &out, err, sizeof err);
            if (rc != 0)
                fail_msg("shape %zu mode %zu: %s", s, m, err);
            if (m < 2) {
                assert_true(json_is_array(out));
                assert_int_equal(json_array_size(out), oh);
                for (size_t r = 0; r < oh; r++) {
                    json_t *row = json_array_get(out, r);
                    assert_int_equal(json_array_size(row), ow);
                    for (size_t c = 0; c < ow; c++) {
                        json_t *x = json_array_get(row, c);
                        assert_true(json_is_real(x));
                        assert_close(json_real_value(x), want[r * ow + c], r, c);
                    }
                }
            } else {
                const char *id = json_string_value(json_object_get(out, "$object"));
                assert_non_null(id);
                assert_int_equal(json_object_size(out), 2);
                json_t *jshape = json_object_get(out, "shape");
                assert_int_equal(json_array_size(jshape), 2);
                assert_int_equal(json_integer_value(json_array_get(jshape, 0)), oh);
                assert_int_equal(json_integer_value(json_array_get(jshape, 1)), ow);
                struct model_object o = {0};
                char rerr[128];
                json_t *ref = json_pack("{s:s}", "$object", id);
                assert_int_equal(th_object_ref(ref, &o, rerr, sizeof rerr), 1);
                json_decref(ref);
                assert_int_equal(o.dtype, MODEL_DTYPE_F64);
                assert_int_equal(o.ndim, 2);
                assert_int_equal(o.shape[0], oh);
                assert_int_equal(o.shape[1], ow);
                const double *got = o.data;
                for (size_t r = 0; r < oh; r++)
                    for (size_t c = 0; c < ow; c++)
                        assert_close(got[r * ow + c], want[r * ow + c], r, c);
            }
            json_decref(out);
            json_decref(item);
        }
        free(want);
        free(img);
        free(f);
    }
    model_convolve2d.fini(state);
    th_reset();
}

/* A NaN that reaches a kept output is an item error; one that only
 * reaches dropped outputs is not (they are never computed, and scipy's
 * subsampled answer does not hold them either). */
static void test_non_finite(void **unused)
{
    (void)unused;
    void *state = model_init(&th_host);
    double img[9] = {1, 2, 3, 4, NAN, 6, 7, 8, 9};
    uint64_t shape[2] = {3, 3};
    size_t idx = th_add(MODEL_DTYPE_F64, 2, shape, img);
    char text[256], err[512];
    json_t *out = NULL;

    /* 3x3 image, 1x1 filter: only [0][0] is kept */
    snprintf(text, sizeof text, "{\"image\": {\"$object\": \"%s\"}, \"filter\": [[2]]}",
             th_objs[idx].id);
    json_t *item = parse(text);
    assert_int_equal(model_convolve2d.run(state, item, &out, err, sizeof err), 0);
    json_t *want = parse("[[2.0]]");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);
    json_decref(item);

    /* A 6x6 filter: the full result is 8x8, kept at rows and columns 0
     * and 5; image [1][1] reaches full [5][5] (through filter [4][4]),
     * which is kept output [1][1], and no other kept output. */
    for (int m = 0; m < 2; m++) {
        snprintf(text, sizeof text,
                 "{\"image\": {\"$object\": \"%s\"}, \"filter\": [[1,1,1,1,1,1],[1,1,1,1,1,1],"
                 "[1,1,1,1,1,1],[1,1,1,1,1,1],[1,1,1,1,1,1],[1,1,1,1,1,1]], \"output\": \"%s\"}",
                 th_objs[idx].id, m ? "object" : "json");
        item = parse(text);
        out = NULL;
        assert_int_equal(model_convolve2d.run(state, item, &out, err, sizeof err), -ERANGE);
        assert_null(out);
        assert_string_equal(err,
                            "convolve2d: result [1][1] is not finite (the image holds a NaN or an "
                            "infinity there, or the sum overflows a double)");
        json_decref(item);
    }

    /* overflow: finite inputs, an infinite sum */
    double big[4] = {1e308, 1e308, 1e308, 1e308};
    uint64_t s2[2] = {2, 2};
    idx = th_add(MODEL_DTYPE_F64, 2, s2, big);
    snprintf(text, sizeof text, "{\"image\": {\"$object\": \"%s\"}, \"filter\": [[1e308]]}",
             th_objs[idx].id);
    item = parse(text);
    assert_int_equal(model_convolve2d.run(state, item, &out, err, sizeof err), -ERANGE);
    json_decref(item);

    model_convolve2d.fini(state);
    th_reset();
}

/* ---- item errors --------------------------------------------------------- */

/* In the item texts, @F64 @I32 @1D @3D @EMPTY @BIG are replaced by the ids
 * of the objects made for them. */
static const struct {
    const char *item;
    int rc;
    const char *err;
} bad_items[] = {
    {"5", -EINVAL,
     "convolve2d expects an object {\"image\": {\"$object\": \"ID\"}, \"filter\": [[...]], "
     "\"output\": \"json\"|\"object\"}, got a number"},
    {"[]", -EINVAL,
     "convolve2d expects an object {\"image\": {\"$object\": \"ID\"}, \"filter\": [[...]], "
     "\"output\": \"json\"|\"object\"}, got an array"},
    {"{\"filter\": [[1]]}", -EINVAL, "convolve2d: missing \"image\""},
    {"{\"image\": {\"$object\": \"@F64\"}}", -EINVAL, "convolve2d: missing \"filter\""},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1]], \"mode\": \"full\"}", -EINVAL,
     "convolve2d: unexpected key \"mode\" (expects \"image\", \"filter\" and optionally "
     "\"output\")"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1]], \"output\": \"csv\"}", -EINVAL,
     "convolve2d: \"output\" must be \"json\" or \"object\", got \"csv\""},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1]], \"output\": 1}", -EINVAL,
     "convolve2d: \"output\" must be \"json\" or \"object\", got a number"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": []}", -EINVAL,
     "convolve2d: \"filter\" must be a non-empty 2-D array of numbers (at most 64x64), got an "
     "empty array"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": 3}", -EINVAL,
     "convolve2d: \"filter\" must be a non-empty 2-D array of numbers (at most 64x64), got a "
     "number"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [1, 2]}", -EINVAL,
     "convolve2d: \"filter\"[0] must be an array of numbers, got a number"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[]]}", -EINVAL,
     "convolve2d: \"filter\"[0] is empty"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1, 2], [3]]}", -EINVAL,
     "convolve2d: \"filter\" is not rectangular: row 1 has 1 values, row 0 has 2"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1, \"2\"]]}", -EINVAL,
     "convolve2d: \"filter\"[0][1] is a string, expected a number"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": [[1], [null]]}", -EINVAL,
     "convolve2d: \"filter\"[1][0] is null, expected a number"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": @TALL}", -EINVAL,
     "convolve2d: \"filter\" has 65 rows, at most 64 are allowed"},
    {"{\"image\": {\"$object\": \"@F64\"}, \"filter\": @WIDE}", -EINVAL,
     "convolve2d: \"filter\" has 65 columns, at most 64 are allowed"},
    {"{\"image\": [[1, 2]], \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\" must be an object reference {\"$object\": \"ID\"}, got an array"},
    {"{\"image\": {\"$object\": \"nosuchobject\"}, \"filter\": [[1]]}", -ENOENT,
     "convolve2d: \"image\": no object 'nosuchobject'"},
    {"{\"image\": {\"$object\": 5}, \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\": malformed object reference"},
    {"{\"image\": {\"$object\": \"@I32\"}, \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\" must be a float64 object, @I32 is int32"},
    {"{\"image\": {\"$object\": \"@1D\"}, \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\" must be a 2-D object, @1D has 1 dimension"},
    {"{\"image\": {\"$object\": \"@3D\"}, \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\" must be a 2-D object, @3D has 3 dimensions"},
    {"{\"image\": {\"$object\": \"@EMPTY\"}, \"filter\": [[1]]}", -EINVAL,
     "convolve2d: \"image\" @EMPTY has shape [0, 4] (0 bytes): it must have at least one row "
     "and one column"},
    {"{\"image\": {\"$object\": \"@BIG\"}, \"filter\": [[1]]}", -EFBIG,
     "convolve2d: the result has 1048577 x 1 values, more than 1048576 for \"output\": "
     "\"json\"; ask for \"output\": \"object\""},
};

/* Replaces each @NAME of `in` by the id of the named object. */
static void substitute(const char *in, char *out, size_t outlen, const char *const *names,
                       const char *const *ids, size_t n)
{
    size_t o = 0;
    while (*in && o + 1 < outlen) {
        bool done = false;
        if (*in == '@')
            for (size_t k = 0; k < n && !done; k++) {
                size_t len = strlen(names[k]);
                if (strncmp(in, names[k], len) == 0) {
                    o += (size_t)snprintf(out + o, outlen - o, "%s", ids[k]);
                    in += len;
                    done = true;
                }
            }
        if (!done)
            out[o++] = *in++;
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

static void test_bad_items(void **unused)
{
    (void)unused;
    void *state = model_init(&th_host);
    double one = 1.0;
    uint64_t s2[2] = {1, 1}, s1[1] = {1}, s3[3] = {1, 1, 1}, s0[2] = {0, 4};
    int32_t i32 = 1;
    const char *names[8] = {"@F64", "@I32", "@1D", "@3D", "@EMPTY", "@BIG", "@TALL", "@WIDE"};
    const char *ids[8];
    ids[0] = th_objs[th_add(MODEL_DTYPE_F64, 2, s2, &one)].id;
    ids[1] = th_objs[th_add(MODEL_DTYPE_I32, 2, s2, &i32)].id;
    ids[2] = th_objs[th_add(MODEL_DTYPE_F64, 1, s1, &one)].id;
    ids[3] = th_objs[th_add(MODEL_DTYPE_F64, 3, s3, &one)].id;
    ids[4] = th_objs[th_add(MODEL_DTYPE_F64, 2, s0, NULL)].id;
    /* Far too many outputs for JSON. The model refuses before it reads the
     * image, so the test object claims a shape its data does not have (a
     * real one would be 40 MiB); ASan would catch a read past it. */
    size_t big = th_add(MODEL_DTYPE_F64, 2, s2, &one);
    th_objs[big].shape[0] = (uint64_t)MODEL_CONVOLVE2D_MAX_JSON_VALUES * 5 + 1;
    th_objs[big].bytes = th_objs[big].shape[0] * 8;
    ids[5] = th_objs[big].id;
    char tall[1024] = "[", wide[1024] = "[[";
    for (int k = 0; k < 65; k++) {
        strcat(tall, k ? ",[1]" : "[1]");
        strcat(wide, k ? ",1" : "1");
    }
    strcat(tall, "]");
    strcat(wide, "]]");
    ids[6] = tall;
    ids[7] = wide;

    for (size_t i = 0; i < sizeof bad_items / sizeof bad_items[0]; i++) {
        char text[2048], want[1024], err[512] = "";
        substitute(bad_items[i].item, text, sizeof text, names, ids, 8);
        substitute(bad_items[i].err, want, sizeof want, names, ids, 8);
        json_t *item = parse(text);
        json_t *out = NULL;
        int rc = model_convolve2d.run(state, item, &out, err, sizeof err);
        if (rc != bad_items[i].rc || strcmp(err, want) != 0)
            fail_msg("case %zu (%s): rc %d, err \"%s\"; want %d \"%s\"", i, text, rc, err,
                     bad_items[i].rc, want);
        assert_null(out);
        json_decref(item);
    }
    /* none of them made an object */
    assert_int_equal(th_n, 6);
    model_convolve2d.fini(state);
    th_reset();
}

/* The result object cannot be made: the host's reason is passed on. */
static void test_object_new_fails(void **unused)
{
    (void)unused;
    void *state = model_init(&th_host);
    double img[4] = {1, 2, 3, 4};
    uint64_t shape[2] = {2, 2};
    size_t idx = th_add(MODEL_DTYPE_F64, 2, shape, img);
    char text[256], err[512] = "";
    snprintf(text, sizeof text,
             "{\"image\": {\"$object\": \"%s\"}, \"filter\": [[1, 2]], \"output\": \"object\"}",
             th_objs[idx].id);
    th_new_fails = -ENOSPC;
    json_t *item = parse(text), *out = NULL;
    assert_int_equal(model_convolve2d.run(state, item, &out, err, sizeof err), -ENOSPC);
    assert_string_equal(err, "convolve2d: the result object (1 x 1 float64): object memory full");
    assert_null(out);
    json_decref(item);
    model_convolve2d.fini(state);
    th_reset();
}

/* A worker without a host (no object store) fails items, not init. */
static void test_without_host(void **unused)
{
    (void)unused;
    void *state = model_init(NULL);
    json_t *item = parse("{\"image\": {\"$object\": \"x\"}, \"filter\": [[1]]}"), *out = NULL;
    char err[512] = "";
    assert_int_equal(model_convolve2d.run(state, item, &out, err, sizeof err), -ENOTSUP);
    assert_string_equal(err, "convolve2d: objects are not available in this worker");
    json_decref(item);
    model_convolve2d.fini(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered),
        cmocka_unit_test(test_kernel_matches_naive),
        cmocka_unit_test(test_model_matches_naive),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_bad_items),
        cmocka_unit_test(test_object_new_fails),
        cmocka_unit_test(test_without_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
