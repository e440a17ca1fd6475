/*
 * models_builtin.c: the built-in models without files or parameters:
 * echo, square, sum_squares, exp_sinh (see model.h for the table and
 * models_builtin.h for the kernels shared with the benchmarks), and the
 * table of every built-in model, which also lists convolve2d
 * (model_convolve2d.c), prefix_count (model_prefix_count.c, stateful),
 * chaos (model_chaos.c, fault injection, loaded only when named) and mlp
 * (model_mlp.c, a neural network from a .safetensors file, loaded only
 * when named: it needs weights=).
 *
 * These reproduce the workloads that motivated batchd, so each is the
 * plainest correct computation: what is measured is batchd's overhead
 * around it, not a clever kernel. None has per-worker state (init is NULL,
 * run gets state == NULL) and none takes a parameter.
 *
 * Numbers follow JSON's two kinds in jansson: an integer result stays an
 * integer while it fits in json_int_t (checked with __builtin_*_overflow,
 * never by undefined signed overflow); past that, or when any input is
 * real, the result is a real. A real result that is not finite cannot be
 * written as JSON, so it is an item error rather than a silent null.
 */
#include <batchd/model.h>
#include "workers/models/model_chaos.h"
#include "workers/models/model_convolve2d.h"
#include "workers/models/model_prefix_count.h"
#include "workers/models/model_mlp.h"
#include "workers/models/models_builtin.h"
#include "workers/models/model_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int model_utf8_prefix(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        /* s[n] is the first byte left out: while it continues a
         * character, that character started inside the prefix */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return (int)n;
}

int model_params_none(const char *model, const struct model_params *params, char *err,
                      size_t errlen)
{
    if (!params || params->n == 0)
        return 0;
    model_err(err, errlen, "model %s takes no parameter '%s'", model ? model : "?",
            params->keys && params->keys[0] ? params->keys[0] : "?");
    return -EINVAL;
}

/* json_real() refuses NaN and infinities (JSON has no spelling for them). */
static int real_output(const char *model, double v, json_t **output, char *err, size_t errlen)
{
    if (!isfinite(v)) {
        model_err(err, errlen, "%s: the result overflows a double", model);
        return -ERANGE;
    }
    *output = json_real(v);
    if (!*output) {
        model_err(err, errlen, "%s: out of memory", model);
        return -ENOMEM;
    }
    return 0;
}

static int integer_output(const char *model, json_int_t v, json_t **output, char *err,
                          size_t errlen)
{
    *output = json_integer(v);
    if (!*output) {
        model_err(err, errlen, "%s: out of memory", model);
        return -ENOMEM;
    }
    return 0;
}

/* ---- echo ---------------------------------------------------------------- */

static int echo_load(const struct model_params *params, const struct model_host *host, void **shared, char *err, size_t errlen)
{
    (void)host;
    if (shared)
        *shared = NULL;
    return model_params_none("echo", params, err, errlen);
}

static int echo_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    (void)state;
    (void)err;
    (void)errlen;
    /* jansson's reference count is the only mutable part of a json_t, so
     * handing the borrowed item back as a new reference is sound. */
    *output = json_incref((json_t *)item);
    return 0;
}

/* ---- square -------------------------------------------------------------- */

static int square_load(const struct model_params *params, const struct model_host *host, void **shared, char *err, size_t errlen)
{
    (void)host;
    if (shared)
        *shared = NULL;
    return model_params_none("square", params, err, errlen);
}

static int square_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    (void)state;
    if (json_is_integer(item)) {
        json_int_t x = json_integer_value(item), sq;
        if (!__builtin_mul_overflow(x, x, &sq))
            return integer_output("square", sq, output, err, errlen);
        return real_output("square", (double)x * (double)x, output, err, errlen);
    }
    if (json_is_real(item)) {
        double x = json_real_value(item);
        return real_output("square", x * x, output, err, errlen);
    }
    model_err(err, errlen, "square expects a number, got %s", model_json_kind(item));
    return -EINVAL;
}

/* ---- sum_squares --------------------------------------------------------- */

static int sum_squares_load(const struct model_params *params, const struct model_host *host, void **shared, char *err,
                            size_t errlen)
{
    (void)host;
    if (shared)
        *shared = NULL;
    return model_params_none("sum_squares", params, err, errlen);
}

static int sum_squares_run(void *state, const json_t *item, json_t **output, char *err,
                           size_t errlen)
{
    (void)state;
    if (!json_is_array(item)) {
        model_err(err, errlen, "sum_squares expects an array of numbers, got %s", model_json_kind(item));
        return -EINVAL;
    }
    /* Both sums are kept: the integer one is the answer while every element
     * is an integer and nothing overflowed; the real one takes over after. */
    json_int_t isum = 0;
    bool exact = true;
    double rsum = 0.0;
    size_t i;
    json_t *v;
    json_array_foreach((json_t *)item, i, v) {
        if (json_is_integer(v)) {
            json_int_t x = json_integer_value(v), sq;
            if (exact && (__builtin_mul_overflow(x, x, &sq) ||
                          __builtin_add_overflow(isum, sq, &isum)))
                exact = false;
            rsum += (double)x * (double)x;
        } else if (json_is_real(v)) {
            double x = json_real_value(v);
            exact = false;
            rsum += x * x;
        } else {
            model_err(err, errlen, "sum_squares: element %zu is %s, expected a number", i,
                    model_json_kind(v));
            return -EINVAL;
        }
    }
    if (exact)
        return integer_output("sum_squares", isum, output, err, errlen);
    return real_output("sum_squares", rsum, output, err, errlen);
}

/* ---- exp_sinh ------------------------------------------------------------ */

double model_exp_sinh_kernel(long n)
{
    double sum = 0.0;
    const double dn = (double)n;
    for (long i = 1; i <= n; i++) {
        double x = (double)i / dn;
        sum += exp(x) * sinh(x);
    }
    return sum;
}

static int exp_sinh_load(const struct model_params *params, const struct model_host *host, void **shared, char *err,
                         size_t errlen)
{
    (void)host;
    if (shared)
        *shared = NULL;
    return model_params_none("exp_sinh", params, err, errlen);
}

static int exp_sinh_run(void *state, const json_t *item, json_t **output, char *err,
                        size_t errlen)
{
    (void)state;
    if (!json_is_object(item)) {
        model_err(err, errlen, "exp_sinh expects an object {\"n\": N}, got %s", model_json_kind(item));
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    /* An unknown key is most likely a typo of "n"; ignoring it would run
     * something other than what the client meant. */
    json_object_foreach((json_t *)item, key, v) {
        if (strcmp(key, "n") != 0) {
            model_err(err, errlen, "exp_sinh: unexpected key \"%.*s\" (expects {\"n\": N})",
                    model_utf8_prefix(key, 64), key);
            return -EINVAL;
        }
    }
    v = json_object_get(item, "n");
    if (!v) {
        model_err(err, errlen, "exp_sinh: missing \"n\" (expects {\"n\": N})");
        return -EINVAL;
    }
    if (json_is_real(v)) {
        model_err(err, errlen, "exp_sinh: \"n\" must be an integer from 1 to %ld, got %.17g",
                MODEL_EXP_SINH_MAX_N, json_real_value(v));
        return -EINVAL;
    }
    if (!json_is_integer(v)) {
        model_err(err, errlen, "exp_sinh: \"n\" must be an integer from 1 to %ld, got %s",
                MODEL_EXP_SINH_MAX_N, model_json_kind(v));
        return -EINVAL;
    }
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > MODEL_EXP_SINH_MAX_N) {
        model_err(err, errlen,
                "exp_sinh: \"n\" must be an integer from 1 to %ld, got %" JSON_INTEGER_FORMAT,
                MODEL_EXP_SINH_MAX_N, n);
        return -EINVAL;
    }
    return real_output("exp_sinh", model_exp_sinh_kernel((long)n), output, err, errlen);
}

/* ---- the table ----------------------------------------------------------- */

static const struct model_ops model_echo = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "echo",
    .description = "Returns each item unchanged (measures batchd's own overhead).",
    .load = echo_load,
    .run = echo_run,
};

static const struct model_ops model_square = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "square",
    .description = "A number -> its square (an integer while it fits, else a real).",
    .load = square_load,
    .run = square_run,
};

static const struct model_ops model_sum_squares = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "sum_squares",
    .description = "An array of numbers -> the sum of their squares (the starmap case).",
    .load = sum_squares_load,
    .run = sum_squares_run,
};

static const struct model_ops model_exp_sinh = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "exp_sinh",
    .description = "{\"n\": N} -> sum of exp(i/N)*sinh(i/N) for i = 1..N, N from 1 to "
                   "100000000 (a CPU-bound loop).",
    .load = exp_sinh_load,
    .run = exp_sinh_run,
};

/* Pointers rather than the structs themselves, so that models defined in
 * their own modules (model_chaos.c) can be listed: a struct copied from an
 * extern object is not a constant initializer in C. The order is the order
 * of model_builtin_at(), of the default model list and of --help. */
static const struct model_ops *const builtin_models[] = {
    &model_echo,
    &model_square,
    &model_sum_squares,
    &model_exp_sinh,
    &model_convolve2d,
    &model_prefix_count,
    &model_chaos, /* MODEL_FLAG_NOT_DEFAULT */
    &model_mlp,   /* MODEL_FLAG_NOT_DEFAULT: needs weights= */
};

#define N_BUILTIN_MODELS (sizeof builtin_models / sizeof builtin_models[0])

const struct model_ops *model_builtin_at(size_t i)
{
    if (i >= N_BUILTIN_MODELS)
        return NULL;
    return builtin_models[i];
}

const struct model_ops *model_builtin_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_BUILTIN_MODELS; i++)
        if (strcmp(builtin_models[i]->name, name) == 0)
            return builtin_models[i];
    return NULL;
}

size_t model_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case MODEL_DTYPE_U8:
        return 1;
    case MODEL_DTYPE_I32:
    case MODEL_DTYPE_F32:
        return 4;
    case MODEL_DTYPE_I64:
    case MODEL_DTYPE_F64:
        return 8;
    default:
        return 0;
    }
}

const char *model_dtype_name(uint32_t dtype)
{
    static const char *const names[] = {"uint8", "int32", "int64", "float32", "float64"};
    return dtype < sizeof names / sizeof names[0] ? names[dtype] : NULL;
}
