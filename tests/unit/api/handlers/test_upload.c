/* Unit tests of api/upload.c against a real object store (objects_create,
 * 1 MiB, 8 entries, 256 KiB per object): raw and .npy bodies fed in every
 * chunking, the problems of each failure, and that nothing is left behind
 * by a failure or an abandoned upload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/handlers/upload.h"

#define MAX_BYTES (256u * 1024u)

static struct objects store;

static int setup(void **state)
{
    (void)state;
    return objects_create(&store, 1u << 20, 8, MAX_BYTES);
}

static int teardown(void **state)
{
    (void)state;
    objects_destroy(&store);
    return 0;
}

static uint64_t used(void)
{
    struct objects_stats st;
    objects_stats(&store, &st);
    return st.used_bytes;
}

static uint32_t count(void)
{
    struct objects_stats st;
    objects_stats(&store, &st);
    return st.count;
}

/* A .npy v1.0 file for `dict` and `data` into buf; returns its length. */
static size_t npy(unsigned char *buf, const char *dict, const void *data, size_t len)
{
    size_t hlen = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)hlen;
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, hlen);
    memcpy(buf + 10 + hlen, data, len);
    return 10 + hlen + len;
}

/* Feeds body in pieces of `step` bytes; returns the first error or 0. */
static int feed(struct api_upload *u, const unsigned char *body, size_t len, size_t step)
{
    int rc = 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        int r = api_upload_feed(u, body + off, n);
        if (r && !rc)
            rc = r;
    }
    return rc;
}

static void test_raw_with_length(void **state)
{
    (void)state;
    unsigned char body[5000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (unsigned char)i;
    struct api_problem p;
    struct api_upload *u;
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, true, sizeof body, MAX_BYTES, &p), 0);
    /* allocated before the first byte: the memory is taken, not yet visible */
    assert_int_equal(used(), OBJECTS_PAGE);
    assert_int_equal(count(), 0);
    assert_int_equal(feed(u, body, sizeof body, 777), 0);
    struct objects_info info;
    assert_int_equal(api_upload_finish(u, &info), 0);
    api_upload_free(u);
    assert_int_equal(count(), 1);
    assert_int_equal(info.obj.dtype, MODEL_DTYPE_U8);
    assert_int_equal(info.obj.ndim, 1);
    assert_int_equal(info.obj.shape[0], sizeof body);
    assert_memory_equal(info.obj.data, body, sizeof body);
    assert_int_equal(objects_delete(&store, info.obj.id), 0);
    assert_int_equal(used(), 0);
}

static void test_raw_chunked(void **state)
{
    (void)state;
    unsigned char body[3000];
    memset(body, 0x42, sizeof body);
    struct api_problem p;
    struct api_upload *u;
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, false, 0, MAX_BYTES, &p), 0);
    assert_int_equal(used(), 0); /* nothing until the length is known */
    assert_int_equal(feed(u, body, sizeof body, 1000), 0);
    struct objects_info info;
    assert_int_equal(api_upload_finish(u, &info), 0);
    api_upload_free(u);
    assert_int_equal(info.obj.bytes, sizeof body);
    assert_memory_equal(info.obj.data, body, sizeof body);
    assert_int_equal(objects_delete(&store, info.obj.id), 0);

    /* past the limit: 413, nothing kept */
    static unsigned char big[MAX_BYTES + 1];
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, false, 0, MAX_BYTES, &p), 0);
    assert_int_equal(feed(u, big, sizeof big, 65536), -EFBIG);
    assert_int_equal(api_upload_finish(u, &info), -EFBIG);
    assert_int_equal(api_upload_problem(u)->kind, API_PROBLEM_TOO_LARGE);
    assert_int_equal(api_upload_problem(u)->limit, MAX_BYTES);
    api_upload_free(u);
    assert_int_equal(used(), 0);
}

static void test_npy_every_chunking(void **state)
{
    (void)state;
    unsigned char body[512];
    int32_t data[6] = { 1, -2, 3, -4, 5, -6 };
    size_t len = npy(body, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }\n", data,
                     sizeof data);
    for (size_t step = 1; step <= len; step++) {
        for (int has_length = 0; has_length <= 1; has_length++) {
            struct api_problem p;
            struct api_upload *u;
            assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_NPY, has_length, len,
                                            MAX_BYTES, &p),
                             0);
            assert_int_equal(feed(u, body, len, step), 0);
            struct objects_info info;
            assert_int_equal(api_upload_finish(u, &info), 0);
            api_upload_free(u);
            assert_int_equal(info.obj.dtype, MODEL_DTYPE_I32);
            assert_int_equal(info.obj.ndim, 2);
            assert_int_equal(info.obj.shape[1], 3);
            assert_memory_equal(info.obj.data, data, sizeof data);
            assert_int_equal(objects_delete(&store, info.obj.id), 0);
        }
    }
    assert_int_equal(used(), 0);
}

/* Each bad body: the status's kind, a piece of the detail, nothing left. */
static void refused(const void *body, size_t len, bool has_length, int rc,
                    enum api_problem_kind kind, const char *detail)
{
    struct api_problem p;
    struct api_upload *u;
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_NPY, has_length, len, MAX_BYTES, &p), 0);
    feed(u, body, len, 7);
    struct objects_info info;
    int got = api_upload_finish(u, &info);
    const struct api_problem *pr = api_upload_problem(u);
    if (got != rc || pr->kind != kind || !strstr(pr->detail, detail))
        fail_msg("got %d kind %d \"%s\", expected %d kind %d with \"%s\"", got, pr->kind,
                 pr->detail, rc, kind, detail);
    api_upload_free(u);
    assert_int_equal(used(), 0);
    assert_int_equal(count(), 0);
}

static void test_npy_refusals(void **state)
{
    (void)state;
    unsigned char body[512], zeros[64] = { 0 };
    size_t n = npy(body, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", zeros, 8);
    refused(body, n, true, -EINVAL, API_PROBLEM_INVALID_OBJECT, "big-endian");
    n = npy(body, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", zeros, 8);
    refused(body, n, true, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT, "Content-Length is");
    refused(body, n, false, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT, "ends after 8 of the 12");
    n = npy(body, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", zeros, 8);
    refused(body, n, false, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT, "goes on past the 4");
    refused(body, 20, false, -EINVAL, API_PROBLEM_INVALID_OBJECT, "ends inside its npy header");
    refused(body, 0, false, -EINVAL, API_PROBLEM_INVALID_OBJECT, "the body is empty");
    n = npy(body, "{'descr': '<f8', 'fortran_order': False, 'shape': (65536,), }\n", zeros, 0);
    refused(body, n, false, -EFBIG, API_PROBLEM_TOO_LARGE, "the npy header describes 524288");
    refused("\x93NUMPY\x02\x00\x00\x00\x01\x00", 12, false, -E2BIG, API_PROBLEM_TOO_LARGE,
            "over the limit");
}

static void test_limits_before_body(void **state)
{
    (void)state;
    struct api_problem p;
    struct api_upload *u;
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, true, MAX_BYTES + 1, MAX_BYTES, &p),
                     -EFBIG);
    assert_null(u);
    assert_int_equal(p.kind, API_PROBLEM_TOO_LARGE);
    /* a .npy may be longer than the data by its header, no more */
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_NPY, true, MAX_BYTES + 100, MAX_BYTES, &p), 0);
    api_upload_free(u);
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_NPY, true, MAX_BYTES + 20000, MAX_BYTES, &p),
                     -EFBIG);
    /* memory full: four objects of 256 KiB fill the 1 MiB */
    struct api_upload *held[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(api_upload_new(&held[i], &store, API_UPLOAD_RAW, true, MAX_BYTES, MAX_BYTES, &p), 0);
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, true, 1, MAX_BYTES, &p), -ENOSPC);
    assert_int_equal(p.kind, API_PROBLEM_INSUFFICIENT_STORAGE);
    /* abandoned (freed without a finish): the memory comes back */
    for (int i = 0; i < 4; i++)
        api_upload_free(held[i]);
    assert_int_equal(used(), 0);
    assert_int_equal(count(), 0);
    /* the table: 8 entries (empty objects take no page) */
    struct api_upload *many[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(api_upload_new(&many[i], &store, API_UPLOAD_RAW, true, 0, MAX_BYTES, &p), 0);
    assert_int_equal(api_upload_new(&u, &store, API_UPLOAD_RAW, true, 0, MAX_BYTES, &p), -EMFILE);
    assert_int_equal(p.kind, API_PROBLEM_INSUFFICIENT_STORAGE);
    assert_non_null(strstr(p.detail, "--max-objects"));
    for (int i = 0; i < 8; i++)
        api_upload_free(many[i]);
    assert_int_equal(count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_with_length),  cmocka_unit_test(test_raw_chunked),
        cmocka_unit_test(test_npy_every_chunking), cmocka_unit_test(test_npy_refusals),
        cmocka_unit_test(test_limits_before_body),
    };
    return cmocka_run_group_tests_name("api/upload", tests, setup, teardown);
}
