/*
 * store_fixture.h: what the job store's unit tests share (included by
 * tests/unit/service/store/test_store*.c): a store opened on a fresh
 * temporary directory and removed after, recognisable job rows and
 * items, and result texts written and expected by index. Everything is
 * static inline: each test program takes what it uses. The store is the
 * real one (SQLite on disk), never a double.
 */
#ifndef BATCHD_TEST_STORE_FIXTURE_H
#define BATCHD_TEST_STORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service/core/sbuf.h"
#include "service/jobs/engine.h"
#include "service/store/store.h"

struct fixture {
    char dir[64];
    char db[128];
    struct store *s;
    uint64_t seq[8]; /* jobs a setup made, for the tests (test_store_query's eight) */
};

static inline int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void rm_tree(const char *dir)
{
    /* a test may have made a directory read-only: make it removable */
    chmod(dir, 0700);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory, no store open. */
static inline int setup_dir(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/%s", f->dir, STORE_FILE);
    *state = f;
    return 0;
}

/* A fresh directory with an open store (no size cap). */
static inline int setup_store(void **state)
{
    setup_dir(state);
    struct fixture *f = *state;
    char err[512] = "";
    f->s = store_open(f->dir, 0, err, sizeof err);
    if (!f->s)
        fail_msg("store_open(%s): %s", f->dir, err);
    return 0;
}

static inline int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    rm_tree(f->dir);
    free(f);
    return 0;
}

/* A job row with every field set to something recognisable. */
static inline void make_job(struct store_job *j, unsigned k, const char *idem)
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
static inline struct job_items *make_items(size_t n, size_t pad)
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
static inline uint64_t create_job(struct store *s, unsigned k, size_t n, size_t pad)
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
static inline int result_text(char *buf, size_t len, uint64_t i)
{
    return snprintf(buf, len, "{\"index\":%llu,\"output\":%llu}", (unsigned long long)i,
                    (unsigned long long)(i * 7 + 1));
}

/* Buffers results [first, first+n) of job seq. */
static inline void put_range(struct store *s, uint64_t seq, uint64_t first, uint32_t n)
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
static inline char *expect_page(uint64_t from, uint64_t to)
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

#endif
