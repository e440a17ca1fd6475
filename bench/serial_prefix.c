/*
 * serial_prefix: the serial C baseline of the prefix_count workload (make
 * bench, workload 6): the job body that bench/e2e_objects.c POSTs
 * (written by py_prefix.py --write) parsed with jansson and counted in one
 * table by the model's own serial function (model_prefix_count_serial,
 * workers/model_prefix_count.h, linked from build/libbatchd.a): exactly
 * the result the workers and reduce produce together. Parsing is timed, as
 * batchd parses the same body.
 *
 * Usage: serial_prefix --docs FILE [--runs R]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h
 * (key w6.serial, items = documents). Exit status 0, or 1 on an error.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_stats.h"
#include "workers/models/model_prefix_count.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    int runs = 5;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--docs") == 0 && a + 1 < argc)
            path = argv[++a];
        else if (strcmp(argv[a], "--runs") == 0 && a + 1 < argc)
            runs = atoi(argv[++a]);
        else
            path = NULL, runs = 0;
    }
    if (!path || runs < 1 || runs > 100) {
        fprintf(stderr, "usage: serial_prefix --docs FILE [--runs R]\n");
        return 1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *body = malloc((size_t)len + 1);
    if (!body || fread(body, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "serial_prefix: cannot read %s\n", path);
        return 1;
    }
    fclose(f);

    double secs[100];
    size_t docs = 0;
    for (int r = 0; r < runs; r++) {
        double t = bench_now_s();
        json_error_t jerr;
        json_t *root = json_loadb(body, (size_t)len, 0, &jerr);
        json_t *inputs = json_object_get(root, "inputs");
        if (!json_is_array(inputs)) {
            fprintf(stderr, "serial_prefix: %s: no inputs array (%s)\n", path, jerr.text);
            return 1;
        }
        json_t *result = NULL;
        char err[512];
        if (model_prefix_count_serial(inputs, MODEL_PREFIX_COUNT_DEFAULT_THRESHOLD, &result, err,
                                      sizeof err) < 0) {
            fprintf(stderr, "serial_prefix: %s\n", err);
            return 1;
        }
        secs[r] = bench_now_s() - t;
        docs = json_array_size(inputs);
        fprintf(stderr, "serial run %d: %zu documents in %.3f s, %lld prefixes over the threshold\n",
                r + 1, docs, secs[r],
                (long long)json_integer_value(json_object_get(result, "count")));
        json_decref(result);
        json_decref(root);
    }
    bench_print_result("w6.serial", (double)docs, secs, runs);
    free(body);
    return 0;
}
