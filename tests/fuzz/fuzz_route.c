/*
 * fuzz_route: api_route_match(), api_method_parse() and api_job_id_valid(),
 * the request line's path and method.
 *
 * Input: "METHOD\nPATH" (or just PATH, with GET), NUL-terminated as the
 * server hands them over (an embedded NUL cuts the string there, as it
 * does in libmicrohttpd). The checks are written against the route table's
 * public description, not a copy of the matcher, so that routes added
 * later are covered without editing this file:
 *   - 0 exactly when a route matched; the route is in range and has
 *     methods, an Allow string and a template;
 *   - the path has the shape of the template: as many '/'-separated
 *     segments, each equal to the template's or, for a "{param}" segment,
 *     non-empty;
 *   - /v1/objects/{id}: id_valid says whether the segment is an object id
 *     (26 characters of lowercase Crockford base32);
 *   - routes with a job {id}: id_valid is api_job_id_valid() of the segment, a
 *     valid id is copied whole (26 characters of [a-z2-7]) and an invalid
 *     one leaves id empty;
 *   - api_method_parse() gives one bit per method, only for tokens of
 *     capital letters (methods are case-sensitive), and knows GET, POST
 *     and DELETE.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include <batchd/model.h>
#include "api/http/route.h"

static bool id_ref(const char *s, size_t n)
{
    if (n != ENGINE_JOB_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
            return false;
    return true;
}

/* Checks that `path` has the shape of `tmpl`; returns the {param} segment
 * (start, length) of the last parameter in *param / *plen. */
static bool shape_matches(const char *tmpl, const char *path, const char **param, size_t *plen)
{
    const char *t = tmpl, *p = path;
    *param = NULL;
    *plen = 0;
    for (;;) {
        size_t tl = strcspn(t, "/"), pl = strcspn(p, "/");
        bool is_param = tl >= 2 && t[0] == '{' && t[tl - 1] == '}';
        if (is_param) {
            if (pl == 0)
                return false;
            *param = p;
            *plen = pl;
        } else if (tl != pl || memcmp(t, p, tl) != 0) {
            return false;
        }
        t += tl;
        p += pl;
        if (*t == '\0' || *p == '\0')
            return *t == '\0' && *p == '\0';
        t++; /* both at a '/' */
        p++;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    const char *method = "GET", *path = in;
    char *nl = memchr(in, '\n', size);
    if (nl) {
        *nl = '\0';
        method = in;
        path = nl + 1;
    }

    /* Methods: one bit each, case-sensitive tokens of capital letters;
     * the three of every version must be known. */
    unsigned mb = api_method_parse(method);
    FUZZ_ASSERT((mb & (mb - 1)) == 0, "method %s parsed as several bits %#x", method, mb);
    if (mb != API_METHOD_OTHER) {
        FUZZ_ASSERT(method[0] && strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(method),
                    "method \"%s\" was recognised", method);
        char again[64];
        snprintf(again, sizeof again, "%s", method);
        FUZZ_ASSERT(api_method_parse(again) == mb, "not a function of the string");
    }
    if (strcmp(method, "GET") == 0)
        FUZZ_ASSERT(mb == API_METHOD_GET, "GET");
    if (strcmp(method, "POST") == 0)
        FUZZ_ASSERT(mb == API_METHOD_POST, "POST");
    if (strcmp(method, "DELETE") == 0)
        FUZZ_ASSERT(mb == API_METHOD_DELETE, "DELETE");

    struct api_match m;
    memset(&m, 0xA5, sizeof m); /* the matcher must set every member */
    int rc = api_route_match(path, &m);
    FUZZ_ASSERT(rc == 0 || rc == -ENOENT, "rc %d", rc);
    FUZZ_ASSERT((rc == 0) == (m.route != API_ROUTE_NONE), "rc %d with route %d", rc, (int)m.route);
    FUZZ_ASSERT((unsigned)m.route < API_ROUTE_COUNT, "route %d out of range", (int)m.route);
    const char *tmpl = api_route_template(m.route);
    FUZZ_ASSERT(tmpl != NULL && api_route_allow(m.route) != NULL, "route strings");
    if (rc == 0) {
        FUZZ_ASSERT(api_route_methods(m.route) != 0, "a route without methods");
        const char *param;
        size_t plen;
        FUZZ_ASSERT(shape_matches(tmpl, path, &param, &plen), "path %s matched %s", path, tmpl);
        if (m.route == API_ROUTE_JOB || m.route == API_ROUTE_JOB_RESULTS) {
            FUZZ_ASSERT(param != NULL, "no {id} in %s", tmpl);
            bool valid = id_ref(param, plen);
            FUZZ_ASSERT(m.id_valid == valid, "id_valid %d for %.*s", m.id_valid, (int)plen, param);
            FUZZ_ASSERT(api_job_id_valid(param, plen) == valid, "api_job_id_valid");
            if (valid)
                FUZZ_ASSERT(strlen(m.id) == plen && memcmp(m.id, param, plen) == 0, "id copy");
            else
                FUZZ_ASSERT(m.id[0] == '\0', "an invalid id was copied");
        }
        if (m.route == API_ROUTE_OBJECT) {
            /* lowercase Crockford base32, written out here independently */
            static const char crockford[] = "0123456789abcdefghjkmnpqrstvwxyz";
            bool valid = param != NULL && plen == MODEL_OBJECT_ID_LEN;
            for (size_t i = 0; valid && i < plen; i++)
                valid = param[i] != '\0' && strchr(crockford, param[i]) != NULL;
            FUZZ_ASSERT(m.id_valid == valid, "object id_valid %d for %.*s", m.id_valid,
                        (int)plen, param);
            if (valid)
                FUZZ_ASSERT(strlen(m.id) == plen && memcmp(m.id, param, plen) == 0, "id copy");
            else
                FUZZ_ASSERT(m.id[0] == '\0', "an invalid object id was copied");
        }
        FUZZ_ASSERT(api_route_methods(m.route) &
                        (API_METHOD_GET | API_METHOD_POST | API_METHOD_DELETE),
                    "route %s has no GET, POST or DELETE", tmpl);
    }
    FUZZ_ASSERT(api_job_id_valid(in, size) == id_ref(in, size), "api_job_id_valid on raw bytes");
    free(in);
    return 0;
}
