#include "service/core/sbuf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_set_limit(struct sbuf *b, size_t limit) { b->limit = limit; }

static size_t sbuf_limit(const struct sbuf *b)
{
    return b->limit ? b->limit : SBUF_DEFAULT_LIMIT;
}

int sbuf_reserve(struct sbuf *b, size_t extra)
{
    if (extra > sbuf_limit(b) || b->len > sbuf_limit(b) - extra)
        return -E2BIG;
    /* the NUL needs a byte too: with a limit of SIZE_MAX this would wrap */
    if (b->len + extra == SIZE_MAX)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sbuf_append(struct sbuf *b, const void *p, size_t n)
{
    int rc = sbuf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int sbuf_puts(struct sbuf *b, const char *s) { return sbuf_append(b, s, strlen(s)); }

int sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    int rc = sbuf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sbuf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int sbuf_json_string(struct sbuf *b, const char *s)
{
    size_t mark = b->len;
    int rc = sbuf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
        switch (*p) {
        case '"': rc = sbuf_append(b, "\\\"", 2); break;
        case '\\': rc = sbuf_append(b, "\\\\", 2); break;
        case '\n': rc = sbuf_append(b, "\\n", 2); break;
        case '\r': rc = sbuf_append(b, "\\r", 2); break;
        case '\t': rc = sbuf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20)
                rc = sbuf_printf(b, "\\u%04x", *p);
            else
                rc = sbuf_append(b, p, 1);
        }
    }
    if (!rc)
        rc = sbuf_append(b, "\"", 1);
    if (rc && b->data) {
        /* keep the promise that a failed append leaves the buffer unchanged */
        b->len = mark;
        b->data[mark] = '\0';
    }
    return rc;
}

void sbuf_reset(struct sbuf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *sbuf_steal(struct sbuf *b)
{
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void sbuf_free(struct sbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
