/*
 * serial_mlp: the serial C baseline of the mlp workload (make bench,
 * workload 4): the model's own forward pass (mlp_forward, workers/
 * model_mlp.h, serial OpenBLAS sgemm, linked from build/libbatchd.a) over
 * BATCHES batches of IMAGES images in one process, each batch in one call
 * (BLAS's best case: one matrix product per layer for the whole batch).
 *
 * Start-up (reported in its own column): mlp_open of the weights plus the
 * same simulated load delay batchd's load_delay_ms adds (--delay-ms,
 * default 1000), paid once, as batchd pays it once.
 *
 * Usage: serial_mlp --weights FILE [--batches B] [--images N] [--runs R]
 *                   [--delay-ms MS]
 * Prints one line per run on stderr and the RESULT line of bench_stats.h
 * (key w4.serial, items = images). Exit status 0, or 1 on a load error or
 * probabilities that are not finite or do not sum to 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_stats.h"
#include "workers/models/model_mlp.h"

/* splitmix64: the pixels only need to be the same every run. */
static uint64_t rng = 1;
static float next_pixel(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (float)((z ^ (z >> 31)) >> 40) / 16777216.0f;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    size_t batches = 10, images = 10000;
    int runs = 5;
    long delay_ms = 1000;
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v)
            goto usage;
        if (strcmp(argv[a], "--weights") == 0)
            path = v;
        else if (strcmp(argv[a], "--batches") == 0)
            batches = strtoull(v, NULL, 10);
        else if (strcmp(argv[a], "--images") == 0)
            images = strtoull(v, NULL, 10);
        else if (strcmp(argv[a], "--runs") == 0)
            runs = atoi(v);
        else if (strcmp(argv[a], "--delay-ms") == 0)
            delay_ms = atol(v);
        else
            goto usage;
        a++;
    }
    if (!path || batches == 0 || images == 0 || runs < 1 || runs > 100 || delay_ms < 0)
        goto usage;

    double t0 = bench_now_s();
    struct mlp_model *m;
    char err[512];
    if (mlp_open(path, &m, err, sizeof err) < 0) {
        fprintf(stderr, "serial_mlp: %s\n", err);
        return 1;
    }
    struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
    double startup = bench_now_s() - t0;

    const struct mlp_net *net = mlp_model_net(m);
    float *x = malloc(batches * images * net->in * sizeof *x);
    float *probs = malloc(images * net->out * sizeof *probs);
    float *work = malloc(mlp_work_floats(net, images) * sizeof *work);
    if (!x || !probs || !work) {
        fprintf(stderr, "serial_mlp: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < batches * images * net->in; i++)
        x[i] = next_pixel();

    double secs[100];
    unsigned long classes = 0;
    for (int r = 0; r < runs; r++) {
        double t = bench_now_s();
        for (size_t b = 0; b < batches; b++) {
            mlp_forward(net, x + b * images * net->in, images, probs, work);
            for (size_t i = 0; i < images; i++) {
                float s = 0;
                for (uint32_t c = 0; c < net->out; c++)
                    s += probs[i * net->out + c];
                if (!isfinite(s) || fabsf(s - 1.0f) > 1e-3f) {
                    fprintf(stderr, "serial_mlp: image %zu: probabilities sum to %g\n", i, s);
                    return 1;
                }
                classes += mlp_argmax(probs + i * net->out, net->out);
            }
        }
        secs[r] = bench_now_s() - t;
        fprintf(stderr, "serial run %d: %zu images in %.3f s (%.0f images/s)\n", r + 1,
                batches * images, secs[r], (double)(batches * images) / secs[r]);
    }
    qsort(secs, (size_t)runs, sizeof secs[0], bench_cmp_double);
    double n = (double)(batches * images);
    double med = runs % 2 ? secs[runs / 2] : (secs[runs / 2 - 1] + secs[runs / 2]) / 2;
    printf("RESULT w4.serial median=%.6g min=%.6g max=%.6g runs=%d unit=items/s n=%.0f "
           "seconds=%.6f startup_s=%.3f\n",
           n / med, n / secs[runs - 1], n / secs[0], runs, n, med, startup);
    fprintf(stderr, "serial_mlp: class checksum %lu\n", classes);
    free(x);
    free(probs);
    free(work);
    mlp_close(m);
    return 0;
usage:
    fprintf(stderr, "usage: serial_mlp --weights FILE [--batches B] [--images N] [--runs R] "
                    "[--delay-ms MS]\n");
    return 1;
}
