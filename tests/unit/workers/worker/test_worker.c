/*
 * Unit tests of workers/worker.c that need no ring: worker_utf8_repair(),
 * which every model's error message passes through before it goes into the
 * ring (and from there, as it is, into the results' JSON). The worker loop
 * itself is exercised with real forked workers by tests/unit/service/
 * test_engine.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repair),
    };
    return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
