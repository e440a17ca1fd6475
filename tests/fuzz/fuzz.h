/*
 * fuzz.h: helpers shared by batchd's libFuzzer targets (tests/fuzz/).
 *
 * Each tests/fuzz/fuzz_<target>.c is one libFuzzer program: it feeds the
 * bytes it is given to one parser that reads client-controlled input and
 * checks the parser's contract on the result. A broken contract calls
 * FUZZ_ASSERT, which prints what failed and aborts, so libFuzzer saves the
 * input as a crash just as it does for a sanitizer report. The targets are
 * built with clang -fsanitize=fuzzer,address,undefined against the service
 * objects compiled with the same sanitizers (the Makefile's `fuzz` targets;
 * tests/fuzz/run.sh runs them).
 *
 * The checks here are written independently of the code under test (the
 * UTF-8 validator is not problem.c's), so a bug shared by both cannot hide.
 *
 * Threads: none; libFuzzer runs one input at a time.
 * Ownership: everything takes borrowed arguments; fuzz_cstr() returns a new
 * string the caller frees.
 */
#ifndef BATCHD_FUZZ_H
#define BATCHD_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/http/problem.h"
#include "service/core/sbuf.h"

/* libFuzzer's entry points (prototypes for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond, ...)                                                    \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: contract broken: %s: ", __FILE__, __LINE__,   \
                    #cond);                                                       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* A NUL-terminated copy of data[0..size) (new; aborts on out-of-memory:
 * a fuzz target has nothing better to do). Embedded NULs stay, so strlen()
 * of the result may be shorter than size, as for a C string from a server. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* True when s[0..n) is well-formed UTF-8 (RFC 3629: shortest form only, no
 * surrogates, nothing past U+10FFFF). */
static inline bool fuzz_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t c = u[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            c &= 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            c &= 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            c &= 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (u[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/*
 * Encodes *p as problem+json and checks the body: it parses as a JSON
 * object (duplicate keys refused), its type is urn:batchd:problem:<slug of
 * the kind>, status is the kind's status, title and detail are strings,
 * instance equals `instance` when that is valid UTF-8, and each optional
 * member is there exactly when p->has says so. Aborts otherwise.
 */
static inline void fuzz_check_problem(const struct api_problem *p, const char *instance)
{
    struct sbuf out = SBUF_INIT;
    int rc = api_problem_encode(p, instance, &out);
    FUZZ_ASSERT(rc == 0, "api_problem_encode returned %d", rc);
    json_error_t err;
    json_t *o = json_loadb(out.data, out.len, JSON_REJECT_DUPLICATES, &err);
    FUZZ_ASSERT(o != NULL, "problem body is not JSON (%s): %s", err.text, out.data);
    FUZZ_ASSERT(json_is_object(o), "problem body is not an object");
    char type[128];
    snprintf(type, sizeof type, "urn:batchd:problem:%s", api_problem_slug(p->kind));
    const char *t = json_string_value(json_object_get(o, "type"));
    FUZZ_ASSERT(t && strcmp(t, type) == 0, "type %s, expected %s", t ? t : "(none)", type);
    json_t *st = json_object_get(o, "status");
    FUZZ_ASSERT(json_is_integer(st) && json_integer_value(st) == api_problem_status(p->kind),
                "status member");
    FUZZ_ASSERT(json_is_string(json_object_get(o, "title")), "title member");
    FUZZ_ASSERT(json_is_string(json_object_get(o, "detail")), "detail member");
    const char *inst = json_string_value(json_object_get(o, "instance"));
    FUZZ_ASSERT(inst != NULL, "instance member");
    if (instance && fuzz_utf8_valid(instance, strlen(instance)))
        FUZZ_ASSERT(strcmp(inst, instance) == 0, "instance changed: %s", inst);
    static const struct {
        const char *name;
        unsigned bit;
    } opt[] = {
        {"pointer", API_PROBLEM_HAS_POINTER}, {"index", API_PROBLEM_HAS_INDEX},
        {"line", API_PROBLEM_HAS_LINE},       {"column", API_PROBLEM_HAS_COLUMN},
        {"limit", API_PROBLEM_HAS_LIMIT},
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        FUZZ_ASSERT((json_object_get(o, opt[i].name) != NULL) == ((p->has & opt[i].bit) != 0),
                    "member %s present/absent against has=%#x", opt[i].name, p->has);
    if (p->has & API_PROBLEM_HAS_POINTER) {
        const char *ptr = json_string_value(json_object_get(o, "pointer"));
        FUZZ_ASSERT(ptr && (ptr[0] == '\0' || ptr[0] == '/'), "pointer %s is not a JSON pointer",
                    ptr ? ptr : "(not a string)");
    }
    json_decref(o);
    sbuf_free(&out);
}

#endif
