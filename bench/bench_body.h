/*
 * bench_body: the JSON workloads of make bench, shared by the HTTP driver
 * (bench_e2e.c) and the serial baselines (serial_square.c,
 * serial_exp_sinh.c) so that both process byte-for-byte the same items.
 *
 *   square    items 0, 1, ..., n-1 (Pool.map(square, range(n)), the peers'
 *             classic): item i is i, its output the integer i*i.
 *   echo      the same items; the output is the item itself.
 *   exp_sinh  item i is {"n": BENCH_ES_N + i % 7} (about 1 ms each; the
 *             small spread keeps a cache of one answer from helping); its
 *             output is model_exp_sinh_kernel(n).
 *
 * Ownership: bench_body() returns a new malloc'ed string.
 */
#ifndef BATCHD_BENCH_BODY_H
#define BATCHD_BENCH_BODY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* exp_sinh's n: ~1 ms of exp() and sinh() per item on a 2020s x86 core. */
#define BENCH_ES_N 50000L

enum bench_workload { BENCH_SQUARE, BENCH_ECHO, BENCH_EXP_SINH };

/* The value of item i (square, echo). */
static inline long long bench_square_item(size_t i) { return (long long)i; }

/* The n of exp_sinh item i. */
static inline long bench_es_n(size_t i) { return BENCH_ES_N + (long)(i % 7); }

/*
 * Returns {"model":"<model>","inputs":[...]<options>} for the workload as a
 * NUL-terminated string (new; free() it) with its length in *len, or NULL
 * when out of memory. chunk_size > 0 adds "options":{"chunk_size":N}.
 */
static inline char *bench_body(enum bench_workload w, size_t n, uint32_t chunk_size,
                               size_t *len)
{
    const char *model = w == BENCH_SQUARE ? "square" : w == BENCH_ECHO ? "echo" : "exp_sinh";
    /* Every item takes at most 20 digits, a sign and a comma, or {"n":...}. */
    size_t cap = strlen(model) + 128 + n * 32;
    char *body = malloc(cap);
    if (!body)
        return NULL;
    size_t o = (size_t)snprintf(body, cap, "{\"model\":\"%s\",\"inputs\":[", model);
    for (size_t i = 0; i < n; i++) {
        const char *sep = i ? "," : "";
        if (w == BENCH_EXP_SINH)
            o += (size_t)snprintf(body + o, cap - o, "%s{\"n\":%ld}", sep, bench_es_n(i));
        else
            o += (size_t)snprintf(body + o, cap - o, "%s%lld", sep, bench_square_item(i));
    }
    o += (size_t)snprintf(body + o, cap - o, "]");
    if (chunk_size)
        o += (size_t)snprintf(body + o, cap - o, ",\"options\":{\"chunk_size\":%u}", chunk_size);
    o += (size_t)snprintf(body + o, cap - o, "}");
    *len = o;
    return body;
}

/* The square body, as bench/serial_square.c has always read it. */
static inline char *bench_square_body(const char *model, size_t n, size_t *len)
{
    (void)model;
    return bench_body(BENCH_SQUARE, n, 0, len);
}

#endif
