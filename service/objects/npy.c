#include "service/objects/npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "service/core/utf8.h"

/* The descr strings accepted, and what they map to. */
static const struct {
    const char *descr;
    uint32_t dtype;
} descrs[] = {
    { "<f4", MODEL_DTYPE_F32 }, { "<f8", MODEL_DTYPE_F64 }, { "<i4", MODEL_DTYPE_I32 },
    { "<i8", MODEL_DTYPE_I64 }, { "|u1", MODEL_DTYPE_U8 },  { "<u1", MODEL_DTYPE_U8 },
    { "u1", MODEL_DTYPE_U8 },
};
#define DESCR_LIST "'<f4', '<f8', '<i4', '<i8' or '|u1'"

/* What npy_header_write() names each dtype (numpy's own spelling). */
static const char *descr_of(uint32_t dtype)
{
    switch (dtype) {
    case MODEL_DTYPE_U8: return "|u1";
    case MODEL_DTYPE_I32: return "<i4";
    case MODEL_DTYPE_I64: return "<i8";
    case MODEL_DTYPE_F32: return "<f4";
    case MODEL_DTYPE_F64: return "<f8";
    default: return NULL;
    }
}

/* ------------------------------------------------------------ the parser */

struct parser {
    const unsigned char *s;   /* the header */
    size_t len;
    size_t pos;
    size_t base;              /* the header's offset in the file, for messages */
    char *err;
    size_t errlen;
};

static int fail(struct parser *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes "npy header, byte N: <message>" (N counted from the start of the
 * file, as a hex dump shows it) and returns rc. */
static int fail(struct parser *p, int rc, const char *fmt, ...)
{
    if (p->errlen == 0)
        return rc;
    int n = snprintf(p->err, p->errlen, "npy header, byte %zu: ", p->base + p->pos);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Says what is at the parser's position, for "found ..." in messages: a
 * few printable characters in quotes, a byte in hex, or the end. */
static const char *found(const struct parser *p, char *buf, size_t buflen)
{
    if (p->pos >= p->len)
        return "the end of the header";
    unsigned char c = p->s[p->pos];
    if (c < 0x21 || c > 0x7e) {
        snprintf(buf, buflen, "byte 0x%02x", c);
        return buf;
    }
    size_t n = 0;
    while (p->pos + n < p->len && n < 12 && p->s[p->pos + n] >= 0x21 && p->s[p->pos + n] <= 0x7e)
        n++;
    snprintf(buf, buflen, "\"%.*s\"", (int)n, (const char *)p->s + p->pos);
    return buf;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static bool eat(struct parser *p, char c)
{
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == (unsigned char)c) {
        p->pos++;
        return true;
    }
    return false;
}

static int expected(struct parser *p, const char *what)
{
    char b[32];
    return fail(p, -EINVAL, "expected %s, found %s", what, found(p, b, sizeof b));
}

/* A string literal in ' or " without escapes; *s / *n its content. */
static int parse_string(struct parser *p, const char *what, const unsigned char **s, size_t *n)
{
    skip_ws(p);
    if (p->pos >= p->len || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return expected(p, what);
    unsigned char q = p->s[p->pos];
    size_t start = ++p->pos;
    while (p->pos < p->len && p->s[p->pos] != q) {
        unsigned char c = p->s[p->pos];
        if (c == '\\')
            return fail(p, -EINVAL, "escape sequences are not accepted in header strings");
        if (c < 0x20)
            return fail(p, -EINVAL, "control byte 0x%02x inside a string", c);
        p->pos++;
    }
    if (p->pos >= p->len) {
        p->pos = start - 1;
        return fail(p, -EINVAL, "unterminated string");
    }
    *s = p->s + start;
    *n = p->pos - start;
    p->pos++;
    return 0;
}

static bool str_is(const unsigned char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* How much of a quoted string to show in a message: at most 32 bytes,
 * not ending inside a UTF-8 character (a 3.0 header is UTF-8). */
static int shown_len(const unsigned char *s, size_t n)
{
    if (n <= 32)
        return (int)n;
    n = 32;
    while (n > 0 && (s[n] & 0xc0) == 0x80)
        n--;
    return (int)n;
}

static int parse_descr(struct parser *p, struct npy_info *info)
{
    skip_ws(p);
    size_t at = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '[')
        return fail(p, -EINVAL,
                    "'descr' is a list: structured dtypes (record arrays) are not supported; "
                    "descr must be one of " DESCR_LIST);
    const unsigned char *s;
    size_t n;
    int rc = parse_string(p, "a string as 'descr' (e.g. '<f4')", &s, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
        if (str_is(s, n, descrs[i].descr)) {
            info->dtype = descrs[i].dtype;
            return 0;
        }
    }
    p->pos = at;
    int shown = shown_len(s, n);
    if (n > 1 && s[0] == '>')
        return fail(p, -EINVAL,
                    "'descr' '%.*s' is big-endian; only little-endian data is supported "
                    "(descr must be one of " DESCR_LIST ")",
                    shown, (const char *)s);
    return fail(p, -EINVAL, "'descr' '%.*s' is not a supported dtype; descr must be one of " DESCR_LIST,
                shown, (const char *)s);
}

static bool is_ident(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when the literal word `w` is at the position (and not the start of
 * a longer name); consumes it. */
static bool eat_word(struct parser *p, const char *w)
{
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0)
        return false;
    if (p->pos + n < p->len && is_ident(p->s[p->pos + n]))
        return false;
    p->pos += n;
    return true;
}

static int parse_fortran(struct parser *p)
{
    skip_ws(p);
    if (eat_word(p, "False"))
        return 0;
    if (eat_word(p, "True")) {
        p->pos -= 4;
        return fail(p, -EINVAL,
                    "'fortran_order' is True: only C-order arrays are supported (save "
                    "np.ascontiguousarray(a))");
    }
    return expected(p, "False as 'fortran_order'");
}

/* One dimension: decimal digits, no sign, no leading zero, no suffix. */
static int parse_dim(struct parser *p, uint64_t *out)
{
    skip_ws(p);
    size_t at = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-')
        return fail(p, -EINVAL, "a dimension of 'shape' is negative");
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return expected(p, "a non-negative integer in 'shape'");
    uint64_t v = 0;
    bool over = false;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
        p->pos++;
    }
    if (p->pos < p->len && is_ident(p->s[p->pos])) {
        p->pos = at;
        return expected(p, "a decimal integer in 'shape'");
    }
    if (p->pos - at > 1 && p->s[at] == '0') {
        p->pos = at;
        return fail(p, -EINVAL, "a dimension of 'shape' has a leading zero");
    }
    if (over) {
        p->pos = at;
        return fail(p, -EOVERFLOW, "a dimension of 'shape' does not fit in 64 bits");
    }
    *out = v;
    return 0;
}

static int parse_shape(struct parser *p, struct npy_info *info)
{
    skip_ws(p);
    size_t open = p->pos;
    if (!eat(p, '('))
        return expected(p, "a tuple as 'shape' (e.g. (3,) or (2, 3))");
    info->ndim = 0;
    if (eat(p, ')')) {
        p->pos = open;
        return fail(p, -EINVAL,
                    "'shape' is (): 0-d arrays (scalars) are not supported; save the value as "
                    "a 1-element array (np.atleast_1d)");
    }
    bool comma = false;
    for (;;) {
        if (info->ndim == MODEL_OBJECT_MAX_DIMS) {
            p->pos = open;
            return fail(p, -EINVAL, "'shape' has more than %d dimensions", MODEL_OBJECT_MAX_DIMS);
        }
        int rc = parse_dim(p, &info->shape[info->ndim]);
        if (rc)
            return rc;
        info->ndim++;
        comma = eat(p, ',');
        if (eat(p, ')'))
            break;
        if (!comma)
            return expected(p, "',' or ')' in 'shape'");
    }
    /* (3) is the integer 3 in Python, not a tuple */
    if (info->ndim == 1 && !comma) {
        p->pos = open;
        return fail(p, -EINVAL, "'shape' (n) is not a tuple: a 1-dimensional shape is written (n,)");
    }
    return 0;
}

enum { KEY_DESCR = 1u, KEY_FORTRAN = 2u, KEY_SHAPE = 4u };

static int parse_dict(struct parser *p, struct npy_info *info)
{
    if (!eat(p, '{'))
        return expected(p, "'{' (the header is a Python dict literal)");
    unsigned seen = 0;
    for (;;) {
        if (eat(p, '}'))
            break;
        skip_ws(p);
        size_t key_at = p->pos;
        const unsigned char *k;
        size_t kn;
        int rc = parse_string(p, "a key ('descr', 'fortran_order' or 'shape') or '}'", &k, &kn);
        if (rc)
            return rc;
        unsigned key;
        if (str_is(k, kn, "descr"))
            key = KEY_DESCR;
        else if (str_is(k, kn, "fortran_order"))
            key = KEY_FORTRAN;
        else if (str_is(k, kn, "shape"))
            key = KEY_SHAPE;
        else {
            p->pos = key_at;
            return fail(p, -EINVAL,
                        "unknown key '%.*s' (a header has 'descr', 'fortran_order' and 'shape')",
                        shown_len(k, kn), (const char *)k);
        }
        if (seen & key) {
            p->pos = key_at;
            return fail(p, -EINVAL, "key '%.*s' appears twice", (int)kn, (const char *)k);
        }
        seen |= key;
        if (!eat(p, ':'))
            return expected(p, "':' after a key");
        rc = key == KEY_DESCR ? parse_descr(p, info)
             : key == KEY_FORTRAN ? parse_fortran(p)
                                  : parse_shape(p, info);
        if (rc)
            return rc;
        if (eat(p, ','))
            continue;
        if (eat(p, '}'))
            break;
        return expected(p, "',' or '}' after a value");
    }
    /* NumPy pads with spaces and ends with a newline; nothing else may follow */
    skip_ws(p);
    if (p->pos < p->len)
        return expected(p, "only padding after the closing '}'");
    static const char *const names[] = { "descr", "fortran_order", "shape" };
    for (unsigned i = 0; i < 3; i++)
        if (!(seen & (1u << i)))
            return fail(p, -EINVAL, "the header has no '%s'", names[i]);
    return 0;
}

/* The header's characters: ASCII for 1.0/2.0, UTF-8 for 3.0. */
static int check_text(struct parser *p, uint8_t major)
{
    for (p->pos = 0; p->pos < p->len;) {
        unsigned char c = p->s[p->pos];
        if (c < 0x80) {
            p->pos++;
            continue;
        }
        if (major < 3)
            return fail(p, -EINVAL,
                        "byte 0x%02x is not ASCII (a version %u.0 header is ASCII; 3.0 allows "
                        "UTF-8)",
                        c, major);
        size_t n = utf8_seq_len(p->s + p->pos, p->len - p->pos);
        if (n == 0)
            return fail(p, -EINVAL, "invalid UTF-8 (byte 0x%02x)", c);
        p->pos += n;
    }
    p->pos = 0;
    return 0;
}

static int set_err(char *err, size_t errlen, int rc, const char *msg)
{
    if (errlen)
        snprintf(err, errlen, "%s", msg);
    return rc;
}

int npy_parse(const void *buf, size_t len, struct npy_info *info, size_t *need, char *err,
              size_t errlen)
{
    const unsigned char *b = buf;
    if (errlen)
        err[0] = '\0';
    size_t m = len < NPY_MAGIC_LEN ? len : NPY_MAGIC_LEN;
    if (m > 0 && memcmp(b, NPY_MAGIC, m) != 0)
        return set_err(err, errlen, -EINVAL,
                       "not a .npy file: it does not start with \\x93NUMPY");
    if (len < 8) {
        *need = 8;
        return -EAGAIN;
    }
    info->major = b[6];
    info->minor = b[7];
    if (info->major < 1 || info->major > 3 || info->minor != 0) {
        if (errlen)
            snprintf(err, errlen,
                     "npy version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                     (unsigned)info->major, (unsigned)info->minor);
        return -EINVAL;
    }
    size_t pre = info->major == 1 ? NPY_PREAMBLE_V1 : NPY_PREAMBLE_V2;
    if (len < pre) {
        *need = pre;
        return -EAGAIN;
    }
    uint32_t hlen = (uint32_t)b[8] | (uint32_t)b[9] << 8;
    if (info->major > 1)
        hlen |= (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    if (hlen > NPY_HEADER_MAX) {
        if (errlen)
            snprintf(err, errlen, "npy header length %u is over the limit of %u bytes",
                     (unsigned)hlen, NPY_HEADER_MAX);
        return -E2BIG;
    }
    if (hlen == 0)
        return set_err(err, errlen, -EINVAL, "npy header length is 0: the header is missing");
    info->data_offset = pre + hlen;
    if (len < info->data_offset) {
        *need = (size_t)info->data_offset;
        return -EAGAIN;
    }

    struct parser p = { .s = b + pre, .len = hlen, .base = pre, .err = err, .errlen = errlen };
    int rc = check_text(&p, info->major);
    if (rc)
        return rc;
    rc = parse_dict(&p, info);
    if (rc)
        return rc;

    uint64_t bytes = model_dtype_size(info->dtype);
    bool zero = false;
    for (uint32_t i = 0; i < info->ndim; i++)
        zero |= info->shape[i] == 0;
    if (zero) {
        bytes = 0; /* an empty array, however large the other dimensions */
    } else {
        for (uint32_t i = 0; i < info->ndim; i++) {
            if (__builtin_mul_overflow(bytes, info->shape[i], &bytes)) {
                p.pos = 0;
                return fail(&p, -EOVERFLOW, "'shape' describes more than 2^64 bytes");
            }
        }
    }
    info->data_bytes = bytes;
    return 0;
}

/* ------------------------------------------------------------ the writer */

int npy_header_write(uint32_t dtype, uint32_t ndim, const uint64_t *shape, void *out,
                     size_t outlen)
{
    const char *descr = descr_of(dtype);
    if (!descr || ndim < 1 || ndim > MODEL_OBJECT_MAX_DIMS)
        return -EINVAL;
    char dict[NPY_WRITE_MAX];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (uint32_t i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%llu", i ? ", " : "",
                      (unsigned long long)shape[i]);
    /* "(3,)" is the 1-tuple; numpy writes "(2, 3)" without the comma */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    /* the data starts at a multiple of 64: pad with spaces, end with '\n' */
    size_t total = NPY_PREAMBLE_V1 + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    if (total > outlen)
        return -ENOSPC;
    size_t hlen = total - NPY_PREAMBLE_V1;
    unsigned char *o = out;
    memcpy(o, NPY_MAGIC, NPY_MAGIC_LEN);
    o[6] = 1;
    o[7] = 0;
    o[8] = (unsigned char)(hlen & 0xff);
    o[9] = (unsigned char)(hlen >> 8);
    memcpy(o + NPY_PREAMBLE_V1, dict, (size_t)n);
    memset(o + NPY_PREAMBLE_V1 + n, ' ', hlen - (size_t)n - 1);
    o[total - 1] = '\n';
    return (int)total;
}
