/*
 * model_prefix_count.c: the `prefix_count` model (see model_prefix_count.h
 * for the item, the result and the partial's format).
 *
 * One table type serves the three users: a worker's accumulator (acc_run
 * adds documents, acc_export writes it out), reduce's merge of every
 * partial, and the serial baseline. Entries keep the prefix's hash, so the
 * table grows without reading the arena again, and lookups compare bytes
 * only when the 64-bit hashes are equal.
 */
#include "workers/models/model_prefix_count.h"
#include "service/core/utf8.h"
#include "workers/models/model_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PC_MAX_WORD MODEL_PREFIX_COUNT_MAX_WORD
#define PC_MIN_BITS 10u /* 1024 slots to start with */
#define PC_HEADER 8u    /* magic + u32 entry count */

/* ---- the table ----------------------------------------------------------- */

/* A slot; len == 0 marks it empty (prefixes have at least one byte). A
 * count may drop to 0 when a failed item is rolled back: such an entry
 * stays (linear probing has no cheap delete) and is never exported. */
struct pc_entry {
    uint64_t hash;
    uint64_t count;
    uint32_t off; /* into the arena: the table is capped below 4 GiB */
    uint32_t len;
};

struct pc_table {
    struct pc_entry *slots;
    size_t bits; /* slots = 1 << bits */
    size_t used; /* slots with len != 0 */
    unsigned char *arena;
    size_t arena_len, arena_cap;
};

#define PC_FNV_OFFSET 0xcbf29ce484222325ull
#define PC_FNV_PRIME 0x100000001b3ull

static inline uint64_t pc_hash_step(uint64_t h, unsigned char byte)
{
    return (h ^ byte) * PC_FNV_PRIME;
}

static uint64_t pc_hash(const unsigned char *s, size_t n)
{
    uint64_t h = PC_FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = pc_hash_step(h, s[i]);
    return h;
}

/* Fibonacci hashing: the multiply spreads FNV's weak low bits over the
 * top ones, which are the ones taken. */
static inline size_t pc_home(uint64_t hash, size_t bits)
{
    return (size_t)((hash * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static size_t pc_table_bytes(size_t bits, size_t arena_cap)
{
    return ((size_t)1 << bits) * sizeof(struct pc_entry) + arena_cap;
}

static struct pc_table *pc_table_new(void)
{
    struct pc_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->bits = PC_MIN_BITS;
    t->slots = calloc((size_t)1 << t->bits, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    return t;
}

static void pc_table_free(struct pc_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->arena);
    free(t);
}

/* Doubles the slots. Returns 0, or -EFBIG / -ENOMEM with t unchanged. */
static int pc_table_grow(struct pc_table *t)
{
    size_t bits = t->bits + 1;
    if (pc_table_bytes(bits, t->arena_cap) > MODEL_PREFIX_COUNT_MAX_TABLE_BYTES)
        return -EFBIG;
    size_t n = (size_t)1 << bits, mask = n - 1;
    struct pc_entry *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    size_t old_n = (size_t)1 << t->bits;
    for (size_t i = 0; i < old_n; i++) {
        const struct pc_entry *e = &t->slots[i];
        if (e->len == 0)
            continue;
        size_t k = pc_home(e->hash, bits);
        while (slots[k].len != 0)
            k = (k + 1) & mask;
        slots[k] = *e;
    }
    free(t->slots);
    t->slots = slots;
    t->bits = bits;
    return 0;
}

/* Grows the slots until n more keys fit at most half full (see
 * pc_merge_levels for why). Returns 0, -EFBIG, -ENOMEM. */
static int pc_table_reserve(struct pc_table *t, size_t n)
{
    while ((t->used + n) * 2 > ((size_t)1 << t->bits)) {
        int rc = pc_table_grow(t);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Makes room for n more arena bytes. Returns 0, -EFBIG or -ENOMEM. */
static int pc_arena_reserve(struct pc_table *t, size_t n)
{
    if (t->arena_cap - t->arena_len >= n)
        return 0;
    size_t cap = t->arena_cap ? t->arena_cap : 4096;
    while (cap - t->arena_len < n)
        cap *= 2;
    if (pc_table_bytes(t->bits, cap) > MODEL_PREFIX_COUNT_MAX_TABLE_BYTES)
        return -EFBIG;
    unsigned char *a = realloc(t->arena, cap);
    if (!a)
        return -ENOMEM;
    t->arena = a;
    t->arena_cap = cap;
    return 0;
}

/* The slot of key (hash precomputed): its entry, or the empty slot where
 * it would go. */
static struct pc_entry *pc_probe(const struct pc_table *t, const unsigned char *key, uint32_t len,
                                 uint64_t hash)
{
    size_t mask = ((size_t)1 << t->bits) - 1;
    size_t k = pc_home(hash, t->bits);
    for (;;) {
        struct pc_entry *e = &t->slots[k];
        if (e->len == 0 ||
            (e->hash == hash && e->len == len && memcmp(t->arena + e->off, key, len) == 0))
            return e;
        k = (k + 1) & mask;
    }
}

/* Adds `add` to key's count, inserting it. Returns 0, or -EFBIG / -ENOMEM
 * (past the cap, or out of memory) with t unchanged. */
static int pc_table_add(struct pc_table *t, const unsigned char *key, uint32_t len, uint64_t hash,
                        uint64_t add)
{
    struct pc_entry *e = pc_probe(t, key, len, hash);
    if (e->len != 0) {
        /* counts are bounded by the bytes ever counted; saturate rather
         * than wrap if a reduce is fed absurd partials */
        e->count = e->count > UINT64_MAX - add ? UINT64_MAX : e->count + add;
        return 0;
    }
    /* at most half full: linear probing stays at a couple of probes */
    if ((t->used + 1) * 2 > ((size_t)1 << t->bits)) {
        int rc = pc_table_grow(t);
        if (rc != 0)
            return rc;
        e = pc_probe(t, key, len, hash);
    }
    int rc = pc_arena_reserve(t, len);
    if (rc != 0)
        return rc;
    memcpy(t->arena + t->arena_len, key, len);
    e->hash = hash;
    e->count = add;
    e->off = (uint32_t)t->arena_len;
    e->len = len;
    t->arena_len += len;
    t->used++;
    return 0;
}

/* Takes one back from key's count (rollback of a failed item: the key is
 * there, because it was added by that item). */
static void pc_table_sub(struct pc_table *t, const unsigned char *key, uint32_t len,
                         uint64_t hash)
{
    struct pc_entry *e = pc_probe(t, key, len, hash);
    if (e->len != 0 && e->count > 0)
        e->count--;
}

/* ---- documents ----------------------------------------------------------- */

static const char pc_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int pc_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decodes standard base64 (padding optional) of s[0..n) into out (room
 * for `cap` bytes). Returns the decoded length, or -1 with *bad set to the
 * offending character's offset (n for a bad length), or -2 when the bytes
 * would pass cap.
 */
static long pc_b64_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *bad)
{
    size_t pad = 0;
    while (pad < 2 && n - pad > 0 && s[n - pad - 1] == '=')
        pad++;
    size_t m = n - pad; /* characters that carry bits */
    if ((pad > 0 && n % 4 != 0) || m % 4 == 1) {
        *bad = n;
        return -1;
    }
    size_t len = m / 4 * 3 + (m % 4 ? m % 4 - 1 : 0);
    if (len > cap)
        return -2;
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < m; i++) {
        int v = pc_b64_value((unsigned char)s[i]);
        if (v < 0) {
            *bad = i;
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (unsigned char)(acc >> 16);
            out[o++] = (unsigned char)(acc >> 8);
            out[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    if (m % 4 == 2) {
        out[o++] = (unsigned char)(acc >> 4);
    } else if (m % 4 == 3) {
        out[o++] = (unsigned char)(acc >> 10);
        out[o++] = (unsigned char)(acc >> 2);
    }
    return (long)o;
}

/* base64 of s[0..n) as a new json string, NULL when out of memory. */
static json_t *pc_b64_json(const unsigned char *s, size_t n)
{
    size_t len = (n + 2) / 3 * 4;
    char *buf = malloc(len + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        buf[o++] = pc_b64_alphabet[v >> 18 & 63];
        buf[o++] = pc_b64_alphabet[v >> 12 & 63];
        buf[o++] = i + 1 < n ? pc_b64_alphabet[v >> 6 & 63] : '=';
        buf[o++] = i + 2 < n ? pc_b64_alphabet[v & 63] : '=';
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

/*
 * The bytes of word i of a document: for a string, a pointer into it; for
 * {"base64": ...}, decoded into buf (PC_MAX_WORD bytes). Returns 0, or
 * -EINVAL with the reason in err (`where` names the document, or is "").
 */
static int pc_word(const json_t *w, size_t i, const char *where, unsigned char *buf,
                   const unsigned char **bytes, size_t *len, char *err, size_t errlen)
{
    if (json_is_string(w)) {
        *bytes = (const unsigned char *)json_string_value(w);
        *len = json_string_length(w);
    } else if (json_is_object(w) && json_object_size(w) == 1 &&
               json_is_string(json_object_get(w, "base64"))) {
        const json_t *b = json_object_get(w, "base64");
        size_t bad = 0;
        long n = pc_b64_decode(json_string_value(b), json_string_length(b), buf, PC_MAX_WORD,
                               &bad);
        if (n == -1) {
            if (bad == json_string_length(b))
                model_err(err, errlen, "prefix_count: %sword %zu: \"base64\" has a bad length (%zu)",
                       where, i, bad);
            else
                model_err(err, errlen,
                       "prefix_count: %sword %zu: \"base64\" has a character outside the "
                       "base64 alphabet at offset %zu",
                       where, i, bad);
            return -EINVAL;
        }
        if (n == -2) {
            model_err(err, errlen, "prefix_count: %sword %zu is longer than %d bytes", where, i,
                   PC_MAX_WORD);
            return -EINVAL;
        }
        *bytes = buf;
        *len = (size_t)n;
        return 0;
    } else {
        model_err(err, errlen,
               "prefix_count: %sword %zu is %s, expected a string or {\"base64\": \"...\"}",
               where, i, model_json_kind(w));
        return -EINVAL;
    }
    if (*len > PC_MAX_WORD) {
        model_err(err, errlen, "prefix_count: %sword %zu is longer than %d bytes (%zu)", where, i,
               PC_MAX_WORD, *len);
        return -EINVAL;
    }
    return 0;
}

/* Takes back the first `upto` prefixes of a word (rollback). */
static void pc_unapply(struct pc_table *t, const unsigned char *s, size_t upto)
{
    uint64_t h = PC_FNV_OFFSET;
    for (size_t p = 1; p <= upto; p++) {
        h = pc_hash_step(h, s[p - 1]);
        pc_table_sub(t, s, (uint32_t)p, h);
    }
}

/*
 * Counts one document into t, all or nothing: every word is checked first,
 * and a table that cannot grow halfway is put back as it was. Sets *words
 * and *prefixes. Returns 0, -EINVAL (bad document), -EFBIG or -ENOMEM.
 */
static int pc_count_document(struct pc_table *t, const json_t *doc, const char *where,
                             uint64_t *words, uint64_t *prefixes, char *err, size_t errlen)
{
    unsigned char buf[PC_MAX_WORD];
    const unsigned char *s;
    size_t len;
    if (!json_is_array(doc)) {
        model_err(err, errlen,
               "prefix_count: %sexpected an array of words (strings or {\"base64\": \"...\"}), "
               "got %s",
               where, model_json_kind(doc));
        return -EINVAL;
    }
    size_t n = json_array_size(doc);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = pc_word(json_array_get(doc, i), i, where, buf, &s, &len, err, errlen);
        if (rc != 0)
            return rc;
        total += len > 1 ? len - 1 : 0;
    }
    for (size_t i = 0; i < n; i++) {
        (void)pc_word(json_array_get(doc, i), i, where, buf, &s, &len, NULL, 0);
        uint64_t h = PC_FNV_OFFSET;
        for (size_t p = 1; p < len; p++) {
            h = pc_hash_step(h, s[p - 1]);
            int rc = pc_table_add(t, s, (uint32_t)p, h, 1);
            if (rc == 0)
                continue;
            /* put back this word's first p-1 prefixes and the words before
             * (buf is reused by each base64 word, so decode them again) */
            pc_unapply(t, s, p - 1);
            for (size_t k = 0; k < i; k++) {
                (void)pc_word(json_array_get(doc, k), k, where, buf, &s, &len, NULL, 0);
                pc_unapply(t, s, len > 1 ? len - 1 : 0);
            }
            if (rc == -EFBIG)
                model_err(err, errlen,
                       "prefix_count: %sthe counts would take more than %llu MiB in this worker",
                       where, MODEL_PREFIX_COUNT_MAX_TABLE_BYTES >> 20);
            else
                model_err(err, errlen, "prefix_count: %sout of memory for the counts", where);
            return rc;
        }
    }
    *words = n;
    *prefixes = total;
    return 0;
}

/* ---- the result ---------------------------------------------------------- */

struct pc_pick {
    uint64_t count;
    const unsigned char *key;
    uint32_t len;
};

static int pc_pick_cmp(const void *pa, const void *pb)
{
    const struct pc_pick *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static bool pc_is_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* The job's result from a table: the prefixes counted more than
 * threshold times. Returns 0 or -ENOMEM (err says so). */
static int pc_result(const struct pc_table *t, uint64_t threshold, json_t **result, char *err,
                     size_t errlen)
{
    size_t n_slots = (size_t)1 << t->bits, k = 0;
    for (size_t i = 0; i < n_slots; i++)
        k += t->slots[i].len != 0 && t->slots[i].count > threshold;
    struct pc_pick *picks = malloc((k ? k : 1) * sizeof *picks);
    json_t *list = json_array();
    json_t *res = NULL;
    if (!picks || !list)
        goto oom;
    k = 0;
    for (size_t i = 0; i < n_slots; i++) {
        const struct pc_entry *e = &t->slots[i];
        if (e->len != 0 && e->count > threshold)
            picks[k++] = (struct pc_pick){e->count, t->arena + e->off, e->len};
    }
    qsort(picks, k, sizeof *picks, pc_pick_cmp);
    for (size_t i = 0; i < k; i++) {
        json_t *p = pc_is_utf8(picks[i].key, picks[i].len)
                        ? json_stringn((const char *)picks[i].key, picks[i].len)
                        : pc_b64_json(picks[i].key, picks[i].len);
        const char *name = pc_is_utf8(picks[i].key, picks[i].len) ? "prefix" : "prefix_base64";
        json_t *o = p ? json_pack("{s:o, s:I}", name, p, "count",
                                  (json_int_t)(picks[i].count > INT64_MAX ? INT64_MAX
                                                                          : picks[i].count))
                      : NULL;
        if (!o || json_array_append_new(list, o) != 0)
            goto oom;
    }
    res = json_pack("{s:I, s:I, s:O}", "threshold", (json_int_t)threshold, "count",
                    (json_int_t)k, "prefixes", list);
    if (!res)
        goto oom;
    json_decref(list);
    free(picks);
    *result = res;
    return 0;
oom:
    json_decref(list);
    free(picks);
    model_err(err, errlen, "prefix_count: out of memory for the result");
    return -ENOMEM;
}

int model_prefix_count_serial(const json_t *documents, uint64_t threshold, json_t **result,
                              char *err, size_t errlen)
{
    if (!json_is_array(documents)) {
        model_err(err, errlen, "prefix_count: expected an array of documents, got %s",
               model_json_kind(documents));
        return -EINVAL;
    }
    struct pc_table *t = pc_table_new();
    if (!t) {
        model_err(err, errlen, "prefix_count: out of memory for the counts");
        return -ENOMEM;
    }
    int rc = 0;
    size_t i;
    json_t *doc;
    json_array_foreach(documents, i, doc) {
        char where[48];
        uint64_t words, prefixes;
        snprintf(where, sizeof where, "document %zu: ", i);
        rc = pc_count_document(t, doc, where, &words, &prefixes, err, errlen);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = pc_result(t, threshold, result, err, errlen);
    pc_table_free(t);
    return rc;
}

/* ---- the partial --------------------------------------------------------- */

static size_t pc_leb_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *pc_leb_put(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Reads a LEB128 value at p[*pos..n). Returns false when it runs past n
 * or past 64 bits. */
static bool pc_leb_get(const unsigned char *p, size_t n, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= n)
            return false;
        unsigned char b = p[(*pos)++];
        uint64_t bits = b & 0x7f;
        if (shift == 63 && bits > 1)
            return false;
        x |= bits << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Checks the partial at data[0..n) entry by entry and calls fn(arg, entry,
 * count, key, len) for each (entry: where its header starts); `declared`
 * is the partial's "entries" (NULL when absent), checked against the
 * header. Returns 0, -EINVAL (malformed, with where it broke in why), or
 * what fn returned (non-zero stops the scan). */
static int pc_partial_scan(const unsigned char *data, size_t n, const json_t *declared,
                           int (*fn)(void *, const unsigned char *, uint64_t,
                                     const unsigned char *, uint32_t),
                           void *arg, char *why, size_t whylen)
{
    if (n < PC_HEADER || memcmp(data, MODEL_PREFIX_COUNT_MAGIC, 4) != 0) {
        model_err(why, whylen, "not a prefix_count partial (no \"%s\" header)",
               MODEL_PREFIX_COUNT_MAGIC);
        return -EINVAL;
    }
    uint32_t entries = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 |
                       (uint32_t)data[7] << 24;
    if (declared && json_integer_value(declared) != (json_int_t)entries) {
        model_err(why, whylen, "\"entries\" is %" JSON_INTEGER_FORMAT ", the object holds %" PRIu32,
               json_integer_value(declared), entries);
        return -EINVAL;
    }
    size_t pos = PC_HEADER;
    for (uint32_t e = 0; e < entries; e++) {
        size_t at = pos;
        uint64_t count, len;
        if (!pc_leb_get(data, n, &pos, &count) || !pc_leb_get(data, n, &pos, &len)) {
            model_err(why, whylen, "entry %" PRIu32 " at byte %zu: truncated or overlong header", e,
                   at);
            return -EINVAL;
        }
        if (count == 0 || len == 0 || len >= PC_MAX_WORD) {
            model_err(why, whylen,
                   "entry %" PRIu32 " at byte %zu: count %" PRIu64 ", length %" PRIu64
                   " (expected a count >= 1 and a length from 1 to %d)",
                   e, at, count, len, PC_MAX_WORD - 1);
            return -EINVAL;
        }
        if (len > n - pos) {
            model_err(why, whylen,
                   "entry %" PRIu32 " at byte %zu: %" PRIu64 " bytes of prefix, %zu left", e, at,
                   len, n - pos);
            return -EINVAL;
        }
        int rc = fn ? fn(arg, data + at, count, data + pos, (uint32_t)len) : 0;
        if (rc != 0)
            return rc;
        pos += len;
    }
    if (pos != n) {
        model_err(why, whylen, "%zu bytes after the last of %" PRIu32 " entries", n - pos, entries);
        return -EINVAL;
    }
    return 0;
}

/*
 * The reduce, level by level (the Apriori principle). Every word that has
 * a prefix of length L also has its prefix of length L-1, so a prefix's
 * total count is at most its parent's: a prefix can pass the threshold
 * only if its parent did. The entries of every partial are bucketed by
 * length; level L merges only the entries whose parent passed at level
 * L-1, and the merge stops at the first level where nothing passes. For
 * ordinary documents almost every prefix past a few bytes is counted once
 * and is never inserted anywhere: the merge works on small tables, not on
 * one that holds every distinct prefix of the job.
 */
struct pc_levels {
    size_t *per_len;             /* entries of each length (PC_MAX_WORD) */
    const unsigned char **entry; /* entry headers, bucketed by length */
    size_t *fill;                /* next free index of each bucket */
};

static int pc_level_count(void *arg, const unsigned char *entry, uint64_t count,
                          const unsigned char *key, uint32_t len)
{
    (void)entry, (void)count, (void)key;
    ((struct pc_levels *)arg)->per_len[len]++;
    return 0;
}

static int pc_level_fill(void *arg, const unsigned char *entry, uint64_t count,
                         const unsigned char *key, uint32_t len)
{
    struct pc_levels *lv = arg;
    (void)count, (void)key;
    lv->entry[lv->fill[len]++] = entry;
    return 0;
}

/* Decodes an entry pc_partial_scan has already checked. */
static void pc_entry_read(const unsigned char *entry, uint64_t *count, const unsigned char **key,
                          uint32_t *len)
{
    size_t pos = 0;
    uint64_t l = 0;
    pc_leb_get(entry, 20, &pos, count); /* two LEB128 values of <= 10 bytes */
    pc_leb_get(entry, 20, &pos, &l);
    *key = entry + pos;
    *len = (uint32_t)l;
}

/* Merges the checked partials data[i] (n[i] bytes, i < k) into `passed`:
 * the prefixes counted more than threshold times. Returns 0, -EFBIG or
 * -ENOMEM (why says which). */
static int pc_merge_levels(const unsigned char *const *data, const size_t *n, size_t k,
                           uint64_t threshold, struct pc_table *passed, char *why, size_t whylen)
{
    struct pc_levels lv = { calloc(PC_MAX_WORD, sizeof(size_t)), NULL,
                            calloc(PC_MAX_WORD, sizeof(size_t)) };
    int rc = lv.per_len && lv.fill ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < k; i++)
        rc = pc_partial_scan(data[i], n[i], NULL, pc_level_count, &lv, why, whylen);
    size_t total = 0;
    for (size_t l = 0; rc == 0 && l < PC_MAX_WORD; l++) {
        lv.fill[l] = total;
        total += lv.per_len[l];
    }
    if (rc == 0 && !(lv.entry = malloc((total ? total : 1) * sizeof *lv.entry)))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < k; i++)
        rc = pc_partial_scan(data[i], n[i], NULL, pc_level_fill, &lv, why, whylen);
    size_t start = 0;
    for (uint32_t len = 1; rc == 0 && len < PC_MAX_WORD; len++) {
        size_t end = start + lv.per_len[len];
        if (end == start)
            break; /* no prefix this long: none longer either */
        struct pc_table *level = pc_table_new();
        if (!level) {
            rc = -ENOMEM;
            break;
        }
        /* the candidates first: entries whose parent passed (kept in place) */
        size_t cand = start;
        for (size_t e = start; e < end; e++) {
            uint64_t count;
            const unsigned char *key;
            uint32_t l;
            pc_entry_read(lv.entry[e], &count, &key, &l);
            if (len == 1 || pc_probe(passed, key, len - 1, pc_hash(key, len - 1))->len != 0)
                lv.entry[cand++] = lv.entry[e];
        }
        /* sized first: a partial lists its keys in its table's slot order,
         * i.e. sorted by home slot, and fed into a smaller table they would
         * pile into one growing cluster (quadratic: minutes for a job) */
        rc = pc_table_reserve(level, cand - start);
        for (size_t e = start; rc == 0 && e < cand; e++) {
            uint64_t count;
            const unsigned char *key;
            uint32_t l;
            pc_entry_read(lv.entry[e], &count, &key, &l);
            rc = pc_table_add(level, key, len, pc_hash(key, len), count);
        }
        size_t passed_here = 0, slots = (size_t)1 << level->bits;
        for (size_t i = 0; rc == 0 && i < slots; i++) {
            const struct pc_entry *en = &level->slots[i];
            if (en->len == 0 || en->count <= threshold)
                continue;
            rc = pc_table_add(passed, level->arena + en->off, en->len, en->hash, en->count);
            passed_here++;
        }
        pc_table_free(level);
        if (passed_here == 0)
            break; /* nothing this long passed: nothing longer can */
        start = end;
    }
    if (rc == -EFBIG || rc == -ENOMEM)
        model_err(why, whylen, "%s",
               rc == -EFBIG ? "the merged counts pass the table's memory cap" : "out of memory");
    free(lv.per_len);
    free(lv.fill);
    free(lv.entry);
    return rc;
}

/* ---- the model ----------------------------------------------------------- */

/* reduce() gets only `shared`, and runs in a worker, where the host that
 * load() was given (the supervisor's) cannot reach objects: init() records
 * the worker's host here. After fork this struct is the worker's own
 * copy-on-write page, so each worker writes only its own copy. */
struct pc_shared {
    const struct model_host *load_host;
    const struct model_host *worker_host; /* set by init() */
    uint64_t threshold;
};

struct pc_state {
    const struct model_host *host;
};

static int pc_load(const struct model_params *params, const struct model_host *host,
                   void **shared, char *err, size_t errlen)
{
    uint64_t threshold = MODEL_PREFIX_COUNT_DEFAULT_THRESHOLD;
    bool seen = false;
    for (size_t i = 0; params && i < params->n; i++) {
        const char *k = params->keys[i], *v = params->values[i];
        if (strcmp(k, "threshold") != 0) {
            model_err(err, errlen,
                   "model prefix_count has no parameter '%s' (its only one is threshold=N)", k);
            return -EINVAL;
        }
        if (seen) {
            model_err(err, errlen, "model prefix_count: threshold is given twice");
            return -EINVAL;
        }
        seen = true;
        char *end;
        errno = 0;
        unsigned long long t = strtoull(v, &end, 10);
        if (!v[0] || v[0] < '0' || v[0] > '9' || *end || errno || t > INT64_MAX) {
            model_err(err, errlen,
                   "model prefix_count: threshold must be an integer from 0 to %lld, got '%s'",
                   (long long)INT64_MAX, v);
            return -EINVAL;
        }
        threshold = t;
    }
    struct pc_shared *sh = malloc(sizeof *sh);
    if (!sh) {
        model_err(err, errlen, "model prefix_count: out of memory");
        return -ENOMEM;
    }
    sh->load_host = host;
    sh->worker_host = NULL;
    sh->threshold = threshold;
    *shared = sh;
    return 0;
}

static void pc_unload(void *shared)
{
    free(shared);
}

static int pc_init(const void *shared, const struct model_host *host, void **state, char *err,
                   size_t errlen)
{
    struct pc_state *st = malloc(sizeof *st);
    if (!st) {
        model_err(err, errlen, "prefix_count: out of memory for the worker state");
        return -ENOMEM;
    }
    st->host = host;
    /* malloc'ed by load(), so writing through the cast is sound; see
     * struct pc_shared for why it is written at all */
    if (shared && host)
        ((struct pc_shared *)shared)->worker_host = host;
    *state = st;
    return 0;
}

static void pc_fini(void *state)
{
    free(state);
}

static int pc_acc_run(void *state, void **acc, const json_t *item, json_t **output, char *err,
                      size_t errlen)
{
    (void)state;
    if (!*acc) {
        *acc = pc_table_new();
        if (!*acc) {
            model_err(err, errlen, "prefix_count: out of memory for the counts");
            return -ENOMEM;
        }
    }
    uint64_t words, prefixes;
    int rc = pc_count_document(*acc, item, "", &words, &prefixes, err, errlen);
    if (rc != 0)
        return rc;
    *output = json_pack("{s:I, s:I}", "words", (json_int_t)words, "prefixes",
                        (json_int_t)prefixes);
    if (!*output) {
        model_err(err, errlen, "prefix_count: out of memory for the result");
        return -ENOMEM;
    }
    return 0;
}

static int pc_acc_export(void *state, void *acc, json_t **partial, char *err, size_t errlen)
{
    const struct pc_state *st = state;
    const struct pc_table *t = acc;
    if (!st || !st->host || !st->host->object_new) {
        model_err(err, errlen, "prefix_count: this worker cannot make objects for its partial");
        return -ENOTSUP;
    }
    /* sized first, so the object is exactly the partial */
    size_t bytes = PC_HEADER, n_slots = t ? (size_t)1 << t->bits : 0;
    uint32_t entries = 0;
    for (size_t i = 0; i < n_slots; i++) {
        const struct pc_entry *e = &t->slots[i];
        if (e->len == 0 || e->count == 0)
            continue;
        bytes += pc_leb_size(e->count) + pc_leb_size(e->len) + e->len;
        entries++;
    }
    struct model_object obj;
    void *data = NULL;
    uint64_t shape[1] = {bytes};
    char why[256] = "";
    int rc = st->host->object_new(MODEL_DTYPE_U8, 1, shape, &obj, &data, why, sizeof why);
    if (rc != 0) {
        model_err(err, errlen, "prefix_count: the partial (%zu bytes): %s", bytes,
               why[0] ? why : strerror(-rc));
        return rc;
    }
    unsigned char *p = data;
    memcpy(p, MODEL_PREFIX_COUNT_MAGIC, 4);
    p[4] = (unsigned char)entries;
    p[5] = (unsigned char)(entries >> 8);
    p[6] = (unsigned char)(entries >> 16);
    p[7] = (unsigned char)(entries >> 24);
    p += PC_HEADER;
    for (size_t i = 0; i < n_slots; i++) {
        const struct pc_entry *e = &t->slots[i];
        if (e->len == 0 || e->count == 0)
            continue;
        p = pc_leb_put(p, e->count);
        p = pc_leb_put(p, e->len);
        memcpy(p, t->arena + e->off, e->len);
        p += e->len;
    }
    *partial = json_pack("{s:s, s:I}", "$object", obj.id, "entries", (json_int_t)entries);
    if (!*partial) {
        model_err(err, errlen, "prefix_count: out of memory for the partial");
        return -ENOMEM;
    }
    return 0;
}

static void pc_acc_free(void *state, void *acc)
{
    (void)state;
    pc_table_free(acc);
}

static int pc_reduce(const void *shared, const json_t *partials, json_t **result, char *err,
                     size_t errlen)
{
    const struct pc_shared *sh = shared;
    const struct model_host *host = sh ? (sh->worker_host ? sh->worker_host : sh->load_host)
                                       : NULL;
    if (!host || !host->object_ref) {
        model_err(err, errlen, "prefix_count: objects are not available to reduce the partials");
        return -ENOTSUP;
    }
    if (!json_is_array(partials)) {
        model_err(err, errlen, "prefix_count: the partials must be an array, got %s",
               model_json_kind(partials));
        return -EINVAL;
    }
    size_t k = json_array_size(partials);
    const unsigned char **data = calloc(k ? k : 1, sizeof *data);
    size_t *sizes = calloc(k ? k : 1, sizeof *sizes);
    struct pc_table *t = pc_table_new();
    if (!data || !sizes || !t) {
        free(data);
        free(sizes);
        pc_table_free(t);
        model_err(err, errlen, "prefix_count: out of memory for the counts");
        return -ENOMEM;
    }
    int rc = 0;
    size_t i;
    json_t *p;
    json_array_foreach(partials, i, p) {
        const char *id = json_string_value(json_object_get(p, "$object"));
        const json_t *jent = json_object_get(p, "entries");
        if (!json_is_object(p) || !id || (jent && !json_is_integer(jent))) {
            model_err(err, errlen,
                   "prefix_count: partial %zu must be {\"$object\": \"ID\", \"entries\": n}, "
                   "got %s",
                   i, model_json_kind(p));
            rc = -EINVAL;
            break;
        }
        /* a bare reference: the host need not know about "entries" */
        json_t *ref = json_pack("{s:s}", "$object", id);
        if (!ref) {
            model_err(err, errlen, "prefix_count: out of memory");
            rc = -ENOMEM;
            break;
        }
        struct model_object obj;
        char why[256] = "";
        rc = host->object_ref(ref, &obj, why, sizeof why);
        json_decref(ref);
        if (rc <= 0) {
            model_err(err, errlen, "prefix_count: partial %zu (object %.*s): %s", i,
                   model_utf8_prefix(id, MODEL_OBJECT_ID_LEN), id,
                   why[0] ? why : rc ? strerror(-rc) : "not an object reference");
            rc = rc ? rc : -EINVAL;
            break;
        }
        if (obj.dtype != MODEL_DTYPE_U8 || obj.ndim != 1 || obj.bytes != obj.shape[0] ||
            (obj.bytes && !obj.data)) {
            model_err(err, errlen,
                   "prefix_count: partial %zu (object %s) must be a 1-D uint8 object, it is %s "
                   "with %u dimension%s",
                   i, obj.id, model_dtype_name(obj.dtype) ? model_dtype_name(obj.dtype) : "?",
                   obj.ndim, obj.ndim == 1 ? "" : "s");
            rc = -EINVAL;
            break;
        }
        /* every partial is checked whole before anything is merged */
        rc = pc_partial_scan(obj.data, (size_t)obj.bytes, jent, NULL, NULL, why, sizeof why);
        if (rc != 0) {
            model_err(err, errlen, "prefix_count: partial %zu (object %s): %s", i, obj.id, why);
            break;
        }
        data[i] = obj.data;
        sizes[i] = (size_t)obj.bytes;
    }
    if (rc == 0) {
        char why[256] = "";
        rc = pc_merge_levels(data, sizes, k, sh->threshold, t, why, sizeof why);
        if (rc != 0)
            model_err(err, errlen, "prefix_count: %s", why);
    }
    if (rc == 0)
        rc = pc_result(t, sh->threshold, result, err, errlen);
    free(data);
    free(sizes);
    pc_table_free(t);
    return rc;
}

const struct model_ops model_prefix_count = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = 0,
    .name = "prefix_count",
    .description = "A document, [\"word\", {\"base64\": \"...\"}, ...] -> {\"words\": n, "
                   "\"prefixes\": m}; the job's result: the word prefixes counted more than "
                   "threshold=N times (default 3), merged from every worker (stateful).",
    .load = pc_load,
    .init = pc_init,
    .fini = pc_fini,
    .unload = pc_unload,
    .acc_run = pc_acc_run,
    .acc_export = pc_acc_export,
    .acc_free = pc_acc_free,
    .reduce = pc_reduce,
};
