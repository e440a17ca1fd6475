/*
 * Unit tests for workers/model_prefix_count.c: documents split over several
 * accumulators (as if several workers), exported into objects and
 * reduced, equal a naive count computed here (a list searched linearly,
 * sorted by its own comparator) and the serial function; base64 words and
 * prefixes that are not UTF-8; the threshold parameter; the order of the
 * result; all-or-nothing items; item errors; malformed partials (each an
 * error, never a crash). Objects come from a test-only model_host backed
 * by malloc'ed arrays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <batchd/model.h>
#include "workers/models/model_prefix_count.h"

#include "tests/unit/workers/models/host_double.h"

static size_t th_add_bytes(const void *data, size_t n)
{
    uint64_t shape[1] = {n};
    return th_add(MODEL_DTYPE_U8, 1, shape, data);
}

/* What batchd gives load() in the supervisor: no object exists yet, so
 * both functions refuse (service/host.c's host_load()). reduce() runs in a
 * worker and must use the host init() got there instead. */
static int th_load_ref(const json_t *v, struct model_object *obj, char *err, size_t errlen)
{
    (void)v;
    (void)obj;
    snprintf(err, errlen, "object_ref is not available in load()");
    return -ENOTSUP;
}

static int th_load_new(uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                       struct model_object *obj, void **data, char *err, size_t errlen)
{
    (void)dtype;
    (void)ndim;
    (void)shape;
    (void)obj;
    (void)data;
    snprintf(err, errlen, "object_new is not available in load()");
    return -ENOTSUP;
}

static const struct model_host th_load_host = {
    .abi_version = MODEL_ABI_VERSION,
    .object_ref = th_load_ref,
    .object_new = th_load_new,
};

/* ---- the naive count ------------------------------------------------------ */

struct naive_entry {
    unsigned char bytes[MODEL_PREFIX_COUNT_MAX_WORD];
    size_t len;
    uint64_t count;
};

struct naive {
    struct naive_entry *e;
    size_t n, cap;
};

static void naive_add(struct naive *nv, const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < nv->n; i++)
        if (nv->e[i].len == len && memcmp(nv->e[i].bytes, s, len) == 0) {
            nv->e[i].count++;
            return;
        }
    if (nv->n == nv->cap) {
        nv->cap = nv->cap ? nv->cap * 2 : 64;
        nv->e = realloc(nv->e, nv->cap * sizeof *nv->e);
        assert_non_null(nv->e);
    }
    memcpy(nv->e[nv->n].bytes, s, len);
    nv->e[nv->n].len = len;
    nv->e[nv->n].count = 1;
    nv->n++;
}

static void naive_word(struct naive *nv, const unsigned char *s, size_t len)
{
    for (size_t p = 1; p < len; p++)
        naive_add(nv, s, p);
}

static int naive_cmp(const void *pa, const void *pb)
{
    const struct naive_entry *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count < b->count ? 1 : -1;
    for (size_t i = 0; i < a->len && i < b->len; i++)
        if (a->bytes[i] != b->bytes[i])
            return a->bytes[i] < b->bytes[i] ? -1 : 1;
    return (a->len > b->len) - (a->len < b->len);
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding, written out bit by bit (an independent
 * encoder, not the model's). */
static char *b64(const unsigned char *s, size_t n)
{
    size_t bits = n * 8, out = 0;
    char *r = malloc((n + 2) / 3 * 4 + 1);
    for (size_t b = 0; b < bits; b += 6) {
        unsigned v = 0;
        for (size_t k = 0; k < 6; k++) {
            size_t bit = b + k;
            unsigned one = bit < bits ? (s[bit / 8] >> (7 - bit % 8)) & 1u : 0u;
            v = v << 1 | one;
        }
        r[out++] = b64chars[v];
    }
    while (out % 4)
        r[out++] = '=';
    r[out] = '\0';
    return r;
}

/* Valid UTF-8 by a different route than the model's: decode each
 * character and check its range and shortest form. */
static bool naive_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned long cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const unsigned long min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* The expected job result for threshold t. */
static json_t *naive_result(struct naive *nv, uint64_t t)
{
    qsort(nv->e, nv->n, sizeof *nv->e, naive_cmp);
    json_t *list = json_array();
    size_t k = 0;
    for (size_t i = 0; i < nv->n; i++) {
        if (nv->e[i].count <= t)
            continue;
        k++;
        json_t *o = json_object();
        if (naive_utf8(nv->e[i].bytes, nv->e[i].len)) {
            json_object_set_new(o, "prefix",
                                json_stringn((const char *)nv->e[i].bytes, nv->e[i].len));
        } else {
            char *enc = b64(nv->e[i].bytes, nv->e[i].len);
            json_object_set_new(o, "prefix_base64", json_string(enc));
            free(enc);
        }
        json_object_set_new(o, "count", json_integer((json_int_t)nv->e[i].count));
        json_array_append_new(list, o);
    }
    return json_pack("{s:I, s:I, s:o}", "threshold", (json_int_t)t, "count", (json_int_t)k,
                     "prefixes", list);
}

/* ---- documents ----------------------------------------------------------- */

static uint64_t rng = 12345;

static unsigned rnd(unsigned n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rng >> 33) % n);
}

/* Random documents: words over a small alphabet (so prefixes repeat), with
 * "é" and "€" (prefixes cut inside them are not UTF-8), a NUL now and then,
 * and raw-byte words as base64. Each word is also counted into nv, and
 * *prefixes gets the per-document prefix totals. */
static json_t *make_documents(size_t n_docs, struct naive *nv, uint64_t *doc_words,
                              uint64_t *doc_prefixes)
{
    static const struct {
        const char *s;
        size_t n;
    } pieces[] = {{"a", 1}, {"b", 1}, {"c", 1}, {"th", 2}, {"e", 1}, {"\xc3\xa9", 2},
                  {"\xe2\x82\xac", 3}, {"s", 1}, {"\0", 1}};
    json_t *docs = json_array();
    for (size_t d = 0; d < n_docs; d++) {
        json_t *doc = json_array();
        size_t n_words = rnd(30);
        doc_words[d] = n_words;
        doc_prefixes[d] = 0;
        for (size_t w = 0; w < n_words; w++) {
            unsigned char word[64];
            size_t len = 0;
            unsigned kind = rnd(10);
            if (kind == 0) { /* raw bytes */
                len = rnd(6);
                for (size_t k = 0; k < len; k++)
                    word[k] = (unsigned char)(rnd(4) ? 0xA0 + rnd(8) : rnd(256));
                char *enc = b64(word, len);
                json_array_append_new(doc, json_pack("{s:s}", "base64", enc));
                free(enc);
            } else {
                size_t n_pieces = rnd(6);
                for (size_t k = 0; k < n_pieces; k++) {
                    /* a NUL piece now and then: a word holds its bytes */
                    size_t p = rnd(kind == 1 ? 9 : 8);
                    memcpy(word + len, pieces[p].s, pieces[p].n);
                    len += pieces[p].n;
                }
                json_t *jw = json_stringn((const char *)word, len);
                assert_non_null(jw);
                json_array_append_new(doc, jw);
            }
            naive_word(nv, word, len);
            doc_prefixes[d] += len > 1 ? len - 1 : 0;
        }
        json_array_append_new(docs, doc);
    }
    return docs;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, jerr.text);
    return v;
}

static void *load_threshold(const char *value)
{
    const char *keys[] = {"threshold"};
    const char *values[] = {value};
    struct model_params p = {value ? 1 : 0, keys, values};
    char err[256] = "";
    void *shared = NULL;
    int rc = model_prefix_count.load(&p, &th_load_host, &shared, err, sizeof err);
    if (rc != 0)
        fail_msg("load: %s", err);
    assert_non_null(shared);
    /* as in a worker: init() gives reduce() a host that reaches objects */
    void *state = NULL;
    assert_int_equal(model_prefix_count.init(shared, &th_host, &state, err, sizeof err), 0);
    model_prefix_count.fini(state);
    return shared;
}

static void assert_json_equal(json_t *got, json_t *want)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
        fail_msg("got  %.2000s\nwant %.2000s", g ? g : "(null)", w ? w : "(null)");
    }
}

/* ---- the table ----------------------------------------------------------- */

static void test_registered(void **unused)
{
    (void)unused;
    const struct model_ops *m = &model_prefix_count;
    assert_ptr_equal(model_builtin_find("prefix_count"), m);
    assert_int_equal(m->abi_version, MODEL_ABI_VERSION);
    assert_int_equal(m->flags & MODEL_FLAG_NOT_DEFAULT, 0);
    assert_null(m->run);
    assert_non_null(m->acc_run);
    assert_non_null(m->acc_export);
    assert_non_null(m->acc_free);
    assert_non_null(m->reduce);
}

/* ---- workers, export, reduce = the naive count ---------------------------- */

/* Documents spread over n_acc accumulators, exported and reduced. */
static void check_split(size_t n_docs, size_t n_acc, const char *threshold, uint64_t t)
{
    struct naive nv = {0};
    uint64_t words[200], prefixes[200];
    assert_true(n_docs <= 200);
    json_t *docs = make_documents(n_docs, &nv, words, prefixes);
    json_t *want = naive_result(&nv, t);

    void *shared = load_threshold(threshold);
    char err[512] = "";
    void *state = NULL;
    assert_int_equal(model_prefix_count.init(shared, &th_host, &state, err, sizeof err), 0);
    void *acc[8] = {NULL};
    assert_true(n_acc <= 8);
    for (size_t d = 0; d < n_docs; d++) {
        size_t a = rnd((unsigned)n_acc); /* any worker may take any chunk */
        json_t *out = NULL;
        int rc = model_prefix_count.acc_run(state, &acc[a], json_array_get(docs, d), &out, err,
                                            sizeof err);
        if (rc != 0)
            fail_msg("document %zu: %s", d, err);
        json_t *item_want = json_pack("{s:I, s:I}", "words", (json_int_t)words[d], "prefixes",
                                      (json_int_t)prefixes[d]);
        assert_json_equal(out, item_want);
        json_decref(item_want);
        json_decref(out);
    }
    json_t *partials = json_array();
    for (size_t a = 0; a < n_acc; a++) {
        if (!acc[a])
            continue; /* a worker that ran no item of the job */
        json_t *p = NULL;
        assert_int_equal(model_prefix_count.acc_export(state, acc[a], &p, err, sizeof err), 0);
        assert_non_null(json_object_get(p, "$object"));
        assert_true(json_is_integer(json_object_get(p, "entries")));
        json_array_append_new(partials, p);
        model_prefix_count.acc_free(state, acc[a]);
    }
    json_t *result = NULL;
    int rc = model_prefix_count.reduce(shared, partials, &result, err, sizeof err);
    if (rc != 0)
        fail_msg("reduce: %s", err);
    assert_json_equal(result, want);
    json_decref(result);

    /* the serial baseline computes the same */
    result = NULL;
    assert_int_equal(model_prefix_count_serial(docs, t, &result, err, sizeof err), 0);
    assert_json_equal(result, want);
    json_decref(result);

    json_decref(partials);
    json_decref(want);
    json_decref(docs);
    model_prefix_count.fini(state);
    model_prefix_count.unload(shared);
    free(nv.e);
    th_reset();
}

static void test_split_equals_naive(void **unused)
{
    (void)unused;
    check_split(1, 1, NULL, 3);
    check_split(60, 3, NULL, 3);
    check_split(120, 4, "0", 0);
    check_split(150, 7, "1", 1);
    check_split(100, 2, "12", 12);
    check_split(80, 5, "1000000", 1000000);
}

/* A hand-checked result: the order (count descending, then bytes, a
 * prefix before its extensions), base64 for what is not UTF-8, and a base64
 * word counted with the string words. */
static void test_order_and_base64(void **unused)
{
    (void)unused;
    json_t *docs = parse("[[\"abc\", \"abd\", \"xy\", \"\\u00e9t\"],"
                         " [{\"base64\": \"YWJj\"}, {\"base64\": \"//8A\"}, \"a\", \"\"],"
                         " [{\"base64\": \"w6k\"}]]");
    /* abc, abd, abc(base64 YWJj): a:3, ab:3; xy: x:1; "ét" = c3 a9 74: c3:1,
     * c3a9 ("é"):1 ; ff ff 00: ff:1, ffff:1; "w6k" = c3 a9: c3:1 */
    json_t *want = parse("{\"threshold\": 0, \"count\": 7, \"prefixes\": ["
                         "{\"prefix\": \"a\", \"count\": 3},"
                         "{\"prefix\": \"ab\", \"count\": 3},"
                         "{\"prefix_base64\": \"ww==\", \"count\": 2},"
                         "{\"prefix\": \"x\", \"count\": 1},"
                         "{\"prefix\": \"\\u00e9\", \"count\": 1},"
                         "{\"prefix_base64\": \"/w==\", \"count\": 1},"
                         "{\"prefix_base64\": \"//8=\", \"count\": 1}]}");
    json_t *result = NULL;
    char err[512] = "";
    assert_int_equal(model_prefix_count_serial(docs, 0, &result, err, sizeof err), 0);
    assert_json_equal(result, want);
    json_decref(result);
    json_decref(want);

    /* threshold 2: only the prefixes counted 3 times */
    want = parse("{\"threshold\": 2, \"count\": 2, \"prefixes\": ["
                 "{\"prefix\": \"a\", \"count\": 3}, {\"prefix\": \"ab\", \"count\": 3}]}");
    assert_int_equal(model_prefix_count_serial(docs, 2, &result, err, sizeof err), 0);
    assert_json_equal(result, want);
    json_decref(result);
    json_decref(want);

    /* threshold 3: nothing is counted MORE than 3 times */
    want = parse("{\"threshold\": 3, \"count\": 0, \"prefixes\": []}");
    assert_int_equal(model_prefix_count_serial(docs, 3, &result, err, sizeof err), 0);
    assert_json_equal(result, want);
    json_decref(result);
    json_decref(want);
    json_decref(docs);
}

/* ---- the threshold parameter ---------------------------------------------- */

static void test_threshold_param(void **unused)
{
    (void)unused;
    /* the default is 3, and a reduce of no partials says so */
    void *shared = load_threshold(NULL);
    json_t *result = NULL, *none = json_array();
    char err[512] = "";
    assert_int_equal(model_prefix_count.reduce(shared, none, &result, err, sizeof err), 0);
    json_t *want = parse("{\"threshold\": 3, \"count\": 0, \"prefixes\": []}");
    assert_json_equal(result, want);
    json_decref(want);
    json_decref(result);
    model_prefix_count.unload(shared);

    shared = load_threshold("9223372036854775807");
    assert_int_equal(model_prefix_count.reduce(shared, none, &result, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(result, "threshold")), INT64_MAX);
    json_decref(result);
    model_prefix_count.unload(shared);
    json_decref(none);

    static const struct {
        const char *key, *value, *err;
    } bad[] = {
        {"threshold", "", "model prefix_count: threshold must be an integer from 0 to "
                          "9223372036854775807, got ''"},
        {"threshold", "-1", "model prefix_count: threshold must be an integer from 0 to "
                            "9223372036854775807, got '-1'"},
        {"threshold", "+1", "model prefix_count: threshold must be an integer from 0 to "
                            "9223372036854775807, got '+1'"},
        {"threshold", " 1", "model prefix_count: threshold must be an integer from 0 to "
                            "9223372036854775807, got ' 1'"},
        {"threshold", "3x", "model prefix_count: threshold must be an integer from 0 to "
                            "9223372036854775807, got '3x'"},
        {"threshold", "9223372036854775808",
         "model prefix_count: threshold must be an integer from 0 to 9223372036854775807, got "
         "'9223372036854775808'"},
        {"threshold", "99999999999999999999999",
         "model prefix_count: threshold must be an integer from 0 to 9223372036854775807, got "
         "'99999999999999999999999'"},
        {"min", "3", "model prefix_count has no parameter 'min' (its only one is threshold=N)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *keys[] = {bad[i].key};
        const char *values[] = {bad[i].value};
        struct model_params p = {1, keys, values};
        void *sh = NULL;
        err[0] = '\0';
        assert_int_equal(model_prefix_count.load(&p, &th_host, &sh, err, sizeof err), -EINVAL);
        assert_string_equal(err, bad[i].err);
        assert_null(sh);
    }
    const char *keys[] = {"threshold", "threshold"};
    const char *values[] = {"1", "2"};
    struct model_params twice = {2, keys, values};
    void *sh = NULL;
    assert_int_equal(model_prefix_count.load(&twice, &th_host, &sh, err, sizeof err), -EINVAL);
    assert_string_equal(err, "model prefix_count: threshold is given twice");
}

/* ---- items ---------------------------------------------------------------- */

static const struct {
    const char *item;
    const char *err;
} bad_items[] = {
    {"\"word\"", "prefix_count: expected an array of words (strings or {\"base64\": \"...\"}), "
                 "got a string"},
    {"{\"words\": []}", "prefix_count: expected an array of words (strings or {\"base64\": "
                        "\"...\"}), got an object"},
    {"[\"ok\", 5]", "prefix_count: word 1 is a number, expected a string or {\"base64\": \"...\"}"},
    {"[[\"a\"]]", "prefix_count: word 0 is an array, expected a string or {\"base64\": \"...\"}"},
    {"[{\"b64\": \"YQ==\"}]",
     "prefix_count: word 0 is an object, expected a string or {\"base64\": \"...\"}"},
    {"[{\"base64\": \"YQ==\", \"x\": 1}]",
     "prefix_count: word 0 is an object, expected a string or {\"base64\": \"...\"}"},
    {"[{\"base64\": 5}]",
     "prefix_count: word 0 is an object, expected a string or {\"base64\": \"...\"}"},
    {"[\"ok\", {\"base64\": \"YW*j\"}]",
     "prefix_count: word 1: \"base64\" has a character outside the base64 alphabet at offset 2"},
    {"[{\"base64\": \"YWJjZ\"}]", "prefix_count: word 0: \"base64\" has a bad length (5)"},
    {"[{\"base64\": \"YQ=\"}]", "prefix_count: word 0: \"base64\" has a bad length (3)"},
    {"[{\"base64\": \"Y===\"}]", "prefix_count: word 0: \"base64\" has a character outside the "
                                 "base64 alphabet at offset 1"},
    {"[\"okay\", \"@LONG\"]", "prefix_count: word 1 is longer than 1024 bytes (1025)"},
    {"[\"okay\", \"fine\", {\"base64\": \"@LONG64\"}]",
     "prefix_count: word 2 is longer than 1024 bytes"},
};

/* Bad items fail with a message naming the word, and count nothing, even
 * when good words came before the bad one ("ok", "okay", "fine": none of
 * their prefixes may reach the result). */
static void test_bad_items_count_nothing(void **unused)
{
    (void)unused;
    void *shared = load_threshold("0"), *state = NULL, *acc = NULL;
    char err[512] = "";
    assert_int_equal(model_prefix_count.init(shared, &th_host, &state, err, sizeof err), 0);
    json_t *good = parse("[\"abc\", \"ab\"]"), *out = NULL;
    assert_int_equal(model_prefix_count.acc_run(state, &acc, good, &out, err, sizeof err), 0);
    json_decref(out);

    char long_word[1100], long64[1500];
    memset(long_word, 'q', 1025);
    long_word[1025] = '\0';
    unsigned char raw[1025];
    memset(raw, 'q', sizeof raw);
    char *enc = b64(raw, sizeof raw);
    snprintf(long64, sizeof long64, "%s", enc);
    free(enc);

    for (size_t i = 0; i < sizeof bad_items / sizeof bad_items[0]; i++) {
        char text[4096];
        const char *src = bad_items[i].item, *at = strchr(src, '@');
        if (at) {
            const char *sub = strncmp(at, "@LONG64", 7) == 0 ? long64 : long_word;
            size_t skip = strncmp(at, "@LONG64", 7) == 0 ? 7 : 5;
            snprintf(text, sizeof text, "%.*s%s%s", (int)(at - src), src, sub, at + skip);
        } else {
            snprintf(text, sizeof text, "%s", src);
        }
        json_t *item = parse(text);
        out = NULL;
        err[0] = '\0';
        int rc = model_prefix_count.acc_run(state, &acc, item, &out, err, sizeof err);
        const char *want = bad_items[i].err;
        if (rc != -EINVAL || strcmp(err, want) != 0)
            fail_msg("case %zu (%.80s): rc %d, err \"%s\", want \"%s\"", i, text, rc, err, want);
        assert_null(out);
        json_decref(item);
    }

    json_t *p = NULL, *result = NULL;
    assert_int_equal(model_prefix_count.acc_export(state, acc, &p, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(p, "entries")), 2);
    json_t *partials = json_pack("[o]", p);
    assert_int_equal(model_prefix_count.reduce(shared, partials, &result, err, sizeof err), 0);
    json_t *want = parse("{\"threshold\": 0, \"count\": 2, \"prefixes\": ["
                         "{\"prefix\": \"a\", \"count\": 2}, {\"prefix\": \"ab\", \"count\": 1}]}");
    assert_json_equal(result, want);
    json_decref(want);
    json_decref(result);
    json_decref(partials);
    json_decref(good);
    model_prefix_count.acc_free(state, acc);
    model_prefix_count.fini(state);
    model_prefix_count.unload(shared);
    th_reset();
}

/* Words at the length limit, empty and 1-byte words, and the item result. */
static void test_word_lengths(void **unused)
{
    (void)unused;
    void *shared = load_threshold("0"), *state = NULL, *acc = NULL;
    char err[512] = "";
    assert_int_equal(model_prefix_count.init(shared, &th_host, &state, err, sizeof err), 0);
    char word[MODEL_PREFIX_COUNT_MAX_WORD + 1];
    memset(word, 'z', MODEL_PREFIX_COUNT_MAX_WORD);
    word[MODEL_PREFIX_COUNT_MAX_WORD] = '\0';
    json_t *item = json_pack("[s, s, s, s]", word, "", "x", "x"), *out = NULL;
    assert_int_equal(model_prefix_count.acc_run(state, &acc, item, &out, err, sizeof err), 0);
    json_t *want = json_pack("{s:i, s:i}", "words", 4, "prefixes", MODEL_PREFIX_COUNT_MAX_WORD - 1);
    assert_json_equal(out, want);
    json_decref(want);
    json_decref(out);
    json_decref(item);

    json_t *p = NULL, *result = NULL;
    assert_int_equal(model_prefix_count.acc_export(state, acc, &p, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(p, "entries")),
                     MODEL_PREFIX_COUNT_MAX_WORD - 1);
    json_t *partials = json_pack("[o]", p);
    assert_int_equal(model_prefix_count.reduce(shared, partials, &result, err, sizeof err), 0);
    json_t *list = json_object_get(result, "prefixes");
    assert_int_equal(json_array_size(list), MODEL_PREFIX_COUNT_MAX_WORD - 1);
    /* equal counts: shortest first; the last is the 1023-byte prefix */
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "prefix")), "z");
    assert_int_equal(
        json_string_length(json_object_get(
            json_array_get(list, MODEL_PREFIX_COUNT_MAX_WORD - 2), "prefix")),
        MODEL_PREFIX_COUNT_MAX_WORD - 1);
    json_decref(result);
    json_decref(partials);
    model_prefix_count.acc_free(state, acc);
    model_prefix_count.fini(state);
    model_prefix_count.unload(shared);
    th_reset();
}

/* An export whose object cannot be made passes the host's reason on;
 * without a host, export and reduce say so. */
static void test_export_and_reduce_failures(void **unused)
{
    (void)unused;
    void *shared = load_threshold(NULL), *state = NULL, *acc = NULL;
    char err[512] = "";
    assert_int_equal(model_prefix_count.init(shared, &th_host, &state, err, sizeof err), 0);
    json_t *item = parse("[\"abc\"]"), *out = NULL, *p = NULL;
    assert_int_equal(model_prefix_count.acc_run(state, &acc, item, &out, err, sizeof err), 0);
    json_decref(out);
    th_new_fails = -ENOSPC;
    assert_int_equal(model_prefix_count.acc_export(state, acc, &p, err, sizeof err), -ENOSPC);
    assert_string_equal(err, "prefix_count: the partial (15 bytes): object memory full");
    assert_null(p);
    th_new_fails = 0;
    model_prefix_count.acc_free(state, acc);
    model_prefix_count.fini(state);

    assert_int_equal(model_prefix_count.init(shared, NULL, &state, err, sizeof err), 0);
    acc = NULL;
    assert_int_equal(model_prefix_count.acc_run(state, &acc, item, &out, err, sizeof err), 0);
    json_decref(out);
    assert_int_equal(model_prefix_count.acc_export(state, acc, &p, err, sizeof err), -ENOTSUP);
    assert_string_equal(err, "prefix_count: this worker cannot make objects for its partial");
    model_prefix_count.acc_free(state, acc);
    model_prefix_count.acc_free(state, NULL);
    model_prefix_count.fini(state);
    model_prefix_count.unload(shared);
    json_decref(item);

    void *nohost = NULL;
    assert_int_equal(model_prefix_count.load(NULL, NULL, &nohost, err, sizeof err), 0);
    json_t *none = json_array(), *result = NULL;
    assert_int_equal(model_prefix_count.reduce(nohost, none, &result, err, sizeof err), -ENOTSUP);
    assert_string_equal(err, "prefix_count: objects are not available to reduce the partials");
    json_decref(none);
    model_prefix_count.unload(nohost);

    /* without an init() in this process, reduce has only load()'s host,
     * which cannot reach objects (the supervisor's): an error, not a crash */
    void *sup = NULL;
    assert_int_equal(model_prefix_count.load(NULL, &th_load_host, &sup, err, sizeof err), 0);
    json_t *one = json_pack("[{s:s}]", "$object", "anything");
    assert_int_equal(model_prefix_count.reduce(sup, one, &result, err, sizeof err), -ENOTSUP);
    assert_string_equal(err, "prefix_count: partial 0 (object anything): object_ref is not "
                             "available in load()");
    assert_null(result);
    json_decref(one);
    model_prefix_count.unload(sup);
    th_reset();
}

/* ---- malformed partials ---------------------------------------------------- */

/* A partial: "BPC1", entries, then raw entry bytes. */
static size_t partial_bytes(unsigned char *buf, uint32_t entries, const void *body, size_t n)
{
    memcpy(buf, "BPC1", 4);
    buf[4] = (unsigned char)entries;
    buf[5] = (unsigned char)(entries >> 8);
    buf[6] = (unsigned char)(entries >> 16);
    buf[7] = (unsigned char)(entries >> 24);
    memcpy(buf + 8, body, n);
    return 8 + n;
}

static void test_malformed_partials(void **unused)
{
    (void)unused;
    void *shared = load_threshold("0");
    char err[512];
    unsigned char buf[64];
    static const struct {
        uint32_t entries;
        const char *body;
        size_t n;
        const char *why;
    } cases[] = {
        /* a good one, for contrast (a partial holds every prefix's parent:
         * the reduce merges level by level and relies on it) */
        {2, "\x01\x01" "a" "\x01\x02" "ab", 7, NULL},
        {2, "\x01\x02" "ab", 4, "entry 1 at byte 12: truncated or overlong header"},
        {1, "\x01\x02" "a", 3, "entry 0 at byte 8: 2 bytes of prefix, 1 left"},
        {1, "\x00\x02" "ab", 4,
         "entry 0 at byte 8: count 0, length 2 (expected a count >= 1 and a length from 1 to "
         "1023)"},
        {1, "\x01\x00", 2,
         "entry 0 at byte 8: count 1, length 0 (expected a count >= 1 and a length from 1 to "
         "1023)"},
        {1, "\x01\x80\x08", 3,
         "entry 0 at byte 8: count 1, length 1024 (expected a count >= 1 and a length from 1 to "
         "1023)"},
        {1, "\x01\x02" "abX", 5, "1 bytes after the last of 1 entries"},
        {1, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01\x01" "a", 13,
         "entry 0 at byte 8: truncated or overlong header"},
        {1, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x01" "a", 12,
         "entry 0 at byte 8: truncated or overlong header"},
        {1, "\x81", 1, "entry 0 at byte 8: truncated or overlong header"},
        {0xffffffffu, "\x01\x01" "a", 3, "entry 1 at byte 11: truncated or overlong header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = partial_bytes(buf, cases[i].entries, cases[i].body, cases[i].n);
        size_t idx = th_add_bytes(buf, n);
        json_t *partials = json_pack("[{s:s}]", "$object", th_objs[idx].id), *result = NULL;
        err[0] = '\0';
        int rc = model_prefix_count.reduce(shared, partials, &result, err, sizeof err);
        if (!cases[i].why) {
            assert_int_equal(rc, 0);
            json_t *want = parse("{\"threshold\": 0, \"count\": 2, \"prefixes\": ["
                                 "{\"prefix\": \"a\", \"count\": 1}, "
                                 "{\"prefix\": \"ab\", \"count\": 1}]}");
            assert_json_equal(result, want);
            json_decref(want);
            json_decref(result);
        } else {
            char want[512];
            snprintf(want, sizeof want, "prefix_count: partial 0 (object %s): %s",
                     th_objs[idx].id, cases[i].why);
            if (rc != -EINVAL || strcmp(err, want) != 0)
                fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, want);
            assert_null(result);
        }
        json_decref(partials);
    }

    /* whole-object problems */
    unsigned char good[16];
    size_t gn = partial_bytes(good, 1, "\x01\x02" "ab", 4);
    size_t ok = th_add_bytes(good, gn);
    size_t short_hdr = th_add_bytes("BPC1\x01", 5);
    size_t magic = th_add_bytes("BPC2\x00\x00\x00\x00", 8);
    uint64_t s2[2] = {2, 4};
    size_t twod = th_add(MODEL_DTYPE_U8, 2, s2, good);
    uint64_t s1[1] = {2};
    size_t f64 = th_add(MODEL_DTYPE_F64, 1, s1, good);
    char text[400];
    struct {
        char partials[256];
        int rc;
        char err[512];
    } whole[9];
    size_t nw = 0;
#define WHOLE(rc_, err_, ...)                                                                  \
    do {                                                                                       \
        snprintf(whole[nw].partials, sizeof whole[nw].partials, __VA_ARGS__);                  \
        whole[nw].rc = rc_;                                                                    \
        snprintf(whole[nw].err, sizeof whole[nw].err, "%s", err_);                             \
        nw++;                                                                                  \
    } while (0)
    snprintf(text, sizeof text, "prefix_count: partial 1 (object %s): not a prefix_count "
             "partial (no \"BPC1\" header)", th_objs[short_hdr].id);
    WHOLE(-EINVAL, text, "[{\"$object\": \"%s\"}, {\"$object\": \"%s\"}]", th_objs[ok].id,
          th_objs[short_hdr].id);
    snprintf(text, sizeof text, "prefix_count: partial 0 (object %s): not a prefix_count "
             "partial (no \"BPC1\" header)", th_objs[magic].id);
    WHOLE(-EINVAL, text, "[{\"$object\": \"%s\"}]", th_objs[magic].id);
    snprintf(text, sizeof text, "prefix_count: partial 0 (object %s) must be a 1-D uint8 "
             "object, it is uint8 with 2 dimensions", th_objs[twod].id);
    WHOLE(-EINVAL, text, "[{\"$object\": \"%s\"}]", th_objs[twod].id);
    snprintf(text, sizeof text, "prefix_count: partial 0 (object %s) must be a 1-D uint8 "
             "object, it is float64 with 1 dimension", th_objs[f64].id);
    WHOLE(-EINVAL, text, "[{\"$object\": \"%s\"}]", th_objs[f64].id);
    snprintf(text, sizeof text, "prefix_count: partial 0 (object %s): \"entries\" is 2, the "
             "object holds 1", th_objs[ok].id);
    WHOLE(-EINVAL, text, "[{\"$object\": \"%s\", \"entries\": 2}]", th_objs[ok].id);
    WHOLE(-ENOENT, "prefix_count: partial 0 (object gone): no object 'gone'",
          "[{\"$object\": \"gone\"}]");
    WHOLE(-EINVAL, "prefix_count: partial 0 must be {\"$object\": \"ID\", \"entries\": n}, got "
          "an array", "[[1]]");
    WHOLE(-EINVAL, "prefix_count: partial 0 must be {\"$object\": \"ID\", \"entries\": n}, got "
          "an object", "[{\"$object\": \"%s\", \"entries\": \"1\"}]", th_objs[ok].id);
    WHOLE(-EINVAL, "prefix_count: the partials must be an array, got an object",
          "{\"$object\": \"%s\"}", th_objs[ok].id);
#undef WHOLE
    for (size_t i = 0; i < nw; i++) {
        json_t *partials = parse(whole[i].partials), *result = NULL;
        err[0] = '\0';
        int rc = model_prefix_count.reduce(shared, partials, &result, err, sizeof err);
        if (rc != whole[i].rc || strcmp(err, whole[i].err) != 0)
            fail_msg("whole case %zu: rc %d, err \"%s\", want %d \"%s\"", i, rc, err, whole[i].rc,
                     whole[i].err);
        assert_null(result);
        json_decref(partials);
    }
    model_prefix_count.unload(shared);
    th_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered),
        cmocka_unit_test(test_split_equals_naive),
        cmocka_unit_test(test_order_and_base64),
        cmocka_unit_test(test_threshold_param),
        cmocka_unit_test(test_bad_items_count_nothing),
        cmocka_unit_test(test_word_lengths),
        cmocka_unit_test(test_export_and_reduce_failures),
        cmocka_unit_test(test_malformed_partials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
