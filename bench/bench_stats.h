/*
 * bench_stats: the clock and the one result line every benchmark program of
 * make bench prints, so that bench/report.sh can read C, Python and shell
 * measurements alike:
 *
 *   RESULT <key> median=<x> min=<x> max=<x> runs=<r> unit=<unit> n=<items>
 *
 * where x is a rate (items per second: higher is better) over `runs` timed
 * runs, min and max the slowest and fastest. bench/bench_common.py prints
 * the same line for the Python baselines.
 *
 * bench_parse_args reads the options the programs share (--items N,
 * --runs R, --key K and, for the rings, --workers W).
 *
 * Header-only; nothing is allocated.
 */
#ifndef BATCHD_BENCH_STATS_H
#define BATCHD_BENCH_STATS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Prints the RESULT line for `runs` timed runs of `n` items each, whose
 * durations (seconds) are in secs[] (sorted in place). The median of an
 * even count is the mean of the middle two.
 */
static inline void bench_print_result(const char *key, double n, double *secs, int runs)
{
    qsort(secs, (size_t)runs, sizeof secs[0], bench_cmp_double);
    double med = runs % 2 ? secs[runs / 2] : (secs[runs / 2 - 1] + secs[runs / 2]) / 2;
    printf("RESULT %s median=%.6g min=%.6g max=%.6g runs=%d unit=items/s n=%.0f seconds=%.6f\n",
           key, n / med, n / secs[runs - 1], n / secs[0], runs, n, med);
    fflush(stdout);
}

struct bench_args {
    unsigned long long items;
    int runs;
    const char *key;
    int workers;
};

/*
 * Parses --items N (>= 1), --runs R (1..100), --key K and, when
 * max_workers > 0, --workers W (1..max_workers) into *a, whose fields hold
 * the defaults. Returns 0, or -1 on an unknown option or a value out of
 * range (the caller prints its usage).
 */
static inline int bench_parse_args(int argc, char **argv, struct bench_args *a, int max_workers)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        if (strcmp(k, "--items") == 0)
            a->items = strtoull(v, NULL, 10);
        else if (strcmp(k, "--runs") == 0)
            a->runs = atoi(v);
        else if (strcmp(k, "--key") == 0)
            a->key = v;
        else if (max_workers > 0 && strcmp(k, "--workers") == 0)
            a->workers = atoi(v);
        else
            return -1;
        i++;
    }
    if (a->items == 0 || a->runs < 1 || a->runs > 100)
        return -1;
    if (max_workers > 0 && (a->workers < 1 || a->workers > max_workers))
        return -1;
    return 0;
}

#endif
