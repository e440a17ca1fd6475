#include "api/http/headers.h"
#include "service/core/id.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* RFC 9110 tchar: the characters of a token (media types, parameter names). */
static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_token(const char *p)
{
    while (is_tchar(*p))
        p++;
    return p;
}

/* Case-insensitive comparison of s[0..n) with the whole of `lit`. */
static bool span_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/*
 * One media type with its parameters, as a view into the header value.
 * Parameter values keep their quotes off: for a quoted-string the view is
 * its content (escapes left in place; none of the values we compare has
 * one).
 */
struct media_param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

#define MEDIA_MAX_PARAMS 8

struct media {
    const char *type; /* "type/subtype" */
    size_t type_len;
    size_t n_params;
    struct media_param params[MEDIA_MAX_PARAMS];
};

/*
 * Parses one media type at *pp up to a ',' or the end, leaving *pp at the
 * ',' (or the NUL). Returns 0, or -EINVAL on a syntax error or more than
 * MEDIA_MAX_PARAMS parameters.
 */
static int media_parse(const char **pp, struct media *m)
{
    const char *p = skip_ows(*pp);
    memset(m, 0, sizeof *m);
    m->type = p;
    p = skip_token(p);
    if (p == m->type || *p != '/')
        return -EINVAL;
    const char *sub = ++p;
    p = skip_token(p);
    if (p == sub)
        return -EINVAL;
    m->type_len = (size_t)(p - m->type);
    for (;;) {
        p = skip_ows(p);
        if (*p == '\0' || *p == ',')
            break;
        if (*p != ';')
            return -EINVAL;
        p = skip_ows(p + 1);
        if (*p == '\0' || *p == ',' || *p == ';')
            continue; /* an empty parameter ("text/plain;") is tolerated */
        if (m->n_params == MEDIA_MAX_PARAMS)
            return -EINVAL;
        struct media_param *mp = &m->params[m->n_params++];
        mp->name = p;
        p = skip_token(p);
        mp->name_len = (size_t)(p - mp->name);
        if (mp->name_len == 0 || *p != '=')
            return -EINVAL;
        p++;
        if (*p == '"') {
            mp->value = ++p;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (*p != '"')
                return -EINVAL;
            mp->value_len = (size_t)(p - mp->value);
            p++;
        } else {
            mp->value = p;
            p = skip_token(p);
            mp->value_len = (size_t)(p - mp->value);
            if (mp->value_len == 0)
                return -EINVAL;
        }
    }
    *pp = p;
    return 0;
}

static const struct media_param *media_param_find(const struct media *m, const char *name)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (span_eq(m->params[i].name, m->params[i].name_len, name))
            return &m->params[i];
    return NULL;
}

int api_content_type_parse(const char *value, enum api_body_type *type)
{
    if (!value || *skip_ows(value) == '\0')
        return -ENOENT;
    const char *p = value;
    struct media m;
    if (media_parse(&p, &m) != 0 || *p != '\0')
        return -ENOTSUP;
    enum api_body_type t;
    if (span_eq(m.type, m.type_len, "application/json"))
        t = API_BODY_JSON;
    else if (span_eq(m.type, m.type_len, "application/x-ndjson"))
        t = API_BODY_NDJSON;
    else
        return -ENOTSUP;
    const struct media_param *cs = media_param_find(&m, "charset");
    if (cs && !span_eq(cs->value, cs->value_len, "utf-8"))
        return -ENOTSUP;
    *type = t;
    return 0;
}

int api_object_type_parse(const char *value, bool *npy)
{
    if (!value || *skip_ows(value) == '\0')
        return -ENOENT;
    const char *p = value;
    struct media m;
    if (media_parse(&p, &m) != 0 || *p != '\0')
        return -ENOTSUP;
    /* parameters are allowed and mean nothing for bytes */
    if (span_eq(m.type, m.type_len, "application/octet-stream"))
        *npy = false;
    else if (span_eq(m.type, m.type_len, "application/x-npy"))
        *npy = true;
    else
        return -ENOTSUP;
    return 0;
}

/* q-value (RFC 9110 12.4.2) in thousandths; a malformed one counts as 1. */
static int qvalue_parse(const char *s, size_t n)
{
    if (n == 0 || n > 5 || (s[0] != '0' && s[0] != '1'))
        return 1000;
    int q = (s[0] - '0') * 1000;
    if (n == 1)
        return q;
    if (s[1] != '.')
        return 1000;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return 1000;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? 1000 : q;
}

/* True when Accept lists `want` with q > 0 and at least the q of `other`
 * (the default the resource would otherwise be sent as). */
static bool accept_prefers(const char *accept, const char *want, const char *other)
{
    if (!accept)
        return false;
    int q_want = -1, q_other = -1;
    const char *p = accept;
    while (*p) {
        struct media m;
        if (media_parse(&p, &m) == 0) {
            const struct media_param *qp = media_param_find(&m, "q");
            int q = qp ? qvalue_parse(qp->value, qp->value_len) : 1000;
            if (span_eq(m.type, m.type_len, want) && q > q_want)
                q_want = q;
            else if (span_eq(m.type, m.type_len, other) && q > q_other)
                q_other = q;
        } else {
            /* skip an element we cannot read rather than refuse the request */
            while (*p && *p != ',')
                p++;
        }
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
    }
    return q_want > 0 && q_want >= q_other;
}

bool api_accept_wants_ndjson(const char *accept)
{
    return accept_prefers(accept, "application/x-ndjson", "application/json");
}

bool api_accept_wants_npy(const char *accept)
{
    return accept_prefers(accept, "application/x-npy", "application/octet-stream");
}

/* The opaque part of an entity tag: the quoted string without a W/. */
static const char *etag_opaque(const char *p, size_t *len)
{
    if (p[0] == 'W' && p[1] == '/')
        p += 2;
    if (*p != '"')
        return NULL;
    const char *end = strchr(p + 1, '"');
    if (!end)
        return NULL;
    *len = (size_t)(end - p) + 1;
    return p;
}

bool api_etag_matches(const char *if_none_match, const char *etag)
{
    if (!if_none_match || !etag)
        return false;
    size_t want_len;
    const char *want = etag_opaque(etag, &want_len);
    if (!want)
        return false;
    const char *p = skip_ows(if_none_match);
    if (*p == '*' && *skip_ows(p + 1) == '\0')
        return true;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t len;
        const char *tag = etag_opaque(p, &len);
        if (!tag)
            return false; /* a malformed list matches nothing: send the body */
        if (len == want_len && memcmp(tag, want, len) == 0)
            return true;
        p = tag + len;
    }
    return false;
}

bool api_idempotency_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= API_IDEMPOTENCY_KEY_MAX)
            return false;
    return n > 0;
}

bool api_request_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= API_REQUEST_ID_MAX)
            return false;
    }
    return n > 0;
}

void api_request_id_new(char out[ID_LEN + 1])
{
    id_new(out);
}

bool api_header_gap_clean(const char *gap, size_t len, bool last)
{
    size_t lo = last ? 2 : 1, hi = last ? 4 : 2;
    if (len < lo || len > hi)
        return false;
    for (size_t i = 0; i < len; i++)
        if (gap[i] != '\0')
            return false;
    return true;
}
