/*
 * healthcheck: the `batchd healthcheck` subcommand, the container image's
 * HEALTHCHECK (the image has no curl).
 *
 *   batchd healthcheck [OPTION]...
 *
 * takes the same options, BATCHD_* variables and --config file as the
 * server (config.h), so in a container it finds the address the server
 * listens on without being told. It connects to --listen (0.0.0.0, "any
 * address", is reached through 127.0.0.1), sends GET /healthz and exits 0
 * when the answer's status is 200 within HEALTHCHECK_TIMEOUT_MS, 1 for
 * anything else: refused, timed out, another status, or a configuration
 * that does not parse (Docker reads 1 as "unhealthy" and reserves 2). With
 * --tls-cert the server speaks HTTPS, which a plain socket cannot; the
 * check is then that the port accepts a connection (said on stdout).
 *
 * A plain blocking-free socket with poll(): no libcurl in the binary, and
 * one deadline bounds the connect, the send and the read together.
 *
 * Process and threads: its own short-lived process (never the server's);
 * single-threaded.
 * Ownership: nothing is kept; arguments are borrowed.
 */
#ifndef BATCHD_HEALTHCHECK_H
#define BATCHD_HEALTHCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEALTHCHECK_TIMEOUT_MS 3000

/*
 * Probes http://host:port/healthz (host an IPv4 literal; 0.0.0.0 becomes
 * 127.0.0.1) within timeout_ms. With `connect_only`, a connection accepted
 * is enough. Returns 0 when healthy, with a one-line description in `msg`;
 * otherwise -ETIMEDOUT, -ECONNREFUSED or another -errno for the socket,
 * -EPROTO for an answer that is not HTTP, -EBADMSG for a status other than
 * 200, -EINVAL for a host that is not an IPv4 literal or port 0; `msg`
 * says what happened.
 */
int healthcheck_probe(const char *host, uint16_t port, bool connect_only, int timeout_ms,
                      char *msg, size_t msglen);

/*
 * The subcommand: argv[0] is "healthcheck", the rest are server options.
 * Returns the process exit status: 0 healthy, 1 not (or a bad
 * configuration); 0 also after --help or --version.
 */
int healthcheck_main(int argc, char **argv);

#endif
