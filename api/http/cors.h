/*
 * cors: cross-origin requests from browsers (the Fetch standard's CORS).
 *
 * Nothing is allowed by default. --cors-origins lists the origins
 * ("https://dash.example:8443", or "*" for any) whose pages may call the
 * API. For a request whose Origin is on the list, every response carries
 *
 *   Access-Control-Allow-Origin: <that origin>
 *   Access-Control-Expose-Headers: ETag, Location, Retry-After, X-Request-Id
 *
 * and, whenever a list is configured, `Vary: Origin` (the answer depends on
 * it, so a shared cache must not hand one origin's answer to another).
 *
 * A preflight (OPTIONS on a /v1 route: operations preflightJobs,
 * preflightJob, preflightJobResults, preflightModels, preflightWorkers) is
 * answered 204 with `Allow`; when its Origin is on the list it also gets
 * Access-Control-Allow-Methods (the route's methods), -Allow-Headers
 * (Authorization, Content-Type, If-None-Match, X-Request-Id) and -Max-Age.
 * From an origin not on the list it gets none of these, which is how a
 * browser learns that the call is refused. Preflights never need a token.
 *
 * Process and threads: api process, any thread; reads only the read-only
 * config.
 * Ownership: strings are borrowed; the response passed in stays the
 * caller's.
 */
#ifndef BATCHD_API_CORS_H
#define BATCHD_API_CORS_H

#include <stdbool.h>

#include <microhttpd.h>

#include "service/config/config.h"

struct api_req;

#define API_CORS_ALLOW_HEADERS "Authorization, Content-Type, If-None-Match, X-Request-Id"
#define API_CORS_EXPOSE_HEADERS "ETag, Location, Retry-After, X-Request-Id"
#define API_CORS_MAX_AGE_S 600

/* True when `origin` (an Origin header value; NULL is false) is allowed by
 * cfg's list: "*" is on it, or it equals an entry (case-insensitively,
 * since scheme and host are). */
bool api_cors_origin_allowed(const struct config *cfg, const char *origin);

/*
 * Adds the CORS headers every response to r gets (see above) to resp.
 * Returns MHD_YES, or MHD_NO when libmicrohttpd refused a header (out of
 * memory).
 */
enum MHD_Result api_cors_add_headers(const struct api_req *r, struct MHD_Response *resp);

/* The begin step of the preflight operations (handlers.h): answers 204. */
enum MHD_Result api_cors_preflight(struct api_req *r);

#endif
