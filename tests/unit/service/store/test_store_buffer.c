/*
 * Unit tests of service/store/store_buffer.c, the flush buffer both
 * backends share: a block and the row that counts it travel together; a
 * newer row of a job replaces the waiting one; a batch put back after a
 * failed write goes in front of what came since, and a row buffered since
 * wins over the batch's row of the same job; nothing is lost or doubled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "service/store/store_buffer.h"

static void row(struct store_job *j, uint64_t seq, uint64_t done)
{
    memset(j, 0, sizeof *j);
    j->seq = seq;
    j->done = done;
}

static void put(struct store_buffer *b, uint64_t seq, uint64_t first, const struct store_job *r)
{
    uint32_t lens[2] = { 1, 1 };
    assert_int_equal(store_buffer_put(b, seq, first, 2, "ab", lens, r), 0);
}

static void test_take_and_requeue(void **unused)
{
    (void)unused;
    struct store_buffer b;
    store_buffer_init(&b);
    struct store_job r;
    row(&r, 1, 2);
    put(&b, 1, 0, &r);
    row(&r, 1, 4);
    put(&b, 1, 2, &r); /* replaces the first row of job 1 */
    row(&r, 2, 1);
    assert_int_equal(store_buffer_update(&b, &r), 0);
    size_t bytes = store_buffer_bytes(&b);
    assert_int_equal(bytes, 2 * (4 + 8 + 2));

    struct store_batch batch;
    store_buffer_take(&b, &batch);
    assert_int_equal(store_buffer_bytes(&b), 0);
    assert_int_equal(batch.n_blocks, 2);
    assert_int_equal(batch.n_updates, 2);
    assert_int_equal(batch.updates[0].done, 4);

    /* the write failed; meanwhile job 2 moved on and job 1 got a block */
    row(&r, 2, 7);
    assert_int_equal(store_buffer_update(&b, &r), 0);
    put(&b, 1, 4, NULL);
    store_buffer_requeue(&b, &batch);
    assert_null(batch.blocks);
    assert_int_equal(store_buffer_bytes(&b), bytes + 14);

    store_buffer_take(&b, &batch);
    assert_int_equal(batch.n_blocks, 3);
    assert_int_equal(batch.blocks[0].first, 0); /* the failed ones first */
    assert_int_equal(batch.blocks[1].first, 2);
    assert_int_equal(batch.blocks[2].first, 4);
    assert_int_equal(batch.n_updates, 2);
    for (size_t i = 0; i < batch.n_updates; i++)
        assert_int_equal(batch.updates[i].done, batch.updates[i].seq == 1 ? 4 : 7);
    store_batch_free(&batch);
    store_buffer_destroy(&b);
}

static void test_destroy_frees_unwritten(void **unused)
{
    (void)unused;
    struct store_buffer b;
    store_buffer_init(&b);
    put(&b, 3, 0, NULL); /* valgrind/ASan: freed by destroy */
    store_buffer_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_and_requeue),
        cmocka_unit_test(test_destroy_frees_unwritten),
    };
    return cmocka_run_group_tests_name("store_buffer", tests, NULL, NULL);
}
