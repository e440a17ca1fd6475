/*
 * fuzz_coproc: the coprocess protocol's frame parser (workers/coproc/coproc.c),
 * which reads what a model host in any language writes.
 *
 * Input: a byte stream as a host would send it. The checks:
 *   - coproc_frame_parse over the stream returns a frame, "need more" (0),
 *     -EMSGSIZE or -EPROTO; a frame spans 5..remaining bytes, its payload
 *     lies inside the input and is its length minus the type byte;
 *   - the RESULT / DONE / FORKED payload parsers accept exactly the sizes
 *     the protocol gives them and never point outside the payload;
 *   - the buffered socket reader (coproc_read) over a socketpair holding
 *     the same bytes returns the same frames, in order, then the same
 *     error (or -EPIPE / -EPROTO at the end of the stream).
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "workers/coproc/coproc.h"
#include "fuzz.h"

#define FUZZ_MAX_FRAME 2048u

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_payloads(const struct coproc_frame *f)
{
    uint32_t index, len, a, b;
    bool ok;
    const uint8_t *data;
    int rc = coproc_result_parse(f, &index, &ok, &data, &len);
    if (rc == 0) {
        FUZZ_ASSERT(f->len >= 5 && data == f->data + 5 && len == f->len - 5, "result bounds");
    } else {
        FUZZ_ASSERT(rc == -EPROTO && (f->len < 5 || f->data[4] > 1), "result rc %d", rc);
    }
    FUZZ_ASSERT((coproc_u32_parse(f, &a) == 0) == (f->len == 4), "u32 size");
    FUZZ_ASSERT((coproc_u32x2_parse(f, &a, &b) == 0) == (f->len == 8), "u32x2 size");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the pure parser: frames and the error that ends them */
    size_t pos = 0, nframes = 0;
    ssize_t end_rc = 0;
    struct coproc_frame frames[1024];
    while (pos < size && nframes < 1024) {
        struct coproc_frame f;
        ssize_t n = coproc_frame_parse(data + pos, size - pos, FUZZ_MAX_FRAME, &f);
        if (n <= 0) {
            FUZZ_ASSERT(n == 0 || n == -EMSGSIZE || n == -EPROTO, "parse rc %zd", n);
            end_rc = n;
            break;
        }
        FUZZ_ASSERT((size_t)n >= COPROC_HDR && (size_t)n <= size - pos, "frame of %zd", n);
        FUZZ_ASSERT(f.data == data + pos + COPROC_HDR && f.len == (size_t)n - COPROC_HDR,
                    "payload bounds");
        FUZZ_ASSERT(f.len < FUZZ_MAX_FRAME, "past the cap: %u", f.len);
        check_payloads(&f);
        frames[nframes++] = f;
        pos += (size_t)n;
    }
    if (nframes == 1024)
        return 0;

    /* the socket reader sees the same */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    if (size > 0 && coproc_write_all(sv[1], data, size) != 0) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    close(sv[1]);
    struct coproc_reader r;
    coproc_reader_init(&r, sv[0], FUZZ_MAX_FRAME);
    for (size_t i = 0; i < nframes; i++) {
        struct coproc_frame f;
        int rc = coproc_read(&r, &f, 1000);
        FUZZ_ASSERT(rc == 0, "reader: frame %zu: %d", i, rc);
        FUZZ_ASSERT(f.type == frames[i].type && f.len == frames[i].len &&
                        memcmp(f.data, frames[i].data, f.len) == 0,
                    "reader: frame %zu differs", i);
    }
    struct coproc_frame f;
    int rc = coproc_read(&r, &f, 1000);
    if (end_rc < 0)
        FUZZ_ASSERT(rc == end_rc, "reader ends with %d, parser with %zd", rc, end_rc);
    else if (pos == size)
        FUZZ_ASSERT(rc == -EPIPE, "reader at a clean end: %d", rc);
    else
        FUZZ_ASSERT(rc == -EPROTO, "reader at a cut frame: %d", rc);
    coproc_reader_free(&r);
    close(sv[0]);
    return 0;
}
