/*
 * Unit tests of service/sbuf.c: the capped growable buffer. What sbuf.h
 * promises: appends keep the data NUL-terminated, an append that would pass
 * the hard limit fails with -E2BIG and leaves the buffer exactly as it was
 * (for sbuf_json_string too, which appends in many steps), JSON string
 * literals come out valid (checked by parsing them back with jansson),
 * and reset / steal / free leave a buffer that can be used again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <jansson.h>

#include "service/core/sbuf.h"

/* Asserts that b holds exactly the n bytes of want, NUL-terminated. */
static void assert_holds(const struct sbuf *b, const void *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_non_null(b->data);
    assert_memory_equal(b->data, want, n);
    assert_int_equal(b->data[n], '\0');
    assert_true(b->cap > n);
}

#define assert_holds_str(b, s) assert_holds((b), (s), strlen(s))

/* Parses text as one JSON value (strings allowed at top level) and returns
 * the string it holds (new: caller frees), or fails the test. */
static char *json_decode_string(const char *text, size_t *len)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("not valid JSON: %s: [%s]", jerr.text, text);
    if (!json_is_string(v))
        fail_msg("not a JSON string: [%s]", text);
    *len = json_string_length(v);
    char *s = malloc(*len + 1);
    assert_non_null(s);
    memcpy(s, json_string_value(v), *len + 1);
    json_decref(v);
    return s;
}

/* ---- append, puts, printf ------------------------------------------------- */

static void test_append_puts_printf(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    assert_null(b.data);

    assert_int_equal(sbuf_puts(&b, "hello"), 0);
    assert_holds_str(&b, "hello");
    assert_int_equal(sbuf_append(&b, ", wor", 5), 0);
    assert_int_equal(sbuf_printf(&b, "ld %d%c%s", 42, '!', ""), 0);
    assert_holds_str(&b, "hello, world 42!");

    /* Binary bytes, NULs included, are kept as given. */
    const char bin[] = { 'a', '\0', 'b', '\xff' };
    sbuf_reset(&b);
    assert_int_equal(sbuf_append(&b, bin, sizeof bin), 0);
    assert_holds(&b, bin, sizeof bin);

    /* Appending nothing is fine and keeps the terminator, even before any
     * memory was allocated. */
    sbuf_free(&b);
    assert_int_equal(sbuf_append(&b, "", 0), 0);
    assert_holds_str(&b, "");
    assert_int_equal(sbuf_puts(&b, ""), 0);
    assert_int_equal(sbuf_printf(&b, "%s", ""), 0);
    assert_holds_str(&b, "");
    sbuf_free(&b);
}

/* Many appends through several reallocations keep every byte. */
static void test_growth(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    for (int i = 0; i < 5000; i++)
        assert_int_equal(sbuf_printf(&b, "%04d,", i), 0);
    assert_int_equal(b.len, 5000 * 5);
    for (int i = 0; i < 5000; i++) {
        char want[16]; /* room for any int: gcc checks at -O1 */
        snprintf(want, sizeof want, "%04d,", i);
        assert_memory_equal(b.data + i * 5, want, 5);
    }
    assert_int_equal(b.data[b.len], '\0');

    /* One formatted string far bigger than the first allocation. */
    char *big = malloc(100001);
    assert_non_null(big);
    memset(big, 'x', 100000);
    big[100000] = '\0';
    sbuf_reset(&b);
    assert_int_equal(sbuf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 100002);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[100001], '>');
    assert_int_equal(strspn(b.data + 1, "x"), 100000);
    free(big);
    sbuf_free(&b);
}

static void test_reserve(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    assert_int_equal(sbuf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1001); /* room for the NUL too */
    assert_int_equal(b.len, 0);
    char *before = b.data;
    /* Filling the reserved room does not move the data. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sbuf_append(&b, "z", 1), 0);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.len, 1000);
    sbuf_free(&b);
}

/* ---- the hard limit ------------------------------------------------------- */

static void test_limit(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    sbuf_set_limit(&b, 10);

    assert_int_equal(sbuf_puts(&b, "12345"), 0);
    size_t cap = b.cap;
    char *data = b.data;

    /* One byte too many, by each kind of append: refused, nothing changed. */
    assert_int_equal(sbuf_append(&b, "abcdef", 6), -E2BIG);
    assert_holds_str(&b, "12345");
    assert_int_equal(sbuf_puts(&b, "abcdef"), -E2BIG);
    assert_holds_str(&b, "12345");
    assert_int_equal(sbuf_printf(&b, "%d", 123456), -E2BIG);
    assert_holds_str(&b, "12345");
    assert_int_equal(sbuf_reserve(&b, 6), -E2BIG);
    assert_holds_str(&b, "12345");
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, data);

    /* Exactly up to the limit is allowed... */
    assert_int_equal(sbuf_printf(&b, "%s", "abcde"), 0);
    assert_holds_str(&b, "12345abcde");
    /* ...and then not one byte more, but nothing is still fine. */
    assert_int_equal(sbuf_append(&b, "!", 1), -E2BIG);
    assert_int_equal(sbuf_append(&b, "", 0), 0);
    assert_holds_str(&b, "12345abcde");

    /* Sizes that would overflow len + extra are refused, not wrapped. */
    assert_int_equal(sbuf_reserve(&b, SIZE_MAX), -E2BIG);
    assert_int_equal(sbuf_reserve(&b, SIZE_MAX - 5), -E2BIG);
    assert_holds_str(&b, "12345abcde");

    /* Reset makes room again under the same limit. */
    sbuf_reset(&b);
    assert_int_equal(sbuf_puts(&b, "0123456789"), 0);
    assert_int_equal(sbuf_puts(&b, "x"), -E2BIG);
    sbuf_free(&b);

    /* A refused first append leaves an empty buffer without memory. */
    struct sbuf e = SBUF_INIT;
    sbuf_set_limit(&e, 3);
    assert_int_equal(sbuf_puts(&e, "four"), -E2BIG);
    assert_int_equal(e.len, 0);
    assert_null(e.data);
    sbuf_free(&e);
}

/* limit 0 means SBUF_DEFAULT_LIMIT: more than that is refused without
 * trying to allocate it. */
static void test_default_limit(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    assert_int_equal(b.limit, 0);
    assert_int_equal(sbuf_reserve(&b, SBUF_DEFAULT_LIMIT + 1), -E2BIG);
    assert_null(b.data);
    assert_int_equal(sbuf_puts(&b, "ab"), 0);
    assert_int_equal(sbuf_reserve(&b, SBUF_DEFAULT_LIMIT - 1), -E2BIG);
    assert_holds_str(&b, "ab");
    sbuf_free(&b);
}

/* An allocation that cannot succeed is -ENOMEM, buffer unchanged. */
static void test_enomem(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    sbuf_set_limit(&b, (size_t)1 << 50);
    assert_int_equal(sbuf_puts(&b, "keep"), 0);
    char *data = b.data;
    size_t cap = b.cap;
    /* 256 TiB and more: beyond a 47-bit user address space, so realloc
     * fails whatever the overcommit policy (and the size stays below
     * 2^63, which valgrind would report as a "fishy" argument). */
    assert_int_equal(sbuf_reserve(&b, (size_t)1 << 48), -ENOMEM);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_holds_str(&b, "keep");
    sbuf_free(&b);
}

/* A format vsnprintf cannot render (a wide character the C locale cannot
 * encode) is -EINVAL, buffer unchanged. */
static void test_printf_error(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    assert_int_equal(sbuf_puts(&b, "ok"), 0);
    static const wchar_t wide[] = { 0x20ac, 0 };
    assert_int_equal(sbuf_printf(&b, "%ls", wide), -EINVAL);
    assert_holds_str(&b, "ok");
    sbuf_free(&b);
}

/* ---- JSON strings --------------------------------------------------------- */

static void test_json_string_escapes(void **unused)
{
    (void)unused;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        { "", "\"\"" },
        { "plain", "\"plain\"" },
        { "say \"hi\"", "\"say \\\"hi\\\"\"" },
        { "a\\b", "\"a\\\\b\"" },
        { "\\\"", "\"\\\\\\\"\"" },
        { "l1\nl2\r\n\tx", "\"l1\\nl2\\r\\n\\tx\"" },
        { "\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"" },
        { "\b\f", "\"\\u0008\\u000c\"" },
        { "/", "\"/\"" },
        /* UTF-8 passes through byte for byte: é, €, U+1F600 */
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sbuf b = SBUF_INIT;
        assert_int_equal(sbuf_json_string(&b, cases[i].in), 0);
        if (strcmp(b.data, cases[i].out) != 0)
            fail_msg("case %zu: got [%s], want [%s]", i, b.data, cases[i].out);
        assert_int_equal(b.len, strlen(cases[i].out));
        size_t n;
        char *back = json_decode_string(b.data, &n);
        assert_string_equal(back, cases[i].in);
        assert_int_equal(n, strlen(cases[i].in));
        free(back);
        sbuf_free(&b);
    }
}

/* Every byte from 0x01 to 0xff in one string: the literal parses back to
 * the same bytes (0x80..0xff as part of valid UTF-8 sequences, since JSON
 * must be UTF-8), and no raw control character is ever emitted. */
static void test_json_string_roundtrip_all_bytes(void **unused)
{
    (void)unused;
    struct sbuf in = SBUF_INIT;
    for (unsigned c = 1; c < 0x80; c++) {
        char ch = (char)c;
        assert_int_equal(sbuf_append(&in, &ch, 1), 0);
    }
    /* U+0080..U+07FF cover every lead and continuation byte 0x80..0xdf. */
    for (unsigned cp = 0x80; cp < 0x800; cp += 7) {
        char u[2] = { (char)(0xc0 | (cp >> 6)), (char)(0x80 | (cp & 0x3f)) };
        assert_int_equal(sbuf_append(&in, u, 2), 0);
    }
    assert_int_equal(sbuf_puts(&in, "\xe2\x82\xac\xf0\x9f\x98\x80"), 0);

    struct sbuf out = SBUF_INIT;
    assert_int_equal(sbuf_puts(&out, "prefix:"), 0);
    assert_int_equal(sbuf_json_string(&out, in.data), 0);
    assert_memory_equal(out.data, "prefix:", 7);
    for (size_t i = 7; i < out.len; i++)
        if ((unsigned char)out.data[i] < 0x20)
            fail_msg("raw control byte 0x%02x at %zu", (unsigned char)out.data[i], i);
    size_t n;
    char *back = json_decode_string(out.data + 7, &n);
    assert_int_equal(n, in.len);
    assert_memory_equal(back, in.data, n);
    free(back);
    sbuf_free(&in);
    sbuf_free(&out);
}

/* A literal that does not fit is refused as a whole: no half string, no
 * dangling quote, whether it fails at the first quote, in the middle (on
 * a plain byte or on an escape) or at the closing quote. */
static void test_json_string_limit(void **unused)
{
    (void)unused;
    static const char *const inputs[] = { "hello", "a\"b\\c", "\x01\x02\x03", "abc" };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        struct sbuf probe = SBUF_INIT;
        assert_int_equal(sbuf_json_string(&probe, inputs[i]), 0);
        size_t need = probe.len;
        sbuf_free(&probe);

        /* "ab" already there; every limit that leaves less than `need`. */
        for (size_t limit = 2; limit < 2 + need; limit++) {
            struct sbuf b = SBUF_INIT;
            sbuf_set_limit(&b, limit);
            assert_int_equal(sbuf_puts(&b, "ab"), 0);
            int rc = sbuf_json_string(&b, inputs[i]);
            if (rc != -E2BIG)
                fail_msg("input %zu limit %zu: rc %d", i, limit, rc);
            assert_holds_str(&b, "ab");
            sbuf_free(&b);
        }
        /* ...and exactly enough succeeds. */
        struct sbuf b = SBUF_INIT;
        sbuf_set_limit(&b, 2 + need);
        assert_int_equal(sbuf_puts(&b, "ab"), 0);
        assert_int_equal(sbuf_json_string(&b, inputs[i]), 0);
        assert_int_equal(b.len, 2 + need);
        sbuf_free(&b);
    }
}

/* ---- reset, steal, free --------------------------------------------------- */

static void test_reset_keeps_memory(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    sbuf_reset(&b); /* on a fresh buffer: harmless */
    assert_int_equal(b.len, 0);
    assert_null(b.data);

    assert_int_equal(sbuf_puts(&b, "some text"), 0);
    char *data = b.data;
    size_t cap = b.cap;
    sbuf_reset(&b);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_holds_str(&b, "");
    assert_int_equal(sbuf_puts(&b, "new"), 0);
    assert_holds_str(&b, "new");
    sbuf_free(&b);
}

static void test_steal(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    sbuf_set_limit(&b, 100);
    assert_int_equal(sbuf_printf(&b, "%s-%d", "job", 7), 0);
    char *s = sbuf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "job-7");
    /* The buffer is empty and owns nothing any more. */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);

    /* It can be used again (with its limit) and does not touch s. */
    assert_int_equal(sbuf_puts(&b, "again"), 0);
    assert_holds_str(&b, "again");
    assert_true(b.data != s);
    assert_string_equal(s, "job-7");
    free(s);

    /* A buffer that was appended nothing but "" still yields a string. */
    sbuf_free(&b);
    assert_int_equal(sbuf_puts(&b, ""), 0);
    s = sbuf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);

    /* Never appended to: NULL is allowed, and free(NULL) is fine. */
    struct sbuf never = SBUF_INIT;
    free(sbuf_steal(&never));
    assert_null(never.data);
}

static void test_free_and_reuse(void **unused)
{
    (void)unused;
    struct sbuf b = SBUF_INIT;
    sbuf_free(&b); /* never used: harmless */
    assert_int_equal(sbuf_puts(&b, "x"), 0);
    sbuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    sbuf_free(&b); /* twice: harmless */
    assert_int_equal(sbuf_puts(&b, "reused"), 0);
    assert_holds_str(&b, "reused");
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_puts_printf),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_default_limit),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_printf_error),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_json_string_roundtrip_all_bytes),
        cmocka_unit_test(test_json_string_limit),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_free_and_reuse),
    };
    return cmocka_run_group_tests_name("sbuf", tests, NULL, NULL);
}
