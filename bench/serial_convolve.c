/*
 * serial_convolve: the serial C baseline of the convolve2d workload (make
 * bench, workload 5): ROUNDS rounds of a SIZE x SIZE float64 image, each
 * convolved with two 4x4 filters by the model's own kernel
 * (model_convolve2d_kernel, workers/model_convolve2d.h, linked from
 * build/libbatchd.a), which computes only the kept outputs
 * (scipy.signal.convolve2d(image, f)[::5, ::5]), in one process.
 *
 * Usage: serial_convolve [--size N] [--rounds R] [--runs K]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h
 * (key w5.serial, items = the 2 x ROUNDS convolutions). Exit status 0, or
 * 1 on a bad argument, out of memory, or a result that differs between runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_stats.h"
#include "workers/models/model_convolve2d.h"

#define FILTER 4

int main(int argc, char **argv)
{
    size_t size = 3000, rounds = 10;
    int runs = 5;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--size") == 0 && a + 1 < argc)
            size = strtoull(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--rounds") == 0 && a + 1 < argc)
            rounds = strtoull(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--runs") == 0 && a + 1 < argc)
            runs = atoi(argv[++a]);
        else {
            fprintf(stderr, "usage: serial_convolve [--size N] [--rounds R] [--runs K]\n");
            return 1;
        }
    }
    if (size == 0 || rounds == 0 || runs < 1 || runs > 100) {
        fprintf(stderr, "serial_convolve: --size, --rounds >= 1 and --runs 1..100\n");
        return 1;
    }
    size_t od = model_convolve2d_out_dim(size, FILTER);
    double *image = malloc(size * size * sizeof *image);
    double *out = malloc(od * od * sizeof *out);
    double filters[2][FILTER * FILTER];
    if (!image || !out)
        return 1;
    /* Any values do: the work does not depend on them. */
    for (size_t i = 0; i < size * size; i++)
        image[i] = (double)((i * 2654435761u) % 1000) / 1000.0;
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < FILTER * FILTER; k++)
            filters[f][k] = (double)(k + 1 + f) / 16.0;

    double secs[100], first = 0;
    for (int r = 0; r < runs; r++) {
        double t = bench_now_s(), sum = 0;
        for (size_t round = 0; round < rounds; round++)
            for (int f = 0; f < 2; f++) {
                model_convolve2d_kernel(image, size, size, filters[f], FILTER, FILTER, out);
                sum += out[(od / 2) * od + od / 2];
            }
        secs[r] = bench_now_s() - t;
        if (r == 0)
            first = sum;
        else if (sum != first) {
            fprintf(stderr, "serial_convolve: run %d differs from run 1\n", r + 1);
            return 1;
        }
        fprintf(stderr, "serial run %d: %zu convolutions in %.3f s\n", r + 1, 2 * rounds,
                secs[r]);
    }
    bench_print_result("w5.serial", (double)(2 * rounds), secs, runs);
    free(image);
    free(out);
    return 0;
}
