#include "service/core/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Backlog: connections the kernel queues while no api process accepts
 * (an api restart); SOMAXCONN caps it anyway. */
#define LISTENER_BACKLOG 1024

/* Fills *ss for host:port. Returns 0 or -EINVAL. */
static int listener_address(const char *host, uint16_t port, struct sockaddr_storage *ss,
                            socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (!host || !*host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof *in4;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL;
}

int listener_open(const char *host, uint16_t port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (!host || !*host)
        host = "127.0.0.1";
    if (listener_address(host, port, &ss, &len) != 0) {
        snprintf(err, errlen, "cannot listen on %s: not an IP address or localhost", host);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create a socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    /* A restart must not wait for the previous run's TIME_WAIT sockets. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTENER_BACKLOG) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host, (unsigned)port, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

uint16_t listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

bool listener_is_ipv6(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET6;
}
