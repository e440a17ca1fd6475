/*
 * fuzz_problem: the problem+json encoder with arbitrary bytes where client
 * bytes end up: the detail (a query key, a jansson error quoting the body),
 * the instance (the request path), a pointer built from an object key, and
 * api_json_string_sanitized() itself (UTF-8 repair).
 *
 * Input: byte 0 picks the kind (any value: out-of-range kinds must act as
 * "internal"), byte 1 the optional members; the rest is split at the first
 * two '\n' into detail, key and instance (each NUL-terminated; the whole
 * rest, NULs included, also goes through api_json_string_sanitized).
 * Contract checked:
 *   - the encoded problem is valid JSON of the right shape
 *     (fuzz_check_problem), whatever the bytes;
 *   - the detail holds at most API_PROBLEM_DETAIL_MAX - 1 bytes; one that
 *     was cut ends in "..." and, when the input was valid UTF-8, is still
 *     valid UTF-8 (the cut does not split a character);
 *   - a pointer set from a key is parent + "/" + the key escaped per RFC
 *     6901 when it fits, else the parent itself;
 *   - api_json_string_sanitized() always yields one JSON string; valid
 *     UTF-8 comes back byte for byte; invalid input comes back as valid
 *     UTF-8 with at least one U+FFFD.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"

/* Unescapes an RFC 6901 token sequence (~1 -> /, ~0 -> ~) into out. */
static void pointer_unescape(const char *s, char *out)
{
    while (*s) {
        if (s[0] == '~' && s[1] == '1') {
            *out++ = '/';
            s += 2;
        } else if (s[0] == '~' && s[1] == '0') {
            *out++ = '~';
            s += 2;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

static void check_sanitized(const uint8_t *data, size_t size)
{
    struct sbuf out = SBUF_INIT;
    int rc = api_json_string_sanitized(&out, (const char *)data, size);
    FUZZ_ASSERT(rc == 0, "api_json_string_sanitized: %d", rc);
    json_error_t err;
    json_t *s = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    FUZZ_ASSERT(s != NULL && json_is_string(s), "not one JSON string (%s)", err.text);
    const char *v = json_string_value(s);
    size_t n = json_string_length(s);
    if (fuzz_utf8_valid((const char *)data, size)) {
        FUZZ_ASSERT(n == size && memcmp(v, data, size) == 0, "valid UTF-8 was changed");
    } else {
        FUZZ_ASSERT(fuzz_utf8_valid(v, n), "repair left invalid UTF-8");
        FUZZ_ASSERT(memmem(v, n, "\xEF\xBF\xBD", 3) != NULL, "no U+FFFD for invalid input");
    }
    json_decref(s);
    sbuf_free(&out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum api_problem_kind kind = (enum api_problem_kind)data[0];
    unsigned members = data[1];
    check_sanitized(data + 2, size - 2);

    char *rest = fuzz_cstr(data + 2, size - 2);
    char *detail = rest;
    const char *key = "", *instance = NULL;
    char *nl = strchr(rest, '\n');
    if (nl) {
        *nl = '\0';
        key = nl + 1;
        nl = strchr(key, '\n');
        if (nl) {
            *nl = '\0';
            instance = nl + 1;
        }
    }

    struct api_problem p;
    api_problem_set(&p, kind, "%s", detail);
    FUZZ_ASSERT((unsigned)p.kind < API_PROBLEM_KIND_COUNT, "kind %d kept", (int)p.kind);
    if ((unsigned)kind >= API_PROBLEM_KIND_COUNT)
        FUZZ_ASSERT(p.kind == API_PROBLEM_INTERNAL, "an unknown kind is not internal");
    size_t dl = strlen(p.detail);
    FUZZ_ASSERT(dl < API_PROBLEM_DETAIL_MAX, "detail of %zu bytes", dl);
    if (strlen(detail) < API_PROBLEM_DETAIL_MAX) {
        FUZZ_ASSERT(strcmp(p.detail, detail) == 0, "a short detail was changed");
    } else {
        FUZZ_ASSERT(dl >= 3 && strcmp(p.detail + dl - 3, "...") == 0, "a cut detail without ...");
        if (fuzz_utf8_valid(detail, strlen(detail)))
            FUZZ_ASSERT(fuzz_utf8_valid(p.detail, dl), "the cut split a character");
    }

    /* the optional members, as a handler would set them */
    static const char *const parents[] = {"", "/options", "/inputs/0"};
    const char *parent = parents[(members >> 5) % 3];
    if (members & 1) {
        api_problem_set_pointer_key(&p, parent, key);
        FUZZ_ASSERT(p.has & API_PROBLEM_HAS_POINTER, "pointer not set");
        size_t pl = strlen(parent);
        FUZZ_ASSERT(strncmp(p.pointer, parent, pl) == 0, "pointer %s not under %s", p.pointer,
                    parent);
        if (p.pointer[pl] != '\0') {
            char *un = malloc(strlen(p.pointer) + 1);
            if (!un)
                abort();
            FUZZ_ASSERT(p.pointer[pl] == '/', "pointer %s", p.pointer);
            pointer_unescape(p.pointer + pl + 1, un);
            FUZZ_ASSERT(strcmp(un, key) == 0, "pointer %s does not name key %s", p.pointer, key);
            free(un);
        }
    }
    /* the integer members hold counts and sizes, never past 2^63 (a JSON
     * reader such as jansson refuses larger integers) */
    if (members & 2)
        api_problem_set_index(&p, (uint64_t)members * 0x0001010101010101ull);
    if (members & 4)
        api_problem_set_position(&p, INT64_MAX, members);
    if (members & 8)
        api_problem_set_limit(&p, 0);
    if (members & 16) {
        /* a pointer built from a format: too long ones are left unset */
        unsigned had = p.has & API_PROBLEM_HAS_POINTER;
        api_problem_set_pointer(&p, "%s/%s", parent, key);
        if (strlen(parent) + 1 + strlen(key) >= API_PROBLEM_POINTER_MAX)
            FUZZ_ASSERT((p.has & API_PROBLEM_HAS_POINTER) == had, "a cut pointer was set");
    }
    fuzz_check_problem(&p, instance);
    free(rest);
    return 0;
}
