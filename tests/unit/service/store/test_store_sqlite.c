/*
 * Unit tests of service/store/store_sqlite.c, the durable store, against a
 * temporary directory and the real SQLite (no mocks). The same cases run
 * against PostgreSQL when BATCHD_TEST_PG names one (make test-pg: the
 * store conformance suite, store_test_backend.h), except those about
 * SQLite's file (marked "SQLite only"):
 *
 *   - store_open creates the schema; store_check accepts a fresh directory
 *     and refuses, with -EIO and a one-line reason, a directory that cannot
 *     be used, a corrupt batchd.db, another application's SQLite database
 *     and a newer schema version (each time leaving the file as it was);
 *   - jobs, inputs (10,000 items over several blocks) and results round
 *     trip; an Idempotency-Key is used once; results are paged in index
 *     order, a gap ends a page, streams follow the order of durability;
 *   - a full store (--max-store-bytes, store_open's max_bytes) fails a
 *     write with -ENOSPC and shows nothing of it; a failed flush keeps its
 *     buffer, and the next flush with room writes it, newest update last;
 *   - job_delete removes every row of a job; reclaim gives pages back;
 *   - a reader pages through a job while the writer flushes.
 *
 * Why a path under a regular FILE stands for "not usable": these tests run
 * as root in CI, and root ignores permission bits (CAP_DAC_OVERRIDE), so a
 * chmod 0555 directory is writable to it. A path whose parent is a regular
 * file fails for everyone at path resolution (ENOTDIR), before any
 * permission check; the chmod case runs too, but only when not root.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <libpq-fe.h>

#include "service/jobs/engine.h"
#include "service/core/sbuf.h"
#include "service/store/store.h"
#include "tests/unit/service/store/store_test_backend.h"

/* ----------------------------------------------------------------- helpers */

struct fixture {
    char dir[64];
    char db[128];
    struct store *s;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir)
{
    /* a test may have made a directory read-only: make it removable */
    chmod(dir, 0700);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory, no store open. */
static int setup_dir(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/%s", f->dir, STORE_FILE);
    test_store_reset();
    *state = f;
    return 0;
}

/* A fresh directory with an open store (no size cap). */
static int setup_store(void **state)
{
    setup_dir(state);
    struct fixture *f = *state;
    char err[512] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    if (!f->s)
        fail_msg("store_open(%s): %s", f->dir, err);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    rm_tree(f->dir);
    free(f);
    return 0;
}

/* Runs SQL on the database file through its own connection. */
static void raw_exec(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    sqlite3_busy_timeout(c, 10000);
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_close(c);
}

/* The first column of the first row as an integer (through its own
 * read-only connection); -1 when there is no row. */
static long long raw_int(const char *db, const char *sql)
{
    if (test_store_where()) {
        /* the same question to PostgreSQL, in batchd's schema */
        PGconn *pc = PQconnectdb(test_store_where());
        assert_int_equal(PQstatus(pc), CONNECTION_OK);
        PQclear(PQexec(pc, "SET search_path=batchd"));
        PGresult *r = PQexec(pc, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(pc));
        long long v = PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        PQfinish(pc);
        return v;
    }
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(c, 10000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(c));
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return v;
}

/* The first column of the first row as text, into out ("" when none). */
static void raw_text(const char *db, const char *sql, char *out, size_t outlen)
{
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(c));
    out[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(c);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Reads a whole file (new; caller frees); *len its size. */
static unsigned char *slurp(const char *path, size_t *len)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    unsigned char *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* Sends stderr (where log lines go) to a new temp file until
 * stderr_restore(); returns the saved descriptor. */
static int stderr_capture(const char *path)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static void stderr_restore(int saved)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
}

/* How many times `needle` occurs in the file at path. */
static int count_in_file(const char *path, const char *needle)
{
    size_t len;
    unsigned char *b = slurp(path, &len);
    b[len] = '\0';
    int n = 0;
    for (const char *p = (const char *)b; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(b);
    return n;
}

/* A deterministic pseudo-random sequence (xorshift64). */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A job row with every field set to something recognisable. */
static void make_job(struct store_job *j, unsigned k, const char *idem)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "job%023u", k); /* 26 characters */
    snprintf(j->model, sizeof j->model, "model-%u", k);
    j->status = JOB_QUEUED;
    j->total = 1;
    j->created_ns = 1700000000000000000ull + k;
    j->chunk_size = 16;
    j->item_timeout_ms = 500;
    j->max_attempts = 3;
    snprintf(j->idem_key, sizeof j->idem_key, "%s", idem ? idem : "");
    j->request_hash = 0x1234u + k;
}

/* Items "[i,\"xxx…\"]" of varying lengths (every 97th one long). */
static struct job_items *make_items(size_t n, size_t pad)
{
    struct job_items *it = job_items_new();
    assert_non_null(it);
    char *buf = malloc(pad + 4096 + 64);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        size_t extra = pad + (i % 97 == 0 ? 4000 : i % 13);
        int len = snprintf(buf, 64, "[%zu,\"", i);
        memset(buf + len, 'a' + (char)(i % 26), extra);
        len += (int)extra;
        buf[len++] = '"';
        buf[len++] = ']';
        assert_int_equal(job_items_append(it, buf, (size_t)len), 0);
    }
    free(buf);
    return it;
}

/* Creates a job of n items; returns its seq. */
static uint64_t create_job(struct store *s, unsigned k, size_t n, size_t pad)
{
    struct store_job j;
    make_job(&j, k, NULL);
    j.total = n;
    struct job_items *it = make_items(n, pad);
    assert_int_equal(store_job_create(s, &j, it, NULL), 0);
    job_items_free(it);
    assert_true(j.seq > 0);
    return j.seq;
}

/* The Result text of item i in these tests. */
static int result_text(char *buf, size_t len, uint64_t i)
{
    return snprintf(buf, len, "{\"index\":%llu,\"output\":%llu}", (unsigned long long)i,
                    (unsigned long long)(i * 7 + 1));
}

/* Buffers results [first, first+n) of job seq. */
static void put_range(struct store *s, uint64_t seq, uint64_t first, uint32_t n)
{
    struct sbuf texts = SBUF_INIT;
    uint32_t *lens = calloc(n ? n : 1, sizeof *lens);
    assert_non_null(lens);
    for (uint32_t k = 0; k < n; k++) {
        char t[96];
        int l = result_text(t, sizeof t, first + k);
        assert_int_equal(sbuf_append(&texts, t, (size_t)l), 0);
        lens[k] = (uint32_t)l;
    }
    assert_int_equal(store_put_results(s, seq, first, n, texts.data ? texts.data : "", lens, NULL), 0);
    sbuf_free(&texts);
    free(lens);
}

/* The expected page text for items [from, to): Result texts joined by ','. */
static char *expect_page(uint64_t from, uint64_t to)
{
    struct sbuf b = SBUF_INIT;
    for (uint64_t i = from; i < to; i++) {
        char t[96];
        int l = result_text(t, sizeof t, i);
        if (i > from)
            sbuf_append(&b, ",", 1);
        sbuf_append(&b, t, (size_t)l);
    }
    sbuf_puts(&b, "");
    return sbuf_steal(&b);
}

/* Asserts that page (offset, limit) of job seq is exactly items [offset,
 * want_next) and that *next == want_next. */
static void check_page(struct store *s, uint64_t seq, uint64_t offset, uint64_t limit,
                       uint64_t want_next)
{
    struct sbuf out = SBUF_INIT;
    uint64_t next = 12345678;
    assert_int_equal(store_results_page(s, seq, offset, limit, &out, &next), 0);
    char *want = expect_page(offset, want_next);
    if (next != want_next || strcmp(out.data ? out.data : "", want) != 0)
        fail_msg("page(offset %llu, limit %llu): next %llu (want %llu), text \"%.200s\" "
                 "(want \"%.200s\")",
                 (unsigned long long)offset, (unsigned long long)limit, (unsigned long long)next,
                 (unsigned long long)want_next, out.data ? out.data : "", want);
    free(want);
    sbuf_free(&out);
}

struct collect {
    struct store_job jobs[16];
    int n;
    int stop_after; /* 0 = never */
};

static int collect_job(void *arg, const struct store_job *j)
{
    struct collect *c = arg;
    if (c->n < 16)
        c->jobs[c->n] = *j;
    c->n++;
    return c->stop_after && c->n >= c->stop_after ? 42 : 0;
}

static int count_jobs(struct store *s)
{
    struct collect c = { .n = 0 };
    assert_int_equal(store_jobs_each(s, collect_job, &c), 0);
    return c.n;
}

static void assert_job_equal(const struct store_job *a, const struct store_job *b)
{
    assert_int_equal(a->seq, b->seq);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->failed, b->failed);
    assert_int_equal(a->cancelled, b->cancelled);
    assert_int_equal(a->created_ns, b->created_ns);
    assert_int_equal(a->started_ns, b->started_ns);
    assert_int_equal(a->finished_ns, b->finished_ns);
    assert_int_equal(a->chunk_size, b->chunk_size);
    assert_int_equal(a->item_timeout_ms, b->item_timeout_ms);
    assert_int_equal(a->max_attempts, b->max_attempts);
    assert_string_equal(a->error, b->error);
    assert_string_equal(a->idem_key, b->idem_key);
    assert_int_equal(a->request_hash, b->request_hash);
}

/* ---------------------------------------------------------- open and check */

static void test_open_creates_schema(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char buf[64];
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                                    "name IN ('meta','jobs','inputs','results')"),
                     4);
    raw_text(f->db, "SELECT value FROM meta WHERE key='app'", buf, sizeof buf);
    assert_string_equal(buf, "batchd");
    raw_text(f->db, "SELECT value FROM meta WHERE key='schema'", buf, sizeof buf);
    assert_string_equal(buf, "1");
    raw_text(f->db, "PRAGMA journal_mode", buf, sizeof buf);
    assert_string_equal(buf, "wal");
    /* incremental auto-vacuum, so that store_reclaim_space can give pages back */
    assert_int_equal(raw_int(f->db, "PRAGMA auto_vacuum"), 2);
    /* opening again is fine and changes nothing */
    char err[256] = "";
    struct store *again = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(again);
    store_close(again);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM meta"), 2);
    store_close(NULL); /* NULL is fine */
}

static void test_check_fresh_dir(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char err[256] = "";
    assert_int_equal(store_check(NULL, f->dir, err, sizeof err), 0);
    assert_int_equal(access(f->db, F_OK), 0);
    /* again, and then open: the checked database is the one used */
    assert_int_equal(store_check(NULL, f->dir, err, sizeof err), 0);
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    assert_int_equal(count_jobs(f->s), 0);
    /* a zero-byte batchd.db is an empty database, not a corrupt one */
    store_close(f->s);
    f->s = NULL;
    unlink(f->db);
    write_file(f->db, "", 0);
    assert_int_equal(store_check(NULL, f->dir, err, sizeof err), 0);
}

/* store_check and store_open both refuse dir, with -EIO/NULL and a reason
 * holding `needle` on one line. */
static void assert_refused(const char *dir, const char *needle)
{
    char err[512] = "";
    int rc = store_check(NULL, dir, err, sizeof err);
    if (rc != -EIO || strstr(err, needle) == NULL || strchr(err, '\n') != NULL)
        fail_msg("store_check(%s): %d \"%s\", want -EIO naming \"%s\"", dir, rc, err, needle);
    err[0] = '\0';
    struct store *s = store_open(NULL, dir, 0, err, sizeof err);
    if (s != NULL || strstr(err, needle) == NULL)
        fail_msg("store_open(%s): %p \"%s\", want NULL naming \"%s\"", dir, (void *)s, err,
                 needle);
    store_close(s);
}

static void test_check_missing_dir(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char dir[160];
    snprintf(dir, sizeof dir, "%s/no/such/dir", f->dir);
    assert_refused(dir, "No such file or directory");
    assert_refused(dir, dir); /* the reason names the directory */
}

static void test_check_unusable_dir(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char file[160], dir[200];
    /* A data dir under a regular file: ENOTDIR for root too. */
    snprintf(file, sizeof file, "%s/plainfile", f->dir);
    write_file(file, "x", 1);
    snprintf(dir, sizeof dir, "%s/data", file);
    assert_refused(dir, "Not a directory");
    /* The data dir itself is a regular file. */
    assert_refused(file, "is not a directory");
    /* batchd.db is a directory: SQLite cannot open it, whoever we are. */
    char sub[160];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    char dbdir[200];
    snprintf(dbdir, sizeof dbdir, "%s/%s", sub, STORE_FILE);
    assert_int_equal(mkdir(dbdir, 0700), 0);
    assert_refused(sub, STORE_FILE);
    /* Permission bits bind only a non-root user (root has CAP_DAC_OVERRIDE). */
    if (geteuid() != 0) {
        char ro[160];
        snprintf(ro, sizeof ro, "%s/readonly", f->dir);
        assert_int_equal(mkdir(ro, 0500), 0);
        assert_refused(ro, "not writable");
        chmod(ro, 0700);
    } else {
        print_message("note: running as root: the chmod 0500 case is left out (root "
                      "ignores permission bits); the cases above fail for root too\n");
    }
}

static void test_check_corrupt_db(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    unsigned char junk[64 * 1024];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof junk; i += 8) {
        uint64_t v = rng_next(&x);
        memcpy(junk + i, &v, 8);
    }
    write_file(f->db, junk, sizeof junk);
    assert_refused(f->dir, "is not a usable SQLite database");
    assert_refused(f->dir, f->db); /* names the file */
    /* The file is left as it was: a refused store is never "repaired". */
    size_t len;
    unsigned char *after = slurp(f->db, &len);
    assert_int_equal(len, sizeof junk);
    assert_memory_equal(after, junk, sizeof junk);
    free(after);
}

/* A real database whose pages past the first were overwritten. */
static void test_check_corrupt_pages(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    create_job(f->s, 1, 3000, 50);
    store_close(f->s); /* checkpoints the WAL into the file */
    f->s = NULL;
    size_t len;
    unsigned char *b = slurp(f->db, &len);
    assert_true(len > 16 * 4096);
    for (size_t i = 2 * 4096; i < len; i += 4096)
        memset(b + i, 0xa5, 4096); /* every page but the first two */
    write_file(f->db, b, len);
    free(b);
    assert_refused(f->dir, "is not a usable SQLite database");
}

static void test_check_other_app_db(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    raw_exec(f->db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
                    "INSERT INTO users VALUES(1, 'ann');");
    assert_refused(f->dir, "not batchd's");
    /* left alone: no batchd table was added */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);

    /* another app that happens to have a meta table */
    unlink(f->db);
    raw_exec(f->db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                    "INSERT INTO meta VALUES('app', 'otherapp'), ('schema', '1');");
    assert_refused(f->dir, "not batchd's");
}

static void test_check_newer_schema(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    create_job(f->s, 1, 3, 0);
    store_close(f->s);
    f->s = NULL;
    raw_exec(f->db, "UPDATE meta SET value='2' WHERE key='schema'");
    assert_refused(f->dir, "schema version 2");
    /* and the version was not rewritten */
    char buf[16];
    raw_text(f->db, "SELECT value FROM meta WHERE key='schema'", buf, sizeof buf);
    assert_string_equal(buf, "2");
}

/* ----------------------------------------------------------------- jobs */

static void test_job_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct store_job a, b;
    make_job(&a, 1, NULL);
    /* every field at an edge of its type */
    snprintf(a.model, sizeof a.model, "%.*s", 63,
             "m123456789012345678901234567890123456789012345678901234567890123456789");
    a.status = JOB_FAILED;
    a.total = 2;
    a.done = 1;
    a.failed = 1;
    a.cancelled = 0;
    a.created_ns = UINT64_C(0x7fffffffffffff00);
    a.started_ns = UINT64_C(1700000000123456789);
    a.finished_ns = UINT64_C(1700000000987654321);
    a.chunk_size = UINT32_MAX;
    a.item_timeout_ms = 86400000;
    a.max_attempts = 100;
    memset(a.error, 'e', sizeof a.error - 1);
    a.error[sizeof a.error - 1] = '\0';
    a.error[0] = '"';
    a.error[1] = '\'';
    memset(a.idem_key, 'K', sizeof a.idem_key - 1); /* 128 characters */
    a.idem_key[sizeof a.idem_key - 1] = '\0';
    a.request_hash = UINT64_C(0xfedcba9876543210); /* past INT64_MAX */
    struct job_items *it = make_items(2, 0);
    assert_int_equal(store_job_create(f->s, &a, it, NULL), 0);
    assert_int_equal(a.seq, 1);

    make_job(&b, 2, NULL); /* defaults: "" error, no key, zero counts */
    b.cancelled = 7;
    b.status = JOB_CANCELLED;
    assert_int_equal(store_job_create(f->s, &b, it, NULL), 0);
    assert_int_equal(b.seq, 2);
    job_items_free(it);

    struct collect c = { .n = 0 };
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.n, 2);
    assert_job_equal(&c.jobs[0], &a); /* oldest first */
    assert_job_equal(&c.jobs[1], &b);

    /* fn's non-zero value stops the walk and is returned */
    struct collect stop = { .n = 0, .stop_after = 1 };
    assert_int_equal(store_jobs_each(f->s, collect_job, &stop), 42);
    assert_int_equal(stop.n, 1);

    /* it is on disk: a new store on the directory sees the same */
    store_close(f->s);
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.n, 2);
    assert_job_equal(&c.jobs[0], &a);
    assert_job_equal(&c.jobs[1], &b);
}

static void test_inputs_roundtrip(void **state)
{
    struct fixture *f = *state;
    enum { N = 10000 }; /* three blocks of at most 4096 items */
    struct job_items *it = make_items(N, 20);
    struct store_job j;
    make_job(&j, 1, NULL);
    j.total = N;
    assert_int_equal(store_job_create(f->s, &j, it, NULL), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM inputs"), 3);

    struct job_items *back = NULL;
    assert_int_equal(store_inputs_read(f->s, j.seq, N, &back), 0);
    assert_non_null(back);
    assert_int_equal(job_items_count(back), N);
    for (size_t i = 0; i < N; i++) {
        size_t la, lb;
        const char *pa = job_items_get(it, i, &la);
        const char *pb = job_items_get(back, i, &lb);
        if (la != lb || memcmp(pa, pb, la) != 0)
            fail_msg("item %zu differs: %zu bytes \"%.40s\" vs %zu bytes \"%.40s\"", i, la, pa,
                     lb, pb);
    }
    job_items_free(back);

    /* exactly at the block boundary: 4096 and 4097 items */
    for (size_t n = 4096; n <= 4097; n++) {
        struct job_items *edge = make_items(n, 0);
        struct store_job e;
        make_job(&e, (unsigned)n, NULL);
        e.total = n;
        assert_int_equal(store_job_create(f->s, &e, edge, NULL), 0);
        back = NULL;
        assert_int_equal(store_inputs_read(f->s, e.seq, n, &back), 0);
        assert_int_equal(job_items_count(back), n);
        size_t la, lb;
        const char *pa = job_items_get(edge, n - 1, &la);
        const char *pb = job_items_get(back, n - 1, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(pa, pb, la);
        job_items_free(back);
        job_items_free(edge);
    }

    /* a count that does not match what is stored is an error, not a
     * short list (back is poisoned: it must come back NULL) */
    back = (struct job_items *)&back;
    assert_int_equal(store_inputs_read(f->s, j.seq, N + 1, &back), -EIO);
    assert_null(back);
    job_items_free(it);
}

static void test_inputs_unknown_job(void **state)
{
    struct fixture *f = *state;
    struct job_items *back = (struct job_items *)&back; /* poisoned */
    /* store.h: -ENOENT for a job that is not there */
    assert_int_equal(store_inputs_read(f->s, 999, 5, &back), -ENOENT);
    assert_null(back);
}

static void test_idempotency_key_reuse(void **state)
{
    struct fixture *f = *state;
    struct store_job a, b, existing;
    make_job(&a, 1, "key-1");
    a.request_hash = 0xabcdef;
    struct job_items *it = make_items(3, 0);
    assert_int_equal(store_job_create(f->s, &a, it, NULL), 0);

    make_job(&b, 2, "key-1"); /* another id, another request, same key */
    memset(&existing, 0, sizeof existing);
    assert_int_equal(store_job_create(f->s, &b, it, &existing), -EEXIST);
    assert_job_equal(&existing, &a);
    /* NULL existing is fine too */
    assert_int_equal(store_job_create(f->s, &b, it, NULL), -EEXIST);
    /* nothing of b was written */
    assert_int_equal(count_jobs(f->s), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM inputs"), 1);

    /* jobs without a key never collide; another key is another job */
    struct store_job c, d, e;
    make_job(&c, 3, NULL);
    make_job(&d, 4, NULL);
    make_job(&e, 5, "key-2");
    assert_int_equal(store_job_create(f->s, &c, it, NULL), 0);
    assert_int_equal(store_job_create(f->s, &d, it, NULL), 0);
    assert_int_equal(store_job_create(f->s, &e, it, NULL), 0);
    assert_int_equal(count_jobs(f->s), 4);

    /* keys are durable: a new store on the directory still refuses */
    store_close(f->s);
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    memset(&existing, 0, sizeof existing);
    assert_int_equal(store_job_create(f->s, &b, it, &existing), -EEXIST);
    assert_job_equal(&existing, &a);

    /* once the job is deleted, its key is free again */
    assert_int_equal(store_job_delete(f->s, a.seq), 0);
    assert_int_equal(store_job_create(f->s, &b, it, NULL), 0);
    job_items_free(it);
}

static void test_job_update_after_flush(void **state)
{
    struct fixture *f = *state;
    struct store_job j;
    make_job(&j, 1, "k");
    j.total = 10;
    struct job_items *it = make_items(10, 0);
    assert_int_equal(store_job_create(f->s, &j, it, NULL), 0);
    job_items_free(it);
    struct store_job orig = j;

    struct store_job u = j;
    u.status = JOB_RUNNING;
    u.done = 3;
    u.started_ns = 1700000000555000000ull;
    assert_int_equal(store_job_update(f->s, &u), 0);
    /* buffered only: not visible yet */
    struct collect c = { .n = 0 };
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_job_equal(&c.jobs[0], &orig);

    /* a second update of the same job before the flush: the newest wins */
    struct store_job v = u;
    v.status = JOB_SUCCEEDED;
    v.done = 9;
    v.failed = 1;
    v.cancelled = 0;
    v.finished_ns = 1700000000777000000ull;
    snprintf(v.error, sizeof v.error, "%s", "");
    assert_int_equal(store_job_update(f->s, &v), 0);
    assert_int_equal(store_flush(f->s), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.n, 1);
    assert_job_equal(&c.jobs[0], &v);

    /* an update only changes the mutable fields: id, model, total, the
     * options, the key and the hash stay as created */
    struct store_job w = v;
    w.status = JOB_FAILED;
    snprintf(w.error, sizeof w.error, "model gone");
    w.cancelled = 2;
    snprintf(w.model, sizeof w.model, "other");
    w.total = 99;
    w.chunk_size = 1;
    assert_int_equal(store_job_update(f->s, &w), 0);
    assert_int_equal(store_flush(f->s), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.jobs[0].status, JOB_FAILED);
    assert_string_equal(c.jobs[0].error, "model gone");
    assert_int_equal(c.jobs[0].cancelled, 2);
    assert_string_equal(c.jobs[0].model, orig.model);
    assert_int_equal(c.jobs[0].total, orig.total);
    assert_int_equal(c.jobs[0].chunk_size, orig.chunk_size);
    assert_string_equal(c.jobs[0].idem_key, "k");

    /* an empty flush is a no-op */
    assert_int_equal(store_flush(f->s), 0);
}

/* -------------------------------------------------------------- results */

/* What store_result_ranges reported. */
struct ranges {
    uint64_t first[16];
    uint32_t n[16];
    int count;
};

static int ranges_fn(void *arg, uint64_t first, uint32_t n)
{
    struct ranges *r = arg;
    if (r->count < 16) {
        r->first[r->count] = first;
        r->n[r->count] = n;
    }
    r->count++;
    return 0;
}

static void test_results_page(void **state)
{
    struct fixture *f = *state;
    uint64_t seq = create_job(f->s, 1, 200, 0);

    /* written out of order, in two flushes */
    put_range(f->s, seq, 100, 50);
    put_range(f->s, seq, 0, 40);
    assert_true(store_pending_bytes(f->s) > 0);
    /* not durable yet: not shown */
    check_page(f->s, seq, 0, 1000, 0);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(store_pending_bytes(f->s), 0);
    put_range(f->s, seq, 40, 60);
    assert_int_equal(store_flush(f->s), 0);
    /* [0,150) is there, [150,200) is not */

    check_page(f->s, seq, 0, 1000, 150);   /* in index order; stops at the gap */
    check_page(f->s, seq, 0, 150, 150);
    check_page(f->s, seq, 5, 3, 8);        /* offset inside a block */
    check_page(f->s, seq, 35, 10, 45);     /* limit across two blocks */
    check_page(f->s, seq, 30, 100, 130);   /* across three blocks */
    check_page(f->s, seq, 99, 2, 101);     /* the last of one, the first of the next */
    check_page(f->s, seq, 149, 10, 150);   /* the last result */
    check_page(f->s, seq, 150, 10, 150);   /* at the gap: nothing */
    check_page(f->s, seq, 1000, 10, 1000); /* past everything */
    check_page(f->s, seq, 7, 0, 7);        /* limit 0 */
    check_page(f->s, seq, 0, UINT64_MAX, 150); /* offset + limit overflows */

    /* a gap in the middle */
    put_range(f->s, seq, 160, 20);
    assert_int_equal(store_flush(f->s), 0);
    check_page(f->s, seq, 140, 100, 150);
    check_page(f->s, seq, 155, 100, 155);
    check_page(f->s, seq, 160, 100, 180);
    check_page(f->s, seq, 170, 5, 175);

    /* another job's results never show */
    uint64_t other = create_job(f->s, 2, 200, 0);
    check_page(f->s, other, 0, 100, 0);

    /* store_result_ranges lists the durable blocks */
    struct ranges r = { .count = 0 };
    assert_int_equal(store_result_ranges(f->s, seq, ranges_fn, &r), 0);
    uint64_t covered = 0;
    for (int i = 0; i < r.count; i++)
        covered += r.n[i];
    assert_int_equal(r.count, 4);
    assert_int_equal(covered, 170);
}

static void test_results_page_big_blocks(void **state)
{
    struct fixture *f = *state;
    /* blocks of the largest size (4096 items): an offset deep inside one */
    uint64_t seq = create_job(f->s, 1, 12288, 0);
    put_range(f->s, seq, 0, 4096);
    put_range(f->s, seq, 4096, 4096);
    put_range(f->s, seq, 8192, 4096);
    assert_int_equal(store_flush(f->s), 0);
    check_page(f->s, seq, 4095, 1, 4096);
    check_page(f->s, seq, 4095, 2, 4097);
    check_page(f->s, seq, 8191, 4097, 12288);
    check_page(f->s, seq, 12287, 10, 12288);
    check_page(f->s, seq, 0, 12288, 12288);
}

static void test_results_page_buffer_cap(void **state)
{
    struct fixture *f = *state;
    uint64_t seq = create_job(f->s, 1, 100, 0);
    put_range(f->s, seq, 0, 100);
    assert_int_equal(store_flush(f->s), 0);
    struct sbuf out = SBUF_INIT;
    sbuf_set_limit(&out, 100);
    uint64_t next = 0;
    assert_int_equal(store_results_page(f->s, seq, 0, 100, &out, &next), -E2BIG);
    assert_true(next < 100);
    assert_true(out.len <= 100);
    sbuf_free(&out);
}

static void test_results_stream(void **state)
{
    struct fixture *f = *state;
    uint64_t seq = create_job(f->s, 1, 1000, 0);
    uint64_t other = create_job(f->s, 2, 1000, 0);
    /* durability order: [10,20), [0,10), other's [0,5), [20,25) */
    put_range(f->s, seq, 10, 10);
    put_range(f->s, seq, 0, 10);
    put_range(f->s, other, 0, 5);
    assert_int_equal(store_flush(f->s), 0);
    put_range(f->s, seq, 20, 5);
    assert_int_equal(store_flush(f->s), 0);

    /* max_bytes 1: one whole block per call */
    uint64_t cursor = 0;
    struct sbuf out = SBUF_INIT;
    uint64_t want_firsts[] = { 10, 0, 20 };
    uint32_t want_ns[] = { 10, 10, 5 };
    for (int b = 0; b < 3; b++) {
        sbuf_reset(&out);
        uint64_t before = cursor;
        assert_int_equal(store_results_stream(f->s, seq, &cursor, 1, &out), 0);
        assert_true(cursor > before);
        struct sbuf want = SBUF_INIT;
        for (uint32_t k = 0; k < want_ns[b]; k++) {
            char t[96];
            int l = result_text(t, sizeof t, want_firsts[b] + k);
            sbuf_append(&want, t, (size_t)l);
            sbuf_append(&want, "\n", 1);
        }
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, want.len);
        sbuf_free(&want);
    }
    /* the end: nothing more, cursor unchanged */
    sbuf_reset(&out);
    uint64_t at_end = cursor;
    assert_int_equal(store_results_stream(f->s, seq, &cursor, 1 << 20, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(cursor, at_end);
    /* a block written later continues from the cursor */
    put_range(f->s, seq, 25, 1);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(store_results_stream(f->s, seq, &cursor, 1 << 20, &out), 0);
    char t[96];
    int l = result_text(t, sizeof t, 25);
    assert_int_equal(out.len, (size_t)l + 1);
    assert_memory_equal(out.data, t, (size_t)l);

    /* 100 blocks, a large max_bytes: whole lines, every block once, in
     * order, over a few calls */
    uint64_t many = create_job(f->s, 3, 1000, 0);
    for (uint64_t b = 0; b < 100; b++)
        put_range(f->s, many, (99 - b) * 10, 10); /* written backwards */
    assert_int_equal(store_flush(f->s), 0);
    cursor = 0;
    sbuf_reset(&out);
    int calls = 0;
    for (; calls < 100; calls++) {
        size_t before = out.len;
        assert_int_equal(store_results_stream(f->s, many, &cursor, 1 << 30, &out), 0);
        if (out.len == before)
            break;
    }
    assert_true(calls >= 2); /* a call reads a bounded number of blocks */
    /* lines: indices 990..999, 980..989, ... 0..9 */
    const char *p = out.data;
    for (uint64_t b = 0; b < 100; b++) {
        for (uint64_t k = 0; k < 10; k++) {
            uint64_t i = (99 - b) * 10 + k;
            char line[96];
            int ll = result_text(line, sizeof line, i);
            line[ll++] = '\n';
            if (strncmp(p, line, (size_t)ll) != 0)
                fail_msg("stream line for index %llu: \"%.60s\"", (unsigned long long)i, p);
            p += ll;
        }
    }
    assert_int_equal((size_t)(p - out.data), out.len);
    sbuf_free(&out);
}

/* --------------------------------------------------------- full storage */

static void test_enospc_tiny_cap(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    /* a cap smaller than one page still caps (at the schema's size) */
    f->s = store_open(test_store_where(), f->dir, 1, err, sizeof err);
    assert_non_null(f->s);
    struct store_job j;
    make_job(&j, 1, "key");
    j.total = 2000;
    struct job_items *it = make_items(2000, 100);
    assert_int_equal(store_job_create(f->s, &j, it, NULL), -ENOSPC);
    assert_int_equal(j.seq, 0); /* not filled on failure */
    /* nothing of it is visible */
    assert_int_equal(count_jobs(f->s), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM inputs"), 0);
    store_close(f->s);

    /* a store with room works, and the key was never taken */
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    assert_int_equal(store_job_create(f->s, &j, it, NULL), 0);
    struct job_items *back = NULL;
    assert_int_equal(store_inputs_read(f->s, j.seq, 2000, &back), 0);
    assert_int_equal(job_items_count(back), 2000);
    job_items_free(back);
    job_items_free(it);
}

/* batchd's policy: the cap refuses new jobs, but the results of a job
 * accepted before still go in, so that job can finish. */
static void test_cap_refuses_jobs_not_results(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    uint64_t seq = create_job(f->s, 2, 4096, 0);
    store_close(f->s);
    f->s = store_open(test_store_where(), f->dir, 4096, err, sizeof err);
    assert_non_null(f->s);
    struct store_job big;
    make_job(&big, 3, NULL);
    big.total = 3000;
    struct job_items *it = make_items(3000, 300);
    assert_int_equal(store_job_create(f->s, &big, it, NULL), -ENOSPC);
    job_items_free(it);
    put_range(f->s, seq, 0, 4096);
    assert_int_equal(store_flush(f->s), 0);
    check_page(f->s, seq, 0, 4096, 4096);
}

static void test_enospc_flush_keeps_buffer(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only: room comes back after a delete (PostgreSQL
                   gives space back at VACUUM; test_store_pg covers its kept buffer) */
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    uint64_t filler = create_job(f->s, 1, 3000, 400); /* ~1.3 MB to free later */
    uint64_t seq = create_job(f->s, 2, 4096, 0);
    store_close(f->s);
    /* capped at what is there now: anything that grows the file fails */
    f->s = store_open(test_store_where(), f->dir, 4096, err, sizeof err);
    assert_non_null(f->s);
    store_cap_results(f->s, true); /* make the flush fail too */

    /* a big job: -ENOSPC, and no trace of it */
    struct store_job big;
    make_job(&big, 3, "big-key");
    big.total = 3000;
    struct job_items *it = make_items(3000, 300);
    assert_int_equal(store_job_create(f->s, &big, it, NULL), -ENOSPC);
    assert_int_equal(count_jobs(f->s), 2);

    /* results and an update: the flush fails and keeps both */
    put_range(f->s, seq, 0, 4096);
    struct store_job u;
    make_job(&u, 2, NULL);
    u.seq = seq;
    u.status = JOB_SUCCEEDED;
    u.done = 4096;
    assert_int_equal(store_job_update(f->s, &u), 0);
    size_t pending = store_pending_bytes(f->s);
    assert_true(pending > 4096 * 20);
    char log[160];
    snprintf(log, sizeof log, "%s/stderr.txt", f->dir);
    int saved = stderr_capture(log);
    int rc = store_flush(f->s);
    stderr_restore(saved);
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(count_in_file(log, "cannot write results"), 1);
    assert_int_equal(store_pending_bytes(f->s), pending);
    check_page(f->s, seq, 0, 10, 0);
    struct collect c = { .n = 0 };
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.jobs[1].status, JOB_QUEUED);
    /* again and again: still full, still kept, and logged once, not at
     * every retry (the engine retries every few milliseconds) */
    saved = stderr_capture(log);
    int rcs[5];
    for (int i = 0; i < 5; i++)
        rcs[i] = store_flush(f->s);
    stderr_restore(saved);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rcs[i], -ENOSPC);
    assert_int_equal(store_pending_bytes(f->s), pending);
    assert_int_equal(count_in_file(log, "cannot write results"), 0); /* logged above */

    /* room again (pages freed by a delete are reused without growing) */
    assert_int_equal(store_job_delete(f->s, filler), 0);
    assert_int_equal(store_flush(f->s), 0);
    assert_int_equal(store_pending_bytes(f->s), 0);
    check_page(f->s, seq, 0, 5000, 4096);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.jobs[0].status, JOB_SUCCEEDED);
    assert_int_equal(c.jobs[0].done, 4096);
    job_items_free(it);
}

/* After a failed flush the buffer keeps growing: 64 blocks kept, 64 more
 * put, then one flush with room writes all 128 (the kept buffer's capacity
 * must be what was allocated: ASan sees any write past it). */
static void test_flush_failure_then_more_results(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only: room comes back after a delete (PostgreSQL
                   gives space back at VACUUM; test_store_pg covers its kept buffer) */
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    uint64_t filler = create_job(f->s, 1, 3000, 400);
    uint64_t seq = create_job(f->s, 2, 128 * 64, 0);
    store_close(f->s);
    f->s = store_open(test_store_where(), f->dir, 4096, err, sizeof err);
    assert_non_null(f->s);
    store_cap_results(f->s, true); /* make the flush fail too */
    for (uint64_t b = 0; b < 64; b++)
        put_range(f->s, seq, b * 64, 64);
    assert_int_equal(store_flush(f->s), -ENOSPC); /* 64 blocks kept */
    for (uint64_t b = 64; b < 128; b++)
        put_range(f->s, seq, b * 64, 64);
    assert_int_equal(store_job_delete(f->s, filler), 0);
    assert_int_equal(store_flush(f->s), 0);
    check_page(f->s, seq, 0, 128 * 64, 128 * 64);
}

/* The flush of test_requeue_newest_update_wins, on its own thread. */
struct flush_arg {
    struct store *s;
    int rc;
};

static void *flush_thread(void *arg)
{
    struct flush_arg *a = arg;
    a->rc = store_flush(a->s);
    return NULL;
}

/*
 * A flush fails while the engine goes on updating the same job: what the
 * failed flush took goes back into the buffer ahead of the newer update,
 * and the update buffered after that must still be the one written.
 *   1. buffer U1 (done 1) and a result block; a flush takes them and waits
 *      for the write lock (held by another connection);
 *   2. buffer U2 (done 2) meanwhile; release the lock; the flush fails
 *      (-ENOSPC) and puts U1 back ahead of U2;
 *   3. buffer U3 (done 3, succeeded); make room; flush: the row says U3.
 */
static void test_requeue_newest_update_wins(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only: room comes back after a delete (PostgreSQL
                   gives space back at VACUUM; test_store_pg covers its kept buffer) */
    struct fixture *f = *state;
    char err[256] = "";
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    assert_non_null(f->s);
    uint64_t filler = create_job(f->s, 1, 3000, 400);
    uint64_t seq = create_job(f->s, 2, 4096, 0);
    store_close(f->s);
    f->s = store_open(test_store_where(), f->dir, 4096, err, sizeof err);
    assert_non_null(f->s);
    store_cap_results(f->s, true); /* make the flush fail too */

    struct store_job u;
    make_job(&u, 2, NULL);
    u.seq = seq;
    u.status = JOB_RUNNING;
    u.done = 1;
    assert_int_equal(store_job_update(f->s, &u), 0);
    put_range(f->s, seq, 0, 4096);

    sqlite3 *locker = NULL;
    assert_int_equal(sqlite3_open(f->db, &locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    struct flush_arg fa = { f->s, 1 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flush_thread, &fa), 0);
    /* the flush has taken the buffer when the pending bytes drop to 0 */
    for (int i = 0; i < 2000 && store_pending_bytes(f->s) != 0; i++)
        usleep(1000);
    assert_int_equal(store_pending_bytes(f->s), 0);
    u.done = 2;
    assert_int_equal(store_job_update(f->s, &u), 0);
    assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(locker);
    pthread_join(th, NULL);
    assert_int_equal(fa.rc, -ENOSPC);

    u.done = 3;
    u.status = JOB_SUCCEEDED;
    assert_int_equal(store_job_update(f->s, &u), 0);
    assert_int_equal(store_job_delete(f->s, filler), 0);
    assert_int_equal(store_flush(f->s), 0);
    struct collect c = { .n = 0 };
    assert_int_equal(store_jobs_each(f->s, collect_job, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.jobs[0].done, 3);
    assert_int_equal(c.jobs[0].status, JOB_SUCCEEDED);
    check_page(f->s, seq, 0, 5000, 4096);
}

/* ------------------------------------------------------- delete, reclaim */

static void test_job_delete(void **state)
{
    struct fixture *f = *state;
    uint64_t a = create_job(f->s, 1, 5000, 10);
    uint64_t b = create_job(f->s, 2, 10, 0);
    put_range(f->s, a, 0, 4096);
    put_range(f->s, a, 4096, 904);
    put_range(f->s, b, 0, 10);
    assert_int_equal(store_flush(f->s), 0);

    assert_int_equal(store_job_delete(f->s, a), 0);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE seq=%llu", (unsigned long long)a);
    assert_int_equal(raw_int(f->db, sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM inputs WHERE job=%llu", (unsigned long long)a);
    assert_int_equal(raw_int(f->db, sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM results WHERE job=%llu",
             (unsigned long long)a);
    assert_int_equal(raw_int(f->db, sql), 0);
    check_page(f->s, a, 0, 100, 0);
    struct job_items *back = NULL;
    assert_true(store_inputs_read(f->s, a, 5000, &back) != 0);
    assert_null(back);

    /* the other job is untouched */
    assert_int_equal(count_jobs(f->s), 1);
    check_page(f->s, b, 0, 100, 10);
    assert_int_equal(store_inputs_read(f->s, b, 10, &back), 0);
    job_items_free(back);

    /* gone: -ENOENT, the second time and for a job that never was */
    assert_int_equal(store_job_delete(f->s, a), -ENOENT);
    assert_int_equal(store_job_delete(f->s, 424242), -ENOENT);
    /* seqs are not reused after a delete of the newest job */
    assert_int_equal(store_job_delete(f->s, b), 0);
    uint64_t c = create_job(f->s, 3, 1, 0);
    assert_true(c > b);
}

static void test_reclaim_space(void **state)
{
    if (test_store_where())
        skip(); /* SQLite only */
    struct fixture *f = *state;
    uint64_t a = create_job(f->s, 1, 8000, 200);
    assert_int_equal(store_job_delete(f->s, a), 0);
    long long before = raw_int(f->db, "PRAGMA freelist_count");
    assert_true(before > 100);
    store_reclaim_space(f->s);
    long long after = raw_int(f->db, "PRAGMA freelist_count");
    assert_true(after < before);
    /* a little at a time, until nothing is left */
    for (int i = 0; i < 100 && raw_int(f->db, "PRAGMA freelist_count") > 0; i++)
        store_reclaim_space(f->s);
    assert_int_equal(raw_int(f->db, "PRAGMA freelist_count"), 0);
    store_reclaim_space(f->s); /* nothing to do: fine */
    /* and the store still works */
    uint64_t b = create_job(f->s, 2, 10, 0);
    put_range(f->s, b, 0, 10);
    assert_int_equal(store_flush(f->s), 0);
    check_page(f->s, b, 0, 10, 10);
}

/* ---------------------------------------------------------- concurrency */

enum { CC_BLOCKS = 400, CC_BLOCK_N = 25, CC_TOTAL = CC_BLOCKS * CC_BLOCK_N };

struct cc {
    struct store *s;
    uint64_t seq;
    _Atomic bool writer_done;
    int pages, streams;
    char failure[256];
};

static void *cc_writer(void *arg)
{
    struct cc *c = arg;
    for (uint64_t b = 0; b < CC_BLOCKS; b++) {
        put_range(c->s, c->seq, b * CC_BLOCK_N, CC_BLOCK_N);
        if (b % 4 == 3 || b == CC_BLOCKS - 1) {
            int rc = store_flush(c->s);
            if (rc != 0 && !c->failure[0])
                snprintf(c->failure, sizeof c->failure, "flush: %d", rc);
        }
    }
    atomic_store(&c->writer_done, true);
    return NULL;
}

/* Pages from 0 until every result was seen: each page must be a prefix of
 * the results in order, and never shrink. */
static void *cc_pager(void *arg)
{
    struct cc *c = arg;
    uint64_t seen = 0;
    time_t deadline = time(NULL) + 60;
    for (int i = 0; i < 1000000 && seen < CC_TOTAL && time(NULL) < deadline; i++) {
        struct sbuf out = SBUF_INIT;
        uint64_t next = 0;
        uint64_t off = (uint64_t)i % 2 ? seen / 2 : 0;
        int rc = store_results_page(c->s, c->seq, off, CC_TOTAL, &out, &next);
        if (rc != 0) {
            snprintf(c->failure, sizeof c->failure, "page: %d", rc);
            sbuf_free(&out);
            break;
        }
        char *want = expect_page(off, next);
        if (next < seen || strcmp(out.data ? out.data : "", want) != 0) {
            snprintf(c->failure, sizeof c->failure,
                     "page from %llu: next %llu after %llu, or wrong text",
                     (unsigned long long)off, (unsigned long long)next,
                     (unsigned long long)seen);
            free(want);
            sbuf_free(&out);
            break;
        }
        free(want);
        sbuf_free(&out);
        bool moved = next > seen;
        seen = next;
        c->pages++;
        if (!moved)
            usleep(200); /* as in cc_streamer: let the writer run */
    }
    if (seen != CC_TOTAL && !c->failure[0])
        snprintf(c->failure, sizeof c->failure, "pager saw %llu of %d results",
                 (unsigned long long)seen, CC_TOTAL);
    return NULL;
}

/* Streams until every result was seen: each index exactly once. */
static void *cc_streamer(void *arg)
{
    struct cc *c = arg;
    static unsigned char seen[CC_TOTAL];
    memset(seen, 0, sizeof seen);
    uint64_t cursor = 0, lines = 0;
    time_t deadline = time(NULL) + 60;
    for (int i = 0; i < 1000000 && lines < CC_TOTAL && time(NULL) < deadline; i++) {
        struct sbuf out = SBUF_INIT;
        int src = store_results_stream(c->s, c->seq, &cursor, 4096, &out);
        if (src != 0) {
            snprintf(c->failure, sizeof c->failure, "stream failed: %d", src);
            sbuf_free(&out);
            break;
        }
        for (const char *p = out.data; p && *p;) {
            unsigned long long idx;
            if (sscanf(p, "{\"index\":%llu,", &idx) != 1 || idx >= CC_TOTAL || seen[idx]++) {
                snprintf(c->failure, sizeof c->failure, "stream line \"%.40s\"", p);
                break;
            }
            lines++;
            p = strchr(p, '\n');
            p = p ? p + 1 : NULL;
        }
        bool nothing_new = out.len == 0;
        sbuf_free(&out);
        c->streams++;
        if (c->failure[0])
            break;
        /* a real stream waits for news; polling flat out would starve the
         * writer where threads take turns on one core (valgrind) */
        if (nothing_new)
            usleep(200);
    }
    if (lines != CC_TOTAL && !c->failure[0])
        snprintf(c->failure, sizeof c->failure, "streamer saw %llu of %d lines",
                 (unsigned long long)lines, CC_TOTAL);
    return NULL;
}

static void test_concurrent_readers_while_flushing(void **state)
{
    struct fixture *f = *state;
    struct cc c = { .s = f->s };
    c.seq = create_job(f->s, 1, CC_TOTAL, 0);
    pthread_t w, p, st;
    assert_int_equal(pthread_create(&p, NULL, cc_pager, &c), 0);
    assert_int_equal(pthread_create(&st, NULL, cc_streamer, &c), 0);
    assert_int_equal(pthread_create(&w, NULL, cc_writer, &c), 0);
    pthread_join(w, NULL);
    pthread_join(p, NULL);
    pthread_join(st, NULL);
    if (c.failure[0])
        fail_msg("%s", c.failure);
    assert_true(atomic_load(&c.writer_done));
    print_message("note: %d pages and %d stream reads beside the writer\n", c.pages, c.streams);
}

int main(void)
{
    test_store_banner("store");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_check_fresh_dir, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_missing_dir, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_unusable_dir, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_corrupt_db, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_corrupt_pages, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_other_app_db, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_check_newer_schema, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_job_roundtrip, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_inputs_roundtrip, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_inputs_unknown_job, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key_reuse, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_job_update_after_flush, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_results_page, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_results_page_big_blocks, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_results_page_buffer_cap, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_results_stream, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_tiny_cap, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_cap_refuses_jobs_not_results, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_flush_keeps_buffer, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_flush_failure_then_more_results, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_requeue_newest_update_wins, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_job_delete, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_space, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers_while_flushing, setup_store,
                                        teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
