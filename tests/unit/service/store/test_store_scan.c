/*
 * Unit tests of service/store/store_scan.c (store_results_scan) against a
 * real store: index order across blocks written out of order, a running
 * job's prefix stopping at its first gap, a finished job's gaps passed
 * over, errors only, and the bounds on results and bytes.
 */
#include "tests/unit/service/store/store_fixture.h"

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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_results_scan, setup_store, teardown),
    };
    return cmocka_run_group_tests_name("store_scan", tests, NULL, NULL);
}
