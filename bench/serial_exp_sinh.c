/*
 * serial_exp_sinh: the serial C baseline of the CPU-bound workload (make
 * bench, workload 3): the exp_sinh items of bench_body.h run one after the
 * other in one process with the model's own kernel (model_exp_sinh_kernel,
 * linked from build/libbatchd.a), so the ratio to batchd measures what two
 * workers gain over one core, net of everything batchd adds.
 *
 * Usage: serial_exp_sinh [--items N] [--runs R] [--key KEY]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h.
 * Exit status 0, or 1 on bad arguments or results that differ between runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_body.h"
#include "bench/bench_stats.h"
#include "workers/models/models_builtin.h"

int main(int argc, char **argv)
{
    struct bench_args args = {.items = 2000, .runs = 5, .key = "serial"};
    if (bench_parse_args(argc, argv, &args, 0) != 0) {
        fprintf(stderr, "usage: serial_exp_sinh [--items N>=1] [--runs 1..100] [--key KEY]\n");
        return 1;
    }
    size_t items = (size_t)args.items;
    int runs = args.runs;
    const char *key = args.key;
    double *out = calloc(items, sizeof *out);
    double secs[100];
    if (!out)
        return 1;
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now_s();
        for (size_t i = 0; i < items; i++) {
            double v = model_exp_sinh_kernel(bench_es_n(i));
            /* the same answer every run: the work was done, not skipped */
            if (r > 0 && v != out[i]) {
                fprintf(stderr, "serial_exp_sinh: item %zu differs between runs\n", i);
                return 1;
            }
            out[i] = v;
        }
        secs[r] = bench_now_s() - t0;
        fprintf(stderr, "serial run %d: %zu items in %.3f s (%.0f items/s)\n", r + 1, items,
                secs[r], (double)items / secs[r]);
    }
    bench_print_result(key, (double)items, secs, runs);
    free(out);
    return 0;
}
