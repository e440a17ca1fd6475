/*
 * fuzz_headers: the request-header parsers of api/headers.h:
 * api_content_type_parse (Content-Type), api_accept_wants_ndjson (Accept),
 * api_etag_matches (If-None-Match) and api_request_id_valid (X-Request-Id).
 *
 * The whole input (NUL-terminated, as libmicrohttpd hands a header value
 * over) goes to each parser; then, split at the first '\n', the first part
 * is an If-None-Match value and the second the ETag it is compared with.
 * Contract checked:
 *   - Content-Type: -ENOENT exactly for an absent or blank value; 0 only
 *     when the value, after optional blanks, starts with one of the two
 *     media types (any case) followed by the end, a blank or ';';
 *   - Accept: true only when "application/x-ndjson" appears in it (any
 *     case);
 *   - If-None-Match: a match needs "*" or the ETag's quoted part to appear
 *     in the value; a value that is exactly the ETag matches it, and "*"
 *     matches any well-formed ETag;
 *   - X-Request-Id: exactly 1..128 characters of [A-Za-z0-9._-];
 *   - api_request_id_new(): ID_LEN characters of lowercase base32.
 */
#include <errno.h>
#include <strings.h>

#include "tests/fuzz/fuzz.h"
#include "api/http/headers.h"

static bool ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return false;
}

static bool ct_prefix_ok(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    static const char *const types[] = {"application/json", "application/x-ndjson"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(v, types[i], n) == 0 &&
            (v[n] == '\0' || v[n] == ' ' || v[n] == '\t' || v[n] == ';'))
            return true;
    }
    return false;
}

static bool request_id_ref(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > API_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = fuzz_cstr(data, size);

    enum api_body_type type = (enum api_body_type)77;
    int rc = api_content_type_parse(v, &type);
    bool blank = v[strspn(v, " \t")] == '\0';
    FUZZ_ASSERT(rc == 0 || rc == -ENOENT || rc == -ENOTSUP, "rc %d", rc);
    FUZZ_ASSERT((rc == -ENOENT) == blank, "-ENOENT and blank disagree (rc %d)", rc);
    if (rc == 0) {
        FUZZ_ASSERT(type == API_BODY_JSON || type == API_BODY_NDJSON, "type %d", (int)type);
        FUZZ_ASSERT(ct_prefix_ok(v), "accepted Content-Type \"%s\"", v);
    } else {
        FUZZ_ASSERT(type == (enum api_body_type)77, "*type changed on failure");
    }
    FUZZ_ASSERT(api_content_type_parse(NULL, &type) == -ENOENT, "NULL Content-Type");

    if (api_accept_wants_ndjson(v))
        FUZZ_ASSERT(ci_contains(v, "application/x-ndjson"), "Accept \"%s\" wants NDJSON", v);

    FUZZ_ASSERT(api_request_id_valid(v) == request_id_ref(v), "X-Request-Id \"%s\"", v);

    /* If-None-Match against an ETag: "INM\nETAG". */
    char *nl = strchr(v, '\n');
    const char *inm = v, *etag = "\"abc\"";
    if (nl) {
        *nl = '\0';
        etag = nl + 1;
    }
    bool m = api_etag_matches(inm, etag);
    if (m) {
        const char *e = etag;
        if (e[0] == 'W' && e[1] == '/')
            e += 2;
        const char *close = strchr(e + 1, '"');
        size_t elen = close ? (size_t)(close - e) + 1 : strlen(e);
        bool contains = false;
        for (const char *p = inm; *p && !contains; p++)
            contains = strncmp(p, e, elen) == 0;
        FUZZ_ASSERT(strchr(inm, '*') || contains, "If-None-Match \"%s\" matched \"%s\"", inm,
                    etag);
    }
    /* a strong, well-formed ETag always matches itself and "*" */
    size_t el = strlen(etag);
    bool well_formed = el >= 2 && etag[0] == '"' && etag[el - 1] == '"' &&
                       memchr(etag + 1, '"', el - 2) == NULL;
    if (well_formed) {
        FUZZ_ASSERT(api_etag_matches(etag, etag), "ETag %s does not match itself", etag);
        FUZZ_ASSERT(api_etag_matches("*", etag), "* does not match %s", etag);
    }
    FUZZ_ASSERT(!api_etag_matches(NULL, etag) && !api_accept_wants_ndjson(NULL), "NULL values");

    char id[ID_LEN + 1];
    api_request_id_new(id);
    FUZZ_ASSERT(strlen(id) == ID_LEN && strspn(id, "abcdefghijklmnopqrstuvwxyz234567") == ID_LEN,
                "new id %s", id);
    FUZZ_ASSERT(api_request_id_valid(id), "a generated id is not valid");
    free(v);
    return 0;
}
