/*
 * Unit tests of workers/worker.c that need no ring: worker_utf8_repair(),
 * which every model's error message passes through before it goes into the
 * ring (and from there, as it is, into the results' JSON); the recycle
 * check (worker_past_limit) and the RSS it reads (worker_rss_bytes). The
 * recycle itself, with real workers, is tests/integration/test_recycle.c.
 * The worker loop
 * itself is exercised with real forked workers by tests/unit/service/
 * test_engine.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "workers/worker/worker.h"

struct repair_case {
    const char *in;
    const char *out;
    size_t replaced;
};

static const struct repair_case cases[] = {
    /* valid text is left exactly as it was */
    {"", "", 0},
    {"plain ASCII, \"quotes\" and \x01 controls", "plain ASCII, \"quotes\" and \x01 controls", 0},
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", 0},
    /* a character cut short, at the end (what "%.64s" or a full buffer does) */
    {"key \"aaa\xc3", "key \"aaa?", 1},
    {"euro \xe2\x82", "euro ??", 2},
    /* one in the middle, then valid text again */
    {"a\xe2\x82" "b", "a??b", 2},
    /* a continuation byte on its own */
    {"\x80x\xbf", "?x?", 2},
    /* overlong forms, surrogates, past U+10FFFF, bytes UTF-8 never uses */
    {"\xc0\xaf", "??", 2},
    {"\xe0\x80\xaf", "???", 3},
    {"\xed\xa0\x80", "???", 3},
    {"\xf4\x90\x80\x80", "????", 4},
    {"\xf8\x88\x80\x80\x80", "?????", 5},
    {"\xfe\xff", "??", 2},
};

static void test_repair(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        size_t n = worker_utf8_repair(buf);
        if (strcmp(buf, cases[i].out) != 0 || n != cases[i].replaced)
            fail_msg("case %zu: \"%s\" (%zu replaced), expected \"%s\" (%zu)", i, buf, n,
                     cases[i].out, cases[i].replaced);
        /* and the result is a string jansson (so any JSON reader) accepts */
        json_t *j = json_string(buf);
        if (!j)
            fail_msg("case %zu: the repaired text is not UTF-8 to jansson", i);
        json_decref(j);
    }
}

struct limit_case {
    uint64_t items, max_items, rss, max_rss;
    enum worker_recycle_reason want;
};

static const struct limit_case limit_cases[] = {
    /* no limits: never */
    {0, 0, 0, 0, WORKER_RECYCLE_NONE},
    {1000000, 0, 1ull << 40, 0, WORKER_RECYCLE_NONE},
    /* the item count: at the limit, not before */
    {49, 50, 0, 0, WORKER_RECYCLE_NONE},
    {50, 50, 0, 0, WORKER_RECYCLE_ITEMS},
    {57, 50, 0, 0, WORKER_RECYCLE_ITEMS}, /* a task took it past */
    {1, 1, 0, 0, WORKER_RECYCLE_ITEMS},
    /* the resident set */
    {0, 0, (64u << 20) - 1, 64u << 20, WORKER_RECYCLE_NONE},
    {0, 0, 64u << 20, 64u << 20, WORKER_RECYCLE_RSS},
    {10, 50, 100u << 20, 64u << 20, WORKER_RECYCLE_RSS},
    /* an RSS that could not be read (0) is never past */
    {10, 50, 0, 1, WORKER_RECYCLE_NONE},
    /* both: the item limit is named */
    {50, 50, 100u << 20, 64u << 20, WORKER_RECYCLE_ITEMS},
};

static void test_past_limit(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < sizeof limit_cases / sizeof limit_cases[0]; i++) {
        const struct limit_case *c = &limit_cases[i];
        enum worker_recycle_reason got =
            worker_past_limit(c->items, c->max_items, c->rss, c->max_rss);
        if (got != c->want)
            fail_msg("case %zu: %s, want %s", i, worker_recycle_reason_name(got),
                     worker_recycle_reason_name(c->want));
    }
    assert_string_equal(worker_recycle_reason_name(WORKER_RECYCLE_ITEMS), "items");
    assert_string_equal(worker_recycle_reason_name(WORKER_RECYCLE_RSS), "rss");
    assert_string_equal(worker_recycle_reason_name(WORKER_RECYCLE_NONE), "none");
}

/* RSS comes from /proc/self/statm: non-zero, and 32 MiB written shows. */
static void test_rss_bytes(void **unused)
{
    (void)unused;
    uint64_t before = worker_rss_bytes();
    assert_true(before > 0);
    size_t n = 32u << 20;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    uint64_t after = worker_rss_bytes();
    print_message("RSS %llu -> %llu bytes after writing 32 MiB\n", (unsigned long long)before,
                  (unsigned long long)after);
    assert_true(after >= before + n - (4u << 20)); /* pages, allocator slack */
    assert_true(p[n - 1] == 1);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repair),
        cmocka_unit_test(test_past_limit),
        cmocka_unit_test(test_rss_bytes),
    };
    return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
