/*
 * store_pg.c: the PostgreSQL backend of store.h (store_backend.h), for
 * --store postgresql://...: connections and their recovery, the schema
 * and its migrations, and every write. Reads are in store_pg_read.c.
 *
 * Schema (in the PostgreSQL schema "batchd", the connections' search_path,
 * so that batchd's tables never meet others in the same database):
 *   schema_version(version)       one row: the version the tables are at
 *   jobs(seq PRIMARY KEY from the sequence job_seq, id UNIQUE, model,
 *        status, counts, times, error, idem_key UNIQUE, request_hash)
 *   inputs(job, block, data, PRIMARY KEY(job, block))
 *   results(id bigserial, job, first, n, data, PRIMARY KEY(job, first))
 *        one row per result block, insert only; id order = the order the
 *        blocks became durable (one writer: see below), the NDJSON stream's
 *        cursor
 *   job_results(job PRIMARY KEY, data)    a stateful job's reduced result
 * Blocks are encoded as in SQLite ([u32 n][u32 len x n][texts], bytea).
 *
 * Versions: batchd creates the tables (version 1) in an empty database and
 * migrates older versions forward, under a transaction-level advisory
 * lock so that replicas starting together do it once; a database at a
 * version newer than this binary knows is refused (store_check: exit 2,
 * both versions named).
 *
 * One engine per database, for now: the writer connection holds a session
 * advisory lock, and a second batchd on the same database is refused at
 * start (docs/scaleout.md: several replicas claim work from shared tables
 * in the next phase; until then two engines would both run the unfinished
 * jobs they recover). A lost writer connection loses the lock with it and
 * takes it again when it reconnects.
 *
 * Durability: synchronous_commit=on, so a COMMIT that returned is on the
 * server's disk: store_job_create's 202 promise holds as with SQLite.
 * Every connection sets statement_timeout and
 * idle_in_transaction_session_timeout, so that a stuck statement or a
 * transaction left open can never hold rows (or the lock) for long.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "service/core/log.h"
#include "service/jobs/items.h"
#include "service/store/store_backend.h"
#include "service/store/store_buffer.h"
#include "service/store/store_pg.h"

#define STORE_PG_SCHEMA 1
#define STORE_PG_READERS 4
/* pg_advisory locks: the migration (per transaction) and the one engine
 * per database (per session of the writer). Arbitrary, fixed numbers. */
#define STORE_PG_MIGRATE_LOCK "7406100001"
#define STORE_PG_ENGINE_LOCK "7406100002"
#define STORE_PG_BACKOFF_MIN_NS 50000000ULL    /* 50 ms */
#define STORE_PG_BACKOFF_MAX_NS 2000000000ULL  /* 2 s */

struct store_pg {
    char *uri;
    uint64_t max_bytes;

    pthread_mutex_t wmu; /* the writer connection */
    PGconn *w;
    bool cap_results;
    int flush_rc; /* the last flush's result (under wmu): a repeated
                     failure is logged once */
    struct store_buffer buf;

    pthread_mutex_t rmu; /* the reader pool */
    pthread_cond_t rcond;
    PGconn *readers[STORE_PG_READERS];
    bool busy[STORE_PG_READERS];

    pthread_mutex_t cmu; /* the reconnection back-off, shared */
    uint64_t retry_at_ns, backoff_ns;
    bool down; /* logged as unreachable; "reachable again" is logged once */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void store_pg_p_i64(struct store_pg_params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[p->n], "%" PRId64, v);
    p->values[p->n] = p->num[p->n];
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void store_pg_p_text(struct store_pg_params *p, const char *s)
{
    p->values[p->n] = s;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void store_pg_p_bytes(struct store_pg_params *p, const void *data, size_t len)
{
    p->values[p->n] = data;
    p->lengths[p->n] = (int)len;
    p->formats[p->n] = 1;
    p->n++;
}

/* The errno of a failed result: the connection is gone (class 08, an
 * administrator's or the server's shutdown of the session), the disk is
 * full, or anything else. */
static int store_pg_errno(PGconn *conn, const PGresult *r)
{
    if (PQstatus(conn) == CONNECTION_BAD)
        return -ENOTCONN;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return -ENOTCONN; /* no answer from the server at all */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        return -ENOTCONN;
    if (strcmp(state, "53100") == 0)
        return -ENOSPC;
    return -EIO;
}

PGresult *store_pg_exec(PGconn *conn, const char *sql, const struct store_pg_params *p,
                        ExecStatusType want, int *err)
{
    PGresult *r = PQexecParams(conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
                               p ? p->lengths : NULL, p ? p->formats : NULL, 1);
    if (r && PQresultStatus(r) == want)
        return r;
    *err = store_pg_errno(conn, r);
    if (*err != -ENOTCONN)
        log_error("store: PostgreSQL: %s: %s", sql, PQerrorMessage(conn));
    PQclear(r);
    return NULL;
}

/* Runs a statement whose result has no rows; 0 or as store_pg_exec. */
static int store_pg_cmd(PGconn *conn, const char *sql, const struct store_pg_params *p)
{
    int err = 0;
    PGresult *r = store_pg_exec(conn, sql, p, PGRES_COMMAND_OK, &err);
    PQclear(r);
    return r ? 0 : err;
}

/* Runs several statements in one simple query (DDL): 0 or as store_pg_exec. */
static int store_pg_script(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        return 0;
    }
    int err = store_pg_errno(conn, r);
    log_error("store: PostgreSQL: %s", PQerrorMessage(conn));
    PQclear(r);
    return err;
}

int64_t store_pg_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t v;
    memcpy(&v, PQgetvalue(r, row, col), 8);
    return (int64_t)be64toh(v);
}

void store_pg_read_job(const PGresult *r, int row, struct store_job *j)
{
    memset(j, 0, sizeof *j);
    j->seq = (uint64_t)store_pg_i64(r, row, 0);
    snprintf(j->id, sizeof j->id, "%s", PQgetvalue(r, row, 1));
    snprintf(j->model, sizeof j->model, "%s", PQgetvalue(r, row, 2));
    j->status = (int)store_pg_i64(r, row, 3);
    j->total = (uint64_t)store_pg_i64(r, row, 4);
    j->done = (uint64_t)store_pg_i64(r, row, 5);
    j->failed = (uint64_t)store_pg_i64(r, row, 6);
    j->cancelled = (uint64_t)store_pg_i64(r, row, 7);
    j->created_ns = (uint64_t)store_pg_i64(r, row, 8);
    j->started_ns = (uint64_t)store_pg_i64(r, row, 9);
    j->finished_ns = (uint64_t)store_pg_i64(r, row, 10);
    j->chunk_size = (uint32_t)store_pg_i64(r, row, 11);
    j->item_timeout_ms = (uint32_t)store_pg_i64(r, row, 12);
    j->max_attempts = (uint32_t)store_pg_i64(r, row, 13);
    snprintf(j->error, sizeof j->error, "%s", PQgetvalue(r, row, 14));
    snprintf(j->idem_key, sizeof j->idem_key, "%s", PQgetvalue(r, row, 15));
    j->request_hash = (uint64_t)store_pg_i64(r, row, 16);
}

/* A new connection to uri with batchd's session settings, or NULL with
 * the reason in err. */
static PGconn *store_pg_connect(const char *uri, char *err, size_t errlen)
{
    /* Later keywords override what the URI says: the settings below are
     * batchd's contract, not the deployment's choice. */
    static const char *const keys[] = { "dbname", "application_name", "connect_timeout",
                                        "keepalives_idle", "keepalives_interval",
                                        "keepalives_count", "options", NULL };
    const char *values[] = { uri, "batchd", "5", "10", "5", "3",
                             "-c search_path=batchd -c statement_timeout=30000"
                             " -c idle_in_transaction_session_timeout=60000"
                             " -c synchronous_commit=on -c client_min_messages=warning",
                             NULL };
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (!c) {
        snprintf(err, errlen, "PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        /* libpq's message ends with a newline; it never holds the password */
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        PQfinish(c);
        return NULL;
    }
    return c;
}

static const char *const store_pg_schema_v1 =
    "CREATE SEQUENCE batchd.job_seq;"
    "CREATE TABLE batchd.jobs("
    " seq bigint PRIMARY KEY, id text NOT NULL UNIQUE, model text NOT NULL,"
    " status bigint NOT NULL, total bigint NOT NULL, done bigint NOT NULL,"
    " failed bigint NOT NULL, cancelled bigint NOT NULL, created_ns bigint NOT NULL,"
    " started_ns bigint NOT NULL, finished_ns bigint NOT NULL, chunk_size bigint NOT NULL,"
    " item_timeout_ms bigint NOT NULL, max_attempts bigint NOT NULL, error text NOT NULL,"
    " idem_key text UNIQUE, request_hash bigint NOT NULL);"
    "CREATE INDEX jobs_unfinished ON batchd.jobs(seq) WHERE finished_ns = 0;"
    "CREATE INDEX jobs_finished_by_status ON batchd.jobs(status, seq) WHERE finished_ns != 0;"
    "CREATE INDEX jobs_finished_at ON batchd.jobs(finished_ns) WHERE finished_ns != 0;"
    "CREATE TABLE batchd.inputs(job bigint NOT NULL, block bigint NOT NULL,"
    " data bytea NOT NULL, PRIMARY KEY(job, block));"
    "CREATE TABLE batchd.results(id bigserial NOT NULL, job bigint NOT NULL,"
    " first bigint NOT NULL, n bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY(job, first));"
    "CREATE INDEX results_in_order ON batchd.results(job, id);"
    "CREATE TABLE batchd.job_results(job bigint PRIMARY KEY, data bytea NOT NULL);"
    "INSERT INTO batchd.schema_version VALUES(1);";

/* Creates the schema in an empty database, migrates an older one, refuses
 * a newer one (-EPROTO), all in one transaction. */
static int store_pg_migrate(PGconn *c, char *err, size_t errlen)
{
    int rc = store_pg_cmd(c, "BEGIN", NULL);
    PGresult *r = NULL;
    if (rc == 0) {
        r = store_pg_exec(c, "SELECT pg_advisory_xact_lock(" STORE_PG_MIGRATE_LOCK ")", NULL,
                          PGRES_TUPLES_OK, &rc);
        PQclear(r);
        r = NULL;
    }
    if (rc == 0)
        rc = store_pg_script(c, "CREATE SCHEMA IF NOT EXISTS batchd;"
                                "CREATE TABLE IF NOT EXISTS batchd.schema_version("
                                "version bigint NOT NULL)");
    int64_t version = 0;
    if (rc == 0) {
        r = store_pg_exec(c, "SELECT coalesce(max(version), 0)::bigint FROM batchd.schema_version",
                          NULL, PGRES_TUPLES_OK, &rc);
        if (r)
            version = store_pg_i64(r, 0, 0);
        PQclear(r);
    }
    if (rc == 0 && version > STORE_PG_SCHEMA) {
        snprintf(err, errlen,
                 "the PostgreSQL store has schema version %" PRId64
                 "; this batchd knows versions up to %d (upgrade batchd)",
                 version, STORE_PG_SCHEMA);
        store_pg_cmd(c, "ROLLBACK", NULL);
        return -EPROTO;
    }
    if (rc == 0 && version == 0)
        rc = store_pg_script(c, store_pg_schema_v1);
    /* (later versions: "if (version < 2) ... UPDATE schema_version", in order) */
    if (rc == 0)
        rc = store_pg_cmd(c, "COMMIT", NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the schema in PostgreSQL: %s", PQerrorMessage(c));
        size_t n = strlen(err);
        while (n && err[n - 1] == '\n')
            err[--n] = '\0';
        store_pg_cmd(c, "ROLLBACK", NULL);
    }
    return rc;
}

/* Takes the one-engine-per-database lock on c (session level). 0, or
 * -EBUSY when another batchd holds it. */
static int store_pg_lock_engine(PGconn *c)
{
    int rc = 0;
    PGresult *r = store_pg_exec(c, "SELECT pg_try_advisory_lock(" STORE_PG_ENGINE_LOCK ")", NULL,
                                PGRES_TUPLES_OK, &rc);
    if (!r)
        return rc;
    bool got = PQgetlength(r, 0, 0) == 1 && PQgetvalue(r, 0, 0)[0] == 1;
    PQclear(r);
    return got ? 0 : -EBUSY;
}

static const char store_pg_busy_text[] =
    "another batchd uses this PostgreSQL database (one batchd per database in this version: "
    "see docs/scaleout.md)";

int store_pg_check(const char *uri, char *err, size_t errlen)
{
    PGconn *c = store_pg_connect(uri, err, errlen);
    if (!c)
        return -EIO;
    int rc = store_pg_migrate(c, err, errlen);
    if (rc == 0 && (rc = store_pg_lock_engine(c)) != 0)
        snprintf(err, errlen, "%s", rc == -EBUSY ? store_pg_busy_text
                                                 : "PostgreSQL: cannot take the engine lock");
    PQfinish(c); /* the session lock goes with the session */
    return rc ? -EIO : 0;
}

/*
 * (Re)opens *conn if it is missing or broken, unless the back-off says to
 * wait: 0, or -ENOTCONN. `writer` also takes the engine lock.
 */
static int store_pg_ensure(struct store_pg *s, PGconn **conn, bool writer)
{
    if (*conn && PQstatus(*conn) == CONNECTION_OK)
        return 0;
    if (*conn) {
        PQfinish(*conn);
        *conn = NULL;
    }
    pthread_mutex_lock(&s->cmu);
    uint64_t now = now_ns();
    if (s->down && s->backoff_ns) {
        if (now < s->retry_at_ns) {
            pthread_mutex_unlock(&s->cmu);
            return -ENOTCONN;
        }
        /* Once a connection attempt has failed (the server is away), one
         * attempt at a time: the others fail fast meanwhile instead of
         * queueing on connect timeouts. Right after a session was lost,
         * every connection tries at once: the server is most likely there. */
        s->retry_at_ns = now + STORE_PG_BACKOFF_MAX_NS;
    }
    pthread_mutex_unlock(&s->cmu);

    char err[512];
    PGconn *c = store_pg_connect(s->uri, err, sizeof err);
    int rc = c ? 0 : -ENOTCONN;
    if (c && writer && (rc = store_pg_lock_engine(c)) != 0) {
        snprintf(err, sizeof err, "%s", rc == -EBUSY ? store_pg_busy_text : PQerrorMessage(c));
        PQfinish(c);
        c = NULL;
        rc = -ENOTCONN;
    }
    pthread_mutex_lock(&s->cmu);
    if (c) {
        if (s->down)
            log_info("store: PostgreSQL is reachable again");
        s->down = false;
        s->backoff_ns = 0;
        s->retry_at_ns = 0;
        *conn = c;
    } else {
        if (!s->down)
            log_error("store: %s; retrying with back-off", err);
        s->down = true;
        s->backoff_ns = s->backoff_ns ? s->backoff_ns * 2 : STORE_PG_BACKOFF_MIN_NS;
        if (s->backoff_ns > STORE_PG_BACKOFF_MAX_NS)
            s->backoff_ns = STORE_PG_BACKOFF_MAX_NS;
        s->retry_at_ns = now_ns() + s->backoff_ns;
    }
    pthread_mutex_unlock(&s->cmu);
    return rc;
}

/* Drops a connection that failed with -ENOTCONN (or is broken): the next
 * use opens a new one. libpq may still call a connection whose session
 * the server ended "OK" until it is used again: the error, not the
 * status, decides. */
static void store_pg_drop(struct store_pg *s, PGconn **c)
{
    if (*c)
        PQfinish(*c);
    *c = NULL;
    pthread_mutex_lock(&s->cmu);
    if (!s->down)
        log_error("store: the PostgreSQL connection was lost; reconnecting");
    s->down = true;
    pthread_mutex_unlock(&s->cmu);
}

/* Ends the writer's failed transaction (wmu held): ROLLBACK, or drops the
 * connection when it is the failure. */
static void store_pg_abort(struct store_pg *s, int rc)
{
    if (!s->w)
        return;
    if (rc == -ENOTCONN || PQstatus(s->w) != CONNECTION_OK ||
        store_pg_cmd(s->w, "ROLLBACK", NULL) == -ENOTCONN)
        store_pg_drop(s, &s->w);
}

PGconn *store_pg_reader(struct store_pg *s, int *slot, int *err)
{
    pthread_mutex_lock(&s->rmu);
    int i;
    for (;;) {
        for (i = 0; i < STORE_PG_READERS && s->busy[i]; i++)
            ;
        if (i < STORE_PG_READERS)
            break;
        pthread_cond_wait(&s->rcond, &s->rmu);
    }
    s->busy[i] = true;
    pthread_mutex_unlock(&s->rmu);
    /* connecting outside rmu: the other readers go on meanwhile */
    int rc = store_pg_ensure(s, &s->readers[i], false);
    if (rc != 0) {
        store_pg_reader_done(s, i, 0);
        *err = rc;
        return NULL;
    }
    *slot = i;
    return s->readers[i];
}

void store_pg_reader_done(struct store_pg *s, int slot, int err)
{
    if (s->readers[slot] && (err == -ENOTCONN || PQstatus(s->readers[slot]) != CONNECTION_OK))
        store_pg_drop(s, &s->readers[slot]);
    pthread_mutex_lock(&s->rmu);
    s->busy[slot] = false;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rmu);
}

static void store_pg_close(void *impl)
{
    struct store_pg *s = impl;
    if (!s)
        return;
    for (int i = 0; i < STORE_PG_READERS; i++)
        if (s->readers[i])
            PQfinish(s->readers[i]);
    if (s->w)
        PQfinish(s->w);
    store_buffer_destroy(&s->buf);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->rcond);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->wmu);
    if (s->uri)
        explicit_bzero(s->uri, strlen(s->uri)); /* may hold a password */
    free(s->uri);
    free(s);
}

void *store_pg_open(const char *uri, uint64_t max_bytes, char *err, size_t errlen)
{
    struct store_pg *s = calloc(1, sizeof *s);
    if (!s || !(s->uri = strdup(uri))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->max_bytes = max_bytes;
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcond, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    store_buffer_init(&s->buf);
    s->w = store_pg_connect(uri, err, errlen);
    if (!s->w || store_pg_migrate(s->w, err, errlen) != 0) {
        store_pg_close(s);
        return NULL;
    }
    /* A process that died a moment ago (the api process this one
     * replaces) may still hold the lock until its server notices: wait a
     * little for it. */
    int rc = -EBUSY;
    for (int i = 0; i < 50 && (rc = store_pg_lock_engine(s->w)) == -EBUSY; i++)
        nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "%s", rc == -EBUSY ? store_pg_busy_text
                                                 : "PostgreSQL: cannot take the engine lock");
        store_pg_close(s);
        return NULL;
    }
    return s;
}

static void store_pg_cap_results(void *impl, bool on)
{
    struct store_pg *s = impl;
    pthread_mutex_lock(&s->wmu);
    s->cap_results = on;
    pthread_mutex_unlock(&s->wmu);
}

/* --max-store-bytes (wmu held, in a transaction): -ENOSPC when batchd's
 * tables (with their indexes and TOAST) are at the cap, else 0. */
static int store_pg_over_cap(struct store_pg *s)
{
    if (!s->max_bytes)
        return 0;
    int rc = 0;
    PGresult *r = store_pg_exec(s->w,
                                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint"
                                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                " WHERE n.nspname = 'batchd' AND c.relkind = 'r'",
                                NULL, PGRES_TUPLES_OK, &rc);
    if (!r)
        return rc;
    int64_t size = store_pg_i64(r, 0, 0);
    PQclear(r);
    return (uint64_t)size >= s->max_bytes ? -ENOSPC : 0;
}

static void store_pg_p_job(struct store_pg_params *p, const struct store_job *j)
{
    store_pg_p_text(p, j->id);                              /* $1 */
    store_pg_p_text(p, j->model);                           /* $2 */
    store_pg_p_i64(p, j->status);                           /* $3 */
    store_pg_p_i64(p, (int64_t)j->total);                   /* $4 */
    store_pg_p_i64(p, (int64_t)j->done);                    /* $5 */
    store_pg_p_i64(p, (int64_t)j->failed);                  /* $6 */
    store_pg_p_i64(p, (int64_t)j->cancelled);               /* $7 */
    store_pg_p_i64(p, (int64_t)j->created_ns);              /* $8 */
    store_pg_p_i64(p, (int64_t)j->started_ns);              /* $9 */
    store_pg_p_i64(p, (int64_t)j->finished_ns);             /* $10 */
    store_pg_p_i64(p, j->chunk_size);                       /* $11 */
    store_pg_p_i64(p, j->item_timeout_ms);                  /* $12 */
    store_pg_p_i64(p, j->max_attempts);                     /* $13 */
    store_pg_p_text(p, j->error);                           /* $14 */
    store_pg_p_text(p, j->idem_key[0] ? j->idem_key : NULL); /* $15 */
    store_pg_p_i64(p, (int64_t)j->request_hash);            /* $16 */
}

/* Writes job's inputs as blocks (in the open transaction). */
static int store_pg_put_inputs(struct store_pg *s, uint64_t seq, const struct job_items *items)
{
    size_t n = job_items_count(items);
    uint32_t *lens = malloc(sizeof *lens * STORE_BLOCK_ITEMS);
    if (!lens)
        return -ENOMEM;
    int rc = 0;
    for (size_t b = 0; rc == 0 && b * STORE_BLOCK_ITEMS < n; b++) {
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
            rc = -ENOMEM;
            break;
        }
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, (int64_t)seq);
        store_pg_p_i64(&p, (int64_t)b);
        store_pg_p_bytes(&p, blob, blen);
        rc = store_pg_cmd(s->w, "INSERT INTO inputs(job, block, data) VALUES($1, $2, $3)", &p);
        free(blob);
    }
    free(lens);
    return rc;
}

/* BEGIN on the writer (wmu held), connecting first if needed. A writer
 * found dead at BEGIN has done nothing yet: it is replaced and BEGIN tried
 * once more, so that a terminated session costs no request. */
static int store_pg_begin(struct store_pg *s)
{
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = store_pg_ensure(s, &s->w, true)) != 0)
            return rc;
        if ((rc = store_pg_cmd(s->w, "BEGIN", NULL)) != -ENOTCONN)
            return rc;
        store_pg_drop(s, &s->w);
    }
    return rc;
}

static int store_pg_job_create(void *impl, struct store_job *job, const struct job_items *items,
                               struct store_job *existing)
{
    struct store_pg *s = impl;
    pthread_mutex_lock(&s->wmu);
    int rc;
    if (job->webhook_url) {
        /* config refuses webhooks with this backend (the outbox is SQLite's) */
        rc = -EINVAL;
        goto out;
    }
    if ((rc = store_pg_begin(s)) != 0)
        goto fail;
    if ((rc = store_pg_over_cap(s)) != 0)
        goto fail;
    /* The idempotency key is UNIQUE: of two creates with the same key, at
     * one replica or two, the second waits for the first to commit and
     * then inserts nothing, and reads the first's row. */
    struct store_pg_params p = { 0 };
    store_pg_p_job(&p, job);
    PGresult *r = store_pg_exec(s->w,
                                "INSERT INTO jobs(id, model, status, total, done, failed,"
                                " cancelled, created_ns, started_ns, finished_ns, chunk_size,"
                                " item_timeout_ms, max_attempts, error, idem_key, request_hash,"
                                " seq) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
                                " $13, $14, $15, $16, nextval('job_seq'))"
                                " ON CONFLICT (idem_key) DO NOTHING RETURNING seq",
                                &p, PGRES_TUPLES_OK, &rc);
    if (!r)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        struct store_pg_params q = { 0 };
        store_pg_p_text(&q, job->idem_key);
        r = store_pg_exec(s->w, "SELECT " STORE_PG_JOB_COLUMNS " FROM jobs WHERE idem_key = $1",
                          &q, PGRES_TUPLES_OK, &rc);
        if (!r)
            goto fail;
        if (PQntuples(r) == 1) {
            if (existing)
                store_pg_read_job(r, 0, existing);
            rc = -EEXIST;
        } else {
            rc = -EIO; /* deleted between the two statements: rare, retried */
        }
        PQclear(r);
        goto fail;
    }
    uint64_t seq = (uint64_t)store_pg_i64(r, 0, 0);
    PQclear(r);
    if ((rc = store_pg_put_inputs(s, seq, items)) != 0)
        goto fail;
    if ((rc = store_pg_cmd(s->w, "COMMIT", NULL)) != 0)
        goto fail;
    job->seq = seq;
    goto out;
fail:
    if (rc != -EEXIST && rc != -ENOTCONN)
        log_error("store: cannot write job %s: %s", job->id, strerror(-rc));
    store_pg_abort(s, rc);
out:
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

static int store_pg_job_update(void *impl, const struct store_job *job)
{
    struct store_pg *s = impl;
    return store_buffer_update(&s->buf, job);
}

static int store_pg_put_results(void *impl, uint64_t seq, uint64_t first, uint32_t n,
                                const char *texts, const uint32_t *lens,
                                const struct store_job *row)
{
    struct store_pg *s = impl;
    return store_buffer_put(&s->buf, seq, first, n, texts, lens, row);
}

static size_t store_pg_pending_bytes(void *impl)
{
    struct store_pg *s = impl;
    return store_buffer_bytes(&s->buf);
}

/* Writes a batch in one transaction (wmu held). */
static int store_pg_write_batch(struct store_pg *s, const struct store_batch *b)
{
    int rc = store_pg_begin(s);
    if (rc == 0 && s->cap_results)
        rc = store_pg_over_cap(s);
    /* ON CONFLICT DO NOTHING: a block is written once whatever happens, so
     * a batch whose COMMIT was sent but never answered (the connection
     * died) can be written again after the reconnection. */
    for (size_t i = 0; rc == 0 && i < b->n_blocks; i++) {
        const struct store_pending_block *pb = &b->blocks[i];
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, (int64_t)pb->seq);
        store_pg_p_i64(&p, (int64_t)pb->first);
        store_pg_p_i64(&p, pb->n);
        store_pg_p_bytes(&p, pb->data, pb->len);
        rc = store_pg_cmd(s->w,
                          "INSERT INTO results(job, first, n, data) VALUES($1, $2, $3, $4)"
                          " ON CONFLICT DO NOTHING",
                          &p);
    }
    for (size_t i = 0; rc == 0 && i < b->n_updates; i++) {
        const struct store_job *j = &b->updates[i];
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, j->status);
        store_pg_p_i64(&p, (int64_t)j->done);
        store_pg_p_i64(&p, (int64_t)j->failed);
        store_pg_p_i64(&p, (int64_t)j->cancelled);
        store_pg_p_i64(&p, (int64_t)j->started_ns);
        store_pg_p_i64(&p, (int64_t)j->finished_ns);
        store_pg_p_text(&p, j->error);
        store_pg_p_i64(&p, (int64_t)j->seq);
        rc = store_pg_cmd(s->w,
                          "UPDATE jobs SET status = $1, done = $2, failed = $3, cancelled = $4,"
                          " started_ns = $5, finished_ns = $6, error = $7 WHERE seq = $8",
                          &p);
    }
    if (rc == 0)
        rc = store_pg_cmd(s->w, "COMMIT", NULL);
    if (rc != 0)
        store_pg_abort(s, rc);
    return rc;
}

static int store_pg_flush(void *impl)
{
    struct store_pg *s = impl;
    pthread_mutex_lock(&s->wmu);
    struct store_batch batch;
    store_buffer_take(&s->buf, &batch);
    if (batch.n_blocks == 0 && batch.n_updates == 0) {
        pthread_mutex_unlock(&s->wmu);
        store_batch_free(&batch);
        return 0;
    }
    int rc = store_pg_write_batch(s, &batch);
    if (rc == 0) {
        s->flush_rc = 0;
        pthread_mutex_unlock(&s->wmu);
        store_batch_free(&batch);
        return 0;
    }
    if (rc != s->flush_rc && rc != -ENOTCONN)
        log_error("store: cannot write results: %s", strerror(-rc));
    s->flush_rc = rc;
    pthread_mutex_unlock(&s->wmu);
    store_buffer_requeue(&s->buf, &batch);
    return rc;
}

static int store_pg_job_delete(void *impl, uint64_t seq)
{
    struct store_pg *s = impl;
    pthread_mutex_lock(&s->wmu);
    int rc = store_pg_begin(s);
    static const char *const sql[] = { "DELETE FROM results WHERE job = $1",
                                       "DELETE FROM inputs WHERE job = $1",
                                       "DELETE FROM job_results WHERE job = $1",
                                       "DELETE FROM jobs WHERE seq = $1" };
    bool deleted = false;
    for (size_t i = 0; rc == 0 && i < sizeof sql / sizeof sql[0]; i++) {
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, (int64_t)seq);
        PGresult *r = store_pg_exec(s->w, sql[i], &p, PGRES_COMMAND_OK, &rc);
        if (r)
            deleted = strcmp(PQcmdTuples(r), "0") != 0;
        PQclear(r);
    }
    if (rc == 0)
        rc = store_pg_cmd(s->w, "COMMIT", NULL);
    if (rc != 0)
        store_pg_abort(s, rc);
    pthread_mutex_unlock(&s->wmu);
    return rc ? rc : deleted ? 0 : -ENOENT;
}

static void store_pg_reclaim_space(void *impl)
{
    (void)impl; /* autovacuum's work in PostgreSQL */
}

static int store_pg_put_job_result(void *impl, uint64_t seq, const char *text, size_t len)
{
    struct store_pg *s = impl;
    pthread_mutex_lock(&s->wmu);
    int rc = store_pg_ensure(s, &s->w, true);
    if (rc == 0) {
        struct store_pg_params p = { 0 };
        store_pg_p_i64(&p, (int64_t)seq);
        store_pg_p_bytes(&p, text, len);
        rc = store_pg_cmd(s->w,
                          "INSERT INTO job_results(job, data) VALUES($1, $2)"
                          " ON CONFLICT (job) DO UPDATE SET data = excluded.data",
                          &p);
        if (rc == -ENOTCONN)
            store_pg_drop(s, &s->w);
    }
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

const struct store_ops store_pg_ops = {
    .name = "postgresql",
    .cap_results = store_pg_cap_results,
    .close = store_pg_close,
    .job_create = store_pg_job_create,
    .job_update = store_pg_job_update,
    .put_results = store_pg_put_results,
    .pending_bytes = store_pg_pending_bytes,
    .flush = store_pg_flush,
    .jobs_each = store_pg_jobs_each,
    .inputs_read = store_pg_inputs_read,
    .result_ranges = store_pg_result_ranges,
    .results_page = store_pg_results_page,
    .results_stream = store_pg_results_stream,
    .results_scan = store_pg_results_scan,
    .job_delete = store_pg_job_delete,
    .put_job_result = store_pg_put_job_result,
    .job_result = store_pg_job_result,
    .job_get = store_pg_job_get,
    .job_get_seq = store_pg_job_get_seq,
    .jobs_each_unfinished = store_pg_jobs_each_unfinished,
    .jobs_finished_page = store_pg_jobs_finished_page,
    .jobs_finished_before = store_pg_jobs_finished_before,
    .jobs_count_finished = store_pg_jobs_count_finished,
    .results_from = store_pg_results_from,
    .reclaim_space = store_pg_reclaim_space,
};
