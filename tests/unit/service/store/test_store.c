/*
 * Unit tests of service/store/store.c, the seam: which backend a --store
 * value names, the refusal of anything else (before any file or server is
 * touched), and the block encoding both backends share.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "service/store/store.h"
#include "service/store/store_backend.h"

static void test_where(void **unused)
{
    (void)unused;
    char err[256];
    assert_true(store_uri_is_pg("postgresql://u@h:5432/d"));
    assert_true(store_uri_is_pg("postgres://h/d"));
    assert_false(store_uri_is_pg("sqlite"));
    assert_false(store_uri_is_pg(NULL));
    assert_false(store_uri_is_pg("postgresql:/h"));
    assert_int_equal(store_uri_check(NULL, err, sizeof err), 0);
    assert_int_equal(store_uri_check("", err, sizeof err), 0);
    assert_int_equal(store_uri_check("sqlite", err, sizeof err), 0);
    assert_int_equal(store_uri_check("postgres://h/d", err, sizeof err), 0);
    assert_int_equal(store_uri_check("mysql://h/d", err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "PostgreSQL URI"));
    /* refused before anything is opened */
    assert_null(store_open("redis://h", "/nonexistent", 0, err, sizeof err));
    assert_non_null(strstr(err, "not a store"));
    assert_int_equal(store_check("redis://h", "/nonexistent", err, sizeof err), -EIO);
}

static void test_unreachable_pg(void **unused)
{
    (void)unused;
    char err[512];
    /* port 1 on loopback: nothing listens there */
    assert_null(store_open("postgresql://u@127.0.0.1:1/d", "/nonexistent", 0, err, sizeof err));
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(store_check("postgresql://u@127.0.0.1:1/d", "/x", err, sizeof err), -EIO);
}

static void test_block_roundtrip(void **unused)
{
    (void)unused;
    const char texts[] = "ab" "" "cde";
    uint32_t lens[3] = { 2, 0, 3 };
    size_t len;
    uint8_t *b = store_encode_block(3, texts, lens, &len);
    assert_non_null(b);
    assert_int_equal(len, 4 + 12 + 5);
    const uint8_t *l, *t;
    assert_int_equal(store_decode_block(b, len, &l, &t), 3);
    assert_memory_equal(t, "abcde", 5);
    /* truncated or inconsistent blocks are refused */
    assert_int_equal(store_decode_block(b, len - 1, &l, &t), -1);
    assert_int_equal(store_decode_block(b, 3, &l, &t), -1);
    uint32_t huge = 1000000;
    memcpy(b, &huge, 4);
    assert_int_equal(store_decode_block(b, len, &l, &t), -1);
    free(b);
    b = store_encode_block(0, "", NULL, &len);
    assert_int_equal(store_decode_block(b, len, &l, &t), 0);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_unreachable_pg),
        cmocka_unit_test(test_block_roundtrip),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
