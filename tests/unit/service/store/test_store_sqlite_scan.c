/*
 * Unit tests of service/store/store_sqlite_scan.c (store_results_scan) against a
 * real store: index order across blocks written out of order, a running
 * job's prefix stopping at its first gap, a finished job's gaps passed
 * over, errors only, and the bounds on results and bytes.
 */
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
#include "tests/unit/service/store/store_test_backend.h"

struct fixture {
    char dir[64];
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

static int setup_store(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-scan.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512] = "";
    test_store_reset();
    f->s = store_open(test_store_where(), f->dir, 0, err, sizeof err);
    if (!f->s)
        fail_msg("store_open(%s): %s", f->dir, err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A job of n items "1"; returns its seq. */
static uint64_t create_job(struct store *s, unsigned k, size_t n, size_t pad)
{
    (void)pad;
    struct store_job j;
    memset(&j, 0, sizeof j);
    snprintf(j.id, sizeof j.id, "%026u", k);
    for (char *p = j.id; *p; p++)
        *p = (char)('a' + (*p - '0'));
    snprintf(j.model, sizeof j.model, "echo");
    j.total = n;
    struct job_items *it = job_items_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(job_items_append(it, "1", 1), 0);
    assert_int_equal(store_job_create(s, &j, it, NULL), 0);
    job_items_free(it);
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

/* Items [from, to) joined by ','. New string. */
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

/* store_results_scan (issue 18): index order across blocks, a running
 * job's prefix stops at the first gap, a finished job's gaps are passed
 * over, errors only, and the bounds on results and bytes. */
static void test_results_scan(void **state)
{
    struct fixture *f = *state;
    uint64_t seq = create_job(f->s, 1, 10000, 0);
    /* blocks out of order, a gap at [5000, 6000) */
    put_range(f->s, seq, 4096, 904);
    put_range(f->s, seq, 0, 4096);
    put_range(f->s, seq, 6000, 4000);
    /* errors: a block of error texts at [5000, 5003) written separately */
    assert_int_equal(store_flush(f->s), 0);

    /* a running job: the prefix [0, 5000), then blocked */
    struct store_scan sc = { .next = 0, .end = 10000, .ndjson = true, .max_bytes = SIZE_MAX };
    struct sbuf out = SBUF_INIT;
    for (int calls = 0; calls < 100 && !sc.blocked && !sc.exhausted; calls++)
        assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_int_equal(sc.next, 5000);
    assert_true(sc.blocked || sc.exhausted);
    size_t lines = 0;
    for (size_t i = 0; i < out.len; i++)
        lines += out.data[i] == '\n';
    assert_int_equal(lines, 5000);
    char t[96];
    int l = result_text(t, sizeof t, 4999);
    assert_memory_equal(out.data + out.len - (size_t)l - 1, t, (size_t)l);
    sbuf_free(&out);

    /* finished: the gap is passed over, every result once, in order */
    sc = (struct store_scan){ .next = 0, .end = 10000, .skip_gaps = true, .max_bytes = SIZE_MAX };
    out = (struct sbuf)SBUF_INIT;
    for (int calls = 0; calls < 100 && !sc.exhausted; calls++)
        assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_true(sc.exhausted);
    assert_int_equal(sc.written, 9000);
    /* ","-separated: the text of items 4999 and 6000 are neighbours */
    char pair[200];
    int a = result_text(pair, sizeof pair, 4999);
    pair[a++] = ',';
    result_text(pair + a, sizeof pair - (size_t)a, 6000);
    assert_non_null(strstr(out.data, pair));
    sbuf_free(&out);

    /* bounds: 10 results from 95, then on from where it stopped */
    sc = (struct store_scan){ .next = 95, .end = 10000, .skip_gaps = true, .max_bytes = SIZE_MAX,
                              .max_results = 10 };
    out = (struct sbuf)SBUF_INIT;
    assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_int_equal(sc.written, 10);
    assert_int_equal(sc.next, 105);
    char *want = expect_page(95, 105);
    assert_string_equal(out.data, want);
    free(want);
    sbuf_free(&out);
    /* max_bytes: stops after the Result that passes it */
    sc = (struct store_scan){ .next = 0, .end = 10000, .ndjson = true, .max_bytes = 1 };
    out = (struct sbuf)SBUF_INIT;
    assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_int_equal(sc.next, 1);
    sbuf_free(&out);

    /* errors only: none of these texts is an error */
    sc = (struct store_scan){ .next = 0, .end = 10000, .skip_gaps = true, .errors_only = true,
                              .ndjson = true, .max_bytes = SIZE_MAX };
    out = (struct sbuf)SBUF_INIT;
    for (int calls = 0; calls < 100 && !sc.exhausted; calls++)
        assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_int_equal(out.len, 0);
    sbuf_free(&out);
    /* now add two errors in the gap */
    const char *errs = "{\"index\":5000,\"error\":{\"message\":\"a\"}}"
                       "{\"index\":5001,\"error\":{\"message\":\"b\"}}";
    uint32_t lens[2] = { (uint32_t)strlen(errs) / 2, (uint32_t)strlen(errs) / 2 };
    assert_int_equal(store_put_results(f->s, seq, 5000, 2, errs, lens, NULL), 0);
    assert_int_equal(store_flush(f->s), 0);
    sc = (struct store_scan){ .next = 0, .end = 10000, .skip_gaps = true, .errors_only = true,
                              .ndjson = true, .max_bytes = SIZE_MAX };
    out = (struct sbuf)SBUF_INIT;
    for (int calls = 0; calls < 100 && !sc.exhausted; calls++)
        assert_int_equal(store_results_scan(f->s, seq, &sc, &out), 0);
    assert_string_equal(out.data, "{\"index\":5000,\"error\":{\"message\":\"a\"}}\n"
                                  "{\"index\":5001,\"error\":{\"message\":\"b\"}}\n");
    sbuf_free(&out);
}

int main(void)
{
    test_store_banner("store_scan");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_results_scan, setup_store, teardown),
    };
    return cmocka_run_group_tests_name("store_scan", tests, NULL, NULL);
}
