/*
 * serial_square: the serial baseline of the square benchmark.
 *
 * Does in one process, on one core, the work batchd spreads over its
 * workers, with the same code where the code is batchd's:
 *   1. parse the request body (the same bytes bench_e2e POSTs) with jansson;
 *   2. run the built-in `square` model on each item, through its model table
 *      (workers/models_builtin.c, linked from build/libbatchd.a);
 *   3. serialize each output as the worker does (compact, 17 significant
 *      digits) and wrap it as the engine does: {"index":N,"output":...}.
 * What batchd adds on top (HTTP, the ring, processes, paging) is what the
 * ratio printed by bench/run.sh measures.
 *
 * Usage: serial_square [--items N] [--runs R] [--key KEY]
 * Prints one line per run on stderr and, on stdout, the median run as
 *   RESULT serial items=N seconds=S items_per_s=X
 * and, with --key, the line of bench_stats.h (median, min, max items/s).
 * Exit status 0, or 1 on any error (a model error, out of memory, a result
 * count that does not match).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_body.h"
#include "bench/bench_stats.h"
#include <batchd/model.h>
#include "workers/models/models_builtin.h"

#define SERIAL_JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1 << 20;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run over the body. Returns 0 and the number of results in *count. */
static int run_once(const struct model_ops *ops, const char *body, size_t body_len,
                    struct buf *results, size_t *count)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, body_len, 0, &jerr);
    if (!root) {
        fprintf(stderr, "serial_square: body: %s at line %d\n", jerr.text, jerr.line);
        return -1;
    }
    json_t *inputs = json_object_get(root, "inputs");
    char out_buf[256];
    size_t i;
    json_t *item;
    int rc = 0;
    results->len = 0;
    *count = 0;
    json_array_foreach(inputs, i, item) {
        json_t *out = NULL;
        char err[256];
        if (ops->run(NULL, item, &out, err, sizeof err) < 0) {
            fprintf(stderr, "serial_square: item %zu: %s\n", i, err);
            rc = -1;
            break;
        }
        size_t n = json_dumpb(out, out_buf, sizeof out_buf, SERIAL_JSON_FLAGS);
        json_decref(out);
        if (n == 0 || n > sizeof out_buf || buf_reserve(results, n + 48) < 0) {
            fprintf(stderr, "serial_square: item %zu: cannot encode the result\n", i);
            rc = -1;
            break;
        }
        results->len += (size_t)sprintf(results->p + results->len,
                                        i ? ",{\"index\":%zu,\"output\":" : "{\"index\":%zu,"
                                                                            "\"output\":",
                                        i);
        memcpy(results->p + results->len, out_buf, n);
        results->len += n;
        results->p[results->len++] = '}';
        results->p[results->len] = '\0';
        (*count)++;
    }
    json_decref(root);
    return rc;
}

int main(int argc, char **argv)
{
    struct bench_args args = {.items = 1000000, .runs = 3};
    if (bench_parse_args(argc, argv, &args, 0) != 0) {
        fprintf(stderr, "usage: serial_square [--items N>=1] [--runs 1..100] [--key KEY]\n");
        return 1;
    }
    size_t items = (size_t)args.items;
    int runs = args.runs;
    const char *key = args.key;
    const struct model_ops *ops = model_builtin_find("square");
    if (!ops) {
        fprintf(stderr, "serial_square: no built-in model 'square'\n");
        return 1;
    }
    void *shared = NULL;
    char err[256];
    struct model_params none = {0, NULL, NULL};
    if (ops->load && ops->load(&none, NULL, &shared, err, sizeof err) < 0) {
        fprintf(stderr, "serial_square: load: %s\n", err);
        return 1;
    }

    size_t body_len;
    char *body = bench_square_body("square", items, &body_len);
    if (!body) {
        fprintf(stderr, "serial_square: out of memory\n");
        return 1;
    }
    struct buf results = {0};
    double secs[100];
    int status = 0;
    for (int r = 0; r < runs; r++) {
        size_t count;
        double t0 = now_s();
        if (run_once(ops, body, body_len, &results, &count) < 0) {
            status = 1;
            break;
        }
        secs[r] = now_s() - t0;
        if (count != items) {
            fprintf(stderr, "serial_square: %zu results for %zu items\n", count, items);
            status = 1;
            break;
        }
        fprintf(stderr, "serial run %d: %zu items in %.3f s (%.0f items/s), %zu bytes of results\n",
                r + 1, items, secs[r], (double)items / secs[r], results.len);
    }
    if (status == 0) {
        if (key)
            bench_print_result(key, (double)items, secs, runs);
        qsort(secs, (size_t)runs, sizeof secs[0], cmp_double);
        double med = secs[runs / 2];
        printf("RESULT serial items=%zu seconds=%.6f items_per_s=%.0f\n", items, med,
               (double)items / med);
    }
    if (ops->unload)
        ops->unload(shared);
    free(results.p);
    free(body);
    return status;
}
