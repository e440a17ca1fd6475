/*
 * Unit tests of workers/coproc_worker.c's item encoding, on a real object
 * store (service/objects.c): an item without references goes into the
 * BATCH frame byte for byte; a reference gets the offset, dtype, shape and
 * size with which a coprocess reads the object in place (the offset points
 * at the object's bytes in the store's memfd); a reference nested in
 * arrays and objects too; an unknown object, a malformed reference and
 * text that is not JSON are the item's error, and nothing is appended.
 * (The worker's loop is exercised end to end by tests/integration/
 * test_python.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "workers/coproc/coproc_worker.h"
#include "workers/worker/host.h"
#include "service/objects/objects.h"

static struct objects store;

static int setup(void **state)
{
    (void)state;
    if (objects_create(&store, 8 * OBJECTS_PAGE, 6, 2 * OBJECTS_PAGE) != 0)
        return -1;
    host_worker_setup(&store, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    host_worker_setup(NULL, 0);
    objects_destroy(&store);
    return 0;
}

/* The one item of a BATCH frame built with coproc_worker_add_item (new). */
static json_t *only_item(const struct coproc_buf *b)
{
    assert_true(b->len >= 9);
    uint32_t n = coproc_le32_get(b->p);
    assert_int_equal(n, b->len - 4);
    uint32_t len = coproc_le32_get(b->p + 5);
    assert_int_equal(len, b->len - 9);
    json_t *v = json_loadb((const char *)b->p + 9, len, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    return v;
}

static void test_plain_item_is_copied(void **state)
{
    (void)state;
    struct coproc_buf b = { 0 };
    char err[256] = "";
    const char item[] = "{\"x\":[1,2,\"object\"]}";
    assert_int_equal(coproc_buf_begin(&b, COPROC_BATCH), 0);
    assert_int_equal(coproc_worker_add_item(&b, (const uint8_t *)item, sizeof item - 1, err,
                                            sizeof err), 0);
    coproc_buf_end(&b);
    assert_int_equal(b.len, 5 + 4 + sizeof item - 1);
    assert_memory_equal(b.p + 9, item, sizeof item - 1);
    coproc_buf_free(&b);
}

static void test_reference_gets_offset_dtype_shape(void **state)
{
    (void)state;
    struct model_object obj;
    void *data;
    char err[256] = "";
    uint64_t shape[2] = { 2, 3 };
    assert_int_equal(host_worker()->object_new(MODEL_DTYPE_F32, 2, shape, &obj, &data, err,
                                               sizeof err), 0);
    memset(data, 0x5a, obj.bytes);
    host_item_end(true);
    assert_int_equal(host_task_commit(), 1);

    char item[256];
    snprintf(item, sizeof item, "[1,{\"k\":{\"$object\":\"%s\"}}]", obj.id);
    struct coproc_buf b = { 0 };
    assert_int_equal(coproc_buf_begin(&b, COPROC_BATCH), 0);
    assert_int_equal(coproc_worker_add_item(&b, (const uint8_t *)item, (uint32_t)strlen(item),
                                            err, sizeof err), 0);
    coproc_buf_end(&b);
    json_t *v = only_item(&b);
    json_t *ref = json_object_get(json_array_get(v, 1), "k");
    assert_string_equal(json_string_value(json_object_get(ref, "$object")), obj.id);
    assert_string_equal(json_string_value(json_object_get(ref, "$dtype")), "float32");
    assert_int_equal(json_integer_value(json_object_get(ref, "$bytes")), 24);
    json_t *sh = json_object_get(ref, "$shape");
    assert_int_equal(json_array_size(sh), 2);
    assert_int_equal(json_integer_value(json_array_get(sh, 1)), 3);
    json_int_t off = json_integer_value(json_object_get(ref, "$offset"));
    /* the offset is where the bytes are in the memfd (mapped at base) */
    assert_ptr_equal((const uint8_t *)store.base + off, data);
    json_decref(v);
    coproc_buf_free(&b);
}

static void test_bad_items_are_errors(void **state)
{
    (void)state;
    struct coproc_buf b = { 0 };
    char err[256];
    assert_int_equal(coproc_buf_begin(&b, COPROC_BATCH), 0);
    const char *unknown = "{\"$object\":\"zzzzzzzzzzzzzzzzzzzzzzzzzz\"}";
    assert_int_equal(coproc_worker_add_item(&b, (const uint8_t *)unknown,
                                            (uint32_t)strlen(unknown), err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "not found"));
    const char *two_keys = "{\"$object\":\"zzzzzzzzzzzzzzzzzzzzzzzzzz\",\"b\":1}";
    assert_int_equal(coproc_worker_add_item(&b, (const uint8_t *)two_keys,
                                            (uint32_t)strlen(two_keys), err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "exactly one key"));
    const char *broken = "{\"$object\":";
    assert_int_equal(coproc_worker_add_item(&b, (const uint8_t *)broken,
                                            (uint32_t)strlen(broken), err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_int_equal(b.len, 5); /* nothing appended */
    coproc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_item_is_copied),
        cmocka_unit_test(test_reference_gets_offset_dtype_shape),
        cmocka_unit_test(test_bad_items_are_errors),
    };
    return cmocka_run_group_tests_name("coproc_worker", tests, setup, teardown);
}
