/*
 * fuzz_scan: api/handlers/scan.c, the fast path of POST /v1/jobs bodies,
 * differentially against the jansson path of request.c.
 *
 * The first byte chooses the body type (JSON or NDJSON) and the limits
 * (the service's defaults, or tight ones: 3 items, 24-byte items, depth 4,
 * so that the limit paths are as reachable as the happy one); the rest is
 * the body. Contract checked:
 *   - the scan returns 0, -EAGAIN or -ENOMEM, and on failure leaves
 *     nothing allocated;
 *   - when the scan accepts, jansson's path accepts too (for JSON: or
 *     refuses with 422 invalid-job, the shape of the members other than
 *     "inputs", which request.c checks after the scan), with the same
 *     number of items, each the same value (json_equal), and the same
 *     bytes when the item has no real number;
 *   - api_request_parse_json / _ndjson (scan first, then jansson) answer
 *     exactly what jansson's path answers: the same rc, the same items,
 *     or the same problem (kind, detail, pointer, index, line, column,
 *     limit);
 *   - nothing leaks (LeakSanitizer).
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "api/handlers/request.h"
#include "api/handlers/scan.h"

static bool has_real(const char *t, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (t[i] == '\\')
                i++;
            else if (t[i] == '"')
                in_str = false;
        } else if (t[i] == '"') {
            in_str = true;
        } else if (t[i] == '.' || t[i] == 'e' || t[i] == 'E') {
            return true;
        }
    }
    return false;
}

static void same_items(const struct job_items *a, const struct job_items *b)
{
    size_t n = job_items_count(b);
    FUZZ_ASSERT(job_items_count(a) == n, "%zu items, jansson %zu", job_items_count(a), n);
    for (size_t i = 0; i < n; i++) {
        size_t la, lb;
        const char *ta = job_items_get(a, i, &la);
        const char *tb = job_items_get(b, i, &lb);
        json_t *va = json_loadb(ta, la, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        json_t *vb = json_loadb(tb, lb, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        FUZZ_ASSERT(va && vb && json_equal(va, vb), "item %zu: %.*s vs jansson %.*s", i,
                    (int)la, ta, (int)lb, tb);
        FUZZ_ASSERT(has_real(tb, lb) || (la == lb && memcmp(ta, tb, la) == 0),
                    "item %zu spelled %.*s, jansson %.*s", i, (int)la, ta, (int)lb, tb);
        json_decref(va);
        json_decref(vb);
    }
}

static void same_problem(const struct api_problem *a, const struct api_problem *b)
{
    FUZZ_ASSERT(a->kind == b->kind && a->has == b->has && strcmp(a->detail, b->detail) == 0 &&
                    strcmp(a->pointer, b->pointer) == 0 && a->index == b->index &&
                    a->line == b->line && a->column == b->column && a->limit == b->limit,
                "problem \"%s\" differs from jansson's \"%s\"", a->detail, b->detail);
}

static void run_json(const char *body, size_t len, const struct api_request_limits *lim)
{
    struct scan_limits sl = { lim->max_items, lim->max_item_bytes, lim->max_depth };
    struct job_items *items = NULL;
    json_t *rest = NULL;
    int fast = scan_json_body(body, len, &sl, &items, &rest);
    FUZZ_ASSERT(fast == 0 || fast == -EAGAIN || fast == -ENOMEM, "scan rc %d", fast);
    if (fast)
        FUZZ_ASSERT(!items && !rest, "a refusal left allocations");
    struct api_job_request ref, full;
    struct api_problem pref, pfull;
    memset(&pref, 0, sizeof pref);
    memset(&pfull, 0, sizeof pfull);
    int rref = api_request_parse_json_jansson(body, len, lim, &ref, &pref);
    int rfull = api_request_parse_json(body, len, lim, &full, &pfull);
    if (fast == 0) {
        FUZZ_ASSERT(rref == 0 || (rref == -EINVAL && pref.kind == API_PROBLEM_INVALID_JOB),
                    "scan accepted what jansson's path refuses: %s", pref.detail);
        if (rref == 0)
            same_items(items, ref.items);
    }
    FUZZ_ASSERT(rfull == rref, "rc %d, jansson's path %d", rfull, rref);
    if (rref == 0) {
        same_items(full.items, ref.items);
        FUZZ_ASSERT(strcmp(full.model, ref.model) == 0, "model differs");
        FUZZ_ASSERT(full.opt.chunk_size == ref.opt.chunk_size, "chunk_size differs");
        api_job_request_clear(&ref);
        api_job_request_clear(&full);
    } else {
        same_problem(&pfull, &pref);
    }
    job_items_free(items);
    json_decref(rest);
}

static void run_ndjson(const char *body, size_t len, const struct api_request_limits *lim)
{
    struct scan_limits sl = { lim->max_items, lim->max_item_bytes, lim->max_depth };
    struct job_items *items = NULL, *ref = NULL, *full = NULL;
    int fast = scan_ndjson_body(body, len, &sl, &items);
    FUZZ_ASSERT(fast == 0 || fast == -EAGAIN || fast == -ENOMEM, "scan rc %d", fast);
    if (fast)
        FUZZ_ASSERT(!items, "a refusal left allocations");
    struct api_problem pref, pfull;
    memset(&pref, 0, sizeof pref);
    memset(&pfull, 0, sizeof pfull);
    int rref = api_request_parse_ndjson_jansson(body, len, lim, &ref, &pref);
    int rfull = api_request_parse_ndjson(body, len, lim, &full, &pfull);
    if (fast == 0) {
        FUZZ_ASSERT(rref == 0, "scan accepted NDJSON jansson's path refuses: %s", pref.detail);
        same_items(items, ref);
    }
    FUZZ_ASSERT(rfull == rref, "rc %d, jansson's path %d", rfull, rref);
    if (rref == 0)
        same_items(full, ref);
    else
        same_problem(&pfull, &pref);
    job_items_free(items);
    job_items_free(ref);
    job_items_free(full);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct api_request_limits defaults = {
        .max_items = 10000000, .max_item_bytes = 256 * 1024 };
    static const struct api_request_limits tight = {
        .max_items = 3, .max_item_bytes = 24, .max_depth = 4 };
    if (size == 0)
        return 0;
    unsigned mode = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    const struct api_request_limits *lim = (mode & 2) ? &tight : &defaults;
    if (mode & 1)
        run_ndjson(body, len, lim);
    else
        run_json(body, len, lim);
    return 0;
}
