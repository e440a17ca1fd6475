/*
 * safetensors.c: see safetensors.h. The checks run in the order a reader
 * would trip over the problems (length, JSON, each tensor, then how the
 * tensors sit together), and the first failure is the one reported.
 */
#include "workers/models/safetensors.h"

#include <batchd/model.h>
#include "workers/models/model_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor names are quoted in messages up to this many bytes. */
#define NAME_MAX_SHOWN 80

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_I8] = {"I8", 1},           [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1},
    [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1}, [SAFETENSORS_I16] = {"I16", 2},
    [SAFETENSORS_U16] = {"U16", 2},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_I32] = {"I32", 4},
    [SAFETENSORS_U32] = {"U32", 4},         [SAFETENSORS_F32] = {"F32", 4},
    [SAFETENSORS_I64] = {"I64", 8},         [SAFETENSORS_U64] = {"U64", 8},
    [SAFETENSORS_F64] = {"F64", 8},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *safetensors_dtype_name(enum safetensors_dtype dtype)
{
    return (size_t)dtype < N_DTYPES ? dtypes[dtype].name : NULL;
}

size_t safetensors_dtype_size(enum safetensors_dtype dtype)
{
    return (size_t)dtype < N_DTYPES ? dtypes[dtype].size : 0;
}

bool safetensors_aligned(const struct safetensors_tensor *t)
{
    size_t size = safetensors_dtype_size(t->dtype);
    return size != 0 && (uintptr_t)t->data % size == 0;
}

const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
                                                  const char *name)
{
    for (size_t i = 0; st && name && i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *safetensors_shown(const char *s, size_t max, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    int n = model_utf8_prefix(s, max);
    bool cut = s[n] != '\0';
    if ((size_t)n > cap - 4)
        n = model_utf8_prefix(s, cap - 4), cut = true;
    for (int i = 0; i < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    snprintf(buf + n, cap - (size_t)n, "%s", cut ? "..." : "");
    return buf;
}

/* "[2, 3]" into buf (cut with "..." when it does not fit). */
static const char *shape_str(const uint64_t *shape, uint32_t ndim, char *buf, size_t len)
{
    size_t at = 0;
    int n = snprintf(buf, len, "[");
    at = n > 0 ? (size_t)n : 0;
    for (uint32_t i = 0; i < ndim && at < len; i++) {
        n = snprintf(buf + at, len - at, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
        if (n < 0)
            break;
        at += (size_t)n;
    }
    if (at < len)
        snprintf(buf + at, len - at, "]");
    return buf;
}

/* jansson's message may quote input bytes; the error goes into log lines
 * and problem details, so anything that is not printable ASCII becomes '?'. */
static void ascii_only(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

static int parse_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Fills *t from the header member `name`: `v`. Returns 0 or -EINVAL. */
static int parse_tensor(const char *name, const json_t *v, uint64_t data_len,
                        struct safetensors_tensor *t, char *err, size_t errlen)
{
    char shown[NAME_MAX_SHOWN + 4], q[40];
    safetensors_shown(name, NAME_MAX_SHOWN, shown, sizeof shown);
#define FAIL(...)                                                                        \
    do {                                                                                 \
        char msg_[160];                                                                  \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                        \
        model_err(err, errlen, "tensor \"%s\": %s", shown, msg_);                          \
        return -EINVAL;                                                                  \
    } while (0)

    if (!json_is_object(v))
        FAIL("expected an object {\"dtype\", \"shape\", \"data_offsets\"}");
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            FAIL("unexpected key \"%s\" (expected dtype, shape, data_offsets)",
                 safetensors_shown(key, 32, q, sizeof q));
    }
    t->name = name;

    json_t *dt = json_object_get(v, "dtype");
    if (!dt)
        FAIL("missing \"dtype\"");
    if (!json_is_string(dt))
        FAIL("\"dtype\" is not a string");
    size_t d;
    for (d = 0; d < N_DTYPES; d++)
        if (strcmp(json_string_value(dt), dtypes[d].name) == 0)
            break;
    if (d == N_DTYPES)
        FAIL("unknown dtype \"%s\"", safetensors_shown(json_string_value(dt), 24, q, sizeof q));
    t->dtype = (enum safetensors_dtype)d;

    json_t *sh = json_object_get(v, "shape");
    if (!sh)
        FAIL("missing \"shape\"");
    if (!json_is_array(sh))
        FAIL("\"shape\" is not an array");
    if (json_array_size(sh) > SAFETENSORS_MAX_DIMS)
        FAIL("shape has %zu dimensions, at most %d are supported", json_array_size(sh),
             SAFETENSORS_MAX_DIMS);
    t->ndim = (uint32_t)json_array_size(sh);
    t->numel = 1;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if (parse_uint(json_array_get(sh, i), &t->shape[i]) != 0)
            FAIL("shape[%u] is not a non-negative integer", i);
        if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel))
            FAIL("shape's element count overflows 64 bits");
    }
    uint64_t bytes;
    if (__builtin_mul_overflow(t->numel, (uint64_t)dtypes[d].size, &bytes))
        FAIL("shape's byte size overflows 64 bits");

    json_t *off = json_object_get(v, "data_offsets");
    if (!off)
        FAIL("missing \"data_offsets\"");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        parse_uint(json_array_get(off, 0), &t->begin) != 0 ||
        parse_uint(json_array_get(off, 1), &t->end) != 0)
        FAIL("\"data_offsets\" is not [begin, end] of two non-negative integers");
    if (t->begin > t->end)
        FAIL("data_offsets [%llu, %llu] end before they begin", (unsigned long long)t->begin,
             (unsigned long long)t->end);
    if (t->end > data_len)
        FAIL("data_offsets [%llu, %llu] run past the end of the file (the data area is %llu "
             "bytes)",
             (unsigned long long)t->begin, (unsigned long long)t->end,
             (unsigned long long)data_len);
    if (t->end - t->begin != bytes) {
        char s[64];
        FAIL("shape %s of %s is %llu bytes, but data_offsets [%llu, %llu] hold %llu",
             shape_str(t->shape, t->ndim, s, sizeof s), dtypes[d].name,
             (unsigned long long)bytes, (unsigned long long)t->begin,
             (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
    }
    return 0;
#undef FAIL
}

static int cmp_offsets(const void *a, const void *b)
{
    const struct safetensors_tensor *x = *(const struct safetensors_tensor *const *)a;
    const struct safetensors_tensor *y = *(const struct safetensors_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* The tensors must tile [0, data_len) exactly (safetensors.h says why). */
static int check_tiling(const struct safetensors *st, char *err, size_t errlen)
{
    if (st->n == 0) {
        if (st->data_len != 0) {
            model_err(err, errlen, "no tensors, but %llu bytes of data follow the header",
                    (unsigned long long)st->data_len);
            return -EINVAL;
        }
        return 0;
    }
    const struct safetensors_tensor **by = malloc(st->n * sizeof *by);
    if (!by) {
        model_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < st->n; i++)
        by[i] = &st->tensors[i];
    qsort(by, st->n, sizeof *by, cmp_offsets);
    int rc = 0;
    uint64_t at = 0;
    const struct safetensors_tensor *prev = NULL;
    for (size_t i = 0; i < st->n && rc == 0; i++) {
        const struct safetensors_tensor *t = by[i];
        char tn[NAME_MAX_SHOWN + 4], pn[NAME_MAX_SHOWN + 4];
        safetensors_shown(t->name, NAME_MAX_SHOWN, tn, sizeof tn);
        if (t->begin < at) {
            model_err(err, errlen,
                    "tensor \"%s\": data_offsets [%llu, %llu] overlap tensor \"%s\" "
                    "[%llu, %llu]",
                    tn, (unsigned long long)t->begin, (unsigned long long)t->end,
                    safetensors_shown(prev->name, NAME_MAX_SHOWN, pn, sizeof pn), (unsigned long long)prev->begin, (unsigned long long)prev->end);
            rc = -EINVAL;
        } else if (t->begin > at) {
            model_err(err, errlen,
                    "tensor \"%s\": data_offsets [%llu, %llu] leave bytes %llu..%llu of the "
                    "data area unused (tensors must be contiguous)",
                    tn, (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)at, (unsigned long long)t->begin - 1);
            rc = -EINVAL;
        }
        at = t->end;
        prev = t;
    }
    if (rc == 0 && at != st->data_len) {
        char pn[NAME_MAX_SHOWN + 4];
        model_err(err, errlen,
                "%llu bytes follow the last tensor (\"%s\" ends at %llu, the data area is "
                "%llu bytes)",
                (unsigned long long)(st->data_len - at),
                safetensors_shown(prev->name, NAME_MAX_SHOWN, pn, sizeof pn), (unsigned long long)at,
                (unsigned long long)st->data_len);
        rc = -EINVAL;
    }
    free(by);
    return rc;
}

int safetensors_parse(const void *buf, size_t len, struct safetensors *st, char *err,
                      size_t errlen)
{
    memset(st, 0, sizeof *st);
    const uint8_t *p = buf;
    if (len < 8) {
        model_err(err, errlen, "file is %zu bytes, too short for the 8-byte header length", len);
        return -EINVAL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > len - 8) {
        model_err(err, errlen,
                "header length %llu runs past the end of the file (%zu bytes follow the "
                "length)",
                (unsigned long long)hlen, len - 8);
        return -EINVAL;
    }
    if (hlen > SAFETENSORS_MAX_HEADER) {
        model_err(err, errlen, "header length %llu is over the limit of %u bytes",
                (unsigned long long)hlen, SAFETENSORS_MAX_HEADER);
        return -EINVAL;
    }
    if (hlen < 2 || p[8] != '{') {
        model_err(err, errlen, "header (%llu bytes) does not start with a JSON object",
                (unsigned long long)hlen);
        return -EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char text[JSON_ERROR_TEXT_LENGTH];
        snprintf(text, sizeof text, "%s", jerr.text);
        ascii_only(text);
        model_err(err, errlen, "header is not valid JSON: %s (line %d, column %d)", text,
                jerr.line, jerr.column);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        model_err(err, errlen, "header is not a JSON object");
        json_decref(root);
        return -EINVAL;
    }
    st->header = root;
    st->data = p + 8 + hlen;
    st->data_len = (uint64_t)(len - 8 - hlen);

    size_t cap = json_object_size(root);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    if (!st->tensors) {
        model_err(err, errlen, "out of memory");
        safetensors_close(st);
        return -ENOMEM;
    }
    int rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                model_err(err, errlen, "\"__metadata__\" is not an object");
                rc = -EINVAL;
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    char kn[NAME_MAX_SHOWN + 4];
                    model_err(err, errlen, "\"__metadata__\": the value of \"%s\" is not a string",
                            safetensors_shown(mk, NAME_MAX_SHOWN, kn, sizeof kn));
                    rc = -EINVAL;
                    break;
                }
            }
            if (rc)
                break;
            st->metadata = v;
            continue;
        }
        struct safetensors_tensor *t = &st->tensors[st->n];
        rc = parse_tensor(key, v, st->data_len, t, err, errlen);
        if (rc)
            break;
        t->data = st->data + t->begin;
        st->n++;
    }
    if (rc == 0)
        rc = check_tiling(st, err, errlen);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    return 0;
}

int safetensors_open(const char *path, struct safetensors *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        model_err(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        model_err(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(sb.st_mode)) {
        model_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    size_t len = (size_t)sb.st_size;
    /* mmap refuses a length of 0; the parser says what is wrong with it. */
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            model_err(err, errlen, "%s: mmap: %s", path, strerror(e));
            close(fd);
            return -e;
        }
    }
    close(fd); /* the mapping keeps the file */
    char why[512] = "";
    int rc = safetensors_parse(map ? map : "", len, st, why, sizeof why);
    if (rc) {
        model_err(err, errlen, "%s: %s", path, why);
        if (map)
            munmap(map, len);
        return rc;
    }
    st->map = map;
    st->map_len = len;
    return 0;
}

void safetensors_close(struct safetensors *st)
{
    if (!st)
        return;
    free(st->tensors);
    json_decref(st->header);
    if (st->map)
        munmap(st->map, st->map_len);
    memset(st, 0, sizeof *st);
}
