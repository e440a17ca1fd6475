/*
 * store_backend: the seam between store.h's functions and the backends
 * that implement them (store_sqlite.c, store_pg.c).
 *
 * store.c holds a backend's operations table and its handle (impl), and
 * every store_* function of store.h is one call through the table, so the
 * engine never knows which backend it talks to. Each operation has
 * exactly the contract of the store.h function of the same name, with
 * `impl` in place of the store.
 *
 * Process and threads: as store.h. Ownership: impl belongs to the backend
 * from its open until its close.
 */
#ifndef BATCHD_STORE_BACKEND_H
#define BATCHD_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/store/store.h"

struct store_ops {
    const char *name; /* "sqlite", "postgresql": logs and /metrics */
    void (*cap_results)(void *impl, bool on);
    void (*close)(void *impl);
    int (*job_create)(void *impl, struct store_job *job, const struct job_items *items,
                      struct store_job *existing);
    int (*job_update)(void *impl, const struct store_job *job);
    int (*put_results)(void *impl, uint64_t seq, uint64_t first, uint32_t n, const char *texts,
                       const uint32_t *lens, const struct store_job *row);
    size_t (*pending_bytes)(void *impl);
    int (*flush)(void *impl);
    int (*jobs_each)(void *impl, int (*fn)(void *arg, const struct store_job *job), void *arg);
    int (*inputs_read)(void *impl, uint64_t seq, uint64_t total, struct job_items **items);
    int (*result_ranges)(void *impl, uint64_t seq,
                         int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg);
    int (*results_page)(void *impl, uint64_t seq, uint64_t offset, uint64_t limit,
                        struct sbuf *out, uint64_t *next);
    int (*results_stream)(void *impl, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                          struct sbuf *out);
    int (*results_scan)(void *impl, uint64_t seq, struct store_scan *sc, struct sbuf *out);
    int (*job_delete)(void *impl, uint64_t seq);
    int (*put_job_result)(void *impl, uint64_t seq, const char *text, size_t len);
    int (*job_result)(void *impl, uint64_t seq, struct sbuf *out);
    int (*job_get)(void *impl, const char *id, struct store_job *job);
    int (*job_get_seq)(void *impl, uint64_t seq, struct store_job *job);
    int (*jobs_each_unfinished)(void *impl, int (*fn)(void *arg, const struct store_job *job),
                                void *arg);
    int (*jobs_finished_page)(void *impl, int status, uint64_t before, size_t limit,
                              int (*fn)(void *arg, const struct store_job *job), void *arg);
    int (*jobs_finished_before)(void *impl, uint64_t cutoff_ns, size_t limit,
                                int (*fn)(void *arg, const struct store_job *job), void *arg);
    int (*jobs_count_finished)(void *impl, uint64_t *counts, int n_status);
    int (*results_from)(void *impl, uint64_t seq, uint64_t index, bool *any);
    void (*reclaim_space)(void *impl);
};

/* SQLite in DIR/batchd.db (store_sqlite.c): open as store_open, check as
 * store_check. The handle is new (closed through the table). */
extern const struct store_ops store_sqlite_ops;
void *store_sqlite_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen);
int store_sqlite_check(const char *dir, char *err, size_t errlen);

/* PostgreSQL at a libpq URI (store_pg.c): likewise. */
extern const struct store_ops store_pg_ops;
void *store_pg_open(const char *uri, uint64_t max_bytes, char *err, size_t errlen);
int store_pg_check(const char *uri, char *err, size_t errlen);

/* Block encoding shared by every backend ([u32 n][u32 len x n][texts]):
 * new (free()), NULL on ENOMEM. */
#define STORE_BLOCK_ITEMS 4096u /* items per input or result block, at most */
uint8_t *store_encode_block(uint32_t n, const char *texts, const uint32_t *lens,
                            size_t *out_len);
/* Decodes a block's header: returns n, with the lens and texts pointers, or
 * -1 for a malformed block. */
long store_decode_block(const uint8_t *b, size_t len, const uint8_t **lens,
                        const uint8_t **texts);

/* One result block (items [first, first + n) of `blob`) through a scan
 * (store.h: struct store_scan), the same for every backend: appends the
 * Results at or after sc->next to `out` and moves sc->next. `start_len` is
 * out->len when the call of store_results_scan began (for max_bytes).
 * Sets *stop when the scan is full (end, max_results, max_bytes) and
 * sc->blocked at a gap it may not pass. Returns 0, -EIO (a malformed
 * block) or -ENOMEM (out keeps no half Result). */
struct store_scan;
struct sbuf;
int store_scan_block(struct store_scan *sc, uint64_t first, const uint8_t *blob, size_t len,
                     struct sbuf *out, size_t start_len, bool *stop);

/* One result block through a page (store.h: store_results_page), the same
 * for every backend: appends the Results of items [*at, end) it holds to
 * `out` (","-separated, the first of the page being `offset`) and moves
 * *at. Sets *gap when the block starts past *at: the page stops at the
 * first item without a result. Returns 0, -EIO (a malformed block) or
 * -ENOMEM. */
int store_page_block(uint64_t first, const uint8_t *blob, size_t len, uint64_t offset,
                     uint64_t end, uint64_t *at, struct sbuf *out, bool *gap);

#endif
