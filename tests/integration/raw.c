/*
 * raw.c: see raw.h. A deliberately small HTTP/1.1 response reader: status
 * line, header lines, and a body delimited by Content-Length, chunked
 * encoding or the end of the connection. It is strict where a lenient
 * reader would hide a server bug (a status line that is not
 * "HTTP/1.x NNN", a header line without a colon), and bounded everywhere
 * (H_RAW_MAX_RESPONSE bytes, the deadline).
 */
#include "tests/integration/raw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DROPPED "connection closed without a response"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Finds "\r\n\r\n" in b[0..n); returns the offset just past it, or 0. */
static size_t header_end(const char *b, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n')
            return i + 4;
    return 0;
}

/* Appends one header to resp (aborts on out-of-memory, like the harness). */
static void add_header(struct h_resp *r, const char *name, size_t nl, const char *value,
                       size_t vl)
{
    struct h_header *h = realloc(r->headers, (r->n_headers + 1) * sizeof *h);
    if (!h)
        abort();
    r->headers = h;
    h[r->n_headers].name = strndup(name, nl);
    h[r->n_headers].value = strndup(value, vl);
    if (!h[r->n_headers].name || !h[r->n_headers].value)
        abort();
    r->n_headers++;
}

static void clear_headers(struct h_resp *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

/* Decodes a complete chunked body at b[0..n) into *out. Returns 1 when it
 * is complete, 0 when more bytes are needed, -1 when it is malformed. */
static int dechunk(const char *b, size_t n, char **out, size_t *out_len)
{
    size_t pos = 0, len = 0;
    char *dst = malloc(n + 1);
    if (!dst)
        abort();
    for (int guard = 0; guard < 1000000; guard++) {
        const char *crlf = memmem(b + pos, n - pos, "\r\n", 2);
        if (!crlf) {
            free(dst);
            return 0;
        }
        char *end;
        unsigned long sz = strtoul(b + pos, &end, 16);
        if (end == b + pos || (end != crlf && *end != ';')) {
            free(dst);
            return -1;
        }
        pos = (size_t)(crlf - b) + 2;
        if (sz == 0) {
            /* no trailers are sent by batchd: the final CRLF ends it */
            if (n - pos < 2) {
                free(dst);
                return 0;
            }
            if (b[pos] != '\r' || b[pos + 1] != '\n') {
                free(dst);
                return -1;
            }
            dst[len] = '\0';
            *out = dst;
            *out_len = len;
            return 1;
        }
        if (sz > n || n - pos < sz + 2) {
            free(dst);
            return 0;
        }
        memcpy(dst + len, b + pos, sz);
        len += sz;
        pos += sz;
        if (b[pos] != '\r' || b[pos + 1] != '\n') {
            free(dst);
            return -1;
        }
        pos += 2;
    }
    free(dst);
    return -1;
}

/*
 * Tries to parse a final response from b[0..n). `closed` says the server
 * closed the connection (a body without a length ends there). Returns 1
 * when resp is filled, 0 when more bytes are needed, -1 when the bytes are
 * not an HTTP response (resp->error set).
 */
static int parse_response(const char *b, size_t n, bool closed, struct h_resp *resp)
{
    size_t start = 0;
    for (int interim = 0; interim < 16; interim++) {
        size_t he = header_end(b + start, n - start);
        if (!he)
            return 0;
        const char *p = b + start, *hend = b + start + he;
        int status = 0;
        if (he < 14 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
            sscanf(p + 9, "%3d", &status) != 1 || status < 100 || status > 599) {
            snprintf(resp->error, sizeof resp->error, "not an HTTP/1.x status line: %.60s", p);
            return -1;
        }
        const char *line = memchr(p, '\n', he);
        clear_headers(resp);
        long long clen = -1;
        bool chunked = false;
        for (line = line + 1; line < hend - 2;) {
            const char *eol = memmem(line, (size_t)(hend - line), "\r\n", 2);
            const char *colon = memchr(line, ':', (size_t)(eol - line));
            if (!colon) {
                snprintf(resp->error, sizeof resp->error, "header line without a colon: %.60s",
                         line);
                return -1;
            }
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            add_header(resp, line, (size_t)(colon - line), v, (size_t)(eol - v));
            size_t nl = (size_t)(colon - line);
            if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
                char *end;
                long long cl = strtoll(v, &end, 10);
                if (end == v || cl < 0) {
                    snprintf(resp->error, sizeof resp->error, "bad Content-Length in response");
                    return -1;
                }
                if (clen >= 0 && cl != clen) {
                    snprintf(resp->error, sizeof resp->error, "two Content-Lengths in response");
                    return -1;
                }
                clen = cl;
            } else if (nl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0 &&
                       (size_t)(eol - v) >= 7 && strncasecmp(v, "chunked", 7) == 0) {
                chunked = true;
            }
            line = eol + 2;
        }
        if (status < 200) {
            start += he; /* 100 Continue and friends: the final one follows */
            continue;
        }
        size_t body_at = start + he, avail = n - body_at;
        resp->status = status;
        if (status == 204 || status == 304) {
            clen = 0;
            chunked = false;
        }
        if (chunked) {
            char *body;
            size_t blen;
            int rc = dechunk(b + body_at, avail, &body, &blen);
            if (rc <= 0) {
                resp->status = 0;
                if (rc < 0 || closed)
                    snprintf(resp->error, sizeof resp->error, "malformed chunked response");
                return rc < 0 || closed ? -1 : 0;
            }
            resp->body = body;
            resp->len = blen;
        } else {
            if (clen >= 0 && avail < (size_t)clen) {
                resp->status = 0;
                if (closed) {
                    snprintf(resp->error, sizeof resp->error,
                             "response body cut short: %zu of %lld bytes", avail, clen);
                    return -1;
                }
                return 0;
            }
            if (clen < 0 && !closed) {
                resp->status = 0; /* the body ends with the connection */
                return 0;
            }
            resp->len = clen >= 0 ? (size_t)clen : avail;
            /* a copy of every byte, NULs included (strndup would stop) */
            resp->body = malloc(resp->len + 1);
            if (!resp->body)
                abort();
            memcpy(resp->body, b + body_at, resp->len);
            resp->body[resp->len] = '\0';
        }
        const char *ct = h_resp_header(resp, "Content-Type");
        resp->content_type = ct ? strdup(ct) : NULL;
        return 1;
    }
    snprintf(resp->error, sizeof resp->error, "more than 16 interim responses");
    return -1;
}

int h_raw_exchange(int port, const char *req, size_t len, int timeout_s, struct h_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(resp->error, sizeof resp->error, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(resp->error, sizeof resp->error, "connect to 127.0.0.1:%d: %s", port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    size_t sent = 0, got = 0, cap = 65536;
    char *in = malloc(cap);
    if (!in)
        abort();
    bool closed = false, send_done = len == 0;
    int result = -1;
    double deadline = now_s() + (timeout_s > 0 ? timeout_s : 10);
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) {
            snprintf(resp->error, sizeof resp->error,
                     "timed out after %d s waiting for the response (%zu of %zu request bytes "
                     "sent, %zu response bytes read)",
                     timeout_s, sent, len, got);
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (send_done ? 0 : POLLOUT)};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) {
            snprintf(resp->error, sizeof resp->error, "poll: %s", strerror(errno));
            break;
        }
        if (pr <= 0)
            continue;
        if (!send_done && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                send_done = sent == len;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                /* the server stopped reading (it answered early and
                 * closed): what it said may still be waiting to be read */
                send_done = true;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got + 4096 > cap) {
                if (cap >= H_RAW_MAX_RESPONSE) {
                    snprintf(resp->error, sizeof resp->error, "response over %zu bytes",
                             (size_t)H_RAW_MAX_RESPONSE);
                    break;
                }
                cap *= 2;
                char *nb = realloc(in, cap);
                if (!nb)
                    abort();
                in = nb;
            }
            ssize_t r = recv(fd, in + got, cap - got - 1, 0);
            if (r > 0) {
                got += (size_t)r;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                closed = true;
            } else {
                continue;
            }
            int pr2 = parse_response(in, got, closed, resp);
            if (pr2 == 1) {
                result = 0;
                break;
            }
            if (pr2 < 0)
                break;
            if (closed) {
                snprintf(resp->error, sizeof resp->error, "%s (%zu bytes read)", DROPPED, got);
                break;
            }
        }
    }
    if (result != 0) {
        free(resp->body);
        free(resp->content_type);
        clear_headers(resp);
        resp->body = strdup("");
        resp->len = 0;
        resp->content_type = NULL;
        resp->status = 0;
    }
    free(in);
    close(fd);
    return result;
}

bool h_raw_dropped(const struct h_resp *resp)
{
    return resp->status == 0 && strncmp(resp->error, DROPPED, strlen(DROPPED)) == 0;
}
