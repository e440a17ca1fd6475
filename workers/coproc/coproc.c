/*
 * coproc.c: frames of the coprocess protocol (coproc.h says what it is for;
 * docs/coprocess.md is the protocol).
 */
#include "workers/coproc/coproc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

void coproc_le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t coproc_le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

ssize_t coproc_frame_parse(const uint8_t *buf, size_t len, uint32_t max, struct coproc_frame *f)
{
    if (len < 4)
        return 0;
    uint32_t n = coproc_le32_get(buf);
    if (n == 0)
        return -EPROTO;
    if (n > max || n > COPROC_MAX_FRAME)
        return -EMSGSIZE;
    if (len - 4 < n)
        return 0;
    f->type = buf[4];
    f->data = buf + COPROC_HDR;
    f->len = n - 1;
    return (ssize_t)(4 + (size_t)n);
}

int coproc_result_parse(const struct coproc_frame *f, uint32_t *index, bool *ok,
                        const uint8_t **data, uint32_t *len)
{
    if (f->len < 5 || f->data[4] > 1)
        return -EPROTO;
    *index = coproc_le32_get(f->data);
    *ok = f->data[4] == 1;
    *data = f->data + 5;
    *len = f->len - 5;
    return 0;
}

int coproc_u32_parse(const struct coproc_frame *f, uint32_t *a)
{
    if (f->len != 4)
        return -EPROTO;
    *a = coproc_le32_get(f->data);
    return 0;
}

int coproc_u32x2_parse(const struct coproc_frame *f, uint32_t *a, uint32_t *b)
{
    if (f->len != 8)
        return -EPROTO;
    *a = coproc_le32_get(f->data);
    *b = coproc_le32_get(f->data + 4);
    return 0;
}

/* ------------------------------------------------------------ building */

static int coproc_buf_reserve(struct coproc_buf *b, size_t more)
{
    if (more > COPROC_MAX_FRAME + (size_t)4 - b->len)
        return -EMSGSIZE;
    if (b->len + more <= b->cap)
        return 0;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + more)
        nc *= 2;
    uint8_t *p = realloc(b->p, nc);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = nc;
    return 0;
}

int coproc_buf_reserve_total(struct coproc_buf *b, size_t total)
{
    if (total <= b->cap)
        return 0;
    uint8_t *p = realloc(b->p, total);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = total;
    return 0;
}

int coproc_buf_begin(struct coproc_buf *b, uint8_t type)
{
    b->len = 0;
    int rc = coproc_buf_reserve(b, COPROC_HDR);
    if (rc)
        return rc;
    memset(b->p, 0, 4);
    b->p[4] = type;
    b->len = COPROC_HDR;
    return 0;
}

int coproc_buf_put(struct coproc_buf *b, const void *data, size_t len)
{
    int rc = coproc_buf_reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

int coproc_buf_put_u32(struct coproc_buf *b, uint32_t v)
{
    uint8_t le[4];
    coproc_le32_put(le, v);
    return coproc_buf_put(b, le, 4);
}

void coproc_buf_end(struct coproc_buf *b)
{
    coproc_le32_put(b->p, (uint32_t)(b->len - 4));
}

void coproc_buf_free(struct coproc_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------- sockets */

int coproc_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        /* MSG_NOSIGNAL: a dead peer is -EPIPE here, not a SIGPIPE. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = { fd, POLLOUT, 0 };
                poll(&pfd, 1, 1000);
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int coproc_send(int fd, uint8_t type, const void *payload, uint32_t len, int pass_fd)
{
    if (len >= COPROC_MAX_FRAME)
        return -EMSGSIZE;
    uint8_t hdr[COPROC_HDR];
    coproc_le32_put(hdr, len + 1);
    hdr[4] = type;
    if (pass_fd < 0) {
        int rc = coproc_write_all(fd, hdr, sizeof hdr);
        return rc ? rc : coproc_write_all(fd, payload, len);
    }
    /* The fd travels with the header's first bytes; the rest follows as
     * a plain stream (the receiver reads the header with recvmsg). */
    struct iovec iov = { hdr, sizeof hdr };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                          .msg_controllen = sizeof u.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    int rc = coproc_write_all(fd, hdr + n, sizeof hdr - (size_t)n);
    return rc ? rc : coproc_write_all(fd, payload, len);
}

void coproc_reader_init(struct coproc_reader *r, int fd, uint32_t max)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->max = max;
    r->passed_fd = -1;
}

void coproc_reader_free(struct coproc_reader *r)
{
    free(r->buf);
    if (r->passed_fd >= 0)
        close(r->passed_fd);
    r->buf = NULL;
    r->cap = r->start = r->end = 0;
    r->passed_fd = -1;
}

static int64_t coproc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what the socket has into the buffer (one recvmsg, which also
 * takes an SCM_RIGHTS fd). Returns bytes read, 0 at EOF, or -errno. */
static ssize_t coproc_fill(struct coproc_reader *r)
{
    if (r->start > 0 && r->start == r->end)
        r->start = r->end = 0;
    if (r->end == r->cap) {
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        } else {
            size_t nc = r->cap ? r->cap * 2 : 65536;
            uint8_t *p = realloc(r->buf, nc);
            if (!p)
                return -ENOMEM;
            r->buf = p;
            r->cap = nc;
        }
    }
    struct iovec iov = { r->buf + r->end, r->cap - r->end };
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                          .msg_controllen = sizeof u.buf };
    ssize_t n = recvmsg(r->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (r->passed_fd < 0)
                r->passed_fd = fd;
            else
                close(fd); /* one fd per frame is all the protocol passes */
        }
    }
    r->end += (size_t)n;
    return n;
}

int coproc_read(struct coproc_reader *r, struct coproc_frame *f, int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? coproc_now_ms() + timeout_ms : 0;
    for (;;) {
        if (r->end > r->start) {
            ssize_t n = coproc_frame_parse(r->buf + r->start, r->end - r->start, r->max, f);
            if (n < 0)
                return (int)n;
            if (n > 0) {
                r->start += (size_t)n;
                return 0;
            }
            /* A frame bigger than the buffer: grow it to fit at once. */
            uint32_t want = coproc_le32_get(r->buf + r->start);
            if (r->end - r->start >= 4 && want + (size_t)4 > r->cap - r->start) {
                size_t need = want + (size_t)4 + (r->end - r->start);
                if (r->start > 0) {
                    memmove(r->buf, r->buf + r->start, r->end - r->start);
                    r->end -= r->start;
                    r->start = 0;
                }
                if (need > r->cap) {
                    uint8_t *p = realloc(r->buf, need);
                    if (!p)
                        return -ENOMEM;
                    r->buf = p;
                    r->cap = need;
                }
            }
        }
        int wait = timeout_ms;
        if (timeout_ms > 0) {
            int64_t left = deadline - coproc_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            wait = (int)left;
        }
        struct pollfd pfd = { r->fd, POLLIN, 0 };
        int pr = poll(&pfd, 1, wait);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pr == 0)
            return -ETIMEDOUT;
        ssize_t n = coproc_fill(r);
        if (n < 0) {
            if (n == -EINTR || n == -EAGAIN)
                continue;
            return (int)n;
        }
        if (n == 0)
            return r->end > r->start ? -EPROTO : -EPIPE;
    }
}
