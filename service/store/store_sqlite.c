/*
 * store_sqlite.c: the SQLite backend of store.h (store_backend.h), the
 * default: one machine, no server.
 *
 * Schema (version 1):
 *   meta(key PRIMARY KEY, value)            "app" = "batchd", "schema" = "1",
 *                                           "last_seq" = highest seq ever given
 *   jobs(seq INTEGER PRIMARY KEY, id UNIQUE, model, status, counts...,
 *        idem_key UNIQUE, request_hash)
 *   inputs(job, block, data, PRIMARY KEY(job, block)) WITHOUT ROWID
 *        data = [u32 n][u32 len x n][texts]: items block*4096 ..
 *   results(job, first, n, data, PRIMARY KEY(job, first)), index on (job)
 *        data as inputs; rowid order = the order blocks became durable
 *
 * WAL with synchronous=FULL: a commit is on disk when it returns (the 202
 * promise); group commit keeps the number of fsyncs to one per flush.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "service/jobs/items.h"
#include "service/core/log.h"
#include "service/store/store_backend.h"
#include "service/store/store_buffer.h"
#include "service/store/store_sqlite.h"

#define STORE_SCHEMA "1"
#define STORE_READERS 8
#define STORE_READER_CACHE_KB "256"

struct store_sqlite {
    char path[4096];
    pthread_mutex_t wmu; /* the writer connection */
    sqlite3 *w;
    uint64_t max_bytes;
    unsigned long long cap_pages; /* --max-store-bytes in pages, 0 = none */
    bool cap_results;             /* the cap applies to result flushes too */
    int flush_rc; /* the last store_flush's result (under wmu): a failure
                     that repeats is logged once, not at every retry */

    struct store_buffer buf; /* what the next flush writes */

    pthread_mutex_t rmu; /* the reader pool */
    pthread_cond_t rcond;
    sqlite3 *readers[STORE_READERS];
    bool busy[STORE_READERS];
    int n_readers;
};

static int store_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    default:
        return -EIO;
    }
}

static int store_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("store: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
    }
    return rc;
}

static sqlite3 *store_connect(const char *path, bool create, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_FULLMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    return db;
}

/* Reads one text value; returns false if the statement fails. */
static bool store_query_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return false;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

static const char *const store_schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS jobs("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,"
    " status INTEGER NOT NULL, total INTEGER NOT NULL, done INTEGER NOT NULL,"
    " failed INTEGER NOT NULL, cancelled INTEGER NOT NULL, created_ns INTEGER NOT NULL,"
    " started_ns INTEGER NOT NULL, finished_ns INTEGER NOT NULL, chunk_size INTEGER NOT NULL,"
    " item_timeout_ms INTEGER NOT NULL, max_attempts INTEGER NOT NULL, error TEXT NOT NULL,"
    " idem_key TEXT UNIQUE, request_hash INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS inputs(job INTEGER NOT NULL, block INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY(job, block)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS results(job INTEGER NOT NULL, first INTEGER NOT NULL,"
    " n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(job, first));"
    "CREATE INDEX IF NOT EXISTS results_in_order ON results(job);"
    /* finished jobs are listed and expired from the store (store_sqlite_query.c):
     * the list's order within a status, and the retention's order (added
     * after schema 1 was out: IF NOT EXISTS builds them in older files) */
    "CREATE INDEX IF NOT EXISTS jobs_finished_by_status ON jobs(status, seq)"
    " WHERE finished_ns != 0;"
    "CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs(finished_ns) WHERE finished_ns != 0;"
    /* a stateful job's reduced result (added after schema 1 was out: a
     * table of its own keeps older databases readable as they are) */
    "CREATE TABLE IF NOT EXISTS job_results(job INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    /* Completion webhooks (service/outbox.h). A job's URL is written with
     * the job; the event is written by this trigger in the transaction
     * that finishes the job (the flush whose UPDATE sets finished_ns), so
     * that no finished job can miss its event and no event can exist for
     * a job that is not finished, whatever writes the row. The event keeps
     * a copy of the job's row: it is delivered as the job was when it
     * finished, even after the job was purged. */
    "CREATE TABLE IF NOT EXISTS webhooks(job INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE,"
    " url TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, job INTEGER NOT NULL UNIQUE,"
    " job_id TEXT NOT NULL, url TEXT NOT NULL, type TEXT NOT NULL, model TEXT NOT NULL,"
    " status INTEGER NOT NULL, total INTEGER NOT NULL, done INTEGER NOT NULL,"
    " failed INTEGER NOT NULL, created_ns INTEGER NOT NULL, started_ns INTEGER NOT NULL,"
    " finished_ns INTEGER NOT NULL, chunk_size INTEGER NOT NULL, error TEXT NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_ns INTEGER NOT NULL DEFAULT 0, last_status INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT NOT NULL DEFAULT '', delivered_ns INTEGER NOT NULL DEFAULT 0,"
    " body TEXT);"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_ns);"
    "CREATE TRIGGER IF NOT EXISTS outbox_on_finish AFTER UPDATE OF finished_ns ON jobs"
    " WHEN old.finished_ns = 0 AND new.finished_ns != 0 BEGIN"
    " INSERT OR IGNORE INTO outbox(job, job_id, url, type, model, status, total, done, failed,"
    " created_ns, started_ns, finished_ns, chunk_size, error)"
    " SELECT new.seq, new.id, w.url, CASE new.status WHEN 2 THEN 'job.succeeded'"
    " WHEN 4 THEN 'job.cancelled' ELSE 'job.failed' END, new.model, new.status, new.total,"
    " new.done, new.failed, new.created_ns, new.started_ns, new.finished_ns, new.chunk_size,"
    " new.error FROM webhooks w WHERE w.job = new.seq; END;"
    "INSERT OR IGNORE INTO meta VALUES('app', 'batchd');"
    "INSERT OR IGNORE INTO meta VALUES('schema', '" STORE_SCHEMA "');";

/* Creates or checks the schema on the writer connection. */
static int store_prepare_schema(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char buf[64];
    if (!store_query_text(db, "PRAGMA quick_check", buf, sizeof buf) || strcmp(buf, "ok") != 0) {
        snprintf(err, errlen, "%s is not a usable SQLite database (%s)", path,
                 buf[0] ? buf : sqlite3_errmsg(db));
        /* quick_check's report spans lines; the reason is one line */
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        return -EIO;
    }
    bool has_meta = false, has_tables = false;
    if (store_query_text(db, "SELECT count(*) FROM sqlite_master WHERE name='meta'", buf,
                         sizeof buf))
        has_meta = strcmp(buf, "0") != 0;
    if (store_query_text(db, "SELECT count(*) FROM sqlite_master", buf, sizeof buf))
        has_tables = strcmp(buf, "0") != 0;
    if (has_tables && !has_meta) {
        snprintf(err, errlen, "%s is an SQLite database, but not batchd's", path);
        return -EIO;
    }
    if (has_meta) {
        store_query_text(db, "SELECT value FROM meta WHERE key='app'", buf, sizeof buf);
        if (strcmp(buf, "batchd") != 0) {
            snprintf(err, errlen, "%s is an SQLite database, but not batchd's", path);
            return -EIO;
        }
        store_query_text(db, "SELECT value FROM meta WHERE key='schema'", buf, sizeof buf);
        if (strcmp(buf, STORE_SCHEMA) != 0) {
            snprintf(err, errlen, "%s has schema version %s; this batchd reads version %s",
                     path, buf, STORE_SCHEMA);
            return -EIO;
        }
    } else {
        /* Before the first table: auto_vacuum can only be chosen now. */
        store_exec(db, "PRAGMA auto_vacuum=INCREMENTAL");
    }
    if (!store_query_text(db, "PRAGMA journal_mode=WAL", buf, sizeof buf) ||
        strcmp(buf, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use write-ahead logging: %s", path, sqlite3_errmsg(db));
        return -EIO;
    }
    if (store_exec(db, "PRAGMA synchronous=FULL") != SQLITE_OK ||
        store_exec(db, store_schema_sql) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot create the schema: %s", path, sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

static int store_dir_ok(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(err, errlen, "data directory %s: %s", dir, strerror(errno));
        return -EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s is not a directory", dir);
        return -EIO;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "data directory %s is not writable: %s", dir, strerror(errno));
        return -EIO;
    }
    return 0;
}

int store_sqlite_check(const char *dir, char *err, size_t errlen)
{
    if (store_dir_ok(dir, err, errlen) != 0)
        return -EIO;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE);
    sqlite3 *db = store_connect(path, true, err, errlen);
    if (!db)
        return -EIO;
    int rc = store_prepare_schema(db, path, err, errlen);
    sqlite3_close(db);
    return rc;
}

static void store_sqlite_close(void *impl);

void *store_sqlite_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
    if (store_dir_ok(dir, err, errlen) != 0)
        return NULL;
    struct store_sqlite *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s/%s", dir, STORE_FILE);
    pthread_mutex_init(&s->wmu, NULL);
    store_buffer_init(&s->buf);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcond, NULL);
    s->max_bytes = max_bytes;
    s->w = store_connect(s->path, true, err, errlen);
    if (!s->w || store_prepare_schema(s->w, s->path, err, errlen) != 0) {
        store_sqlite_close(s);
        return NULL;
    }
    if (max_bytes) {
        char buf[32];
        store_query_text(s->w, "PRAGMA page_size", buf, sizeof buf);
        unsigned long long page = strtoull(buf, NULL, 10);
        unsigned long long pages = page ? (unsigned long long)(max_bytes / page) : 1ULL;
        /* 0 would only query the limit, i.e. leave the store uncapped */
        s->cap_pages = pages ? pages : 1ULL;
    }
    return s;
}

/* The size cap applies to new jobs only (wmu held): results of a job
 * already accepted are always written, so an accepted job can finish even
 * when the store is at its cap. A cap below the current size holds the
 * store at its current size. */
static void store_cap(struct store_sqlite *s, bool capped)
{
    if (!s->cap_pages)
        return;
    capped = capped || s->cap_results;
    char sql[64], buf[32];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
             capped ? s->cap_pages : 4294967294ULL);
    store_query_text(s->w, sql, buf, sizeof buf);
}

static void store_sqlite_cap_results(void *impl, bool on)
{
    struct store_sqlite *s = impl;
    pthread_mutex_lock(&s->wmu);
    s->cap_results = on;
    pthread_mutex_unlock(&s->wmu);
}

static void store_sqlite_close(void *impl)
{
    struct store_sqlite *s = impl;
    if (!s)
        return;
    for (int i = 0; i < s->n_readers; i++)
        sqlite3_close(s->readers[i]);
    if (s->w)
        sqlite3_close(s->w);
    store_buffer_destroy(&s->buf);
    pthread_cond_destroy(&s->rcond);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}

/* A read connection from the pool (opened on first need). NULL on failure. */
sqlite3 *store_reader(struct store_sqlite *s, int *slot)
{
    pthread_mutex_lock(&s->rmu);
    for (;;) {
        for (int i = 0; i < s->n_readers; i++) {
            if (!s->busy[i]) {
                s->busy[i] = true;
                *slot = i;
                pthread_mutex_unlock(&s->rmu);
                return s->readers[i];
            }
        }
        if (s->n_readers < STORE_READERS) {
            char err[256];
            sqlite3 *db = store_connect(s->path, false, err, sizeof err);
            if (!db) {
                pthread_mutex_unlock(&s->rmu);
                log_error("store: %s", err);
                return NULL;
            }
            store_exec(db, "PRAGMA query_only=1");
            /* A small page cache per reader: with SQLite's default (2 MB
             * each) eight readers would hold 16 MB once the file outgrows
             * them, memory that grows with the number of retained jobs;
             * the file's pages stay in the kernel's page cache anyway. */
            store_exec(db, "PRAGMA cache_size=-" STORE_READER_CACHE_KB);
            int i = s->n_readers++;
            s->readers[i] = db;
            s->busy[i] = true;
            *slot = i;
            pthread_mutex_unlock(&s->rmu);
            return db;
        }
        pthread_cond_wait(&s->rcond, &s->rmu);
    }
}

void store_reader_done(struct store_sqlite *s, int slot)
{
    pthread_mutex_lock(&s->rmu);
    s->busy[slot] = false;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rmu);
}

static void store_bind_job(sqlite3_stmt *st, const struct store_job *j)
{
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->model, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, j->status);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)j->total);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)j->done);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)j->failed);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)j->cancelled);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)j->created_ns);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)j->started_ns);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)j->finished_ns);
    sqlite3_bind_int64(st, 11, j->chunk_size);
    sqlite3_bind_int64(st, 12, j->item_timeout_ms);
    sqlite3_bind_int64(st, 13, j->max_attempts);
    sqlite3_bind_text(st, 14, j->error, -1, SQLITE_STATIC);
    if (j->idem_key[0])
        sqlite3_bind_text(st, 15, j->idem_key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 15);
    sqlite3_bind_int64(st, 16, (sqlite3_int64)j->request_hash);
}

void store_read_job(sqlite3_stmt *st, struct store_job *j)
{
    memset(j, 0, sizeof *j);
    j->seq = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(j->id, sizeof j->id, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(j->model, sizeof j->model, "%s", (const char *)sqlite3_column_text(st, 2));
    j->status = sqlite3_column_int(st, 3);
    j->total = (uint64_t)sqlite3_column_int64(st, 4);
    j->done = (uint64_t)sqlite3_column_int64(st, 5);
    j->failed = (uint64_t)sqlite3_column_int64(st, 6);
    j->cancelled = (uint64_t)sqlite3_column_int64(st, 7);
    j->created_ns = (uint64_t)sqlite3_column_int64(st, 8);
    j->started_ns = (uint64_t)sqlite3_column_int64(st, 9);
    j->finished_ns = (uint64_t)sqlite3_column_int64(st, 10);
    j->chunk_size = (uint32_t)sqlite3_column_int64(st, 11);
    j->item_timeout_ms = (uint32_t)sqlite3_column_int64(st, 12);
    j->max_attempts = (uint32_t)sqlite3_column_int64(st, 13);
    const unsigned char *e = sqlite3_column_text(st, 14);
    snprintf(j->error, sizeof j->error, "%s", e ? (const char *)e : "");
    const unsigned char *k = sqlite3_column_text(st, 15);
    snprintf(j->idem_key, sizeof j->idem_key, "%s", k ? (const char *)k : "");
    j->request_hash = (uint64_t)sqlite3_column_int64(st, 16);
}

static int store_sqlite_job_create(void *impl, struct store_job *job, const struct job_items *items,
                     struct store_job *existing)
{
    struct store_sqlite *s = impl;
    int rc;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->wmu);
    store_cap(s, true);
    if (sqlite3_exec(s->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = store_errno(sqlite3_errcode(s->w));
        goto out;
    }
    if (job->idem_key[0]) {
        sqlite3_prepare_v2(s->w, "SELECT " STORE_JOB_COLUMNS " FROM jobs WHERE idem_key=?", -1,
                           &st, NULL);
        sqlite3_bind_text(st, 1, job->idem_key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            if (existing)
                store_read_job(st, existing);
            rc = -EEXIST;
            goto rollback;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    /* A seq is never given twice, not even after the newest job was
     * deleted (a rowid alone would be: SQLite reuses max(rowid)+1), so a
     * reader still holding a deleted job's seq can never see another
     * job's rows. The high-water mark is kept in meta ("last_seq"). */
    rc = sqlite3_prepare_v2(s->w,
                            "SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta"
                            " WHERE key='last_seq'), 0), coalesce((SELECT max(seq) FROM jobs), 0))"
                            " + 1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    if ((rc = sqlite3_step(st)) != SQLITE_ROW)
        goto fail;
    uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    rc = sqlite3_prepare_v2(s->w, "INSERT OR REPLACE INTO meta VALUES('last_seq', ?)", -1, &st,
                            NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    rc = sqlite3_prepare_v2(s->w,
                            "INSERT INTO jobs(id, model, status, total, done, failed, cancelled,"
                            " created_ns, started_ns, finished_ns, chunk_size, item_timeout_ms,"
                            " max_attempts, error, idem_key, request_hash, seq)"
                            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    store_bind_job(st, job);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)seq);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (job->webhook_url) {
        rc = sqlite3_prepare_v2(s->w, "INSERT INTO webhooks(job, job_id, url) VALUES(?,?,?)", -1,
                                &st, NULL);
        if (rc != SQLITE_OK)
            goto fail;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        sqlite3_bind_text(st, 2, job->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, job->webhook_url, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) != SQLITE_DONE)
            goto fail;
        sqlite3_finalize(st);
        st = NULL;
    }

    rc = sqlite3_prepare_v2(s->w, "INSERT INTO inputs(job, block, data) VALUES(?,?,?)", -1, &st,
                            NULL);
    if (rc != SQLITE_OK)
        goto fail;
    size_t n = job_items_count(items);
    uint32_t *lens = malloc(sizeof *lens * STORE_BLOCK_ITEMS);
    if (!lens) {
        rc = SQLITE_NOMEM;
        goto fail;
    }
    for (size_t b = 0; b * STORE_BLOCK_ITEMS < n; b++) {
        size_t first = b * STORE_BLOCK_ITEMS;
        uint32_t cnt = (uint32_t)(n - first < STORE_BLOCK_ITEMS ? n - first : STORE_BLOCK_ITEMS);
        size_t len0;
        const char *texts = job_items_get(items, first, &len0);
        for (uint32_t k = 0; k < cnt; k++) {
            size_t l;
            job_items_get(items, first + k, &l);
            lens[k] = (uint32_t)l;
        }
        size_t blen;
        uint8_t *blob = store_encode_block(cnt, texts, lens, &blen);
        if (!blob) {
            free(lens);
            rc = SQLITE_NOMEM;
            goto fail;
        }
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)b);
        sqlite3_bind_blob(st, 3, blob, (int)blen, free);
        if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
            free(lens);
            goto fail;
        }
    }
    free(lens);
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = sqlite3_exec(s->w, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    job->seq = seq;
    rc = 0;
    goto out;
fail:
    log_error("store: cannot write job %s: %s", job->id, sqlite3_errmsg(s->w));
    rc = store_errno(rc == SQLITE_NOMEM ? SQLITE_NOMEM : sqlite3_extended_errcode(s->w));
    if (rc == 0)
        rc = -EIO;
rollback:
    sqlite3_finalize(st);
    st = NULL;
    sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

static int store_sqlite_job_update(void *impl, const struct store_job *job)
{
    struct store_sqlite *s = impl;
    return store_buffer_update(&s->buf, job);
}

static int store_sqlite_put_results(void *impl, uint64_t seq, uint64_t first, uint32_t n,
                                    const char *texts, const uint32_t *lens,
                                    const struct store_job *row)
{
    struct store_sqlite *s = impl;
    return store_buffer_put(&s->buf, seq, first, n, texts, lens, row);
}

static size_t store_sqlite_pending_bytes(void *impl)
{
    struct store_sqlite *s = impl;
    return store_buffer_bytes(&s->buf);
}

static int store_sqlite_flush(void *impl)
{
    struct store_sqlite *s = impl;
    pthread_mutex_lock(&s->wmu);
    /* Take the buffers as they are: producers go on filling new ones while
     * this transaction waits for the disk. */
    struct store_batch batch;
    store_buffer_take(&s->buf, &batch);
    size_t n_blocks = batch.n_blocks, n_updates = batch.n_updates;
    struct store_pending_block *blocks = batch.blocks;
    struct store_job *updates = batch.updates;
    if (n_blocks == 0 && n_updates == 0) {
        pthread_mutex_unlock(&s->wmu);
        store_batch_free(&batch);
        return 0;
    }
    sqlite3_stmt *ins = NULL, *upd = NULL;
    store_cap(s, false);
    int rc = sqlite3_exec(s->w, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = sqlite3_prepare_v2(s->w,
                            "INSERT OR IGNORE INTO results(job, first, n, data) VALUES(?,?,?,?)",
                            -1, &ins, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    for (size_t i = 0; i < n_blocks; i++) {
        struct store_pending_block *b = &blocks[i];
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)b->seq);
        sqlite3_bind_int64(ins, 2, (sqlite3_int64)b->first);
        sqlite3_bind_int64(ins, 3, b->n);
        sqlite3_bind_blob(ins, 4, b->data, (int)b->len, SQLITE_STATIC);
        if ((rc = sqlite3_step(ins)) != SQLITE_DONE)
            goto fail;
    }
    rc = sqlite3_prepare_v2(s->w,
                            "UPDATE jobs SET status=?3, done=?5, failed=?6, cancelled=?7,"
                            " started_ns=?9, finished_ns=?10, error=?14 WHERE seq=?17",
                            -1, &upd, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    for (size_t i = 0; i < n_updates; i++) {
        sqlite3_reset(upd);
        store_bind_job(upd, &updates[i]);
        sqlite3_bind_int64(upd, 17, (sqlite3_int64)updates[i].seq);
        if ((rc = sqlite3_step(upd)) != SQLITE_DONE)
            goto fail;
    }
    if ((rc = sqlite3_exec(s->w, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    s->flush_rc = 0;
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    pthread_mutex_unlock(&s->wmu);
    store_batch_free(&batch);
    return 0;
fail:
    rc = store_errno(sqlite3_extended_errcode(s->w));
    if (rc == 0)
        rc = -EIO;
    if (rc != s->flush_rc)
        log_error("store: cannot write results: %s", sqlite3_errmsg(s->w));
    s->flush_rc = rc;
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->wmu);
    store_buffer_requeue(&s->buf, &batch);
    return rc;
}

static int store_sqlite_jobs_each(void *impl, int (*fn)(void *arg, const struct store_job *job), void *arg)
{
    struct store_sqlite *s = impl;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT " STORE_JOB_COLUMNS " FROM jobs ORDER BY seq", -1,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    int out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job j;
        store_read_job(st, &j);
        if ((out = fn(arg, &j)) != 0)
            break;
    }
    if (!out && rc != SQLITE_DONE)
        out = -EIO;
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return out;
}

static int store_sqlite_inputs_read(void *impl, uint64_t seq, uint64_t total, struct job_items **items)
{
    struct store_sqlite *s = impl;
    *items = NULL;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT data FROM inputs WHERE job=? ORDER BY block", -1, &st,
                                NULL);
    struct job_items *it = job_items_new();
    int out = 0;
    if (rc != SQLITE_OK || !it) {
        out = it ? -EIO : -ENOMEM;
        goto done;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    while (!out && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 0), *lens, *texts;
        long n = store_decode_block(b, (size_t)sqlite3_column_bytes(st, 0), &lens, &texts);
        if (n < 0) {
            out = -EIO;
            break;
        }
        for (long k = 0; k < n && !out; k++) {
            uint32_t l;
            memcpy(&l, lens + k * 4, 4);
            out = job_items_append(it, (const char *)texts, l);
            texts += l;
        }
    }
    if (!out && rc != SQLITE_DONE)
        out = -EIO;
    if (!out && job_items_count(it) == 0 && total > 0) {
        /* nothing stored: an unknown job, or one whose inputs are lost */
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM jobs WHERE seq=?", -1, &q, NULL) != SQLITE_OK)
            out = -EIO;
        else {
            sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
            rc = sqlite3_step(q);
            out = rc == SQLITE_DONE ? -ENOENT : -EIO;
        }
        sqlite3_finalize(q);
    }
    if (!out && job_items_count(it) != total)
        out = -EIO; /* the job's inputs are not all there */
done:
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    if (out) {
        job_items_free(it);
        if (out != -ENOENT)
            log_error("store: cannot read the inputs of job %llu", (unsigned long long)seq);
        return out;
    }
    *items = it;
    return 0;
}

static int store_sqlite_result_ranges(void *impl, uint64_t seq,
                        int (*fn)(void *arg, uint64_t first, uint32_t n), void *arg)
{
    struct store_sqlite *s = impl;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    int out = 0, rc = sqlite3_prepare_v2(db, "SELECT first, n FROM results WHERE job=?", -1, &st,
                                         NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            if ((out = fn(arg, (uint64_t)sqlite3_column_int64(st, 0),
                          (uint32_t)sqlite3_column_int64(st, 1))) != 0)
                break;
        if (!out && rc != SQLITE_DONE)
            out = -EIO;
    } else {
        out = -EIO;
    }
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return out;
}

static int store_sqlite_results_page(void *impl, uint64_t seq, uint64_t offset, uint64_t limit,
                       struct sbuf *out, uint64_t *next)
{
    struct store_sqlite *s = impl;
    *next = offset;
    if (limit == 0)
        return 0;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    /* Blocks hold at most STORE_BLOCK_ITEMS items: one starting that far
     * before the offset is the earliest that can cover it. */
    int rc = sqlite3_prepare_v2(db,
                                "SELECT first, data FROM results WHERE job=?1 AND first>?2"
                                " AND first<?3 ORDER BY first",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    uint64_t end = offset + limit < offset ? UINT64_MAX : offset + limit;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)offset - (sqlite3_int64)STORE_BLOCK_ITEMS);
    sqlite3_bind_int64(st, 3, end > INT64_MAX ? INT64_MAX : (sqlite3_int64)end);
    uint64_t at = offset;
    int err = 0;
    bool gap = false;
    while (!err && !gap && at < end && (rc = sqlite3_step(st)) == SQLITE_ROW)
        err = store_page_block((uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
                               (size_t)sqlite3_column_bytes(st, 1), offset, end, &at, out, &gap);
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    *next = at;
    return err;
}

static int store_sqlite_results_stream(void *impl, uint64_t seq, uint64_t *cursor, size_t max_bytes,
                         struct sbuf *out)
{
    struct store_sqlite *s = impl;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT rowid, data FROM results WHERE job=? AND rowid>?"
                                " ORDER BY rowid LIMIT 64",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        store_reader_done(s, slot);
        return -EIO;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)*cursor);
    int err = 0;
    while (!err && out->len < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 1), *lens, *texts;
        long n = store_decode_block(b, (size_t)sqlite3_column_bytes(st, 1), &lens, &texts);
        if (n < 0) {
            err = -EIO;
            break;
        }
        for (long k = 0; k < n && !err; k++) {
            uint32_t l;
            memcpy(&l, lens + k * 4, 4);
            err = sbuf_append(out, texts, l);
            if (!err)
                err = sbuf_append(out, "\n", 1);
            texts += l;
        }
        if (!err)
            *cursor = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    store_reader_done(s, slot);
    return err;
}

static int store_sqlite_job_delete(void *impl, uint64_t seq)
{
    struct store_sqlite *s = impl;
    pthread_mutex_lock(&s->wmu);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(s->w, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    static const char *const sql[] = { "DELETE FROM results WHERE job=?",
                                       "DELETE FROM inputs WHERE job=?",
                                       "DELETE FROM job_results WHERE job=?",
                                       /* its event, if any, stays in the outbox
                                          until it is delivered or given up */
                                       "DELETE FROM webhooks WHERE job=?",
                                       "DELETE FROM jobs WHERE seq=?" };
    int changed = 0;
    for (int i = 0; rc == SQLITE_OK && i < (int)(sizeof sql / sizeof sql[0]); i++) {
        rc = sqlite3_prepare_v2(s->w, sql[i], -1, &st, NULL);
        if (rc != SQLITE_OK)
            break;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        changed = sqlite3_changes(s->w);
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->w, "COMMIT", NULL, NULL, NULL);
    int out = 0;
    if (rc != SQLITE_OK) {
        out = store_errno(sqlite3_extended_errcode(s->w));
        sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
        if (!out)
            out = -EIO;
    } else if (changed == 0) {
        out = -ENOENT;
    }
    pthread_mutex_unlock(&s->wmu);
    return out;
}

static void store_sqlite_reclaim_space(void *impl)
{
    struct store_sqlite *s = impl;
    pthread_mutex_lock(&s->wmu);
    /* A few hundred pages per call: never a long stall of the writer. */
    sqlite3_exec(s->w, "PRAGMA incremental_vacuum(512)", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->wmu);
}

static int store_sqlite_put_job_result(void *impl, uint64_t seq, const char *text, size_t len)
{
    struct store_sqlite *s = impl;
    pthread_mutex_lock(&s->wmu);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->w, "INSERT OR REPLACE INTO job_results VALUES(?1, ?2)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        sqlite3_bind_blob64(st, 2, text, len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    int out = 0;
    if (rc != SQLITE_OK) {
        out = store_errno(sqlite3_extended_errcode(s->w));
        if (!out)
            out = -EIO;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->wmu);
    return out;
}

static int store_sqlite_job_result(void *impl, uint64_t seq, struct sbuf *out)
{
    struct store_sqlite *s = impl;
    int slot;
    sqlite3 *db = store_reader(s, &slot);
    if (!db)
        return -EIO;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT data FROM job_results WHERE job=?1", -1, &st, NULL);
    int err = -EIO;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            err = sbuf_append(out, sqlite3_column_blob(st, 0),
                              (size_t)sqlite3_column_bytes(st, 0));
        else if (rc == SQLITE_DONE)
            err = -ENOENT;
        sqlite3_finalize(st);
    }
    store_reader_done(s, slot);
    return err;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .cap_results = store_sqlite_cap_results,
    .close = store_sqlite_close,
    .job_create = store_sqlite_job_create,
    .job_update = store_sqlite_job_update,
    .put_results = store_sqlite_put_results,
    .pending_bytes = store_sqlite_pending_bytes,
    .flush = store_sqlite_flush,
    .jobs_each = store_sqlite_jobs_each,
    .inputs_read = store_sqlite_inputs_read,
    .result_ranges = store_sqlite_result_ranges,
    .results_page = store_sqlite_results_page,
    .results_stream = store_sqlite_results_stream,
    .results_scan = store_sqlite_results_scan,
    .job_delete = store_sqlite_job_delete,
    .put_job_result = store_sqlite_put_job_result,
    .job_result = store_sqlite_job_result,
    .job_get = store_sqlite_job_get,
    .job_get_seq = store_sqlite_job_get_seq,
    .jobs_each_unfinished = store_sqlite_jobs_each_unfinished,
    .jobs_finished_page = store_sqlite_jobs_finished_page,
    .jobs_finished_before = store_sqlite_jobs_finished_before,
    .jobs_count_finished = store_sqlite_jobs_count_finished,
    .results_from = store_sqlite_results_from,
    .reclaim_space = store_sqlite_reclaim_space,
};
