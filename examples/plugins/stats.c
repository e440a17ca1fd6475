/*
 * stats: a batchd plugin, and a worked example of writing one.
 *
 * An item is a JSON array of numbers; its result is their summary:
 *
 *   [3, 1, 4, 1, 5]  ->  {"n": 5, "mean": 2.8, "std": 1.6, "min": 1,
 *                         "max": 5, "median": 3}
 *
 * std is the population standard deviation (NumPy's default, ddof=0);
 * `--model stats:plugin=PATH,ddof=1` gives the sample one, and std is
 * null when there are no more numbers than ddof.
 *
 * Build (the Makefile does this as build/examples/plugins/libstats.so):
 *
 *   cc -std=gnu11 -O2 -fPIC -shared -I<batchd>/workers \
 *      $(pkg-config --cflags jansson) -o libstats.so stats.c \
 *      $(pkg-config --libs jansson) -lm
 *
 * Run:  batchd --model stats:plugin=/abs/path/libstats.so,workers=2
 *
 * The life cycle, and where each hook of this file runs:
 *
 *   load    the supervisor, once, before any worker is forked: parses the
 *           parameters into a small read-only struct every worker inherits.
 *           No threads here (nor in constructors): the supervisor forks
 *           after this.
 *   init    each worker, once, after fork: a scratch buffer for the
 *           median's sort, grown as items need and reused for every item
 *           (per-worker mutable state: workers are separate processes).
 *   run     each item: checks it, computes, returns a new JSON object or
 *           an error message (which becomes that item's error result; the
 *           job goes on).
 *   fini    the worker's orderly exit: frees the buffer.
 *   unload  the supervisor's exit: frees what load made.
 *
 * The plugin links against jansson and libc only: it reaches batchd through
 * the table below and nothing else.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <batchd/model.h>

/* load()'s product, shared read-only by every worker (copy-on-write). */
struct stats_shared {
    unsigned ddof; /* delta degrees of freedom of std: 0 or 1 */
};

/* init()'s product, one per worker. */
struct stats_state {
    const struct stats_shared *shared;
    double *scratch; /* the item's numbers, sorted for the median */
    size_t cap;      /* doubles scratch holds */
};

static int stats_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int stats_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static int stats_load(const struct model_params *params, const struct model_host *host,
                      void **shared, char *err, size_t errlen)
{
    (void)host; /* stats reads no objects */
    struct stats_shared *sh = calloc(1, sizeof *sh);
    if (!sh)
        return stats_fail(err, errlen, -ENOMEM, "stats: out of memory");
    /* Refuse what we do not know: a misspelt key silently ignored is a
     * wrong answer nobody notices. */
    for (size_t i = 0; i < params->n; i++) {
        const char *k = params->keys[i], *v = params->values[i];
        if (strcmp(k, "ddof") == 0 && (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)) {
            sh->ddof = (unsigned)(v[0] - '0');
        } else if (strcmp(k, "ddof") == 0) {
            free(sh);
            return stats_fail(err, errlen, -EINVAL, "stats: ddof must be 0 or 1, got '%s'", v);
        } else {
            free(sh);
            return stats_fail(err, errlen, -EINVAL,
                              "stats: unknown parameter '%s' (stats takes ddof=0|1)", k);
        }
    }
    *shared = sh;
    return 0;
}

static void stats_unload(void *shared) { free(shared); }

static int stats_init(const void *shared, const struct model_host *host, void **state,
                      char *err, size_t errlen)
{
    (void)host;
    struct stats_state *st = calloc(1, sizeof *st);
    if (!st)
        return stats_fail(err, errlen, -ENOMEM, "stats: out of memory");
    st->shared = shared; /* what stats_load made: read it, never write it */
    *state = st;
    return 0;
}

static void stats_fini(void *state)
{
    struct stats_state *st = state;
    if (st)
        free(st->scratch);
    free(st);
}

static int stats_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *stats_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    default: return "a number";
    }
}

static int stats_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    struct stats_state *st = state;
    if (!json_is_array(item))
        return stats_fail(err, errlen, -EINVAL, "item must be an array of numbers, got %s",
                          stats_kind(item));
    size_t n = json_array_size(item);
    if (n == 0)
        return stats_fail(err, errlen, -EINVAL, "item is an empty array: need at least one number");
    if (n > st->cap) {
        /* Grow to the item's size and keep the buffer: the next items of
         * a job are usually as large. An item is at most --max-item-bytes
         * of JSON, so n is bounded. */
        double *p = realloc(st->scratch, n * sizeof *p);
        if (!p)
            return stats_fail(err, errlen, -ENOMEM, "stats: out of memory for %zu numbers", n);
        st->scratch = p;
        st->cap = n;
    }
    /* Welford's update: one pass, and no catastrophic cancellation of
     * sum(x^2) - n*mean^2 when the numbers are large and close together. */
    double mean = 0, m2 = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(item, i);
        if (!json_is_number(v))
            return stats_fail(err, errlen, -EINVAL, "item[%zu] is %s, expected a number", i,
                              stats_kind(v));
        double x = json_number_value(v);
        st->scratch[i] = x;
        double d = x - mean;
        mean += d / (double)(i + 1);
        m2 += d * (x - mean);
    }
    qsort(st->scratch, n, sizeof *st->scratch, stats_cmp);
    double min = st->scratch[0], max = st->scratch[n - 1];
    double median = n % 2 ? st->scratch[n / 2]
                          : st->scratch[n / 2 - 1] / 2 + st->scratch[n / 2] / 2;
    unsigned ddof = st->shared->ddof;
    double std = n > ddof ? sqrt(m2 / (double)(n - ddof)) : NAN;
    /* JSON has no infinity: numbers near DBL_MAX overflow the arithmetic,
     * and jansson would refuse the value. Say so instead. */
    if (!isfinite(mean) || !isfinite(m2))
        return stats_fail(err, errlen, -ERANGE,
                          "the numbers are too large: their mean or variance overflows a double");
    *output = json_pack("{s:I, s:f, s:o, s:f, s:f, s:f}", "n", (json_int_t)n, "mean", mean, "std",
                        isnan(std) ? json_null() : json_real(std), "min", min, "max", max,
                        "median", median);
    if (!*output)
        return stats_fail(err, errlen, -ENOMEM, "stats: out of memory");
    return 0;
}

/* The one symbol batchd looks for. Its name in batchd is the NAME of
 * --model NAME:plugin=..., whatever .name says here. */
const struct model_ops batchd_model = {
    .abi_version = MODEL_ABI_VERSION,
    .name = "stats",
    .description = "[x1, x2, ...] (numbers) -> {\"n\", \"mean\", \"std\", \"min\", \"max\", "
                   "\"median\"}; std with ddof=0 unless ddof=1 is given (a plugin: "
                   "examples/plugins/stats.c).",
    .load = stats_load,
    .init = stats_init,
    .run = stats_run,
    .fini = stats_fini,
    .unload = stats_unload,
};
