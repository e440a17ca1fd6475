/*
 * api: the api process's main, batchd's REST front end.
 *
 * The supervisor forks the api process last, after every worker, and calls
 * api_run() in the child; the child exits with its return value. The api
 * process is where threads live (libmicrohttpd's, the engine's), which is
 * why it is never the process that forks.
 *
 * Order of start-up, and why:
 *   1. SIGTERM, SIGINT and SIGHUP are blocked (the rest of the mask is
 *      cleared) BEFORE any thread exists, so every thread inherits the mask
 *      and the signals can only be taken by this thread's sigwait(): no
 *      handler ever runs on a libmicrohttpd or engine thread. SIGPIPE is
 *      ignored (a client that leaves must not kill the process).
 *   2. The engine is created (jobs, dispatcher, collector: engine.h).
 *   3. The HTTP server (HTTPS with --tls-cert) starts serving on the
 *      supervisor's listening socket (listener.h: the same port across api
 *      restarts); its port is written to --port-file (as PATH.tmp, then
 *      renamed, so a reader never sees half a number) and logged as
 *      "listening on http://HOST:PORT" (https with TLS), with whether
 *      authentication is on (a loud warning when it is off on an address
 *      other than loopback).
 *   4. sigwait(): SIGHUP (forwarded by the supervisor) reloads the tokens
 *      file (auth.h); SIGTERM or SIGINT stop the process: the engine stops
 *      accepting jobs, the server stops (open result streams are resumed
 *      and cut, libmicrohttpd's threads are joined), then the engine is
 *      destroyed.
 *
 * Process and threads: the api process's main thread only.
 * Ownership: cfg, shm, objects and listen_fd are borrowed from the
 * supervisor (inherited across fork); everything created here is freed
 * before api_run() returns. The object store reaches the engine and the
 * handlers as cfg->objects, in api_run's own copy of the config.
 */
#ifndef BATCHD_API_H
#define BATCHD_API_H

#include "service/config/config.h"

struct shm;
struct objects;

/* Exit codes of the api process (the supervisor's classification). */
#define API_EXIT_OK 0      /* stopped by SIGTERM/SIGINT */
#define API_EXIT_FAILED 1  /* the engine could not start, or the tokens file cannot be
                              read: worth a respawn with back-off */
#define API_EXIT_FATAL 2   /* cannot listen (bad address, port in use) or write the port
                              file: it would fail again, do not respawn */

/*
 * Runs the api process until SIGTERM or SIGINT. Returns API_EXIT_OK after
 * an orderly stop, API_EXIT_FAILED when engine_create() failed, and
 * API_EXIT_FATAL when the server cannot listen or the port file cannot be
 * written. Every failure is logged.
 */
int api_run(const struct config *cfg, struct shm *shm, struct objects *objects, int listen_fd);

#endif
