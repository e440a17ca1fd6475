/*
 * store_int: what store.c shares with store_query.c and store_scan.c, and
 * nothing else.
 *
 * Not part of the Store interface (store.h): another backend has no
 * reader pool or SQLite statements. Process and threads as store.h.
 */
#ifndef BATCHD_STORE_INT_H
#define BATCHD_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "service/store/store.h"

#define STORE_JOB_COLUMNS                                                                     \
    "seq, id, model, status, total, done, failed, cancelled, created_ns, started_ns,"        \
    " finished_ns, chunk_size, item_timeout_ms, max_attempts, error, idem_key, request_hash"

/* A read connection from the pool (opened on first need; waits while all
 * are busy), borrowed until store_reader_done(s, *slot). NULL on failure. */
sqlite3 *store_reader(struct store *s, int *slot);
void store_reader_done(struct store *s, int slot);

#define STORE_BLOCK_ITEMS 4096u /* items per input or result block, at most */

/* Decodes a result or input block's header ([u32 n][u32 len x n][texts]):
 * returns n, with the lens and texts pointers, or -1 for a malformed block. */
long store_decode_block(const uint8_t *b, size_t len, const uint8_t **lens,
                        const uint8_t **texts);

/* Fills *j from a row of "SELECT " STORE_JOB_COLUMNS. */
void store_read_job(sqlite3_stmt *st, struct store_job *j);

#endif
