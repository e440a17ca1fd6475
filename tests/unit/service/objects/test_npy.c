/* Unit tests of service/npy.c: good files of each version and dtype, every
 * kind of bad header, the -EAGAIN protocol byte by byte, and the writer
 * (its output is byte-identical to numpy.save's, and parses back). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "service/objects/npy.h"

/* Builds a file: preamble of version major.0 (header length as the
 * version wants it), the dict text as given (no padding added), then
 * `data` bytes of 0xAB. Returns its length; buf must be big enough. */
static size_t build(unsigned char *buf, unsigned major, const char *dict, size_t data)
{
    size_t hlen = strlen(dict);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    size_t pre;
    if (major == 1) {
        buf[8] = (unsigned char)hlen;
        buf[9] = (unsigned char)(hlen >> 8);
        pre = 10;
    } else {
        buf[8] = (unsigned char)hlen;
        buf[9] = (unsigned char)(hlen >> 8);
        buf[10] = (unsigned char)(hlen >> 16);
        buf[11] = (unsigned char)(hlen >> 24);
        pre = 12;
    }
    memcpy(buf + pre, dict, hlen);
    memset(buf + pre + hlen, 0xAB, data);
    return pre + hlen + data;
}

static unsigned char file[1 << 16];
static char err[512];

/* Parses a version-`major` file with header `dict`; returns the code. */
static int parse(unsigned major, const char *dict, struct npy_info *info)
{
    size_t n = build(file, major, dict, 0);
    size_t need = 0;
    return npy_parse(file, n, info, &need, err, sizeof err);
}

/* Expects `dict` refused with `rc` and a message containing `what`. */
static void refused(unsigned major, const char *dict, int rc, const char *what)
{
    struct npy_info info;
    int got = parse(major, dict, &info);
    if (got != rc || !strstr(err, what))
        fail_msg("header %s: got %d \"%s\", expected %d with \"%s\"", dict, got, err, rc, what);
}

/* What numpy.save(f, np.zeros(3, dtype='<f4')) writes before the data
 * (numpy 1.x and 2.x alike). */
static const char numpy_f4_3[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"
    "                                                            \n";

static void test_numpy_file(void **state)
{
    (void)state;
    size_t hl = sizeof numpy_f4_3 - 1;
    assert_int_equal(hl, 128);
    unsigned char buf[128 + 12];
    memcpy(buf, numpy_f4_3, hl);
    memset(buf + hl, 0, 12);
    struct npy_info info;
    size_t need = 0;
    assert_int_equal(npy_parse(buf, sizeof buf, &info, &need, err, sizeof err), 0);
    assert_int_equal(info.major, 1);
    assert_int_equal(info.minor, 0);
    assert_int_equal(info.dtype, MODEL_DTYPE_F32);
    assert_int_equal(info.ndim, 1);
    assert_int_equal(info.shape[0], 3);
    assert_int_equal(info.data_offset, 128);
    assert_int_equal(info.data_bytes, 12);
}

static void test_each_dtype(void **state)
{
    (void)state;
    static const struct {
        const char *descr;
        uint32_t dtype;
        size_t size;
    } cases[] = {
        { "<f4", MODEL_DTYPE_F32, 4 }, { "<f8", MODEL_DTYPE_F64, 8 },
        { "<i4", MODEL_DTYPE_I32, 4 }, { "<i8", MODEL_DTYPE_I64, 8 },
        { "|u1", MODEL_DTYPE_U8, 1 },  { "<u1", MODEL_DTYPE_U8, 1 },
        { "u1", MODEL_DTYPE_U8, 1 },
    };
    for (unsigned major = 1; major <= 3; major++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char dict[128];
            snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2, 5), }\n",
                     cases[i].descr);
            struct npy_info info;
            assert_int_equal(parse(major, dict, &info), 0);
            assert_int_equal(info.major, major);
            assert_int_equal(info.dtype, cases[i].dtype);
            assert_int_equal(info.ndim, 2);
            assert_int_equal(info.shape[0], 2);
            assert_int_equal(info.shape[1], 5);
            assert_int_equal(info.data_bytes, 10 * cases[i].size);
            assert_int_equal(info.data_offset, (major == 1 ? 10 : 12) + strlen(dict));
        }
    }
}

static void test_header_spellings(void **state)
{
    (void)state;
    struct npy_info info;
    /* any order, double quotes, no trailing comma, no spaces */
    assert_int_equal(parse(1, "{\"shape\":(4,),\"descr\":\"<i8\",\"fortran_order\":False}", &info), 0);
    assert_int_equal(info.dtype, MODEL_DTYPE_I64);
    assert_int_equal(info.shape[0], 4);
    /* whitespace everywhere Python allows it inside brackets, padding after */
    assert_int_equal(parse(2, "{ 'fortran_order' :\tFalse ,\n 'shape' : ( 7 , 8 , ) , "
                              "'descr' : '<f8' , }   \r\n",
                           &info),
                     0);
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.data_bytes, 7 * 8 * 8);
    /* eight dimensions, a zero dimension makes an empty array */
    assert_int_equal(parse(1, "{'descr':'<f4','fortran_order':False,'shape':(1,2,3,4,5,6,7,8)}",
                           &info),
                     0);
    assert_int_equal(info.ndim, 8);
    assert_int_equal(info.data_bytes, 40320 * 4);
    assert_int_equal(parse(1, "{'descr':'<f4','fortran_order':False,'shape':(0, 18446744073709551615)}",
                           &info),
                     0);
    assert_int_equal(info.data_bytes, 0);
    /* the largest count that fits */
    assert_int_equal(parse(1, "{'descr':'|u1','fortran_order':False,'shape':(18446744073709551615,)}",
                           &info),
                     0);
    assert_int_equal(info.data_bytes, UINT64_MAX);
    /* version 3.0: UTF-8 is allowed in the header (here, in padding only
     * matters for strings; a UTF-8 key is still an unknown key) */
    refused(3, "{'descr':'<f4','fortran_order':False,'shape':(1,),'\xc3\xa9':1}", -EINVAL,
            "unknown key '\xc3\xa9'");
}

static void test_bad_preamble(void **state)
{
    (void)state;
    struct npy_info info;
    size_t need = 0;
    assert_int_equal(npy_parse("\x93NUMPX\x01\x00", 8, &info, &need, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a .npy file"));
    assert_int_equal(npy_parse("PK\x03\x04", 4, &info, &need, err, sizeof err), -EINVAL);
    assert_int_equal(npy_parse("{\"a\":1}", 7, &info, &need, err, sizeof err), -EINVAL);
    assert_int_equal(npy_parse("\x93NUMPY\x04\x00\x10\x00", 10, &info, &need, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "version 4.0"));
    assert_int_equal(npy_parse("\x93NUMPY\x01\x01\x10\x00", 10, &info, &need, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "version 1.1"));
    assert_int_equal(npy_parse("\x93NUMPY\x00\x00\x10\x00", 10, &info, &need, err, sizeof err),
                     -EINVAL);
    assert_int_equal(npy_parse("\x93NUMPY\x01\x00\x00\x00", 10, &info, &need, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "header length is 0"));
    /* HEADER_LEN over the limit is refused before the header arrives */
    assert_int_equal(npy_parse("\x93NUMPY\x02\x00\x00\x00\x01\x00", 12, &info, &need, err,
                               sizeof err),
                     -E2BIG);
    assert_non_null(strstr(err, "65536"));
    assert_int_equal(npy_parse("\x93NUMPY\x01\x00\xff\xff", 10, &info, &need, err, sizeof err),
                     -E2BIG);
}

/* Feeding a good file one byte more at a time: -EAGAIN with a growing
 * `need` until the header is complete, then 0 (the data is not needed). */
static void test_incremental(void **state)
{
    (void)state;
    for (unsigned major = 1; major <= 3; major++) {
        size_t n = build(file, major, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n", 12);
        size_t hdr = n - 12;
        struct npy_info info;
        size_t prev = 0;
        for (size_t len = 0; len < hdr; len++) {
            size_t need = 0;
            assert_int_equal(npy_parse(file, len, &info, &need, err, sizeof err), -EAGAIN);
            assert_true(need > len);
            assert_true(need <= hdr);
            assert_true(need >= prev);
            prev = need;
        }
        assert_int_equal(prev, hdr);
        size_t need = 0;
        assert_int_equal(npy_parse(file, hdr, &info, &need, err, sizeof err), 0);
        assert_int_equal(info.data_offset, hdr);
        assert_int_equal(info.data_bytes, 12);
    }
    /* a wrong first byte is refused at once */
    struct npy_info info;
    size_t need = 0;
    assert_int_equal(npy_parse("G", 1, &info, &need, err, sizeof err), -EINVAL);
}

static void test_bad_descr(void **state)
{
    (void)state;
    refused(1, "{'descr':'>f4','fortran_order':False,'shape':(1,)}", -EINVAL, "big-endian");
    refused(1, "{'descr':'>i8','fortran_order':False,'shape':(1,)}", -EINVAL, "'>i8' is big-endian");
    refused(1, "{'descr':'<f2','fortran_order':False,'shape':(1,)}", -EINVAL,
            "'descr' '<f2' is not a supported dtype");
    refused(1, "{'descr':'|b1','fortran_order':False,'shape':(1,)}", -EINVAL, "'|b1'");
    refused(1, "{'descr':'<c8','fortran_order':False,'shape':(1,)}", -EINVAL, "'<c8'");
    refused(1, "{'descr':'|O','fortran_order':False,'shape':(1,)}", -EINVAL, "'|O'");
    refused(1, "{'descr':'<U3','fortran_order':False,'shape':(1,)}", -EINVAL, "'<U3'");
    refused(1, "{'descr':'=f4','fortran_order':False,'shape':(1,)}", -EINVAL, "'=f4'");
    refused(1, "{'descr':'|i1','fortran_order':False,'shape':(1,)}", -EINVAL, "'|i1'");
    refused(1, "{'descr':'','fortran_order':False,'shape':(1,)}", -EINVAL, "''");
    refused(1, "{'descr':[('a','<f4')],'fortran_order':False,'shape':(1,)}", -EINVAL,
            "structured dtypes");
    refused(1, "{'descr':3,'fortran_order':False,'shape':(1,)}", -EINVAL,
            "expected a string as 'descr'");
    refused(1, "{'descr':'<f\\x34','fortran_order':False,'shape':(1,)}", -EINVAL, "escape");
    refused(1, "{'descr':'<f4\",'fortran_order':False,'shape':(1,)}", -EINVAL, "");
    refused(1, "{'descr':'<f4", -EINVAL, "unterminated string");
}

static void test_bad_fortran(void **state)
{
    (void)state;
    refused(1, "{'descr':'<f4','fortran_order':True,'shape':(2,2)}", -EINVAL,
            "'fortran_order' is True");
    refused(1, "{'descr':'<f4','fortran_order':false,'shape':(2,2)}", -EINVAL,
            "expected False as 'fortran_order'");
    refused(1, "{'descr':'<f4','fortran_order':0,'shape':(2,2)}", -EINVAL, "'fortran_order'");
    refused(1, "{'descr':'<f4','fortran_order':Falsey,'shape':(2,2)}", -EINVAL, "'fortran_order'");
    refused(1, "{'descr':'<f4','fortran_order':'False','shape':(2,2)}", -EINVAL, "'fortran_order'");
}

static void test_bad_shape(void **state)
{
    (void)state;
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':()}", -EINVAL, "0-d arrays");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(3)}", -EINVAL, "written (n,)");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':[3]}", -EINVAL,
            "expected a tuple as 'shape'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':3}", -EINVAL, "a tuple as 'shape'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(-1,)}", -EINVAL, "negative");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(+1,)}", -EINVAL, "non-negative integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1.5,)}", -EINVAL, "',' or ')'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(3L,)}", -EINVAL, "decimal integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(0x10,)}", -EINVAL, "decimal integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1_000,)}", -EINVAL, "decimal integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(07,)}", -EINVAL, "leading zero");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(,)}", -EINVAL, "non-negative integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,,)}", -EINVAL, "non-negative integer");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1 2)}", -EINVAL, "',' or ')'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,2}", -EINVAL, "',' or ')'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,2,3,4,5,6,7,8,9)}", -EINVAL,
            "more than 8 dimensions");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(18446744073709551616,)}", -EOVERFLOW,
            "does not fit in 64 bits");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(4611686018427387904,)}", -EOVERFLOW,
            "more than 2^64 bytes");
    refused(1, "{'descr':'<f8','fortran_order':False,'shape':(4294967296, 4294967296)}", -EOVERFLOW,
            "more than 2^64 bytes");
}

static void test_bad_dict(void **state)
{
    (void)state;
    refused(1, "", -EINVAL, "header length is 0");
    refused(1, "   ", -EINVAL, "expected '{'");
    refused(1, "['descr']", -EINVAL, "expected '{'");
    refused(1, "{}", -EINVAL, "the header has no 'descr'");
    refused(1, "{'descr':'<f4','shape':(1,)}", -EINVAL, "no 'fortran_order'");
    refused(1, "{'descr':'<f4','fortran_order':False}", -EINVAL, "no 'shape'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,),'extra':1}", -EINVAL,
            "unknown key 'extra'");
    refused(1, "{'descr':'<f4','descr':'<f8','fortran_order':False,'shape':(1,)}", -EINVAL,
            "key 'descr' appears twice");
    refused(1, "{'descr' '<f4','fortran_order':False,'shape':(1,)}", -EINVAL, "':' after a key");
    refused(1, "{'descr':'<f4' 'fortran_order':False,'shape':(1,)}", -EINVAL, "',' or '}'");
    refused(1, "{'descr':'<f4',,'fortran_order':False,'shape':(1,)}", -EINVAL, "a key");
    refused(1, "{descr:'<f4','fortran_order':False,'shape':(1,)}", -EINVAL, "a key");
    refused(1, "{b'descr':'<f4','fortran_order':False,'shape':(1,)}", -EINVAL, "a key");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,)", -EINVAL, "',' or '}'");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,)}}", -EINVAL, "only padding");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,)} # x", -EINVAL, "only padding");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,)}\x0b", -EINVAL, "byte 0x0b");
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':(1,)} \xc3\xa9", -EINVAL,
            "not ASCII");
    refused(2, "{'descr':'<f4','fortran_order':False,'shape':(1,)} \xc3\xa9", -EINVAL,
            "version 2.0 header is ASCII");
    refused(3, "{'descr':'<f4','fortran_order':False,'shape':(1,)} \xc3", -EINVAL,
            "invalid UTF-8");
    refused(3, "{'descr':'<f4','fortran_order':False,'shape':(1,)} \xc3\xa9", -EINVAL,
            "only padding");
    /* the message names the byte of the file where it went wrong */
    refused(1, "{'descr':'<f4','fortran_order':False,'shape':[1]}", -EINVAL, "byte 55:");
}

/* An embedded NUL (build() would stop at it): refused, never read past. */
static void test_nul_in_header(void **state)
{
    (void)state;
    static const char dict[] = "{'descr':'<f4\0','fortran_order':False,'shape':(1,)}";
    size_t hlen = sizeof dict - 1;
    unsigned char buf[128];
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)hlen;
    buf[9] = 0;
    memcpy(buf + 10, dict, hlen);
    struct npy_info info;
    size_t need = 0;
    assert_int_equal(npy_parse(buf, 10 + hlen, &info, &need, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "control byte 0x00"));
}

/* A short error buffer is cut, never overrun; a zero one is not touched. */
static void test_err_buffer(void **state)
{
    (void)state;
    size_t n = build(file, 1, "{'descr':'>f4','fortran_order':False,'shape':(1,)}", 0);
    struct npy_info info;
    size_t need = 0;
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(npy_parse(file, n, &info, &need, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(npy_parse(file, n, &info, &need, NULL, 0), -EINVAL);
}

static void test_write(void **state)
{
    (void)state;
    unsigned char out[NPY_WRITE_MAX];
    uint64_t shape[MODEL_OBJECT_MAX_DIMS] = { 3 };
    int n = npy_header_write(MODEL_DTYPE_F32, 1, shape, out, sizeof out);
    assert_int_equal(n, 128);
    assert_memory_equal(out, numpy_f4_3, 128);

    /* every dtype, up to eight huge dimensions: 64-aligned, and parses back */
    for (uint32_t dt = MODEL_DTYPE_U8; dt <= MODEL_DTYPE_F64; dt++) {
        for (uint32_t nd = 1; nd <= MODEL_OBJECT_MAX_DIMS; nd++) {
            for (uint32_t i = 0; i < nd; i++)
                shape[i] = i == 0 ? UINT64_MAX : 0; /* a zero keeps the count in range */
            if (nd == 1)
                shape[0] = 12345;
            n = npy_header_write(dt, nd, shape, out, sizeof out);
            assert_true(n > 0);
            assert_int_equal(n % 64, 0);
            assert_true((size_t)n <= NPY_WRITE_MAX);
            assert_int_equal(out[n - 1], '\n');
            struct npy_info info;
            size_t need = 0;
            assert_int_equal(npy_parse(out, (size_t)n, &info, &need, err, sizeof err), 0);
            assert_int_equal(info.dtype, dt);
            assert_int_equal(info.ndim, nd);
            assert_int_equal(info.data_offset, (uint64_t)n);
            assert_memory_equal(info.shape, shape, nd * sizeof shape[0]);
        }
    }
    assert_int_equal(npy_header_write(99, 1, shape, out, sizeof out), -EINVAL);
    assert_int_equal(npy_header_write(MODEL_DTYPE_U8, 0, shape, out, sizeof out), -EINVAL);
    assert_int_equal(npy_header_write(MODEL_DTYPE_U8, 9, shape, out, sizeof out), -EINVAL);
    assert_int_equal(npy_header_write(MODEL_DTYPE_U8, 1, shape, out, 127), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numpy_file),    cmocka_unit_test(test_each_dtype),
        cmocka_unit_test(test_header_spellings), cmocka_unit_test(test_bad_preamble),
        cmocka_unit_test(test_incremental),   cmocka_unit_test(test_bad_descr),
        cmocka_unit_test(test_bad_fortran),   cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_bad_dict),      cmocka_unit_test(test_nul_in_header),
        cmocka_unit_test(test_err_buffer),    cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests_name("npy", tests, NULL, NULL);
}
