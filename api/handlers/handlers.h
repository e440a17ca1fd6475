/*
 * handlers: the operations of openapi.yaml, one function per operationId.
 *
 * The server (server.h) has already matched the route, checked the method,
 * refused a malformed job id (404) and collected the query parameters this
 * operation declares (unknown ones were refused with 400). An operation then
 * runs in up to two steps, both on the request's libmicrohttpd thread:
 *
 *   begin   the request headers are in. Operations without a body answer
 *           here. createJob checks what it can before reading the body
 *           (Content-Length against --max-body-bytes, Content-Type, the
 *           NDJSON query parameters and model) and then asks for the body by
 *           setting r->wants_body.
 *   finish  the whole body is in r->body (createJob), or was streamed
 *           into its sink (createObject, object_ops.h).
 *
 * Each step returns what libmicrohttpd's access handler must return: MHD_YES
 * when a response was queued or the body is wanted, MHD_NO to drop the
 * connection (only when not even a 500 could be built).
 *
 * Process and threads: api process, libmicrohttpd's pool threads (a
 * handler must not block: its thread serves other connections); the
 * table is read-only; all shared state is in the engine (thread-safe).
 * Ownership: everything a handler allocates is freed before it returns,
 * except the stream of getJobResults, which the response owns and closes.
 */
#ifndef BATCHD_API_HANDLERS_H
#define BATCHD_API_HANDLERS_H

#include "api/http/http.h"

struct api_op {
    const char *operation_id;
    enum api_route route;
    enum api_method method;
    const char *const *query;                      /* NULL-terminated known names */
    enum MHD_Result (*begin)(struct api_req *r);   /* never NULL */
    enum MHD_Result (*finish)(struct api_req *r);  /* NULL when the op takes no body */
};

/* Returns the operation for a route and method, or NULL when the route
 * does not implement the method (405). Static. */
const struct api_op *api_op_find(enum api_route route, enum api_method method);

#endif
