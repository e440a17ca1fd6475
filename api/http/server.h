/*
 * server: the libmicrohttpd daemon and the dispatch of each request.
 *
 * libmicrohttpd runs in epoll mode with a pool of --http-threads threads,
 * each serving many connections, so an idle or slow connection costs a
 * descriptor and a small memory pool, not a thread. Handlers therefore
 * never block; a results stream with nothing to send is suspended and
 * woken by the pump (pump.h). The connection table (conns.h) closes heads
 * past --header-timeout and bodies below --min-body-rate (which trickling
 * cannot reset, unlike --idle-timeout), and at --max-connections closes
 * the oldest unfinished heads to make room. A per-connection memory pool
 * bounds header sizes. Before routing, the head's framing is checked
 * (server.c check_headers: NUL bytes, Content-Length/Transfer-Encoding,
 * Host) and, under /v1, the bearer token.
 *
 * Per request the server:
 *   1. checks the framing (400), the bearer token under /v1 (401 with
 *      WWW-Authenticate, auth.h: before routing, so that a caller without a
 *      token cannot map the routes), matches the route (404) and the method
 *      (405 with Allow), checks the token of another protected route
 *      (/metrics with --auth-metrics), refuses a malformed job id (404) and any query parameter
 *      the operation does not declare, or declares twice (400);
 *   2. runs the operation's begin step (handlers.h), which answers, or asks
 *      for the body. Steps 1 and 2 run as soon as the headers are in when
 *      the request announces a body (so a refused body is never uploaded,
 *      at the price of closing the connection after the answer), and on
 *      libmicrohttpd's next call otherwise (so the connection stays open);
 *   3. accumulates the body up to --max-body-bytes. A body that grows past
 *      it (chunked, or longer than its Content-Length claimed) is read on
 *      and dropped so that the client still gets its 413 at the end, unless
 *      it goes on for another --max-body-bytes: then the connection is
 *      closed, since a client that ignores the limit that long is not
 *      listening for the answer;
 *   4. runs the finish step with the whole body;
 *   5. when the request completes, counts it (engine_count_request) with
 *      its route template, method, status and duration, and writes the
 *      access log line (--access-log): method, path, route, status, body
 *      bytes, duration, request id, client address.
 *
 * Process and threads: api process. api_server_start/stop are called by the
 * api process's main thread; everything else runs on libmicrohttpd's
 * threads. The shutdown flag is an atomic read by streams.
 *
 * Ownership: the server borrows the config and the engine, which must
 * outlive it (api_server_stop() returns only after every libmicrohttpd thread
 * has ended).
 */
#ifndef BATCHD_API_SERVER_H
#define BATCHD_API_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "service/config/config.h"
#include "service/jobs/engine.h"

struct api_server;
struct objects;
struct webhook_sender;

/* Per-connection memory of libmicrohttpd (headers and read buffer). A
 * request whose headers do not fit is refused by libmicrohttpd (431). */
#define API_CONNECTION_MEMORY (128u * 1024u)

/*
 * Starts serving on listen_fd, a listening socket the supervisor opened
 * (listener.h); libmicrohttpd closes this process's copy when it stops.
 * Serves HTTPS when cfg->tls_cert_pem is set. Reads the tokens file
 * (auth.h).
 * Returns the new server, or NULL (logged) with *err = -EIO when
 * libmicrohttpd cannot start (the errno of its last failure is passed on
 * when there is one), -EINVAL when the tokens file cannot be read,
 * -ENOTSUP for HTTPS without TLS support, or -ENOMEM.
 */
struct api_server *api_server_start(const struct config *cfg, struct engine *engine,
                                    struct objects *objects, struct webhook_sender *webhooks,
                                    int listen_fd, int *err);

/* The port actually bound (the kernel's choice when listen_port was 0). */
uint16_t api_server_port(const struct api_server *s);

/* True when requests need a bearer token (auth.h). */
bool api_server_auth_enabled(const struct api_server *s);

/*
 * SIGHUP: reads the tokens file again (auth.h). On failure the tokens in
 * use stay and the reason is logged. Called by the api process's main
 * thread while connection threads run.
 */
void api_server_reload(struct api_server *s);

/*
 * Stops the server: sets the shutdown flag (open streams end within one
 * poll interval, without their final chunk, so clients see they were cut),
 * stops listening, and waits for every connection thread. Frees the server.
 * NULL is fine.
 */
void api_server_stop(struct api_server *s);

#endif
