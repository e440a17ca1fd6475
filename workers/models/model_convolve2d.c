/*
 * model_convolve2d.c: the `convolve2d` model (see model_convolve2d.h for
 * the item language and the kernel's contract).
 *
 * The kernel visits output rows in order and, for each, the filter rows
 * that reach it; for a filter row the image row it meets is read left to
 * right by every kept column, so each image row is streamed from cache
 * while it is in use and the output row is written once per filter row.
 * Nothing is computed for the 24 of 25 outputs that the subsampling drops.
 *
 * The item is validated completely (fields, filter, image) before any
 * object is made, so that a bad item never costs object memory.
 */
#include "workers/models/model_convolve2d.h"
#include "workers/models/model_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_MAX_F MODEL_CONVOLVE2D_MAX_FILTER

/* Per-worker state: the host of init(), and room for the item's filter so
 * that run() does not allocate for it. */
struct conv_state {
    const struct model_host *host;
    double filter[CONV_MAX_F * CONV_MAX_F];
};

/* ---- the kernel ---------------------------------------------------------- */

size_t model_convolve2d_out_dim(size_t n, size_t f)
{
    return (n + f - 1 + MODEL_CONVOLVE2D_STEP - 1) / MODEL_CONVOLVE2D_STEP;
}

void model_convolve2d_kernel(const double *image, size_t h, size_t w, const double *filter,
                             size_t fh, size_t fw, double *out)
{
    const size_t oh = model_convolve2d_out_dim(h, fh);
    const size_t ow = model_convolve2d_out_dim(w, fw);
    for (size_t r = 0; r < oh; r++) {
        const size_t i = r * MODEL_CONVOLVE2D_STEP;
        double *o = out + r * ow;
        for (size_t c = 0; c < ow; c++)
            o[c] = 0.0;
        /* filter rows a with image row i - a inside 0..h-1 */
        const size_t a_lo = i >= h ? i - (h - 1) : 0;
        const size_t a_hi = i < fh - 1 ? i : fh - 1;
        for (size_t a = a_lo; a <= a_hi; a++) {
            const double *row = image + (i - a) * w;
            const double *frow = filter + a * fw;
            for (size_t c = 0; c < ow; c++) {
                const size_t j = c * MODEL_CONVOLVE2D_STEP;
                const size_t b_lo = j >= w ? j - (w - 1) : 0;
                const size_t b_hi = j < fw - 1 ? j : fw - 1;
                double s = 0.0;
                for (size_t b = b_lo; b <= b_hi; b++)
                    s += frow[b] * row[j - b];
                o[c] += s;
            }
        }
    }
}

/* ---- life cycle ---------------------------------------------------------- */

static int conv_load(const struct model_params *params, const struct model_host *host,
                     void **shared, char *err, size_t errlen)
{
    (void)host; /* run() uses the host given to init(), in the worker */
    if (shared)
        *shared = NULL;
    return model_params_none("convolve2d", params, err, errlen);
}

static int conv_init(const void *shared, const struct model_host *host, void **state, char *err,
                     size_t errlen)
{
    (void)shared;
    struct conv_state *st = malloc(sizeof *st);
    if (!st) {
        model_err(err, errlen, "convolve2d: out of memory for the worker state");
        return -ENOMEM;
    }
    st->host = host;
    *state = st;
    return 0;
}

static void conv_fini(void *state)
{
    free(state);
}

/* ---- the item ------------------------------------------------------------ */

/* Reads "filter" into st->filter; *fh, *fw are its sides. */
static int conv_parse_filter(const json_t *v, double *dst, size_t *fh, size_t *fw, char *err,
                             size_t errlen)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        model_err(err, errlen,
                 "convolve2d: \"filter\" must be a non-empty 2-D array of numbers "
                 "(at most %dx%d), got %s",
                 CONV_MAX_F, CONV_MAX_F, json_is_array(v) ? "an empty array" : model_json_kind(v));
        return -EINVAL;
    }
    size_t rows = json_array_size(v);
    if (rows > CONV_MAX_F) {
        model_err(err, errlen, "convolve2d: \"filter\" has %zu rows, at most %d are allowed", rows,
                 CONV_MAX_F);
        return -EINVAL;
    }
    size_t cols = 0;
    for (size_t a = 0; a < rows; a++) {
        const json_t *row = json_array_get(v, a);
        if (!json_is_array(row)) {
            model_err(err, errlen, "convolve2d: \"filter\"[%zu] must be an array of numbers, got %s",
                     a, model_json_kind(row));
            return -EINVAL;
        }
        size_t n = json_array_size(row);
        if (a == 0) {
            if (n == 0) {
                model_err(err, errlen, "convolve2d: \"filter\"[0] is empty");
                return -EINVAL;
            }
            if (n > CONV_MAX_F) {
                model_err(err, errlen,
                         "convolve2d: \"filter\" has %zu columns, at most %d are allowed", n,
                         CONV_MAX_F);
                return -EINVAL;
            }
            cols = n;
        } else if (n != cols) {
            model_err(err, errlen,
                     "convolve2d: \"filter\" is not rectangular: row %zu has %zu values, row 0 "
                     "has %zu",
                     a, n, cols);
            return -EINVAL;
        }
        for (size_t b = 0; b < cols; b++) {
            const json_t *x = json_array_get(row, b);
            double d;
            if (json_is_integer(x))
                d = (double)json_integer_value(x);
            else if (json_is_real(x))
                d = json_real_value(x);
            else {
                model_err(err, errlen, "convolve2d: \"filter\"[%zu][%zu] is %s, expected a number",
                         a, b, model_json_kind(x));
                return -EINVAL;
            }
            /* jansson never parses a NaN, but a caller may build one */
            if (!isfinite(d)) {
                model_err(err, errlen, "convolve2d: \"filter\"[%zu][%zu] is not finite", a, b);
                return -EINVAL;
            }
            dst[a * cols + b] = d;
        }
    }
    *fh = rows;
    *fw = cols;
    return 0;
}

/* Resolves "image" into *img: a 2-D float64 object with both sides >= 1. */
static int conv_resolve_image(const struct model_host *host, const json_t *v,
                              struct model_object *img, char *err, size_t errlen)
{
    char why[256] = "";
    int rc = host->object_ref(v, img, why, sizeof why);
    if (rc < 0) {
        model_err(err, errlen, "convolve2d: \"image\": %s", why[0] ? why : strerror(-rc));
        return rc;
    }
    if (rc == 0) {
        model_err(err, errlen,
                 "convolve2d: \"image\" must be an object reference {\"$object\": \"ID\"}, got %s",
                 model_json_kind(v));
        return -EINVAL;
    }
    const char *dt = model_dtype_name(img->dtype);
    if (img->dtype != MODEL_DTYPE_F64) {
        model_err(err, errlen, "convolve2d: \"image\" must be a float64 object, %s is %s", img->id,
                 dt ? dt : "of an unknown dtype");
        return -EINVAL;
    }
    if (img->ndim != 2) {
        model_err(err, errlen, "convolve2d: \"image\" must be a 2-D object, %s has %u dimension%s",
                 img->id, img->ndim, img->ndim == 1 ? "" : "s");
        return -EINVAL;
    }
    uint64_t cells;
    if (img->shape[0] == 0 || img->shape[1] == 0 ||
        __builtin_mul_overflow(img->shape[0], img->shape[1], &cells) || cells > SIZE_MAX / 8 ||
        img->bytes != cells * 8 || !img->data) {
        model_err(err, errlen,
                 "convolve2d: \"image\" %s has shape [%llu, %llu] (%llu bytes): it must have at "
                 "least one row and one column",
                 img->id, (unsigned long long)img->shape[0], (unsigned long long)img->shape[1],
                 (unsigned long long)img->bytes);
        return -EINVAL;
    }
    return 0;
}

/* Index of the first non-finite value of v[0..n), or n. */
static size_t conv_first_nonfinite(const double *v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!isfinite(v[k]))
            return k;
    return n;
}

static int conv_nonfinite_error(size_t k, size_t ow, char *err, size_t errlen)
{
    model_err(err, errlen,
             "convolve2d: result [%zu][%zu] is not finite (the image holds a NaN or an infinity "
             "there, or the sum overflows a double)",
             k / ow, k % ow);
    return -ERANGE;
}

static json_t *conv_json_result(const double *out, size_t oh, size_t ow)
{
    json_t *rows = json_array();
    if (!rows)
        return NULL;
    for (size_t r = 0; r < oh; r++) {
        json_t *row = json_array();
        if (!row || json_array_append_new(rows, row) != 0)
            goto fail;
        for (size_t c = 0; c < ow; c++)
            if (json_array_append_new(row, json_real(out[r * ow + c])) != 0)
                goto fail;
    }
    return rows;
fail:
    json_decref(rows);
    return NULL;
}

static int conv_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    struct conv_state *st = state;
    if (!json_is_object(item)) {
        model_err(err, errlen,
                 "convolve2d expects an object {\"image\": {\"$object\": \"ID\"}, \"filter\": "
                 "[[...]], \"output\": \"json\"|\"object\"}, got %s",
                 model_json_kind(item));
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)item, key, v) {
        if (strcmp(key, "image") != 0 && strcmp(key, "filter") != 0 && strcmp(key, "output") != 0) {
            model_err(err, errlen,
                     "convolve2d: unexpected key \"%.*s\" (expects \"image\", \"filter\" and "
                     "optionally \"output\")",
                     model_utf8_prefix(key, 64), key);
            return -EINVAL;
        }
    }
    const json_t *jimage = json_object_get(item, "image");
    const json_t *jfilter = json_object_get(item, "filter");
    const json_t *joutput = json_object_get(item, "output");
    if (!jimage || !jfilter) {
        model_err(err, errlen, "convolve2d: missing \"%s\"", jimage ? "filter" : "image");
        return -EINVAL;
    }
    bool as_object = false;
    if (joutput) {
        const char *o = json_string_value(joutput);
        if (o && strcmp(o, "object") == 0)
            as_object = true;
        else if (!o) {
            model_err(err, errlen, "convolve2d: \"output\" must be \"json\" or \"object\", got %s",
                     model_json_kind(joutput));
            return -EINVAL;
        } else if (strcmp(o, "json") != 0) {
            model_err(err, errlen,
                     "convolve2d: \"output\" must be \"json\" or \"object\", got \"%.*s\"",
                     model_utf8_prefix(o, 32), o);
            return -EINVAL;
        }
    }
    size_t fh, fw;
    int rc = conv_parse_filter(jfilter, st->filter, &fh, &fw, err, errlen);
    if (rc != 0)
        return rc;
    if (!st->host || !st->host->object_ref) {
        model_err(err, errlen, "convolve2d: objects are not available in this worker");
        return -ENOTSUP;
    }
    struct model_object img;
    rc = conv_resolve_image(st->host, jimage, &img, err, errlen);
    if (rc != 0)
        return rc;

    const size_t h = (size_t)img.shape[0], w = (size_t)img.shape[1];
    const size_t oh = model_convolve2d_out_dim(h, fh), ow = model_convolve2d_out_dim(w, fw);
    /* oh * ow <= (h + 64) * (w + 64) / 25 cannot overflow for an image
     * that fits in memory, but say so rather than trust it */
    size_t n;
    if (__builtin_mul_overflow(oh, ow, &n) || n > SIZE_MAX / sizeof(double)) {
        model_err(err, errlen, "convolve2d: the result (%zu x %zu) is too large", oh, ow);
        return -EFBIG;
    }

    if (as_object) {
        if (!st->host->object_new) {
            model_err(err, errlen, "convolve2d: this worker cannot make objects");
            return -ENOTSUP;
        }
        struct model_object res;
        void *data = NULL;
        uint64_t shape[2] = {oh, ow};
        char why[256] = "";
        rc = st->host->object_new(MODEL_DTYPE_F64, 2, shape, &res, &data, why, sizeof why);
        if (rc != 0) {
            model_err(err, errlen, "convolve2d: the result object (%zu x %zu float64): %s", oh, ow,
                     why[0] ? why : strerror(-rc));
            return rc;
        }
        model_convolve2d_kernel(img.data, h, w, st->filter, fh, fw, data);
        /* the object is freed by batchd when the item fails */
        size_t bad = conv_first_nonfinite(data, n);
        if (bad < n)
            return conv_nonfinite_error(bad, ow, err, errlen);
        *output = json_pack("{s:s, s:[I, I]}", "$object", res.id, "shape", (json_int_t)oh,
                            (json_int_t)ow);
    } else {
        if (n > MODEL_CONVOLVE2D_MAX_JSON_VALUES) {
            model_err(err, errlen,
                     "convolve2d: the result has %zu x %zu values, more than %u for \"output\": "
                     "\"json\"; ask for \"output\": \"object\"",
                     oh, ow, MODEL_CONVOLVE2D_MAX_JSON_VALUES);
            return -EFBIG;
        }
        double *out = malloc(n * sizeof *out);
        if (!out) {
            model_err(err, errlen, "convolve2d: out of memory for %zu x %zu results", oh, ow);
            return -ENOMEM;
        }
        model_convolve2d_kernel(img.data, h, w, st->filter, fh, fw, out);
        size_t bad = conv_first_nonfinite(out, n);
        if (bad < n) {
            free(out);
            return conv_nonfinite_error(bad, ow, err, errlen);
        }
        *output = conv_json_result(out, oh, ow);
        free(out);
    }
    if (!*output) {
        model_err(err, errlen, "convolve2d: out of memory for the result");
        return -ENOMEM;
    }
    return 0;
}

const struct model_ops model_convolve2d = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "convolve2d",
    .description = "{\"image\": {\"$object\": \"ID\"} (2-D float64), \"filter\": [[...]] (at most "
                   "64x64), \"output\": \"json\"|\"object\"} -> the full 2-D convolution, every "
                   "5th row and column (scipy.signal.convolve2d(image, filter)[::5, ::5]).",
    .load = conv_load,
    .init = conv_init,
    .run = conv_run,
    .fini = conv_fini,
};
