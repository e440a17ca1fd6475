/*
 * auth: bearer-token authentication of the API.
 *
 * The tokens come from --api-tokens / BATCHD_API_TOKENS (fixed for the
 * life of the process) and from --tokens-file (read when the api process
 * starts and again on SIGHUP, which the supervisor forwards to it). When
 * neither is configured, authentication is off and every route is open;
 * when either is, every /v1 route needs `Authorization: Bearer TOKEN` with
 * one of the tokens (a configured but empty tokens file lets nobody in:
 * it fails closed), and so does /metrics with --auth-metrics. /healthz and
 * /readyz stay open (orchestrators' probes carry no token), and so do the
 * dashboard's routes (the page asks the user for a token) and OPTIONS
 * preflights (browsers send them without credentials).
 *
 * Tokens are compared in constant time: the time taken depends only on
 * the length of the presented token and the number of configured tokens,
 * never on how much of a configured token it matched, and every configured
 * token is compared (no early exit on a match).
 *
 * Process and threads: api process. api_auth_check() runs on libmicrohttpd's
 * threads while api_auth_reload() runs on the main thread: the
 * token set is behind a read-write lock and is swapped whole, so a request
 * sees either the old set or the new one.
 * Ownership: the struct owns copies of every token (wiped when freed); the
 * config is borrowed and must outlive it.
 */
#ifndef BATCHD_API_AUTH_H
#define BATCHD_API_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "service/config/config.h"
#include "api/http/route.h"

struct api_auth;

enum api_auth_result {
    API_AUTH_OK = 0,    /* a configured token was presented (or auth is off) */
    API_AUTH_MISSING,   /* no Authorization header, or not a Bearer one */
    API_AUTH_INVALID,   /* a Bearer token that is not configured */
};

/*
 * Returns a new token set built from cfg's tokens and tokens file, or NULL
 * (err says why: the tokens file cannot be read or holds a bad token; or
 * out of memory).
 */
struct api_auth *api_auth_create(const struct config *cfg, char *err, size_t errlen);

/* Wipes and frees the set. NULL is fine. */
void api_auth_destroy(struct api_auth *a);

/* True when authentication is on (tokens or a tokens file configured).
 * Fixed at creation: a reload never turns it off. */
bool api_auth_enabled(const struct api_auth *a);

/* How many tokens are accepted now (configured ones plus the file's). */
size_t api_auth_count(struct api_auth *a);

/*
 * Reads the tokens file again and, on success, replaces the file's tokens
 * with what it holds now. Returns 0 (also when there is no tokens file:
 * nothing to do); on failure -errno / -EINVAL with err set, and the tokens
 * in use are left as they were (a half-written file must not lock
 * everyone out, nor let anyone in).
 */
int api_auth_reload(struct api_auth *a, char *err, size_t errlen);

/* True when `route` with `method` needs a token under cfg (whether or not
 * authentication is on: see api_auth_enabled). */
bool api_auth_protects(const struct config *cfg, enum api_route route, enum api_method method);

/*
 * Checks an Authorization header value (NULL when absent): the scheme
 * "Bearer" (any case), blanks, then a token. Returns API_AUTH_OK when
 * authentication is off or the token is one of the set.
 */
enum api_auth_result api_auth_check(struct api_auth *a, const char *authorization);

/* Compares a[0..alen) with b[0..blen) in time that depends on alen only
 * (blen > 0). True when equal. Exposed for the unit tests. */
bool api_auth_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
