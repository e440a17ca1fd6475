/*
 * bench_body: the workload of the square benchmark, shared by the HTTP
 * driver (bench_e2e.c) and the serial baseline (serial_square.c) so that
 * both process byte-for-byte the same request body.
 *
 * The items are 0, 1, ..., n-1 (Pool.map(square, range(n)), the peers'
 * classic), so item i is i and its expected output is the integer i*i.
 *
 * Ownership: bench_square_body() returns a new malloc'ed string.
 */
#ifndef BATCHD_BENCH_BODY_H
#define BATCHD_BENCH_BODY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of item i. */
static inline long long bench_square_item(size_t i) { return (long long)i; }

/*
 * Returns {"model":"<model>","inputs":[0,1,...,n-1]} as a NUL-terminated
 * string (new; free() it) with its length in *len, or NULL when out of
 * memory.
 */
static inline char *bench_square_body(const char *model, size_t n, size_t *len)
{
    /* Every item takes at most 20 digits, a sign and a comma. */
    size_t cap = strlen(model) + 64 + n * 22;
    char *body = malloc(cap);
    if (!body)
        return NULL;
    size_t o = (size_t)snprintf(body, cap, "{\"model\":\"%s\",\"inputs\":[", model);
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(body + o, cap - o, i ? ",%lld" : "%lld", bench_square_item(i));
    o += (size_t)snprintf(body + o, cap - o, "]}");
    *len = o;
    return body;
}

#endif
