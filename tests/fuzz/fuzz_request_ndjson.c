/*
 * fuzz_request_ndjson: api_request_parse_ndjson(), the NDJSON job body.
 *
 * Parsed with the default limits and with tight ones, like
 * fuzz_request_json. Contract checked, besides the problem's shape:
 *   - 0: at least one and at most max_items items, and exactly as many as
 *     the body has non-blank lines (each line on its own is JSON jansson
 *     accepts): the whole body was taken, nothing skipped or split;
 *   - a failure is -EINVAL (400 / 422), -E2BIG or -ENOMEM (413), and a 400
 *     names a line (the `line` member) that exists in the body and is not
 *     blank;
 *   - *items is NULL after a failure, and nothing leaks.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "api/handlers/request.h"

static bool blank(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Counts the body's lines and, in *items, its non-blank lines; stores the
 * start and length of line `want` (1-based) if there is one. */
static size_t count_lines(const uint8_t *data, size_t size, size_t *items, size_t want,
                          const uint8_t **line, size_t *line_len)
{
    size_t lines = 0;
    *items = 0;
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        lines++;
        if (lines == want) {
            *line = p;
            *line_len = n;
        }
        if (!blank(p, n))
            (*items)++;
        p = nl ? nl + 1 : end;
    }
    return lines;
}

static void run(const uint8_t *data, size_t size, const struct api_request_limits *lim)
{
    struct job_items *items = (struct job_items *)(uintptr_t)1; /* must be overwritten */
    struct api_problem prob;
    memset(&prob, 0, sizeof prob);
    int rc = api_request_parse_ndjson((const char *)data, size, lim, &items, &prob);
    if (rc == 0) {
        size_t want;
        const uint8_t *l = NULL;
        size_t ll = 0;
        count_lines(data, size, &want, 0, &l, &ll);
        size_t n = job_items_count(items);
        FUZZ_ASSERT(n >= 1 && n <= lim->max_items, "%zu items", n);
        FUZZ_ASSERT(n == want, "%zu items from a body with %zu non-blank lines", n, want);
        job_items_free(items);
        return;
    }
    FUZZ_ASSERT(items == NULL, "*items is not NULL after a failure");
    if (rc == -EINVAL)
        FUZZ_ASSERT(prob.kind == API_PROBLEM_INVALID_JSON || prob.kind == API_PROBLEM_INVALID_JOB,
                    "-EINVAL with %s", api_problem_slug(prob.kind));
    else
        FUZZ_ASSERT((rc == -E2BIG || rc == -ENOMEM) && prob.kind == API_PROBLEM_TOO_LARGE,
                    "rc %d with %s", rc, api_problem_slug(prob.kind));
    if (prob.kind == API_PROBLEM_INVALID_JSON) {
        FUZZ_ASSERT(prob.has & API_PROBLEM_HAS_LINE, "a 400 without a line: %s", prob.detail);
        size_t nitems;
        const uint8_t *l = NULL;
        size_t ll = 0;
        size_t lines = count_lines(data, size, &nitems, (size_t)prob.line, &l, &ll);
        FUZZ_ASSERT(prob.line >= 1 && prob.line <= lines, "line %llu of %zu",
                    (unsigned long long)prob.line, lines);
        FUZZ_ASSERT(l && !blank(l, ll), "line %llu is blank", (unsigned long long)prob.line);
    }
    fuzz_check_problem(&prob, "/v1/jobs");
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
        .max_items = 10000000,
        .max_item_bytes = 256 * 1024,
        .max_item_timeout_ms = 0,
        .max_depth = 0,
    };
    static const struct api_request_limits tight = {
        .max_items = 3,
        .max_item_bytes = 48,
        .max_item_timeout_ms = 1500,
        .max_depth = 4,
    };
    run(data, size, &defaults);
    run(data, size, &tight);
    return 0;
}
