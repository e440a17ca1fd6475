/*
 * coproc: the frame codec of the coprocess protocol (docs/coprocess.md),
 * spoken between batchd's C processes and a model host in another language
 * (workers/python/batchd_host.py, workers/node/batchd_host.js).
 *
 * A frame on a stream socket is
 *
 *     u32 length (little-endian) | u8 type | payload (length - 1 bytes)
 *
 * `length` counts the type byte and the payload: 1..COPROC_MAX_FRAME. The
 * types are ASCII letters (enum coproc_type): a capture is readable. The
 * payloads of the frames C reads are parsed here (coproc_result_parse,
 * coproc_forked_parse) so that a hostile or broken host cannot make batchd
 * read past a frame: every length is checked against what is left.
 *
 * Process: any (the supervisor speaks the control frames, a worker the
 * data frames). Not thread-safe per reader/buffer; no global state.
 *
 * Ownership: a struct coproc_reader owns its buffer (coproc_reader_free);
 * the frames it returns borrow that buffer until the next read. A
 * struct coproc_buf owns its bytes (coproc_buf_free).
 */
#ifndef BATCHD_COPROC_H
#define BATCHD_COPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define COPROC_HDR 5u                      /* u32 length + u8 type */
#define COPROC_MAX_FRAME (1u << 30)        /* hard cap on a frame's length */

enum coproc_type {
    /* host -> supervisor, on the control socket */
    COPROC_LOADED = 'L', /* load() done; payload: JSON object (pid, threads, ...) */
    COPROC_ERROR = 'E',  /* load() or init() failed; payload: UTF-8 message */
    COPROC_FORKED = 'K', /* payload: u32 worker, u32 pid of the child */
    /* supervisor -> host */
    COPROC_FORK = 'F',   /* payload: u32 worker; one fd (SCM_RIGHTS): the child's socket */
    /* child -> worker, on the worker's socket */
    COPROC_READY = 'Y',  /* init() done; payload: JSON object (pid) */
    COPROC_RESULT = 'R', /* payload: u32 index, u8 status (1 ok, 0 error), bytes */
    COPROC_RESULTS = 'A', /* payload: u32 first index, a JSON array of the outputs of
                             that many consecutive items (optional: a run of RESULTs) */
    COPROC_DONE = 'D',   /* end of a batch; payload: u32 count of results sent */
    COPROC_VALUE = 'V',  /* answer to EXPORT or REDUCE; payload: u8 status (1 ok, 0
                            error), then JSON text or the error message */
    /* worker -> child */
    COPROC_BATCH = 'B',  /* payload: u32 count, then count x (u32 length, JSON text) */
    COPROC_STOP = 'S',   /* orderly stop: fini(), then exit 0; payload empty */
    /* worker -> child, stateful models only (LOADED said "stateful") */
    COPROC_ACC_BATCH = 'C', /* payload: u64 job key, then as BATCH; acc_run per item */
    COPROC_EXPORT = 'X',    /* payload: u64 job key; answered by VALUE (the partial) */
    COPROC_DROP = 'Z',      /* payload: u64 job key; forget its accumulator, no answer */
    COPROC_REDUCE = 'U',    /* payload: JSON array of partials; answered by VALUE */
};

/* A frame, borrowed from the buffer it was parsed from. */
struct coproc_frame {
    uint8_t type;
    const uint8_t *data; /* payload */
    uint32_t len;        /* payload bytes (length - 1) */
};

/*
 * Parses the frame at the start of buf[0..len). Returns the bytes it spans
 * (> 0) and fills *f; 0 if buf holds only part of a frame (read more);
 * -EMSGSIZE if its length is past `max` (max <= COPROC_MAX_FRAME), -EPROTO
 * if its length is 0. *f is unchanged unless a frame is returned.
 */
ssize_t coproc_frame_parse(const uint8_t *buf, size_t len, uint32_t max, struct coproc_frame *f);

/* A RESULT payload. Returns 0, or -EPROTO if it is shorter than 5 bytes or
 * its status byte is neither 0 nor 1. */
int coproc_result_parse(const struct coproc_frame *f, uint32_t *index, bool *ok,
                        const uint8_t **data, uint32_t *len);

/* A payload that is one u32 (DONE, FORK) or two (FORKED): returns 0, or
 * -EPROTO if the payload is not exactly 4 (8) bytes. */
int coproc_u32_parse(const struct coproc_frame *f, uint32_t *a);
int coproc_u32x2_parse(const struct coproc_frame *f, uint32_t *a, uint32_t *b);

/* ------------------------------------------------------------ building */

struct coproc_buf {
    uint8_t *p;
    size_t len, cap;
};

/* Starts a frame of `type` in b (emptied first). Returns 0 or -ENOMEM. */
int coproc_buf_begin(struct coproc_buf *b, uint8_t type);
/* Appends bytes / a little-endian u32 to the frame. 0 or -ENOMEM, or
 * -EMSGSIZE past COPROC_MAX_FRAME (b unchanged). */
int coproc_buf_put(struct coproc_buf *b, const void *data, size_t len);
int coproc_buf_put_u32(struct coproc_buf *b, uint32_t v);
/* Makes room for `total` bytes in all (not more): 0 or -ENOMEM (b unchanged). */
int coproc_buf_reserve_total(struct coproc_buf *b, size_t total);
/* Writes the frame's length into its header; the frame is then b->p[0..len). */
void coproc_buf_end(struct coproc_buf *b);
void coproc_buf_free(struct coproc_buf *b);

/* Stores v little-endian at p; reads one from p. */
void coproc_le32_put(uint8_t *p, uint32_t v);
uint32_t coproc_le32_get(const uint8_t *p);

/* ------------------------------------------------------------- sockets */

/* Writes all of buf to fd (retrying short writes and EINTR). Returns 0 or
 * a negative errno (-EPIPE when the peer is gone). */
int coproc_write_all(int fd, const void *buf, size_t len);

/* Sends one frame with a payload, and `pass_fd` (>= 0) as SCM_RIGHTS with
 * its first byte. Returns 0 or a negative errno. */
int coproc_send(int fd, uint8_t type, const void *payload, uint32_t len, int pass_fd);

/* A buffered frame reader over a blocking or non-blocking stream socket. */
struct coproc_reader {
    int fd;
    uint32_t max;      /* largest frame accepted */
    uint8_t *buf;
    size_t cap, start, end;
    int passed_fd;     /* an fd that came with SCM_RIGHTS, -1 if none (taken by the caller) */
};

void coproc_reader_init(struct coproc_reader *r, int fd, uint32_t max);
void coproc_reader_free(struct coproc_reader *r);

/*
 * Reads the next frame into *f (borrowed until the next call). timeout_ms
 * < 0 waits forever, 0 only takes what is there. Returns 0; -ETIMEDOUT if
 * no whole frame came in time; -EPIPE if the peer closed the socket (a
 * partial frame is then -EPROTO); -EMSGSIZE / -EPROTO for a bad frame
 * (the stream is then unusable); -ENOMEM; or the read's errno.
 */
int coproc_read(struct coproc_reader *r, struct coproc_frame *f, int timeout_ms);

#endif
