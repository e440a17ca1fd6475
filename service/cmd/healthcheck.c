#include "service/cmd/healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "service/config/config.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline. Returns 0, -ETIMEDOUT or
 * -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* "127.0.0.1:8080: connect: Connection refused" into msg; returns rc. */
static int probe_fail(int rc, char *msg, size_t msglen, const char *target, const char *step)
{
    snprintf(msg, msglen, "%s: %s: %s", target, step, strerror(-rc));
    return rc;
}

int healthcheck_probe(const char *host, uint16_t port, bool connect_only, int timeout_ms,
                      char *msg, size_t msglen)
{
    char target[INET_ADDRSTRLEN + 8];
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    /* the wildcard address is where the server listens, not where to call */
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    if (port == 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(msg, msglen, "cannot check %s:%u: need an IPv4 address and a port other than 0",
                 host, (unsigned)port);
        return -EINVAL;
    }
    snprintf(target, sizeof target, "%s:%u", host, (unsigned)port);
    int64_t deadline = now_ms() + timeout_ms;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return probe_fail(-errno, msg, msglen, target, "socket");
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EINPROGRESS) {
            rc = probe_fail(-errno, msg, msglen, target, "connect");
            goto out;
        }
        if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0) {
            probe_fail(rc, msg, msglen, target, "connect");
            goto out;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            rc = probe_fail(-(soerr ? soerr : errno), msg, msglen, target, "connect");
            goto out;
        }
    }
    if (connect_only) {
        snprintf(msg, msglen, "%s accepts connections (HTTPS: /healthz not read)", target);
        goto out;
    }

    char req[256];
    int len = snprintf(req, sizeof req,
                       "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: batchd-healthcheck\r\n"
                       "Connection: close\r\n\r\n",
                       target);
    for (int sent = 0; sent < len;) {
        ssize_t w = send(fd, req + sent, (size_t)(len - sent), MSG_NOSIGNAL);
        if (w > 0) {
            sent += (int)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            rc = probe_fail(-errno, msg, msglen, target, "send");
            goto out;
        }
        if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0) {
            probe_fail(rc, msg, msglen, target, "send");
            goto out;
        }
    }

    /* Only the status line matters: read until its end, EOF, or a full buffer. */
    char resp[512];
    size_t got = 0;
    while (got < sizeof resp - 1 && !memchr(resp, '\n', got)) {
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            rc = probe_fail(-errno, msg, msglen, target, "recv");
            goto out;
        }
        if ((rc = wait_fd(fd, POLLIN, deadline)) < 0) {
            probe_fail(rc, msg, msglen, target, "waiting for the answer");
            goto out;
        }
    }
    resp[got] = '\0';
    resp[strcspn(resp, "\r\n")] = '\0';
    unsigned status = 0;
    /* "HTTP/1.x NNN": 12 characters at least */
    if (strlen(resp) < 12 || strncmp(resp, "HTTP/1.", 7) != 0 ||
        sscanf(resp + 8, " %3u", &status) != 1) {
        snprintf(msg, msglen, "%s: not an HTTP answer: '%.64s'", target, resp);
        rc = -EPROTO;
        goto out;
    }
    if (status != 200) {
        snprintf(msg, msglen, "%s: GET /healthz answered %u", target, status);
        rc = -EBADMSG;
        goto out;
    }
    snprintf(msg, msglen, "GET http://%s/healthz: 200", target);
out:
    close(fd);
    return rc;
}

int healthcheck_main(int argc, char **argv)
{
    struct config cfg;
    char err[512] = "";
    int rc = config_parse(&cfg, argc, argv, err, sizeof err);
    if (rc == CONFIG_EXIT_OK)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "batchd healthcheck: %s (see batchd --help)\n",
                err[0] ? err : "bad arguments");
        return 1;
    }
    char msg[512];
    rc = healthcheck_probe(cfg.listen_host, cfg.listen_port, cfg.tls_cert != NULL,
                           HEALTHCHECK_TIMEOUT_MS, msg, sizeof msg);
    config_free(&cfg);
    if (rc == 0) {
        printf("healthy: %s\n", msg);
        return 0;
    }
    fprintf(stderr, "batchd healthcheck: unhealthy: %s\n", msg);
    return 1;
}
