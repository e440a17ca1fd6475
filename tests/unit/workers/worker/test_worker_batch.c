/*
 * Unit tests of workers/worker/worker_batch.c: the run_batch call path of
 * the plugin ABI (include/batchd/model.h, "Batches"). Whatever the model
 * does, each item ends with exactly one of an output or a message: its
 * own output, its own error, the call's error for every item when the call
 * fails (outputs it left are released, never used), a message of batchd's
 * when the model left both empty; the buffers grow and are reused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "workers/worker/worker_batch.h"

/* Doubles each integer item; an item that is a string is that item's
 * error; the item 13 gets no output and no message. */
static int double_ints(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    (void)state, (void)err, (void)errlen;
    for (size_t i = 0; i < b->n; i++) {
        if (json_is_string(b->items[i]))
            snprintf(b->errors[i], MODEL_ERR_LEN, "bad item: %s", json_string_value(b->items[i]));
        else if (json_integer_value(b->items[i]) != 13)
            b->outputs[i] = json_integer(2 * json_integer_value(b->items[i]));
    }
    return 0;
}

/* Sets some outputs, then fails the whole call. */
static int fails_after_outputs(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    (void)state;
    for (size_t i = 0; i < b->n; i += 2)
        b->outputs[i] = json_string("never used");
    snprintf(err, errlen, "the GPU is on fire");
    return -EIO;
}

/* Fails the call without a message. */
static int fails_silently(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    (void)state, (void)err, (void)errlen, (void)b;
    return -ENOMEM;
}

/* Sets an output AND an error for item 0 (the output wins: it is the
 * item's result), and a message without its NUL for item 1. */
static int both(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    (void)state, (void)err, (void)errlen;
    b->outputs[0] = json_true();
    snprintf(b->errors[0], MODEL_ERR_LEN, "ignored");
    /* a message with no NUL in its buffer is cut, not read past */
    memset(b->errors[1], 'x', MODEL_ERR_LEN);
    return 0;
}

static const struct model_ops ops_double = { .abi_version = MODEL_ABI_VERSION, .name = "dbl",
                                             .run_batch = double_ints };
static const struct model_ops ops_fail = { .abi_version = MODEL_ABI_VERSION, .name = "fail",
                                           .run_batch = fails_after_outputs };
static const struct model_ops ops_silent = { .abi_version = MODEL_ABI_VERSION, .name = "quiet",
                                             .run_batch = fails_silently };
static const struct model_ops ops_both = { .abi_version = MODEL_ABI_VERSION, .name = "both",
                                           .run_batch = both };

static void fill(struct worker_batch *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(worker_batch_add(b, i == 5 ? json_string("five") : json_integer((json_int_t)i)), 0);
}

static void test_per_item_results(void **unused)
{
    (void)unused;
    struct worker_batch b = { 0 };
    /* 200 items: past the first allocation (64), so the buffers grow */
    fill(&b, 200);
    assert_int_equal(b.n, 200);
    assert_int_equal(worker_batch_call(&ops_double, NULL, &b), 2);
    for (size_t i = 0; i < 200; i++) {
        if (i == 5) {
            assert_null(b.outputs[i]);
            assert_string_equal(b.errors[i], "bad item: five");
        } else if (i == 13) {
            assert_null(b.outputs[i]);
            assert_string_equal(b.errors[i], "model dbl returned no output for this item");
        } else {
            assert_int_equal(json_integer_value(b.outputs[i]), 2 * (json_int_t)i);
            assert_string_equal(b.errors[i], "");
        }
    }
    worker_batch_clear(&b);
    assert_int_equal(b.n, 0);
    /* reused: a second batch sees fresh outputs and errors */
    fill(&b, 7);
    assert_int_equal(worker_batch_call(&ops_double, NULL, &b), 1);
    assert_int_equal(json_integer_value(b.outputs[6]), 12);
    worker_batch_clear(&b);
    worker_batch_free(&b);
}

static void test_call_fails(void **unused)
{
    (void)unused;
    struct worker_batch b = { 0 };
    fill(&b, 9);
    /* outputs left by a failed call are released (ASan/valgrind would see
     * a leak), and every item gets the call's message */
    assert_int_equal(worker_batch_call(&ops_fail, NULL, &b), 9);
    for (size_t i = 0; i < 9; i++) {
        assert_null(b.outputs[i]);
        assert_string_equal(b.errors[i], "the GPU is on fire");
    }
    worker_batch_clear(&b);
    fill(&b, 3);
    assert_int_equal(worker_batch_call(&ops_silent, NULL, &b), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(b.errors[i], "model quiet failed (-12)");
    worker_batch_clear(&b);
    worker_batch_free(&b);
}

static void test_output_and_error(void **unused)
{
    (void)unused;
    struct worker_batch b = { 0 };
    fill(&b, 2);
    assert_int_equal(worker_batch_call(&ops_both, NULL, &b), 1);
    assert_true(json_is_true(b.outputs[0]));
    assert_string_equal(b.errors[0], "");
    assert_null(b.outputs[1]);
    assert_int_equal(strlen(b.errors[1]), MODEL_ERR_LEN - 1);
    worker_batch_clear(&b);
    worker_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_item_results),
        cmocka_unit_test(test_call_fails),
        cmocka_unit_test(test_output_and_error),
    };
    return cmocka_run_group_tests_name("worker_batch", tests, NULL, NULL);
}
