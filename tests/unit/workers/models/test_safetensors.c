/*
 * Unit tests for workers/safetensors.c: good files (every field read back,
 * data pointers at the right bytes, metadata, scalars, empty tensors,
 * padding), each kind of bad file with the message it must give (naming
 * the tensor), and safetensors_open on real files (mapping, missing file,
 * directory, empty and truncated files). Files are built here byte by byte
 * from a header text, independently of any writer in the product.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "workers/models/safetensors.h"

/* 8-byte little-endian length, the header, then dlen data bytes (0, 1, 2, ...). */
static uint8_t *build(const char *header, size_t hlen, size_t dlen, size_t *len)
{
    *len = 8 + hlen + dlen;
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < dlen; i++)
        b[8 + hlen + i] = (uint8_t)i;
    return b;
}

static uint8_t *build_s(const char *header, size_t dlen, size_t *len)
{
    return build(header, strlen(header), dlen, len);
}

/* ---- good files ---------------------------------------------------------- */

static void test_one_tensor(void **unused)
{
    (void)unused;
    size_t len;
    uint8_t *b = build_s("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
                         &len);
    struct safetensors st;
    char err[256] = "";
    assert_int_equal(safetensors_parse(b, len, &st, err, sizeof err), 0);
    assert_int_equal(st.n, 1);
    const struct safetensors_tensor *t = safetensors_find(&st, "w");
    assert_non_null(t);
    assert_string_equal(t->name, "w");
    assert_int_equal(t->dtype, SAFETENSORS_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->numel, 6);
    assert_int_equal(t->begin, 0);
    assert_int_equal(t->end, 24);
    assert_int_equal(st.data_len, 24);
    size_t hlen = len - 8 - 24;
    assert_ptr_equal(t->data, b + 8 + hlen);
    assert_null(st.metadata);
    assert_null(st.map);
    assert_null(safetensors_find(&st, "x"));
    assert_null(safetensors_find(&st, NULL));
    safetensors_close(&st);
    assert_int_equal(st.n, 0);
    safetensors_close(&st); /* twice is harmless */
    free(b);
}

static void test_several_tensors_metadata_and_odd_shapes(void **unused)
{
    (void)unused;
    /* Out of offset order in the header; a scalar; an empty tensor sitting
     * where another starts; blanks after the object (the format's padding). */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"h\\u00e9\"},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]},"
                    "\"s\":{\"shape\":[],\"data_offsets\":[0,8],\"dtype\":\"F64\"},"
                    "\"e\":{\"dtype\":\"I32\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                    "\"u\":{\"dtype\":\"U8\",\"shape\":[1,1,3],\"data_offsets\":[16,19]}}     ";
    size_t len;
    uint8_t *b = build_s(h, 19, &len);
    struct safetensors st;
    char err[256] = "";
    assert_int_equal(safetensors_parse(b, len, &st, err, sizeof err), 0);
    assert_int_equal(st.n, 4);
    assert_non_null(st.metadata);
    assert_string_equal(json_string_value(json_object_get(st.metadata, "format")), "pt");
    /* the header's order is kept */
    assert_string_equal(st.tensors[0].name, "b");
    assert_string_equal(st.tensors[1].name, "s");
    assert_string_equal(st.tensors[2].name, "e");
    assert_string_equal(st.tensors[3].name, "u");
    const struct safetensors_tensor *s = safetensors_find(&st, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_ptr_equal(s->data, st.data);
    const struct safetensors_tensor *e = safetensors_find(&st, "e");
    assert_int_equal(e->numel, 0);
    const struct safetensors_tensor *bt = safetensors_find(&st, "b");
    assert_int_equal(bt->dtype, SAFETENSORS_BF16);
    assert_int_equal(((const uint8_t *)bt->data)[0], 8); /* data byte i holds i */
    const struct safetensors_tensor *u = safetensors_find(&st, "u");
    assert_int_equal(u->numel, 3);
    assert_int_equal(((const uint8_t *)u->data)[2], 18);
    safetensors_close(&st);
    free(b);
}

static void test_empty_file_header(void **unused)
{
    (void)unused;
    size_t len;
    uint8_t *b = build_s("{}", 0, &len);
    struct safetensors st;
    char err[256] = "";
    assert_int_equal(safetensors_parse(b, len, &st, err, sizeof err), 0);
    assert_int_equal(st.n, 0);
    safetensors_close(&st);
    free(b);
}

static void test_dtypes(void **unused)
{
    (void)unused;
    static const struct {
        const char *name;
        size_t size;
    } want[] = {{"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
                {"U32", 4},  {"F32", 4},  {"I64", 8},  {"U64", 8},     {"F64", 8}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char h[160];
        snprintf(h, sizeof h, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 want[i].name, 3 * want[i].size);
        size_t len;
        uint8_t *b = build_s(h, 3 * want[i].size, &len);
        struct safetensors st;
        char err[256] = "";
        assert_int_equal(safetensors_parse(b, len, &st, err, sizeof err), 0);
        assert_string_equal(safetensors_dtype_name(st.tensors[0].dtype), want[i].name);
        assert_int_equal(safetensors_dtype_size(st.tensors[0].dtype), want[i].size);
        safetensors_close(&st);
        free(b);
    }
    assert_null(safetensors_dtype_name((enum safetensors_dtype)99));
    assert_int_equal(safetensors_dtype_size((enum safetensors_dtype)99), 0);
}

static void test_alignment(void **unused)
{
    (void)unused;
    /* A 3-byte data offset into an aligned buffer misaligns an F32. */
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                    "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[3,7]}}";
    size_t hlen = strlen(h);
    /* pad the header with blanks to a multiple of 8 so the data area is aligned */
    char padded[256];
    size_t plen = (hlen + 7) / 8 * 8;
    memset(padded, ' ', plen);
    memcpy(padded, h, hlen);
    size_t len;
    uint8_t *b = build(padded, plen, 7, &len);
    struct safetensors st;
    char err[256] = "";
    assert_int_equal(safetensors_parse(b, len, &st, err, sizeof err), 0);
    assert_true(safetensors_aligned(&st.tensors[0]));
    assert_false(safetensors_aligned(&st.tensors[1]));
    safetensors_close(&st);
    free(b);
}

/* ---- bad files ----------------------------------------------------------- */

struct bad {
    const char *header; /* NULL: use raw/raw_len */
    size_t dlen;
    const char *want;   /* a substring of the message */
    const char *want2;  /* another one, or NULL */
};

#define T(name, dt, shape, off) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static const struct bad bad_headers[] = {
    {"[]", 0, "does not start with a JSON object", NULL},
    {"{\"a\":", 0, "not valid JSON", "line 1", },
    {"{} x", 0, "not valid JSON", NULL},
    {"{\"a\":1,\"a\":2}", 0, "not valid JSON", "duplicate"},
    {"{\"__metadata__\":[]}", 0, "\"__metadata__\" is not an object", NULL},
    {"{\"__metadata__\":{\"k\":1}}", 0, "the value of \"k\" is not a string", NULL},
    {"{\"w\":[1]}", 0, "tensor \"w\": expected an object", NULL},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing \"dtype\"", NULL},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing \"shape\"", NULL},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor \"w\": missing \"data_offsets\"", NULL},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"dtyp\":1}}", 4,
     "tensor \"w\": unexpected key \"dtyp\"", NULL},
    {"{" T("w", "F17", "[1]", "[0,4]") "}", 4, "tensor \"w\": unknown dtype \"F17\"", NULL},
    {"{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is not a string", NULL},
    {"{" T("w", "F32", "4", "[0,4]") "}", 4, "tensor \"w\": \"shape\" is not an array", NULL},
    {"{" T("w", "F32", "[-1]", "[0,4]") "}", 4, "tensor \"w\": shape[0] is not a non-negative integer", NULL},
    {"{" T("w", "F32", "[1, 1.0]", "[0,4]") "}", 4, "shape[1] is not a non-negative integer", NULL},
    {"{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "shape has 9 dimensions", NULL},
    {"{" T("w", "F32", "[4294967296,4294967296,16]", "[0,4]") "}", 4, "element count overflows", NULL},
    {"{" T("w", "F32", "[4611686018427387904]", "[0,4]") "}", 4, "byte size overflows", NULL},
    {"{" T("w", "F32", "[1]", "[0]") "}", 4, "tensor \"w\": \"data_offsets\" is not [begin, end]", NULL},
    {"{" T("w", "F32", "[1]", "[0,4,8]") "}", 4, "\"data_offsets\" is not [begin, end]", NULL},
    {"{" T("w", "F32", "[1]", "[-4,0]") "}", 4, "\"data_offsets\" is not [begin, end]", NULL},
    {"{" T("w", "F32", "[1]", "[\"0\",4]") "}", 4, "\"data_offsets\" is not [begin, end]", NULL},
    {"{" T("w", "F32", "[1]", "[4,0]") "}", 4, "tensor \"w\": data_offsets [4, 0] end before", NULL},
    {"{" T("w", "F32", "[2]", "[0,8]") "}", 4, "tensor \"w\": data_offsets [0, 8] run past the end of the file",
     "data area is 4 bytes"},
    /* jansson refuses integers past int64 itself, in its own words */
    {"{" T("w", "F32", "[1]", "[0,18446744073709551615]") "}", 4, "not valid JSON", "too big integer"},
    {"{" T("w", "F32", "[1]", "[0,9223372036854775807]") "}", 4, "run past the end of the file", NULL},
    {"{" T("w", "F32", "[2,3]", "[0,20]") "}", 20, "tensor \"w\": shape [2, 3] of F32 is 24 bytes, but data_offsets [0, 20] hold 20",
     NULL},
    {"{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 12,
     "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" [0, 8]", NULL},
    {"{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[8,12]") "}", 12,
     "tensor \"b\": data_offsets [8, 12] leave bytes 4..7", NULL},
    {"{" T("a", "F32", "[1]", "[4,8]") "}", 8, "tensor \"a\": data_offsets [4, 8] leave bytes 0..3", NULL},
    {"{" T("a", "F32", "[1]", "[0,4]") "}", 9, "5 bytes follow the last tensor (\"a\" ends at 4", NULL},
    {"{}", 3, "no tensors, but 3 bytes", NULL},
    {"{\"a\xff\":1}", 0, "not valid JSON", NULL},
    /* control characters in names are shown as '?' (messages go into logs) */
    {"{\"a\\u0001b\":{\"dtype\":\"X\\u007f\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor \"a?b\": unknown dtype \"X?\"", NULL},
};

static void expect_bad(const uint8_t *b, size_t len, const char *want, const char *want2,
                       const char *label)
{
    struct safetensors st;
    memset(&st, 0x5a, sizeof st); /* must be reset even on failure */
    char err[512] = "";
    int rc = safetensors_parse(b, len, &st, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, want) || (want2 && !strstr(err, want2)))
        fail_msg("%s: rc %d, message \"%s\", expected -EINVAL and \"%s\"%s%s", label, rc, err,
                 want, want2 ? " and " : "", want2 ? want2 : "");
    assert_int_equal(st.n, 0);
    assert_null(st.tensors);
    assert_null(st.header);
    for (const char *p = err; *p; p++) /* messages go into log lines as text */
        if ((unsigned char)*p < 0x20)
            fail_msg("%s: control byte in message \"%s\"", label, err);
    safetensors_close(&st);
}

static void test_bad_headers(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        size_t len;
        uint8_t *b = build_s(bad_headers[i].header, bad_headers[i].dlen, &len);
        expect_bad(b, len, bad_headers[i].want, bad_headers[i].want2, bad_headers[i].header);
        free(b);
    }
}

static void test_bad_lengths(void **unused)
{
    (void)unused;
    uint8_t zero[8] = {0};
    expect_bad(zero, 0, "file is 0 bytes, too short", NULL, "empty");
    expect_bad(zero, 7, "file is 7 bytes, too short", NULL, "7 bytes");
    expect_bad(zero, 8, "header (0 bytes) does not start with a JSON object", NULL, "hlen 0");

    size_t len;
    uint8_t *b = build_s("{}", 0, &len);
    b[0] = 3; /* header length 3, 2 bytes follow */
    expect_bad(b, len, "header length 3 runs past the end of the file (2 bytes follow", NULL,
               "hlen past end");
    memset(b, 0xff, 8); /* 2^64 - 1: 8 + N must not wrap */
    expect_bad(b, len, "header length 18446744073709551615 runs past the end", NULL, "hlen max");
    free(b);

    /* a NUL inside the header */
    static const char nul_hdr[] = "{\"a\":\0}";
    b = build(nul_hdr, sizeof nul_hdr - 1, 0, &len);
    expect_bad(b, len, "not valid JSON", NULL, "NUL in header");
    free(b);

    /* a header over the limit is refused before it is parsed */
    size_t big = (size_t)SAFETENSORS_MAX_HEADER + 1;
    uint8_t *h = malloc(8 + big);
    assert_non_null(h);
    for (int i = 0; i < 8; i++)
        h[i] = (uint8_t)((uint64_t)big >> (8 * i));
    h[8] = '{';
    expect_bad(h, 8 + big, "over the limit", NULL, "huge header");
    free(h);
}

static void test_long_names_are_cut(void **unused)
{
    (void)unused;
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    char h[512];
    snprintf(h, sizeof h, "{\"%s\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", name);
    size_t len;
    uint8_t *b = build_s(h, 4, &len);
    expect_bad(b, len, "nnnnnnnn...\": unknown dtype \"F99\"", NULL, "long name");
    /* a short buffer still gets a NUL */
    struct safetensors st;
    char small[10];
    assert_int_equal(safetensors_parse(b, len, &st, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    free(b);
}

/* ---- files ---------------------------------------------------------------- */

static char tmpdir[64];

static void write_file(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

static void test_open(void **unused)
{
    (void)unused;
    char path[128], err[512];
    struct safetensors st;
    size_t len;
    uint8_t *b = build_s("{" T("w", "U8", "[5]", "[0,5]") "}", 5, &len);

    snprintf(path, sizeof path, "%s/good.safetensors", tmpdir);
    write_file(path, b, len);
    assert_int_equal(safetensors_open(path, &st, err, sizeof err), 0);
    assert_non_null(st.map);
    assert_int_equal(st.map_len, len);
    assert_memory_equal(st.tensors[0].data, "\0\1\2\3\4", 5);
    safetensors_close(&st);
    assert_null(st.map);

    /* truncated: the tensor now runs past the end */
    write_file(path, b, len - 2);
    assert_int_equal(safetensors_open(path, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "tensor \"w\": data_offsets [0, 5] run past the end"));
    assert_null(st.map);

    write_file(path, "", 0);
    assert_int_equal(safetensors_open(path, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "file is 0 bytes"));

    snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
    assert_int_equal(safetensors_open(path, &st, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));

    assert_int_equal(safetensors_open(tmpdir, &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    free(b);
}

static int setup(void **unused)
{
    (void)unused;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **unused)
{
    (void)unused;
    char path[128];
    snprintf(path, sizeof path, "%s/good.safetensors", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_tensor),
        cmocka_unit_test(test_several_tensors_metadata_and_odd_shapes),
        cmocka_unit_test(test_empty_file_header),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_long_names_are_cut),
        cmocka_unit_test(test_open),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
