#include "api/http/problem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "service/core/utf8.h"

struct problem_kind_info {
    const char *slug;
    int status;
    const char *title;
};

/* Indexed by enum api_problem_kind; openapi.yaml lists the same slugs. */
static const struct problem_kind_info problem_kinds[API_PROBLEM_KIND_COUNT] = {
    [API_PROBLEM_INVALID_JSON] = { "invalid-json", 400, "Malformed JSON" },
    [API_PROBLEM_INVALID_PARAMETER] = { "invalid-parameter", 400, "Invalid parameter" },
    [API_PROBLEM_NOT_FOUND] = { "not-found", 404, "Not found" },
    [API_PROBLEM_METHOD_NOT_ALLOWED] = { "method-not-allowed", 405, "Method not allowed" },
    [API_PROBLEM_NOT_ACCEPTABLE] = { "not-acceptable", 406, "Not acceptable" },
    [API_PROBLEM_CONFLICT] = { "conflict", 409, "Conflict" },
    [API_PROBLEM_TOO_LARGE] = { "too-large", 413, "Too large" },
    [API_PROBLEM_UNSUPPORTED_MEDIA_TYPE] = { "unsupported-media-type", 415,
                                             "Unsupported media type" },
    [API_PROBLEM_INVALID_JOB] = { "invalid-job", 422, "Invalid job" },
    [API_PROBLEM_UNKNOWN_MODEL] = { "unknown-model", 422, "Unknown model" },
    [API_PROBLEM_OVERLOADED] = { "overloaded", 429, "Too many queued items" },
    [API_PROBLEM_INTERNAL] = { "internal", 500, "Internal error" },
    [API_PROBLEM_NOT_READY] = { "not-ready", 503, "Not ready" },
    [API_PROBLEM_SHUTTING_DOWN] = { "shutting-down", 503, "Shutting down" },
    [API_PROBLEM_MODEL_UNAVAILABLE] = { "model-unavailable", 503, "Model unavailable" },
    [API_PROBLEM_UNAUTHORIZED] = { "unauthorized", 401, "Unauthorized" },
    [API_PROBLEM_INSUFFICIENT_STORAGE] = { "insufficient-storage", 507,
                                           "Insufficient storage" },
    [API_PROBLEM_INVALID_OBJECT] = { "invalid-object", 400, "Invalid object" },
};

static const struct problem_kind_info *problem_info(enum api_problem_kind kind)
{
    if ((unsigned)kind >= API_PROBLEM_KIND_COUNT)
        kind = API_PROBLEM_INTERNAL;
    return &problem_kinds[kind];
}

const char *api_problem_slug(enum api_problem_kind kind) { return problem_info(kind)->slug; }
int api_problem_status(enum api_problem_kind kind) { return problem_info(kind)->status; }
const char *api_problem_title(enum api_problem_kind kind) { return problem_info(kind)->title; }

/* Cuts a NUL-terminated UTF-8 string at `len` bytes without splitting a
 * multi-byte character: continuation bytes (10xxxxxx) are backed over. */
static void utf8_cut(char *s, size_t len)
{
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    s[len] = '\0';
}

void api_problem_set(struct api_problem *p, enum api_problem_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    api_problem_vset(p, kind, fmt, ap);
    va_end(ap);
}

void api_problem_vset(struct api_problem *p, enum api_problem_kind kind, const char *fmt,
                      va_list ap)
{
    memset(p, 0, sizeof *p);
    p->kind = (unsigned)kind < API_PROBLEM_KIND_COUNT ? kind : API_PROBLEM_INTERNAL;
    int n = vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    if (n < 0) {
        p->detail[0] = '\0';
    } else if ((size_t)n >= sizeof p->detail) {
        /* say that it was cut rather than end mid-word silently */
        utf8_cut(p->detail, sizeof p->detail - 4);
        strcat(p->detail, "...");
    }
}

void api_problem_set_pointer(struct api_problem *p, const char *fmt, ...)
{
    char buf[API_PROBLEM_POINTER_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* a cut pointer would name a different member: better none */
    if (n < 0 || (size_t)n >= sizeof buf)
        return;
    memcpy(p->pointer, buf, (size_t)n + 1);
    p->has |= API_PROBLEM_HAS_POINTER;
}

void api_problem_set_pointer_key(struct api_problem *p, const char *parent, const char *key)
{
    char buf[API_PROBLEM_POINTER_MAX];
    size_t o = strlen(parent);
    if (o >= sizeof buf)
        return;
    memcpy(buf, parent, o);
    bool fits = o + 1 < sizeof buf;
    if (fits)
        buf[o++] = '/';
    for (const char *k = key; fits && *k; k++) {
        const char *esc = *k == '~' ? "~0" : *k == '/' ? "~1" : NULL;
        size_t need = esc ? 2 : 1;
        if (o + need >= sizeof buf) {
            fits = false;
            break;
        }
        if (esc) {
            memcpy(buf + o, esc, 2);
        } else {
            buf[o] = *k;
        }
        o += need;
    }
    if (!fits)
        o = strlen(parent); /* the parent is still a true statement */
    buf[o] = '\0';
    memcpy(p->pointer, buf, o + 1);
    p->has |= API_PROBLEM_HAS_POINTER;
}

void api_problem_set_index(struct api_problem *p, uint64_t index)
{
    p->index = index;
    p->has |= API_PROBLEM_HAS_INDEX;
}

void api_problem_set_position(struct api_problem *p, uint64_t line, uint64_t column)
{
    p->line = line;
    p->column = column;
    p->has |= API_PROBLEM_HAS_LINE | API_PROBLEM_HAS_COLUMN;
}

void api_problem_set_limit(struct api_problem *p, uint64_t limit)
{
    p->limit = limit;
    p->has |= API_PROBLEM_HAS_LIMIT;
}

int api_json_string_sanitized(struct sbuf *out, const char *s, size_t n)
{
    size_t mark = out->len;
    const unsigned char *u = (const unsigned char *)s;
    int rc = sbuf_append(out, "\"", 1);
    size_t i = 0;
    while (!rc && i < n) {
        unsigned char c = u[i];
        size_t len = utf8_seq_len(u + i, n - i);
        if (len == 0) {
            rc = sbuf_append(out, "\xEF\xBF\xBD", 3); /* U+FFFD */
            i++;
        } else if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            rc = sbuf_append(out, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            rc = sbuf_printf(out, "\\u%04x", c);
            i++;
        } else {
            rc = sbuf_append(out, u + i, len);
            i += len;
        }
    }
    if (!rc)
        rc = sbuf_append(out, "\"", 1);
    if (rc && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

static int put_member_string(struct sbuf *out, const char *name, const char *value)
{
    int rc = sbuf_printf(out, ",\"%s\":", name);
    if (!rc)
        rc = api_json_string_sanitized(out, value, strlen(value));
    return rc;
}

int api_problem_encode(const struct api_problem *p, const char *instance, struct sbuf *out)
{
    const struct problem_kind_info *k = problem_info(p->kind);
    size_t mark = out->len;
    int rc = sbuf_printf(out, "{\"type\":\"urn:batchd:problem:%s\",\"title\":\"%s\",\"status\":%d",
                         k->slug, k->title, k->status);
    if (!rc)
        rc = put_member_string(out, "detail", p->detail);
    if (!rc)
        rc = put_member_string(out, "instance", instance ? instance : "");
    if (!rc && (p->has & API_PROBLEM_HAS_POINTER))
        rc = put_member_string(out, "pointer", p->pointer);
    if (!rc && (p->has & API_PROBLEM_HAS_INDEX))
        rc = sbuf_printf(out, ",\"index\":%" PRIu64, p->index);
    if (!rc && (p->has & API_PROBLEM_HAS_LINE))
        rc = sbuf_printf(out, ",\"line\":%" PRIu64, p->line);
    if (!rc && (p->has & API_PROBLEM_HAS_COLUMN))
        rc = sbuf_printf(out, ",\"column\":%" PRIu64, p->column);
    if (!rc && (p->has & API_PROBLEM_HAS_LIMIT))
        rc = sbuf_printf(out, ",\"limit\":%" PRIu64, p->limit);
    if (!rc)
        rc = sbuf_append(out, "}", 1);
    if (rc && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}
