/* Unit tests of api/request.c: POST /v1/jobs bodies (JSON and NDJSON) into
 * job items, and every refusal with its status, slug and members.
 *
 * One table: each row is a body, the limits, and what must come out. The
 * stored item text cannot be read back through job_items, so its compact
 * form is checked through the size limit: a row accepts an item at exactly
 * its compact length and the next row refuses it one byte lower. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "api/handlers/request.h"

#define NONE (-1)
#define BIG ((size_t)1 << 20)

struct row {
    const char *name;
    bool ndjson;
    const char *body;
    size_t body_len;        /* 0: strlen(body) */
    size_t max_items;       /* 0: 1000 */
    size_t max_item_bytes;  /* 0: BIG */
    /* success */
    size_t count;
    const char *model;
    uint32_t chunk_size;
    /* failure (rc != 0) */
    int rc;
    enum api_problem_kind kind;
    const char *pointer;    /* NULL: no pointer member */
    int64_t index, line, column, limit; /* NONE: member absent */
};

#define OK(n, nd, b, cnt, mdl, cs) \
    { n, nd, b, 0, 0, 0, cnt, mdl, cs, 0, 0, NULL, NONE, NONE, NONE, NONE }
#define ERR(n, nd, b, rc_, k, ptr, idx, ln, col, lim) \
    { n, nd, b, 0, 0, 0, 0, NULL, 0, rc_, k, ptr, idx, ln, col, lim }

static const struct row rows[] = {
    /* ---- JSON, accepted */
    OK("json three", false, "{\"model\":\"square\",\"inputs\":[1,2,3]}", 3, "square", 0),
    OK("json options", false,
       "{\"model\":\"echo\",\"inputs\":[1],\"options\":{\"chunk_size\":100}}", 1, "echo", 100),
    OK("json empty options", false, "{\"model\":\"echo\",\"inputs\":[1],\"options\":{}}", 1,
       "echo", 0),
    OK("json chunk 0 is adaptive", false,
       "{\"model\":\"echo\",\"inputs\":[1],\"options\":{\"chunk_size\":0}}", 1, "echo", 0),
    OK("json chunk max", false,
       "{\"model\":\"echo\",\"inputs\":[1],\"options\":{\"chunk_size\":4294967295}}", 1, "echo",
       4294967295u),
    OK("json any items", false,
       "{\"model\":\"echo\",\"inputs\":[null,\"s\",{\"a\":1},[1],1.5,true,false,-0.0]}", 8,
       "echo", 0),
    OK("json member order", false, " \n{ \"inputs\" : [ 1 ] , \"model\" : \"m\" }\n ", 1, "m", 0),
    OK("json unicode model", false, "{\"model\":\"caf\\u00e9\",\"inputs\":[1]}", 1,
       "caf\xc3\xa9", 0),

    /* ---- JSON, malformed: 400 invalid-json with line and column */
    ERR("json empty", false, "", -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 0, NONE),
    ERR("json cut", false, "{", -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 1, NONE),
    ERR("json line 3", false, "{\n\"model\": \"a\",\n\"inputs\": [1,,2]}", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 3, 14, NONE),
    ERR("json duplicate key", false, "{\"model\":\"a\",\"model\":\"b\",\"inputs\":[1]}", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 20, NONE),
    ERR("json duplicate key in item", false, "{\"model\":\"a\",\"inputs\":[{\"x\":1,\"x\":2}]}",
        -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 33, NONE),
    ERR("json bad utf-8", false, "{\"model\":\"\xff\",\"inputs\":[1]}", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 10, NONE),
    ERR("json trailing junk", false, "{\"model\":\"a\",\"inputs\":[1]} x", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 28, NONE),
    ERR("json NUL in the model name", false, "{\"model\":\"a\\u0000b\",\"inputs\":[1]}",
        -EINVAL, API_PROBLEM_INVALID_JOB, "/model", NONE, NONE, NONE, NONE),
    ERR("json number overflow", false, "{\"model\":\"a\",\"inputs\":[1e400]}", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 28, NONE),

    /* ---- JSON, wrong shape: 422 invalid-job with a pointer */
    ERR("json number body", false, "42", -EINVAL, API_PROBLEM_INVALID_JOB, "", NONE, NONE, NONE,
        NONE),
    ERR("json array body", false, "[1]", -EINVAL, API_PROBLEM_INVALID_JOB, "", NONE, NONE, NONE,
        NONE),
    ERR("json null body", false, "null", -EINVAL, API_PROBLEM_INVALID_JOB, "", NONE, NONE, NONE,
        NONE),
    ERR("json no model", false, "{\"inputs\":[1]}", -EINVAL, API_PROBLEM_INVALID_JOB, "/model",
        NONE, NONE, NONE, NONE),
    ERR("json model number", false, "{\"model\":1,\"inputs\":[1]}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/model", NONE, NONE, NONE, NONE),
    ERR("json model empty", false, "{\"model\":\"\",\"inputs\":[1]}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/model", NONE, NONE, NONE, NONE),
    ERR("json no inputs", false, "{\"model\":\"a\"}", -EINVAL, API_PROBLEM_INVALID_JOB,
        "/inputs", NONE, NONE, NONE, NONE),
    ERR("json inputs object", false, "{\"model\":\"a\",\"inputs\":{}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/inputs", NONE, NONE, NONE, NONE),
    ERR("json inputs empty", false, "{\"model\":\"a\",\"inputs\":[]}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/inputs", NONE, NONE, NONE, NONE),
    ERR("json unknown member", false, "{\"model\":\"a\",\"inputs\":[1],\"extra\":1}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/extra", NONE, NONE, NONE, NONE),
    ERR("json unknown member escaped", false, "{\"a/b~\":1,\"model\":\"a\",\"inputs\":[1]}",
        -EINVAL, API_PROBLEM_INVALID_JOB, "/a~1b~0", NONE, NONE, NONE, NONE),
    ERR("json options timeout zero", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"item_timeout_s\":0}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/item_timeout_s", NONE, NONE, NONE, NONE),
    ERR("json options timeout over the maximum", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"item_timeout_s\":3600.5}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/item_timeout_s", NONE, NONE, NONE, NONE),
    ERR("json options timeout string", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"item_timeout_s\":\"1\"}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/item_timeout_s", NONE, NONE, NONE, NONE),
    ERR("json options max_attempts zero", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"max_attempts\":0}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/max_attempts", NONE, NONE, NONE, NONE),
    ERR("json options max_attempts 101", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"max_attempts\":101}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/max_attempts", NONE, NONE, NONE, NONE),
    ERR("json options array", false, "{\"model\":\"a\",\"inputs\":[1],\"options\":[]}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options", NONE, NONE, NONE, NONE),
    ERR("json options unknown", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk\":1}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk", NONE, NONE, NONE, NONE),
    ERR("json chunk negative", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk_size\":-1}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk_size", NONE, NONE, NONE, NONE),
    ERR("json chunk real", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk_size\":1.5}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk_size", NONE, NONE, NONE, NONE),
    ERR("json chunk string", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk_size\":\"10\"}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk_size", NONE, NONE, NONE, NONE),
    ERR("json chunk too big", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk_size\":4294967296}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk_size", NONE, NONE, NONE, NONE),
    ERR("json chunk null", false,
        "{\"model\":\"a\",\"inputs\":[1],\"options\":{\"chunk_size\":null}}", -EINVAL,
        API_PROBLEM_INVALID_JOB, "/options/chunk_size", NONE, NONE, NONE, NONE),

    /* ---- NDJSON, accepted */
    OK("ndjson three", true, "1\n2\n3\n", 3, NULL, 0),
    OK("ndjson crlf", true, "1\r\n2\r\n", 2, NULL, 0),
    OK("ndjson blanks, no final newline", true, "\n1\n\n  \n\t\r\n2", 2, NULL, 0),
    OK("ndjson any values", true, "{\"a\":1}\n[1, 2]\n\"s\"\nnull\n  7  \n", 5, NULL, 0),

    /* ---- NDJSON, refused */
    ERR("ndjson empty", true, "", -EINVAL, API_PROBLEM_INVALID_JOB, "", NONE, NONE, NONE, NONE),
    ERR("ndjson only blank lines", true, "\n \r\n\t\n", -EINVAL, API_PROBLEM_INVALID_JOB, "",
        NONE, NONE, NONE, NONE),
    ERR("ndjson bad line 2", true, "1\n{\n3\n", -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 2,
        1, NONE),
    ERR("ndjson crlf bad line 2", true, "1\r\n{\r\n3\r\n", -EINVAL, API_PROBLEM_INVALID_JSON,
        NULL, NONE, 2, 1, NONE),
    ERR("ndjson two values on a line", true, "1\n2 3\n", -EINVAL, API_PROBLEM_INVALID_JSON,
        NULL, NONE, 2, 3, NONE),
    ERR("ndjson duplicate key line 4", true, "1\n\n2\n{\"a\":1,\"a\":2}\n", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 4, 10, NONE),
    ERR("ndjson bad utf-8", true, "\"\xff\"\n", -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 1,
        1, NONE),
    ERR("ndjson pretty-printed object", true, "{\n\"a\": 1\n}\n", -EINVAL,
        API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 1, NONE),
};

/* Rows that need other limits (or a body with NUL bytes). */
static const struct row limit_rows[] = {
    { "json too many items", false, "{\"model\":\"a\",\"inputs\":[1,2,3]}", 0, 2, 0, 0, NULL, 0,
      -E2BIG, API_PROBLEM_TOO_LARGE, "/inputs", NONE, NONE, NONE, 2 },
    { "json items at the limit", false, "{\"model\":\"a\",\"inputs\":[1,2]}", 0, 2, 0, 2, "a", 0,
      0, 0, NULL, NONE, NONE, NONE, NONE },
    { "json item compact at the limit", false, "{\"model\":\"a\",\"inputs\":[1, [1, 2]]}", 0, 0,
      5, 2, "a", 0, 0, 0, NULL, NONE, NONE, NONE, NONE },
    { "json item one byte over", false, "{\"model\":\"a\",\"inputs\":[1, [1, 2]]}", 0, 0, 4, 0,
      NULL, 0, -E2BIG, API_PROBLEM_TOO_LARGE, "/inputs/1", 1, NONE, NONE, 4 },
    /* 0.1 is stored with 17 significant digits: 0.10000000000000001 */
    { "json real precision fits", false, "{\"model\":\"a\",\"inputs\":[0.1]}", 0, 0, 19, 1, "a",
      0, 0, 0, NULL, NONE, NONE, NONE, NONE },
    { "json real precision over", false, "{\"model\":\"a\",\"inputs\":[0.1]}", 0, 0, 18, 0, NULL,
      0, -E2BIG, API_PROBLEM_TOO_LARGE, "/inputs/0", 0, NONE, NONE, 18 },
    { "json object item compact", false, "{\"model\":\"a\",\"inputs\":[{ \"a\" : 1 }]}", 0, 0, 7,
      1, "a", 0, 0, 0, NULL, NONE, NONE, NONE, NONE },
    { "json NUL byte in body", false, "{\"model\":\"a\",\0\"inputs\":[1]}", 27, 0, 0, 0, NULL, 0,
      -EINVAL, API_PROBLEM_INVALID_JSON, NULL, NONE, 1, 14, NONE },
    { "ndjson too many items", true, "1\n2\n3\n", 0, 2, 0, 0, NULL, 0, -E2BIG,
      API_PROBLEM_TOO_LARGE, NULL, NONE, NONE, NONE, 2 },
    { "ndjson items at the limit", true, "1\n2\n\n", 0, 2, 0, 2, NULL, 0, 0, 0, NULL, NONE, NONE,
      NONE, NONE },
    { "ndjson item too large", true, "1\n\n[1, 2]\n", 0, 0, 4, 0, NULL, 0, -E2BIG,
      API_PROBLEM_TOO_LARGE, "/1", 1, 3, NONE, 4 },
    { "ndjson item compact fits", true, "1\n\n[1, 2]\n", 0, 0, 5, 2, NULL, 0, 0, 0, NULL, NONE,
      NONE, NONE, NONE },
    { "ndjson NUL byte on line 2", true, "1\n\0\n", 4, 0, 0, 0, NULL, 0, -EINVAL,
      API_PROBLEM_INVALID_JSON, NULL, NONE, 2, 1, NONE },
};

static void check_member(const struct row *r, const struct api_problem *p, unsigned bit,
                         int64_t want, uint64_t got, const char *what)
{
    if (want == NONE) {
        if (p->has & bit)
            fail_msg("%s: unexpected %s %llu", r->name, what, (unsigned long long)got);
        return;
    }
    if (!(p->has & bit))
        fail_msg("%s: no %s (want %lld)", r->name, what, (long long)want);
    if (got != (uint64_t)want)
        fail_msg("%s: %s %llu, want %lld", r->name, what, (unsigned long long)got,
                 (long long)want);
}

static void run_row(const struct row *r)
{
    struct api_request_limits lim = {
        .max_items = r->max_items ? r->max_items : 1000,
        .max_item_bytes = r->max_item_bytes ? r->max_item_bytes : BIG,
    };
    size_t len = r->body_len ? r->body_len : strlen(r->body);
    struct api_problem p;
    memset(&p, 0, sizeof p);
    struct api_job_request jr;
    struct job_items *items = NULL;
    int rc;
    if (r->ndjson) {
        rc = api_request_parse_ndjson(r->body, len, &lim, &items, &p);
    } else {
        rc = api_request_parse_json(r->body, len, &lim, &jr, &p);
        items = jr.items;
    }
    if (rc != r->rc)
        fail_msg("%s: rc %d, want %d (detail: %s)", r->name, rc, r->rc, p.detail);
    if (rc == 0) {
        assert_non_null(items);
        if (job_items_count(items) != r->count)
            fail_msg("%s: %zu items, want %zu", r->name, job_items_count(items), r->count);
        if (!r->ndjson) {
            assert_string_equal(jr.model, r->model);
            assert_int_equal(jr.opt.chunk_size, r->chunk_size);
            api_job_request_clear(&jr);
            assert_null(jr.model);
            assert_null(jr.items);
        } else {
            job_items_free(items);
        }
        return;
    }
    /* nothing left to free after a failure */
    if (r->ndjson)
        assert_null(items);
    else
        assert_true(jr.items == NULL && jr.model == NULL);
    if (p.kind != r->kind)
        fail_msg("%s: kind %s, want %s (detail: %s)", r->name, api_problem_slug(p.kind),
                 api_problem_slug(r->kind), p.detail);
    if (p.detail[0] == '\0')
        fail_msg("%s: empty detail", r->name);
    if (r->pointer) {
        if (!(p.has & API_PROBLEM_HAS_POINTER) || strcmp(p.pointer, r->pointer) != 0)
            fail_msg("%s: pointer \"%s\", want \"%s\"", r->name,
                     (p.has & API_PROBLEM_HAS_POINTER) ? p.pointer : "(none)", r->pointer);
    } else if (p.has & API_PROBLEM_HAS_POINTER) {
        fail_msg("%s: unexpected pointer \"%s\"", r->name, p.pointer);
    }
    check_member(r, &p, API_PROBLEM_HAS_INDEX, r->index, p.index, "index");
    check_member(r, &p, API_PROBLEM_HAS_LINE, r->line, p.line, "line");
    check_member(r, &p, API_PROBLEM_HAS_COLUMN, r->column, p.column, "column");
    check_member(r, &p, API_PROBLEM_HAS_LIMIT, r->limit, p.limit, "limit");
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(&rows[i]);
}

static void test_limit_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof limit_rows / sizeof limit_rows[0]; i++)
        run_row(&limit_rows[i]);
}

static void test_ndjson_line_in_detail(void **state)
{
    (void)state;
    struct api_request_limits lim = { .max_items = 10, .max_item_bytes = BIG };
    struct job_items *items;
    struct api_problem p;
    const char *body = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n{]\n";
    assert_int_equal(api_request_parse_ndjson(body, strlen(body), &lim, &items, &p), -E2BIG);
    /* the count limit comes first: 11 items pass 10 before line 12 is read */
    assert_int_equal(p.kind, API_PROBLEM_TOO_LARGE);
    lim.max_items = 100;
    assert_int_equal(api_request_parse_ndjson(body, strlen(body), &lim, &items, &p), -EINVAL);
    assert_non_null(strstr(p.detail, "line 12"));
    assert_int_equal(p.line, 12);
}

static void test_fault_options(void **state)
{
    (void)state;
    struct api_request_limits lim = { .max_items = 10, .max_item_bytes = BIG,
                                      .max_item_timeout_ms = 5000 };
    const char *body = "{\"model\":\"chaos\",\"inputs\":[1],"
                       "\"options\":{\"item_timeout_s\":2.5,\"max_attempts\":4}}";
    struct api_job_request req;
    struct api_problem p;
    memset(&p, 0, sizeof p);
    assert_int_equal(api_request_parse_json(body, strlen(body), &lim, &req, &p), 0);
    assert_int_equal(req.opt.item_timeout_ms, 2500);
    assert_int_equal(req.opt.max_attempts, 4);
    assert_int_equal(req.opt.chunk_size, 0);
    api_job_request_clear(&req);
    /* the configured maximum bounds a job's own deadline */
    body = "{\"model\":\"chaos\",\"inputs\":[1],\"options\":{\"item_timeout_s\":6}}";
    assert_int_equal(api_request_parse_json(body, strlen(body), &lim, &req, &p), -EINVAL);
    assert_int_equal(p.kind, API_PROBLEM_INVALID_JOB);
}

/* "webhook": {"url": string}; its host is checked by the handler, its
 * shape here (issue 18). */
static void test_webhook_member(void **state)
{
    (void)state;
    struct api_request_limits lim = { .max_items = 10, .max_item_bytes = BIG };
    struct api_job_request req;
    struct api_problem p;
    const char *body = "{\"model\":\"echo\",\"inputs\":[1],"
                       "\"webhook\":{\"url\":\"https://hooks.example/x\"}}";
    memset(&p, 0, sizeof p);
    assert_int_equal(api_request_parse_json(body, strlen(body), &lim, &req, &p), 0);
    assert_string_equal(req.webhook_url, "https://hooks.example/x");
    api_job_request_clear(&req);
    assert_null(req.webhook_url);
    body = "{\"model\":\"echo\",\"inputs\":[1]}";
    assert_int_equal(api_request_parse_json(body, strlen(body), &lim, &req, &p), 0);
    assert_null(req.webhook_url);
    api_job_request_clear(&req);
    static const struct {
        const char *body, *pointer;
    } bad[] = {
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":\"http://a/\"}", "/webhook" },
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{}}", "/webhook/url" },
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":7}}", "/webhook/url" },
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"\"}}", "/webhook/url" },
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"a\\u0000b\"}}",
          "/webhook/url" },
        { "{\"model\":\"echo\",\"inputs\":[1],\"webhook\":{\"url\":\"http://a/\",\"x\":1}}",
          "/webhook/x" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&p, 0, sizeof p);
        assert_int_equal(api_request_parse_json(bad[i].body, strlen(bad[i].body), &lim, &req, &p),
                         -EINVAL);
        assert_int_equal(p.kind, API_PROBLEM_INVALID_JOB);
        assert_string_equal(p.pointer, bad[i].pointer);
    }
}

static void test_depth_limit(void **state)
{
    (void)state;
    struct api_request_limits lim = { .max_items = 10, .max_item_bytes = BIG, .max_depth = 4 };
    struct api_job_request req;
    struct api_problem p;
    /* root(1) > inputs(2) > item(3) > [ (4): at the limit, accepted */
    const char *ok = "{\"model\":\"echo\",\"inputs\":[[[1]]]}";
    memset(&p, 0, sizeof p);
    assert_int_equal(api_request_parse_json(ok, strlen(ok), &lim, &req, &p), 0);
    api_job_request_clear(&req);
    const char *deep = "{\"model\":\"echo\",\"inputs\":[1,{\"a/b\":[[2]]}]}";
    memset(&p, 0, sizeof p);
    assert_int_equal(api_request_parse_json(deep, strlen(deep), &lim, &req, &p), -EINVAL);
    assert_int_equal(p.kind, API_PROBLEM_INVALID_JSON);
    assert_string_equal(p.pointer, "/inputs/1/a~1b/0");
    assert_int_equal(p.limit, 4);
    /* NDJSON: counted from each line's item */
    const char *nd = "1\n[[[[[2]]]]]\n";
    struct job_items *items = NULL;
    memset(&p, 0, sizeof p);
    assert_int_equal(api_request_parse_ndjson(nd, strlen(nd), &lim, &items, &p), -EINVAL);
    assert_null(items);
    assert_int_equal(p.kind, API_PROBLEM_INVALID_JSON);
    assert_int_equal(p.line, 2);
    assert_string_equal(p.pointer, "/1/0/0/0/0");
}

static void test_many_items(void **state)
{
    (void)state;
    /* enough items to make the arena grow several times */
    struct sbuf b = SBUF_INIT;
    assert_int_equal(sbuf_puts(&b, "{\"model\":\"echo\",\"inputs\":["), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(sbuf_printf(&b, "%s{\"i\":%d,\"s\":\"item\"}", i ? "," : "", i), 0);
    assert_int_equal(sbuf_puts(&b, "]}"), 0);
    struct api_request_limits lim = { .max_items = 20000, .max_item_bytes = 64 };
    struct api_job_request jr;
    struct api_problem p;
    assert_int_equal(api_request_parse_json(b.data, b.len, &lim, &jr, &p), 0);
    assert_int_equal(job_items_count(jr.items), 20000);
    api_job_request_clear(&jr);

    sbuf_reset(&b);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(sbuf_printf(&b, "[%d, %d.5]\r\n", i, i), 0);
    struct job_items *items;
    assert_int_equal(api_request_parse_ndjson(b.data, b.len, &lim, &items, &p), 0);
    assert_int_equal(job_items_count(items), 20000);
    job_items_free(items);
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_limit_rows),
        cmocka_unit_test(test_ndjson_line_in_detail),
        cmocka_unit_test(test_many_items),
        cmocka_unit_test(test_fault_options),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_webhook_member),
    };
    return cmocka_run_group_tests_name("api/request", tests, NULL, NULL);
}
