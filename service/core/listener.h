/*
 * listener: the service's listening socket, opened by the supervisor.
 *
 * The supervisor binds and listens once, before it forks anything, and
 * hands the descriptor to every api process it starts (nginx's master does
 * the same). So a restarted api process serves the same port even when the
 * configured port was 0, clients keep connecting through a restart (the
 * kernel queues them in the backlog), and a port that cannot be bound is a
 * start-up error (exit 2) rather than an api process that dies in a loop.
 *
 * Process: supervisor (listener_open), api (listener_port). Not threaded.
 * Ownership: the descriptor returned is the caller's to close.
 */
#ifndef BATCHD_LISTENER_H
#define BATCHD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Opens a TCP socket listening on host:port ("localhost", an IPv4 literal,
 * or an IPv6 literal with or without brackets; NULL or "" mean 127.0.0.1;
 * port 0 lets the kernel choose). Returns the descriptor (close-on-exec, SO_REUSEADDR), or a
 * negative errno with a one-line reason in err: -EINVAL for a host that is
 * not an address, or the socket/bind/listen error (-EADDRINUSE, -EACCES...).
 */
int listener_open(const char *host, uint16_t port, char *err, size_t errlen);

/* Returns the port the socket is bound to, or 0 if it cannot be read. */
uint16_t listener_port(int fd);

/* True when the socket is IPv6. */
bool listener_is_ipv6(int fd);

#endif
