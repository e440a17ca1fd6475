/*
 * scan.c: the fast path of a POST /v1/jobs body (scan.h says what it
 * accepts and why).
 *
 * Each item is scanned once to validate it and to learn whether its text
 * is already what would be stored ("clean": no whitespace between its
 * tokens, no escape in its strings). A clean item is copied into the
 * arena as it is; the rare other one is scanned a second time, writing
 * the stored form into a scratch buffer. Every refusal is -EAGAIN: the
 * caller then asks jansson, whose answer (and error message) is the
 * reference. The grammar is RFC 8259's as jansson 2.14 reads it.
 */
#include "api/handlers/scan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/core/utf8.h"

#define SCAN_DEFAULT_DEPTH 64u
/* Longest "%.17g" of a double as jansson writes it: "-1.2345678901234567e-308". */
#define SCAN_REAL_MAX 24u
/* Flags of the jansson parse of the members other than "inputs" (request.c's). */
#define SCAN_REST_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

struct span {
    const unsigned char *s;
    size_t n;
};

struct sc {
    const unsigned char *p, *end;
    unsigned max_depth;
    bool dirty;          /* the item's text is not what is stored */
    size_t slack;        /* bytes jansson's spelling of the item's reals may add */
    bool emit;           /* second pass: write the stored form into out */
    char *out;           /* scratch (new) */
    size_t olen, ocap;
    struct span *keys;   /* keys of the objects being scanned, a stack (new) */
    size_t nkeys, kcap;
    bool oom;
};

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Skips whitespace; inside an item, any makes it dirty. */
static void ws(struct sc *s)
{
    const unsigned char *p = s->p;
    while (p < s->end && is_ws(*p))
        p++;
    if (p != s->p)
        s->dirty = true;
    s->p = p;
}

static void skip_ws(struct sc *s)
{
    while (s->p < s->end && is_ws(*s->p))
        s->p++;
}

static int put(struct sc *s, const void *b, size_t n)
{
    if (!s->emit)
        return 0;
    if (s->olen + n > s->ocap) {
        size_t c = s->ocap ? s->ocap : 256;
        while (c < s->olen + n)
            c *= 2;
        char *o = realloc(s->out, c);
        if (!o) {
            s->oom = true;
            return -ENOMEM;
        }
        s->out = o;
        s->ocap = c;
    }
    memcpy(s->out + s->olen, b, n);
    s->olen += n;
    return 0;
}

static int putc1(struct sc *s, char c) { return put(s, &c, 1); }

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -EAGAIN;
        x = x * 16 + d;
    }
    *v = x;
    return 0;
}

/* Writes code point cp as jansson's dump spells it inside a string. */
static int put_cp(struct sc *s, unsigned cp)
{
    static const char hexd[] = "0123456789ABCDEF";
    char b[6];
    switch (cp) {
    case '"': return put(s, "\\\"", 2);
    case '\\': return put(s, "\\\\", 2);
    case '\b': return put(s, "\\b", 2);
    case '\f': return put(s, "\\f", 2);
    case '\n': return put(s, "\\n", 2);
    case '\r': return put(s, "\\r", 2);
    case '\t': return put(s, "\\t", 2);
    default: break;
    }
    if (cp < 0x20) {
        b[0] = '\\';
        b[1] = 'u';
        b[2] = '0';
        b[3] = '0';
        b[4] = hexd[cp >> 4];
        b[5] = hexd[cp & 15];
        return put(s, b, 6);
    }
    if (cp < 0x80) {
        b[0] = (char)cp;
        return put(s, b, 1);
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        return put(s, b, 2);
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        return put(s, b, 3);
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    return put(s, b, 4);
}

/*
 * A string, s->p at its opening quote. A key (is_key) must have no escape
 * (its raw bytes are then its value, which the duplicate check compares);
 * its span, quotes excluded, goes to *key.
 */
static int string(struct sc *s, bool is_key, struct span *key)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    const unsigned char *run = s->p; /* not yet written, quote included */
    for (;;) {
        /* the common case: plain ASCII */
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return -EAGAIN;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return -EAGAIN; /* jansson: control character in a string */
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p, (size_t)(end - p));
            if (n == 0)
                return -EAGAIN;
            p += n;
            continue;
        }
        /* a backslash */
        if (is_key)
            return -EAGAIN;
        s->dirty = true;
        if (put(s, run, (size_t)(p - run)) != 0)
            return -ENOMEM;
        if (end - p < 2)
            return -EAGAIN;
        unsigned cp;
        switch (p[1]) {
        case '"': cp = '"'; p += 2; break;
        case '\\': cp = '\\'; p += 2; break;
        case '/': cp = '/'; p += 2; break;
        case 'b': cp = '\b'; p += 2; break;
        case 'f': cp = '\f'; p += 2; break;
        case 'n': cp = '\n'; p += 2; break;
        case 'r': cp = '\r'; p += 2; break;
        case 't': cp = '\t'; p += 2; break;
        case 'u':
            if (end - p < 6 || hex4(p + 2, &cp) != 0)
                return -EAGAIN;
            p += 6;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -EAGAIN; /* a lone low surrogate */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return -EAGAIN;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default:
            return -EAGAIN;
        }
        if (put_cp(s, cp) != 0)
            return -ENOMEM;
        run = p;
    }
    if (key) {
        key->s = s->p + 1;
        key->n = (size_t)(p - s->p - 1);
    }
    p++; /* the closing quote */
    if (put(s, run, (size_t)(p - run)) != 0)
        return -ENOMEM;
    s->p = p;
    return 0;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A number, written as it is. Refuses what jansson refuses: bad grammar,
 * an integer outside int64, a real past DBL_MAX. */
static int number(struct sc *s)
{
    const unsigned char *p = s->p, *end = s->end, *start = p;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end)
        return -EAGAIN;
    const unsigned char *ip = p;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return -EAGAIN;
    } else if (is_digit(*p)) {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return -EAGAIN;
    }
    size_t int_digits = (size_t)(p - ip);
    bool real = false;
    long exp = 0;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return -EAGAIN;
        while (p < end && is_digit(*p))
            p++;
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || !is_digit(*p))
            return -EAGAIN;
        while (p < end && is_digit(*p)) {
            if (exp < 100000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp = -exp;
        real = true;
    }
    size_t n = (size_t)(p - start);
    if (!real && neg && int_digits == 1 && *ip == '0') {
        /* -0 is the integer 0, which jansson writes "0" */
        s->dirty = true;
        if (put(s, "0", 1) != 0)
            return -ENOMEM;
        s->p = p;
        return 0;
    }
    if (!real) {
        /* int64: 19 digits at most, and then no more than its bound */
        if (int_digits > 19)
            return -EAGAIN;
        if (int_digits == 19 &&
            memcmp(ip, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0)
            return -EAGAIN;
    } else {
        /* |v| < 10^(significant integer digits + exp): only past 10^308
         * can strtod overflow, so only then is it asked (jansson refuses
         * an overflow, not an underflow) */
        long mag = (long)(int_digits == 1 && *ip == '0' ? 0 : int_digits) + exp;
        if (mag > 308) {
            char buf[128];
            if (n >= sizeof buf)
                return -EAGAIN;
            memcpy(buf, start, n);
            buf[n] = '\0';
            double v = strtod(buf, NULL);
            if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
                return -EAGAIN;
        }
    }
    /* jansson writes a real with 17 digits ("%.17g": at most
     * SCAN_REAL_MAX characters); the item-size limit has always been
     * applied to that spelling, so the scan keeps to it */
    if (real && n < SCAN_REAL_MAX)
        s->slack += SCAN_REAL_MAX - n;
    if (put(s, start, n) != 0)
        return -ENOMEM;
    s->p = p;
    return 0;
}

static int literal(struct sc *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -EAGAIN;
    if (put(s, word, n) != 0)
        return -ENOMEM;
    s->p += n;
    return 0;
}

static int push_key(struct sc *s, struct span k, size_t base)
{
    if (s->nkeys - base >= SCAN_MAX_KEYS)
        return -EAGAIN;
    for (size_t i = base; i < s->nkeys; i++)
        if (s->keys[i].n == k.n && memcmp(s->keys[i].s, k.s, k.n) == 0)
            return -EAGAIN; /* a duplicate key */
    if (s->nkeys == s->kcap) {
        size_t c = s->kcap ? s->kcap * 2 : 64;
        struct span *nk = realloc(s->keys, c * sizeof *nk);
        if (!nk) {
            s->oom = true;
            return -ENOMEM;
        }
        s->keys = nk;
        s->kcap = c;
    }
    s->keys[s->nkeys++] = k;
    return 0;
}

/* One value at s->p (no whitespace before it), a container at `depth`. */
static int value(struct sc *s, unsigned depth)
{
    if (s->p >= s->end)
        return -EAGAIN;
    int rc;
    switch (*s->p) {
    case '{': {
        if (depth > s->max_depth)
            return -EAGAIN;
        size_t base = s->nkeys;
        s->p++;
        if ((rc = putc1(s, '{')) != 0)
            return rc;
        ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return putc1(s, '}');
        }
        for (;;) {
            if (s->p >= s->end || *s->p != '"')
                return -EAGAIN;
            struct span k;
            if ((rc = string(s, true, &k)) != 0 || (rc = push_key(s, k, base)) != 0)
                return rc;
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -EAGAIN;
            s->p++;
            if ((rc = putc1(s, ':')) != 0)
                return rc;
            ws(s);
            if ((rc = value(s, depth + 1)) != 0)
                return rc;
            ws(s);
            if (s->p >= s->end)
                return -EAGAIN;
            char c = (char)*s->p++;
            if ((rc = putc1(s, c)) != 0)
                return rc;
            if (c == '}')
                break;
            if (c != ',')
                return -EAGAIN;
            ws(s);
        }
        s->nkeys = base;
        return 0;
    }
    case '[':
        if (depth > s->max_depth)
            return -EAGAIN;
        s->p++;
        if ((rc = putc1(s, '[')) != 0)
            return rc;
        ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return putc1(s, ']');
        }
        for (;;) {
            if ((rc = value(s, depth + 1)) != 0)
                return rc;
            ws(s);
            if (s->p >= s->end)
                return -EAGAIN;
            char c = (char)*s->p++;
            if ((rc = putc1(s, c)) != 0)
                return rc;
            if (c == ']')
                return 0;
            if (c != ',')
                return -EAGAIN;
            ws(s);
        }
    case '"':
        return string(s, false, NULL);
    case 't':
        return literal(s, "true", 4);
    case 'f':
        return literal(s, "false", 5);
    case 'n':
        return literal(s, "null", 4);
    default:
        if (*s->p == '-' || is_digit(*s->p))
            return number(s);
        return -EAGAIN;
    }
}

/* The item at s->p (a value; the caller skipped the whitespace before it)
 * into items, its containers at `depth`. */
static int item(struct sc *s, unsigned depth, const struct scan_limits *lim,
                struct job_items *items)
{
    const unsigned char *start = s->p;
    s->dirty = false;
    s->emit = false;
    s->slack = 0;
    int rc = value(s, depth);
    if (rc)
        return rc;
    size_t slack = s->slack;
    const char *text = (const char *)start;
    size_t n = (size_t)(s->p - start);
    if (s->dirty) {
        /* again, writing the stored form (only ever shorter) */
        const unsigned char *after = s->p;
        s->p = start;
        s->emit = true;
        s->olen = 0;
        rc = value(s, depth);
        s->emit = false;
        if (rc)
            return s->oom ? -ENOMEM : -EAGAIN;
        s->p = after;
        text = s->out;
        n = s->olen;
    }
    /* Over the limit, or maybe over it as jansson would spell the item's
     * reals: jansson's path decides (413 with the index, or accepts). */
    if (n + slack > lim->max_item_bytes || job_items_count(items) >= lim->max_items)
        return -EAGAIN;
    rc = job_items_append(items, text, n);
    if (rc == -ENOMEM)
        return -ENOMEM;
    return rc ? -EAGAIN : 0;
}

static void sc_init(struct sc *s, const char *body, size_t len, const struct scan_limits *lim)
{
    memset(s, 0, sizeof *s);
    s->p = (const unsigned char *)body;
    s->end = s->p + len;
    s->max_depth = lim->max_depth ? lim->max_depth : SCAN_DEFAULT_DEPTH;
}

static void sc_free(struct sc *s)
{
    free(s->out);
    free(s->keys);
}

/* Counts byte c in p[0..n) (memchr speed). */
static size_t count_byte(const char *p, size_t n, char c)
{
    size_t k = 0;
    const char *end = p + n;
    while ((p = memchr(p, c, (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/* Sizes the arena once: the stored text is never longer than the body,
 * and there are at most as many items as separators plus one. Without the
 * room, appending still works (growing as it goes). */
static void reserve(struct job_items *list, size_t len, size_t items, size_t max_items)
{
    if (items > max_items)
        items = max_items;
    (void)job_items_reserve(list, len, items);
}

/* The top-level member spans other than "inputs". */
struct member {
    struct span key;
    struct span val;
};

int scan_json_body(const char *body, size_t len, const struct scan_limits *lim,
                   struct job_items **items, json_t **rest)
{
    *items = NULL;
    *rest = NULL;
    struct sc s;
    sc_init(&s, body, len, lim);
    struct job_items *list = job_items_new();
    struct member members[8];
    size_t nm = 0;
    bool have_inputs = false;
    int rc = list ? 0 : -ENOMEM;
    if (rc)
        goto out;
    rc = -EAGAIN;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        goto out;
    reserve(list, len, count_byte(body, len, ',') + 1, lim->max_items);
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}')
        goto out; /* {}: no inputs */
    for (;;) {
        if (s.p >= s.end || *s.p != '"')
            goto out;
        struct span k;
        if ((rc = string(&s, true, &k)) != 0 || (rc = push_key(&s, k, 0)) != 0)
            goto out;
        rc = -EAGAIN;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            goto out;
        s.p++;
        skip_ws(&s);
        if (k.n == 6 && memcmp(k.s, "inputs", 6) == 0) {
            /* the items: an array at depth 2, each item's containers at 3 */
            if (s.p >= s.end || *s.p != '[' || 2 > s.max_depth)
                goto out;
            s.p++;
            skip_ws(&s);
            if (s.p < s.end && *s.p == ']')
                goto out; /* no item: jansson's path says so */
            for (;;) {
                if ((rc = item(&s, 3, lim, list)) != 0)
                    goto out;
                rc = -EAGAIN;
                skip_ws(&s);
                if (s.p >= s.end)
                    goto out;
                unsigned char c = *s.p++;
                if (c == ']')
                    break;
                if (c != ',')
                    goto out;
                skip_ws(&s);
            }
            have_inputs = true;
        } else {
            /* another member: only its extent here, jansson parses it below */
            if (nm == sizeof members / sizeof members[0])
                goto out;
            const unsigned char *v0 = s.p;
            s.emit = false;
            if ((rc = value(&s, 2)) != 0)
                goto out;
            rc = -EAGAIN;
            members[nm++] = (struct member){ k, { v0, (size_t)(s.p - v0) } };
        }
        skip_ws(&s);
        if (s.p >= s.end)
            goto out;
        unsigned char c = *s.p++;
        if (c == '}')
            break;
        if (c != ',')
            goto out;
        skip_ws(&s);
    }
    skip_ws(&s);
    if (s.p != s.end || !have_inputs)
        goto out;

    json_t *obj = json_object();
    rc = obj ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nm; i++) {
        json_error_t err;
        json_t *v = json_loadb((const char *)members[i].val.s, members[i].val.n,
                               SCAN_REST_FLAGS, &err);
        char key[64];
        if (!v) {
            rc = json_error_code(&err) == json_error_out_of_memory ? -ENOMEM : -EAGAIN;
        } else if (members[i].key.n >= sizeof key) {
            /* not a member request.c knows: its path names it */
            json_decref(v);
            rc = -EAGAIN;
        } else {
            memcpy(key, members[i].key.s, members[i].key.n);
            key[members[i].key.n] = '\0';
            if (json_object_set_new(obj, key, v) != 0)
                rc = -ENOMEM;
        }
    }
    if (rc) {
        json_decref(obj);
        goto out;
    }
    *rest = obj;
    *items = list;
    list = NULL;
out:
    if (rc && s.oom)
        rc = -ENOMEM;
    job_items_free(list);
    sc_free(&s);
    return rc;
}

int scan_ndjson_body(const char *body, size_t len, const struct scan_limits *lim,
                     struct job_items **items)
{
    *items = NULL;
    struct sc s;
    sc_init(&s, body, len, lim);
    struct job_items *list = job_items_new();
    int rc = list ? 0 : -ENOMEM;
    if (list)
        reserve(list, len, count_byte(body, len, '\n') + 1, lim->max_items);
    const char *p = body, *end = body + len;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        /* one line: [ws] value [ws]; a line of only whitespace is skipped
         * (request.c's is_blank: spaces, tabs, CR) */
        s.p = (const unsigned char *)p;
        s.end = (const unsigned char *)le;
        skip_ws(&s);
        if (s.p < s.end) {
            rc = item(&s, 1, lim, list);
            if (rc == 0) {
                skip_ws(&s);
                if (s.p != s.end)
                    rc = -EAGAIN;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (rc == 0 && job_items_count(list) == 0)
        rc = -EAGAIN;
    if (rc == 0) {
        *items = list;
        list = NULL;
    }
    if (rc && s.oom)
        rc = -ENOMEM;
    job_items_free(list);
    sc_free(&s);
    return rc;
}
