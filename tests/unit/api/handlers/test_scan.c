/* Unit tests of api/handlers/scan.c: the fast path of POST /v1/jobs bodies,
 * against the jansson path (api_request_parse_*_jansson) as the reference.
 *
 *   - a corpus of bodies the fast path must take itself (compact and
 *     spaced items, every JSON type, escapes, UTF-8, deep nesting at the
 *     limit, int64 bounds, reals at the edge of overflow): it accepts
 *     them, and each stored item is the value jansson read (json_equal), and
 *     byte for byte jansson's own compact text when the item has no real;
 *   - a corpus of bodies it must hand to jansson (-EAGAIN, or, for the
 *     shape of the members other than "inputs", request.c's check): every kind of
 *     syntax error, bad UTF-8, control characters, lone surrogates,
 *     duplicate keys, integer and real overflow, depth and size limits,
 *     escaped keys, the wrong top-level shape; for each, the full parser
 *     (api_request_parse_json / _ndjson) answers exactly what the jansson
 *     path answers (rc, kind, detail, pointer, index, line, column, limit);
 *   - the differential property on generated bodies: whenever the fast
 *     path accepts, jansson accepts the same items.
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

#include "api/handlers/request.h"
#include "api/handlers/scan.h"

static const struct api_request_limits LIM = {
    .max_items = 1000, .max_item_bytes = 1 << 20, .max_depth = 0 };

static struct scan_limits slim(const struct api_request_limits *l)
{
    return (struct scan_limits){ l->max_items, l->max_item_bytes, l->max_depth };
}

/* True when the JSON text t has a real number token (outside strings). */
static bool has_real(const char *t, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '.' || c == 'e' || c == 'E') {
            return true;
        }
    }
    return false;
}

/* The two item lists hold the same values; items without reals are the
 * same bytes. */
static void same_items(const struct job_items *fast, const struct job_items *ref, const char *what)
{
    size_t n = job_items_count(ref);
    if (job_items_count(fast) != n)
        fail_msg("%s: %zu items, jansson %zu", what, job_items_count(fast), n);
    for (size_t i = 0; i < n; i++) {
        size_t la, lb;
        const char *a = job_items_get(fast, i, &la);
        const char *b = job_items_get(ref, i, &lb);
        json_t *va = json_loadb(a, la, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        json_t *vb = json_loadb(b, lb, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!va || !vb || !json_equal(va, vb))
            fail_msg("%s: item %zu differs: %.*s vs jansson %.*s", what, i, (int)la, a, (int)lb,
                     b);
        if (!has_real(b, lb) && (la != lb || memcmp(a, b, la) != 0))
            fail_msg("%s: item %zu spelled %.*s, jansson %.*s", what, i, (int)la, a, (int)lb, b);
        json_decref(va);
        json_decref(vb);
    }
}

static void same_problem(const struct api_problem *a, const struct api_problem *b, const char *what)
{
    if (a->kind != b->kind || a->has != b->has || strcmp(a->detail, b->detail) != 0 ||
        strcmp(a->pointer, b->pointer) != 0 || a->index != b->index || a->line != b->line ||
        a->column != b->column || a->limit != b->limit)
        fail_msg("%s: problem \"%s\" (%s) differs from jansson's \"%s\" (%s)", what, a->detail,
                 a->pointer, b->detail, b->pointer);
}

/* A JSON body through both paths; returns the fast path's rc. */
static int check_json(const char *body, size_t len, const struct api_request_limits *lim)
{
    struct scan_limits sl = slim(lim);
    struct job_items *items = NULL;
    json_t *rest = NULL;
    int fast = scan_json_body(body, len, &sl, &items, &rest);
    struct api_job_request ref, full;
    struct api_problem pref, pfull;
    memset(&pref, 0, sizeof pref);
    memset(&pfull, 0, sizeof pfull);
    int rref = api_request_parse_json_jansson(body, len, lim, &ref, &pref);
    int rfull = api_request_parse_json(body, len, lim, &full, &pfull);
    if (fast == 0) {
        if (rref != 0 && rref != -EINVAL)
            fail_msg("scan accepted %.*s; jansson says %d: %s", (int)len, body, rref,
                     pref.detail);
        /* -EINVAL here is request.c's shape check of the other members
         * (the scan leaves it to request.c): the full parser agrees */
        if (rref == 0)
            same_items(items, ref.items, body);
    }
    assert_int_equal(rfull, rref);
    if (rref == 0) {
        same_items(full.items, ref.items, body);
        assert_string_equal(full.model, ref.model);
        assert_int_equal(full.opt.chunk_size, ref.opt.chunk_size);
        api_job_request_clear(&ref);
        api_job_request_clear(&full);
    } else {
        same_problem(&pfull, &pref, body);
    }
    job_items_free(items);
    json_decref(rest);
    return fast;
}

static int check_ndjson(const char *body, size_t len, const struct api_request_limits *lim)
{
    struct scan_limits sl = slim(lim);
    struct job_items *items = NULL, *ref = NULL, *full = NULL;
    int fast = scan_ndjson_body(body, len, &sl, &items);
    struct api_problem pref, pfull;
    memset(&pref, 0, sizeof pref);
    memset(&pfull, 0, sizeof pfull);
    int rref = api_request_parse_ndjson_jansson(body, len, lim, &ref, &pref);
    int rfull = api_request_parse_ndjson(body, len, lim, &full, &pfull);
    if (fast == 0) {
        if (rref != 0)
            fail_msg("scan accepted NDJSON %.*s; jansson says %s", (int)len, body, pref.detail);
        same_items(items, ref, body);
    }
    assert_int_equal(rfull, rref);
    if (rref == 0)
        same_items(full, ref, body);
    else
        same_problem(&pfull, &pref, body);
    job_items_free(items);
    job_items_free(ref);
    job_items_free(full);
    return fast;
}

/* Items the fast path takes itself, inside {"model":"m","inputs":[ ... ]}
 * and as NDJSON lines. */
static const char *const good_items[] = {
    "1", "-1", "0", "-0", "9223372036854775807", "-9223372036854775808", "1.5", "-0.0",
    "0.1", "1e5", "1E+5", "2.5e-3", "1e308", "1.7976931348623157e308", "0.5e308",
    "1e-400", /* an underflow is no error for jansson either */
    "true", "false", "null", "\"\"", "\"abc\"", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
    "\"a\\\"b\"", "\"a\\\\b\"", "\"a\\/b\"", "\"\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\"",
    "\"\\u0000\"", "\"\\u001f\\u001F\"", "\"\\u007f\"", "\"\\ud83d\\ude00\"",
    "\"\\u0024object\"", "[]", "{}", "[1,2,[3,[4]]]", "[ 1 , 2 ]", "{ \"a\" : 1 , \"b\" : [ ] }",
    "{\"a\":{\"a\":{\"a\":1}}}", "{\"$object\":\"abc\"}", "{\"k\":\"\\n\"}",
    "\t[\n1\r]", "{\"a\":1,\"b\":2,\"c\":3,\"A\":4}", "[\"x\",{\"y\":[null,true]}]",
};

/* Bodies the fast path hands to jansson (-EAGAIN). */
static const char *const bad_json[] = {
    "", " ", "[]", "42", "\"s\"", "{}", "{\"model\":\"m\"}", "{\"model\":\"m\",\"inputs\":[]}",
    "{\"model\":\"m\",\"inputs\":{}}", "{\"model\":\"m\",\"inputs\":1}",
    "{\"model\":\"m\",\"inputs\":[1,]}", "{\"model\":\"m\",\"inputs\":[,1]}",
    "{\"model\":\"m\",\"inputs\":[1 2]}", "{\"model\":\"m\",\"inputs\":[01]}",
    "{\"model\":\"m\",\"inputs\":[1.]}", "{\"model\":\"m\",\"inputs\":[.5]}",
    "{\"model\":\"m\",\"inputs\":[1e]}", "{\"model\":\"m\",\"inputs\":[-]}",
    "{\"model\":\"m\",\"inputs\":[+1]}", "{\"model\":\"m\",\"inputs\":[1x]}",
    "{\"model\":\"m\",\"inputs\":[tru]}", "{\"model\":\"m\",\"inputs\":[truex]}",
    "{\"model\":\"m\",\"inputs\":[NaN]}", "{\"model\":\"m\",\"inputs\":[Infinity]}",
    "{\"model\":\"m\",\"inputs\":[9223372036854775808]}",
    "{\"model\":\"m\",\"inputs\":[-9223372036854775809]}",
    "{\"model\":\"m\",\"inputs\":[12345678901234567890123]}",
    "{\"model\":\"m\",\"inputs\":[1e309]}", "{\"model\":\"m\",\"inputs\":[-2e308]}",
    "{\"model\":\"m\",\"inputs\":[0.2e310]}",
    "{\"model\":\"m\",\"inputs\":[\"a\nb\"]}", "{\"model\":\"m\",\"inputs\":[\"\\x\"]}",
    "{\"model\":\"m\",\"inputs\":[\"\\u12\"]}", "{\"model\":\"m\",\"inputs\":[\"\\ud800\"]}",
    "{\"model\":\"m\",\"inputs\":[\"\\udc00\"]}", "{\"model\":\"m\",\"inputs\":[\"\\ud800\\u0041\"]}",
    "{\"model\":\"m\",\"inputs\":[\"\xff\"]}", "{\"model\":\"m\",\"inputs\":[\"\xc0\xaf\"]}",
    "{\"model\":\"m\",\"inputs\":[\"\xed\xa0\x80\"]}", "{\"model\":\"m\",\"inputs\":[\"abc]}",
    "{\"model\":\"m\",\"inputs\":[{\"a\":1,\"a\":2}]}",
    "{\"model\":\"m\",\"inputs\":[{\"a\":1,\"\\u0061\":2}]}",
    "{\"model\":\"m\",\"inputs\":[{\"\\u0061\":1}]}", "{\"model\":\"m\",\"inputs\":[{1:2}]}",
    "{\"model\":\"m\",\"inputs\":[{\"a\" 1}]}", "{\"model\":\"m\",\"inputs\":[{\"a\":1,}]}",
    "{\"model\":\"m\",\"inputs\":[1]", "{\"model\":\"m\",\"inputs\":[1]} x",
    "{\"model\":\"m\",\"inputs\":[1],\"inputs\":[2]}", "{\"model\":\"m\",\"model\":\"n\",\"inputs\":[1]}",
    "{\"model\":\"m\",\"inputs\":[1],\"extra\":1}", "{\"model\":1,\"inputs\":[1]}",
    "{\"model\":\"\",\"inputs\":[1]}", "{\"model\":\"m\",\"inputs\":[1],\"options\":{\"chunk_size\":-1}}",
    "{\"model\":\"m\",\"inputs\":[1],\"options\":{\"x\":1}}", "{\"inputs\":[1]}",
    "{\"model\":\"m\\u0000\",\"inputs\":[1]}", "\xef\xbb\xbf{\"model\":\"m\",\"inputs\":[1]}",
    "{\"model\":\"m\",\"inputs\":[1]}\x00",
};

static void test_good_items(void **unused)
{
    (void)unused;
    char body[512];
    for (size_t i = 0; i < sizeof good_items / sizeof good_items[0]; i++) {
        int n = snprintf(body, sizeof body, "{\"model\":\"m\",\"inputs\":[%s, %s]}",
                         good_items[i], good_items[i]);
        if (check_json(body, (size_t)n, &LIM) != 0)
            fail_msg("the fast path refused %s", body);
        if (strchr(good_items[i], '\n'))
            continue; /* not one NDJSON line */
        n = snprintf(body, sizeof body, "%s\n\r\n  %s\r\n", good_items[i], good_items[i]);
        if (check_ndjson(body, (size_t)n, &LIM) != 0)
            fail_msg("the fast path refused NDJSON %s", body);
    }
    /* everything in one body, with options and a webhook around it */
    char all[4096];
    size_t used = (size_t)snprintf(all, sizeof all,
                                   "{ \"options\" : {\"chunk_size\": 7}, \"model\":\"sq\", "
                                   "\"inputs\" : [");
    for (size_t i = 0; i < sizeof good_items / sizeof good_items[0]; i++)
        used += (size_t)snprintf(all + used, sizeof all - used, "%s%s", i ? "," : "",
                                 good_items[i]);
    used += (size_t)snprintf(all + used, sizeof all - used,
                             "], \"webhook\": {\"url\": \"http://h/x\"} }");
    assert_int_equal(check_json(all, used, &LIM), 0);
}

static void test_bad_bodies_fall_back(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        size_t len = strlen(bad_json[i]);
        if (i == sizeof bad_json / sizeof bad_json[0] - 1)
            len++; /* the trailing NUL byte is part of that body */
        int rc = check_json(bad_json[i], len, &LIM);
        struct api_job_request r;
        struct api_problem p;
        int ref = api_request_parse_json_jansson(bad_json[i], len, &LIM, &r, &p);
        if (ref == 0) /* valid, but the scan leaves it to jansson (an escaped key) */
            api_job_request_clear(&r);
        /* the scan may take a body whose other members are of the wrong
         * shape: request.c checks them (and then asks jansson's path) */
        if (rc != -EAGAIN && !(rc == 0 && p.kind == API_PROBLEM_INVALID_JOB))
            fail_msg("the fast path took %s (rc %d)", bad_json[i], rc);
    }
    static const char *const bad_nd[] = {
        "", "\n\n", " \t\r\n", "1 2\n", "[1,\n2]\n", "{\"a\":1,\"a\":2}\n", "1\n\"\xff\"\n",
        "9223372036854775808\n", "1e999\n", "1\n,\n",
    };
    for (size_t i = 0; i < sizeof bad_nd / sizeof bad_nd[0]; i++) {
        int rc = check_ndjson(bad_nd[i], strlen(bad_nd[i]), &LIM);
        if (rc != -EAGAIN)
            fail_msg("the fast path took NDJSON %s (rc %d)", bad_nd[i], rc);
    }
}

/* Limits: item count, item size (with jansson's 17-digit reals), depth. */
static void test_limits(void **unused)
{
    (void)unused;
    struct api_request_limits l = LIM;
    const char *three = "{\"model\":\"m\",\"inputs\":[1,2,3]}";
    l.max_items = 3;
    assert_int_equal(check_json(three, strlen(three), &l), 0);
    l.max_items = 2;
    assert_int_equal(check_json(three, strlen(three), &l), -EAGAIN);
    assert_int_equal(check_ndjson("1\n2\n3\n", 6, &l), -EAGAIN);

    /* [1,22] is 6 bytes: accepted at 6, refused (413 by jansson) at 5 */
    const char *arr = "{\"model\":\"m\",\"inputs\":[ [1, 22] ]}";
    l = LIM;
    l.max_item_bytes = 6;
    assert_int_equal(check_json(arr, strlen(arr), &l), 0);
    l.max_item_bytes = 5;
    assert_int_equal(check_json(arr, strlen(arr), &l), -EAGAIN);
    /* 0.1 is 19 bytes as jansson writes it: the limit keeps that meaning */
    const char *real = "{\"model\":\"m\",\"inputs\":[0.1]}";
    l.max_item_bytes = 18;
    assert_int_equal(check_json(real, strlen(real), &l), -EAGAIN);
    l.max_item_bytes = 24;
    assert_int_equal(check_json(real, strlen(real), &l), 0);

    /* depth: the body is 1, inputs 2, an item's array 3 */
    const char *deep = "{\"model\":\"m\",\"inputs\":[[[1]]]}";
    l = LIM;
    l.max_depth = 4;
    assert_int_equal(check_json(deep, strlen(deep), &l), 0);
    l.max_depth = 3;
    assert_int_equal(check_json(deep, strlen(deep), &l), -EAGAIN);
    l.max_depth = 2;
    assert_int_equal(check_ndjson("[[1]]\n", 6, &l), 0);
    l.max_depth = 1;
    assert_int_equal(check_ndjson("[[1]]\n", 6, &l), -EAGAIN);
    /* the default depth (64) at its edge */
    char nest[400];
    size_t k = 0;
    for (int i = 0; i < 64; i++)
        nest[k++] = '[';
    for (int i = 0; i < 64; i++)
        nest[k++] = ']';
    nest[k++] = '\n';
    assert_int_equal(check_ndjson(nest, k, &LIM), 0);
    memmove(nest + 1, nest, k);
    nest[0] = '[';
    nest[k] = ']';
    nest[k + 1] = '\n';
    assert_int_equal(check_ndjson(nest, k + 2, &LIM), -EAGAIN);
    /* more members than the scan checks pairwise: jansson's */
    char wide[2048];
    size_t w = (size_t)snprintf(wide, sizeof wide, "{\"model\":\"m\",\"inputs\":[{");
    for (int i = 0; i < SCAN_MAX_KEYS + 1; i++)
        w += (size_t)snprintf(wide + w, sizeof wide - w, "%s\"k%d\":%d", i ? "," : "", i, i);
    w += (size_t)snprintf(wide + w, sizeof wide - w, "}]}");
    assert_int_equal(check_json(wide, w, &LIM), -EAGAIN);
}

/* A tiny deterministic generator of bodies, mostly valid, sometimes
 * mutated: the differential property must hold for every one. */
static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void gen_value(char *b, size_t cap, size_t *u, int depth)
{
    static const char *const atoms[] = {
        "0", "-7", "12345", "3.25", "-1e-3", "1E2", "true", "false", "null", "\"s\"",
        "\"\\u00e9\\n\"", "\"\xc3\xa9\"", "\"\\ud83d\\ude00\"", "9223372036854775807", "0.1",
    };
    if (*u + 64 >= cap)
        return;
    unsigned pick = depth > 3 ? 0 : rnd(6);
    if (pick == 4) {
        b[(*u)++] = '[';
        unsigned n = rnd(4);
        for (unsigned i = 0; i < n && *u + 64 < cap; i++) {
            if (i) {
                if (rnd(4) == 0)
                    b[(*u)++] = ' '; /* whitespace makes the item dirty */
                b[(*u)++] = ',';
            }
            gen_value(b, cap, u, depth + 1);
        }
        b[(*u)++] = ']';
    } else if (pick == 5) {
        b[(*u)++] = '{';
        unsigned n = rnd(4);
        for (unsigned i = 0; i < n && *u + 64 < cap; i++) {
            *u += (size_t)snprintf(b + *u, cap - *u, "%s\"k%u\":", i ? "," : "", rnd(6));
            gen_value(b, cap, u, depth + 1);
        }
        b[(*u)++] = '}';
    } else {
        *u += (size_t)snprintf(b + *u, cap - *u, "%s", atoms[rnd(sizeof atoms / sizeof atoms[0])]);
    }
}

static void test_generated_differential(void **unused)
{
    (void)unused;
    char body[8192];
    int fast_ok = 0;
    for (int round = 0; round < 3000; round++) {
        size_t u = (size_t)snprintf(body, sizeof body, "{\"model\":\"m\",\"inputs\":[");
        unsigned n = 1 + rnd(5);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                body[u++] = ',';
            gen_value(body, sizeof body - 8, &u, 0);
        }
        u += (size_t)snprintf(body + u, sizeof body - u, "]}");
        /* one in four is mutated: a byte changed, dropped or doubled */
        if (rnd(4) == 0) {
            size_t at = rnd((unsigned)u);
            switch (rnd(3)) {
            case 0: body[at] = "{}[],:\"\\ 0e.-x\xff"[rnd(16)]; break;
            case 1: memmove(body + at, body + at + 1, u - at - 1); u--; break;
            default: memmove(body + at + 1, body + at, u - at); u++; break;
            }
        }
        if (check_json(body, u, &LIM) == 0)
            fast_ok++;
    }
    /* most generated bodies are valid: the fast path took them itself */
    assert_true(fast_ok > 1500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_items),
        cmocka_unit_test(test_bad_bodies_fall_back),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_generated_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
