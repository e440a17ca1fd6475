/*
 * store_sqlite_scan.c: a job's durable results in input order, a few blocks at a
 * time (store.h: store_results_scan), for the input-order NDJSON stream and
 * the filter=errors pages (issue 18). Its memory is the blocks of one call
 * and what it appends, whatever the job's size.
 */
#include "service/store/store.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "service/store/result_text.h"
#include "service/store/store_backend.h"
#include "service/store/store_sqlite.h"

/* Blocks read per call of store_results_scan: bounds its time, not only
 * its memory (a filter=errors scan can read many blocks and write none). */
#define STORE_SCAN_BLOCKS 64

int store_sqlite_results_scan(void *impl, uint64_t seq, struct store_scan *sc, struct sbuf *out)
{
    struct store_sqlite *s = impl;
    sc->blocked = sc->exhausted = false;
    if (sc->next >= sc->end) {
        sc->exhausted = true;
        return 0;
    }
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    /* A block holds at most STORE_BLOCK_ITEMS items, so one that starts
     * that far before `next` is the earliest that can cover it; the
     * primary key (job, first) makes this a range read. */
    int rc = sqlite3_prepare_v2(db,
                                "SELECT first, data FROM results WHERE job=?1 AND first>?2"
                                " AND first<?3 ORDER BY first LIMIT 64",
                                -1, &st, NULL);
    _Static_assert(STORE_SCAN_BLOCKS == 64, "the LIMIT above");
    if (rc != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)sc->next - (sqlite3_int64)STORE_BLOCK_ITEMS);
    sqlite3_bind_int64(st, 3, sc->end > INT64_MAX ? INT64_MAX : (sqlite3_int64)sc->end);
    size_t start_len = out->len;
    int err = 0, rows = 0;
    bool stop = false;
    while (!err && !stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        uint64_t first = (uint64_t)sqlite3_column_int64(st, 0);
        err = store_scan_block(sc, first, sqlite3_column_blob(st, 1),
                               (size_t)sqlite3_column_bytes(st, 1), out, start_len, &stop);
        if (sc->blocked)
            break;
    }
    if (!err && !stop && !sc->blocked && rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE)
            err = -EIO;
        else if (rows < STORE_SCAN_BLOCKS)
            sc->exhausted = true; /* every block there is was read */
    }
    if (!err && sc->next >= sc->end)
        sc->exhausted = true;
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return err;
}
