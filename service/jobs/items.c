/*
 * items.c: a job's inputs as compact JSON texts in one arena (items.h).
 */
#include "service/jobs/items.h"

#include "service/core/jsonfmt.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct job_items *job_items_new(void)
{
    struct job_items *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->off = malloc(sizeof *it->off * 16);
    if (!it->off) {
        free(it);
        return NULL;
    }
    it->ncap = 16;
    it->off[0] = 0;
    return it;
}

int job_items_append(struct job_items *it, const char *json, size_t len)
{
    if (len > UINT32_MAX || it->len + len > ((size_t)1 << 32) * 4)
        return -E2BIG;
    if (it->n + 2 > it->ncap) {
        size_t nc = it->ncap * 2;
        uint64_t *o = realloc(it->off, nc * sizeof *o);
        if (!o)
            return -ENOMEM;
        it->off = o;
        it->ncap = nc;
    }
    if (it->len + len > it->cap) {
        size_t nc = it->cap ? it->cap : 4096;
        while (nc < it->len + len)
            nc *= 2;
        char *d = realloc(it->data, nc);
        if (!d)
            return -ENOMEM;
        it->data = d;
        it->cap = nc;
    }
    memcpy(it->data + it->len, json, len);
    it->len += len;
    it->n++;
    it->off[it->n] = it->len;
    return 0;
}

int job_items_append_json(struct job_items *it, const json_t *item)
{
    char *s = jsonfmt_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!s)
        return -ENOMEM;
    int rc = job_items_append(it, s, strlen(s));
    free(s);
    return rc;
}

/* Faults the whole pages of p[0..n) in with one system call. Best effort:
 * where the kernel cannot, the first writes fault as usual. */
static void items_populate(void *p, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(uintptr_t)(pg - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(pg - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
}

int job_items_reserve(struct job_items *it, size_t bytes, size_t n)
{
    if (it->len + bytes > ((size_t)1 << 32) * 4)
        return -E2BIG;
    if (it->n + n + 1 > it->ncap) {
        size_t nc = it->n + n + 1;
        uint64_t *o = realloc(it->off, nc * sizeof *o);
        if (!o)
            return -ENOMEM;
        it->off = o;
        it->ncap = nc;
        /* not faulted in: n is often a loose bound, and untouched pages
         * cost nothing while the job lives */
    }
    if (it->len + bytes > it->cap) {
        size_t nc = it->len + bytes;
        char *d = realloc(it->data, nc);
        if (!d)
            return -ENOMEM;
        it->data = d;
        it->cap = nc;
        items_populate(d + it->len, bytes);
    }
    return 0;
}

size_t job_items_count(const struct job_items *it) { return it ? it->n : 0; }

const char *job_items_get(const struct job_items *it, size_t i, size_t *len)
{
    *len = (size_t)(it->off[i + 1] - it->off[i]);
    return it->data + it->off[i];
}

void job_items_free(struct job_items *it)
{
    if (!it)
        return;
    free(it->data);
    free(it->off);
    free(it);
}
