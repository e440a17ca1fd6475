/*
 * store.c: store.h's functions, each one call through the backend chosen
 * at store_open (store_backend.h), and the block encoding every backend
 * shares.
 */
#include "service/store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/store/result_text.h"
#include "service/store/store_backend.h"

struct store {
    const struct store_ops *ops;
    void *impl;
};

bool store_uri_is_pg(const char *where)
{
    return where && (strncmp(where, "postgresql://", 13) == 0 ||
                     strncmp(where, "postgres://", 11) == 0);
}

int store_uri_check(const char *where, char *err, size_t errlen)
{
    if (!where || !where[0] || strcmp(where, "sqlite") == 0 || store_uri_is_pg(where))
        return 0;
    snprintf(err, errlen,
             "\"%s\" is not a store: give sqlite or a PostgreSQL URI"
             " (postgresql://USER@HOST:PORT/DATABASE)",
             where);
    return -EINVAL;
}

struct store *store_open(const char *where, const char *dir, uint64_t max_bytes, char *err,
                         size_t errlen)
{
    if (store_uri_check(where, err, errlen) != 0)
        return NULL;
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (store_uri_is_pg(where)) {
        s->ops = &store_pg_ops;
        s->impl = store_pg_open(where, max_bytes, err, errlen);
    } else {
        s->ops = &store_sqlite_ops;
        s->impl = store_sqlite_open(dir, max_bytes, err, errlen);
    }
    if (!s->impl) {
        free(s);
        return NULL;
    }
    return s;
}

int store_check(const char *where, const char *dir, char *err, size_t errlen)
{
    if (store_uri_check(where, err, errlen) != 0)
        return -EIO;
    return store_uri_is_pg(where) ? store_pg_check(where, err, errlen)
                                  : store_sqlite_check(dir, err, errlen);
}

const char *store_backend_name(const struct store *s)
{
    return s->ops->name;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

void store_cap_results(struct store *s, bool on)
{
    s->ops->cap_results(s->impl, on);
}

int store_job_create(struct store *s, struct store_job *job, const struct job_items *items,
                     struct store_job *existing)
{
    return s->ops->job_create(s->impl, job, items, existing);
}

int store_job_update(struct store *s, const struct store_job *job)
{
    return s->ops->job_update(s->impl, job);
}

int store_put_results(struct store *s, uint64_t seq, uint64_t first, uint32_t n,
                      const char *texts, const uint32_t *lens, const struct store_job *row)
{
    return s->ops->put_results(s->impl, seq, first, n, texts, lens, row);
}

size_t store_pending_bytes(struct store *s)
{
    return s->ops->pending_bytes(s->impl);
}

int store_flush(struct store *s)
{
    return s->ops->flush(s->impl);
}

int store_jobs_each(struct store *s, int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    return s->ops->jobs_each(s->impl, fn, arg);
}

int store_inputs_read(struct store *s, uint64_t seq, uint64_t total, struct job_items **items)
{
    return s->ops->inputs_read(s->impl, seq, total, items);
}

int store_result_ranges(struct store *s, uint64_t seq,
                        int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg)
{
    return s->ops->result_ranges(s->impl, seq, fn, arg);
}

int store_results_page(struct store *s, uint64_t seq, uint64_t offset, uint64_t limit,
                       struct sbuf *out, uint64_t *next)
{
    return s->ops->results_page(s->impl, seq, offset, limit, out, next);
}

int store_results_stream(struct store *s, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                         struct sbuf *out)
{
    return s->ops->results_stream(s->impl, seq, cursor, max_bytes, out);
}

int store_results_scan(struct store *s, uint64_t seq, struct store_scan *sc, struct sbuf *out)
{
    return s->ops->results_scan(s->impl, seq, sc, out);
}

int store_job_delete(struct store *s, uint64_t seq)
{
    return s->ops->job_delete(s->impl, seq);
}

int store_put_job_result(struct store *s, uint64_t seq, const char *text, size_t len)
{
    return s->ops->put_job_result(s->impl, seq, text, len);
}

int store_job_result(struct store *s, uint64_t seq, struct sbuf *out)
{
    return s->ops->job_result(s->impl, seq, out);
}

int store_job_get(struct store *s, const char *id, struct store_job *job)
{
    return s->ops->job_get(s->impl, id, job);
}

int store_job_get_seq(struct store *s, uint64_t seq, struct store_job *job)
{
    return s->ops->job_get_seq(s->impl, seq, job);
}

int store_jobs_each_unfinished(struct store *s,
                               int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    return s->ops->jobs_each_unfinished(s->impl, fn, arg);
}

int store_jobs_finished_page(struct store *s, int status, uint64_t before, size_t limit,
                             int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    return s->ops->jobs_finished_page(s->impl, status, before, limit, fn, arg);
}

int store_jobs_finished_before(struct store *s, uint64_t cutoff_ns, size_t limit,
                               int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    return s->ops->jobs_finished_before(s->impl, cutoff_ns, limit, fn, arg);
}

int store_jobs_count_finished(struct store *s, uint64_t *counts, int n_status)
{
    return s->ops->jobs_count_finished(s->impl, counts, n_status);
}

int store_results_from(struct store *s, uint64_t seq, uint64_t index, bool *any)
{
    return s->ops->results_from(s->impl, seq, index, any);
}

void store_reclaim_space(struct store *s)
{
    s->ops->reclaim_space(s->impl);
}

uint8_t *store_encode_block(uint32_t n, const char *texts, const uint32_t *lens, size_t *out_len)
{
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += lens[i];
    size_t len = 4 + (size_t)n * 4 + bytes;
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        return NULL;
    memcpy(b, &n, 4);
    if (n) {
        memcpy(b + 4, lens, (size_t)n * 4);
        memcpy(b + 4 + (size_t)n * 4, texts, bytes);
    }
    *out_len = len;
    return b;
}

long store_decode_block(const uint8_t *b, size_t len, const uint8_t **lens, const uint8_t **texts)
{
    uint32_t n;
    if (len < 4)
        return -1;
    memcpy(&n, b, 4);
    if ((size_t)n > (len - 4) / 4)
        return -1;
    *lens = b + 4;
    *texts = b + 4 + (size_t)n * 4;
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l;
        memcpy(&l, *lens + (size_t)i * 4, 4);
        total += l;
    }
    if (total != len - 4 - (size_t)n * 4)
        return -1;
    return (long)n;
}

int store_page_block(uint64_t first, const uint8_t *blob, size_t len, uint64_t offset,
                     uint64_t end, uint64_t *at, struct sbuf *out, bool *gap)
{
    const uint8_t *lens, *texts;
    long n = store_decode_block(blob, len, &lens, &texts);
    if (n < 0)
        return -EIO;
    if (first + (uint64_t)n <= *at)
        return 0; /* wholly before the page */
    if (first > *at) {
        *gap = true;
        return 0;
    }
    for (long k = 0; k < n && *at < end; k++) {
        uint32_t l;
        memcpy(&l, lens + k * 4, 4);
        if (first + (uint64_t)k >= *at) {
            int err = 0;
            if (*at > offset)
                err = sbuf_append(out, ",", 1);
            if (!err)
                err = sbuf_append(out, texts, l);
            if (err)
                return err;
            (*at)++;
        }
        texts += l;
    }
    return 0;
}

int store_scan_block(struct store_scan *sc, uint64_t first, const uint8_t *blob, size_t len,
                     struct sbuf *out, size_t start_len, bool *stop)
{
    const uint8_t *lens, *texts;
    long n = store_decode_block(blob, len, &lens, &texts);
    if (n < 0)
        return -EIO;
    if (first + (uint64_t)n <= sc->next)
        return 0; /* wholly before the scan */
    if (first > sc->next) {
        if (!sc->skip_gaps) {
            sc->blocked = true;
            return 0;
        }
        sc->next = first;
    }
    for (long k = 0; k < n; k++) {
        uint32_t l;
        memcpy(&l, lens + k * 4, 4);
        uint64_t idx = first + (uint64_t)k;
        if (idx >= sc->end) {
            *stop = true;
            return 0;
        }
        if (idx >= sc->next) {
            if (!sc->errors_only || result_text_is_error((const char *)texts, l)) {
                if (sc->max_results && sc->written >= sc->max_results) {
                    *stop = true;
                    return 0;
                }
                size_t mark = out->len;
                int err = 0;
                if (!sc->ndjson && sc->written > 0)
                    err = sbuf_append(out, ",", 1);
                if (!err)
                    err = sbuf_append(out, texts, l);
                if (!err && sc->ndjson)
                    err = sbuf_append(out, "\n", 1);
                if (err) {
                    out->len = mark; /* never half a Result */
                    if (out->data)
                        out->data[mark] = '\0';
                    return err;
                }
                sc->written++;
            }
            sc->next = idx + 1;
            if (out->len - start_len >= sc->max_bytes) {
                *stop = true;
                return 0;
            }
        }
        texts += l;
    }
    return 0;
}
