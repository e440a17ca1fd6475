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
 * Header-only; nothing is allocated.
 */
#ifndef BATCHD_BENCH_STATS_H
#define BATCHD_BENCH_STATS_H

#include <stdio.h>
#include <stdlib.h>
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

#endif
