/*
 * fuzz_safetensors: safetensors_parse(), the reader of the weights files
 * models map at load time (workers/safetensors.h).
 *
 * Input: the whole file's bytes. The checks are written against the
 * format and the header's contract, not against the parser's code:
 *   - a file shorter than 8 bytes, or whose header length runs past its
 *     end, is refused;
 *   - on failure: -EINVAL or -ENOMEM, a non-empty message of printable
 *     UTF-8 (it goes into log lines and /readyz), and *st left empty;
 *   - on success: 8 + header length + data_len == the input's size; every
 *     tensor has a known dtype, at most SAFETENSORS_MAX_DIMS dimensions,
 *     numel == the product of its shape, end - begin == numel x element
 *     size, data == the data area + begin; sorted by offset the tensors
 *     tile the data area exactly (no overlap, no gap, nothing after);
 *     safetensors_find() finds each by its name; "__metadata__" is an
 *     object of strings when present.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "workers/models/safetensors.h"

static int cmp_begin(const void *a, const void *b)
{
    const struct safetensors_tensor *x = *(const struct safetensors_tensor *const *)a;
    const struct safetensors_tensor *y = *(const struct safetensors_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct safetensors st;
    char err[512];
    err[0] = '\0';
    int rc = safetensors_parse(data, size, &st, err, sizeof err);

    uint64_t hlen = 0;
    if (size >= 8)
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | data[i];
    if (size < 8 || hlen > size - 8)
        FUZZ_ASSERT(rc != 0, "accepted a file whose header does not fit (%zu bytes)", size);

    if (rc != 0) {
        FUZZ_ASSERT(rc == -EINVAL || rc == -ENOMEM, "rc %d", rc);
        size_t n = strlen(err);
        FUZZ_ASSERT(n > 0, "failure without a message");
        FUZZ_ASSERT(fuzz_utf8_valid(err, n), "message is not UTF-8: %s", err);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT((unsigned char)err[i] >= 0x20 && err[i] != 0x7f,
                        "control byte in message: %s", err);
        FUZZ_ASSERT(st.n == 0 && st.tensors == NULL && st.header == NULL && st.map == NULL,
                    "state left behind after a failure");
        safetensors_close(&st);
        return 0;
    }

    FUZZ_ASSERT(8 + hlen + st.data_len == size, "data_len %llu", (unsigned long long)st.data_len);
    FUZZ_ASSERT(st.data == data + 8 + hlen, "data area misplaced");
    if (st.metadata) {
        FUZZ_ASSERT(json_is_object(st.metadata), "metadata is not an object");
        const char *k;
        json_t *v;
        json_object_foreach(st.metadata, k, v) FUZZ_ASSERT(json_is_string(v), "metadata %s", k);
    }
    const struct safetensors_tensor **by = malloc((st.n ? st.n : 1) * sizeof *by);
    if (!by)
        abort();
    for (size_t i = 0; i < st.n; i++) {
        const struct safetensors_tensor *t = &st.tensors[i];
        size_t es = safetensors_dtype_size(t->dtype);
        FUZZ_ASSERT(es == 1 || es == 2 || es == 4 || es == 8, "dtype %d", (int)t->dtype);
        FUZZ_ASSERT(safetensors_dtype_name(t->dtype) != NULL, "dtype %d has no name", (int)t->dtype);
        FUZZ_ASSERT(t->ndim <= SAFETENSORS_MAX_DIMS, "ndim %u", t->ndim);
        unsigned __int128 numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        FUZZ_ASSERT(numel == t->numel, "numel of %s", t->name);
        FUZZ_ASSERT(t->begin <= t->end && t->end <= st.data_len, "offsets of %s", t->name);
        FUZZ_ASSERT((unsigned __int128)(t->end - t->begin) == numel * es, "size of %s", t->name);
        FUZZ_ASSERT((const uint8_t *)t->data == st.data + t->begin, "data of %s", t->name);
        FUZZ_ASSERT(safetensors_find(&st, t->name) == t, "find %s", t->name);
        FUZZ_ASSERT(strcmp(t->name, "__metadata__") != 0, "metadata taken for a tensor");
        by[i] = t;
    }
    qsort(by, st.n, sizeof *by, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < st.n; i++) {
        FUZZ_ASSERT(by[i]->begin == at, "%s does not start where the previous one ended",
                    by[i]->name);
        at = by[i]->end;
    }
    FUZZ_ASSERT(at == st.data_len, "bytes after the last tensor");
    free(by);
    safetensors_close(&st);
    return 0;
}
