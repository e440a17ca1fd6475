/*
 * fuzz_npy: npy_parse() and npy_header_write(), the .npy bodies of
 * POST /v1/objects.
 *
 * Input: the bytes of a .npy file (or of anything). The checks:
 *   - the result is one of 0, -EAGAIN, -EINVAL, -EOVERFLOW, -E2BIG; every
 *     failure but -EAGAIN has a message that is NUL-terminated, non-empty
 *     and valid UTF-8 (it becomes a problem detail);
 *   - -EAGAIN asks for more than it was given and never more than the
 *     preamble plus NPY_HEADER_MAX;
 *   - on success the version is 1.0, 2.0 or 3.0, data_offset is the
 *     preamble plus HEADER_LEN read here independently and lies within the
 *     input, the dtype and ndim are in range, and data_bytes is the
 *     product of the shape and the element size computed here in 128 bits;
 *   - a successful header parses the same from exactly data_offset bytes,
 *     and one byte less is -EAGAIN (the server decides when to parse from
 *     that);
 *   - npy_header_write() of the parsed dtype and shape gives a 64-aligned
 *     header that parses back to the same dtype and shape.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "service/objects/npy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_err(const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);
    FUZZ_ASSERT(n < errlen, "message not NUL-terminated");
    FUZZ_ASSERT(n > 0, "failure without a message");
    FUZZ_ASSERT(fuzz_utf8_valid(err, n), "message is not UTF-8: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct npy_info info;
    size_t need = 0;
    char err[256];
    int rc = npy_parse(data, size, &info, &need, err, sizeof err);
    FUZZ_ASSERT(rc == 0 || rc == -EAGAIN || rc == -EINVAL || rc == -EOVERFLOW || rc == -E2BIG,
                "unexpected result %d", rc);
    if (rc == -EAGAIN) {
        FUZZ_ASSERT(need > size, "asks for %zu bytes having %zu", need, size);
        FUZZ_ASSERT(need <= NPY_PREAMBLE_V2 + NPY_HEADER_MAX, "asks for %zu bytes", need);
        return 0;
    }
    if (rc) {
        check_err(err, sizeof err);
        return 0;
    }
    FUZZ_ASSERT(info.major >= 1 && info.major <= 3 && info.minor == 0, "version %u.%u",
                info.major, info.minor);
    size_t pre = info.major == 1 ? 10 : 12;
    uint64_t hlen = (uint64_t)data[8] | (uint64_t)data[9] << 8;
    if (info.major > 1)
        hlen |= (uint64_t)data[10] << 16 | (uint64_t)data[11] << 24;
    FUZZ_ASSERT(info.data_offset == pre + hlen && info.data_offset <= size,
                "data_offset %llu", (unsigned long long)info.data_offset);
    size_t esize = model_dtype_size(info.dtype);
    FUZZ_ASSERT(esize != 0, "dtype %u", info.dtype);
    FUZZ_ASSERT(info.ndim >= 1 && info.ndim <= MODEL_OBJECT_MAX_DIMS, "ndim %u", info.ndim);
    unsigned __int128 bytes = esize;
    bool zero = false;
    for (uint32_t i = 0; i < info.ndim; i++) {
        zero |= info.shape[i] == 0;
        if (!zero && bytes <= UINT64_MAX)
            bytes *= info.shape[i];
    }
    if (zero)
        bytes = 0;
    FUZZ_ASSERT(bytes <= UINT64_MAX && (uint64_t)bytes == info.data_bytes, "data_bytes %llu",
                (unsigned long long)info.data_bytes);

    struct npy_info again;
    FUZZ_ASSERT(npy_parse(data, (size_t)info.data_offset, &again, &need, err, sizeof err) == 0,
                "the header alone does not parse: %s", err);
    FUZZ_ASSERT(again.dtype == info.dtype && again.ndim == info.ndim &&
                    memcmp(again.shape, info.shape, info.ndim * sizeof info.shape[0]) == 0,
                "the header alone parses differently");
    FUZZ_ASSERT(npy_parse(data, (size_t)info.data_offset - 1, &again, &need, err, sizeof err) ==
                        -EAGAIN &&
                    need == info.data_offset,
                "one byte short is not -EAGAIN for the rest");

    unsigned char out[NPY_WRITE_MAX];
    int n = npy_header_write(info.dtype, info.ndim, info.shape, out, sizeof out);
    FUZZ_ASSERT(n > 0 && n % 64 == 0, "npy_header_write = %d", n);
    FUZZ_ASSERT(npy_parse(out, (size_t)n, &again, &need, err, sizeof err) == 0,
                "written header does not parse: %s", err);
    FUZZ_ASSERT(again.dtype == info.dtype && again.ndim == info.ndim &&
                    memcmp(again.shape, info.shape, info.ndim * sizeof info.shape[0]) == 0 &&
                    again.data_bytes == info.data_bytes && again.data_offset == (uint64_t)n,
                "written header parses differently");
    return 0;
}
