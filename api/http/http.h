/*
 * http: one HTTP request's state, and the helpers that answer it.
 *
 * libmicrohttpd calls the server's access handler several times per
 * request (headers, then each piece of the body, then once more at the end);
 * a struct api_req carries what those calls share: the matched route, the
 * query parameters, the request id, the body being accumulated, and the
 * status that was sent (for the request counter). The server creates it on
 * the first call and frees it in libmicrohttpd's completion callback.
 *
 * Every response goes out through api_send(), which adds X-Request-Id and
 * the CORS headers (cors.h) and records the status, so no handler can
 * forget any of them. Error responses are problem+json (problem.h) built by
 * api_send_problem(), which also adds the headers a problem implies: Allow
 * on 405, Retry-After on 503, WWW-Authenticate on 401.
 *
 * Process and threads: api process. A request and its api_req live on the
 * libmicrohttpd thread of its connection (one of a pool, each serving many
 * connections: nothing here may block for long); a stream's reader data is
 * also touched by the pump's thread, only while its connection is
 * suspended (pump.h). Nothing else is shared between requests except the
 * engine (thread-safe) and the read-only config.
 *
 * Ownership: the api_req is owned by the server (new in api_req_new, freed
 * by api_req_free). `method`, `path` and query values are borrowed from
 * libmicrohttpd, valid until the request completes. api_send() takes the
 * response it is given (on success and on failure).
 */
#ifndef BATCHD_API_HTTP_H
#define BATCHD_API_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "service/config/config.h"
#include "service/jobs/engine.h"
#include "api/http/conns.h"
#include "api/http/headers.h"
#include "api/http/problem.h"
#include "api/http/pump.h"
#include "api/http/query.h"
#include "api/http/route.h"
#include "service/core/sbuf.h"
#include "api/http/longpoll.h"

/* Content types of the responses. */
#define API_CT_JSON "application/json"
#define API_CT_PROBLEM "application/problem+json"
#define API_CT_NDJSON "application/x-ndjson"
#define API_CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* Retry-After seconds of the 503 problems. */
#define API_RETRY_NOT_READY_S 1
#define API_RETRY_SHUTTING_DOWN_S 5
#define API_RETRY_OVERLOADED_S 2
#define API_RETRY_MODEL_UNAVAILABLE_S 10

struct api_op;
struct objects;
struct webhook_sender;

struct api_req {
    struct MHD_Connection *conn;   /* borrowed */
    struct engine *engine;         /* borrowed */
    struct objects *objects;       /* the object store (borrowed) */
    struct webhook_sender *webhooks; /* webhook delivery, NULL when off (borrowed) */
    const struct config *cfg;      /* borrowed */
    const atomic_bool *stopping;   /* the server's shutdown flag (borrowed) */
    struct api_pump *pump;         /* wakes suspended streams (pump.h; borrowed) */
    struct api_conns *conns;       /* the connection table (conns.h; borrowed) */
    struct api_conn *conn_entry;   /* this connection's entry, NULL if not followed */
    const char *method;            /* borrowed from libmicrohttpd */
    const char *path;              /* borrowed from libmicrohttpd, without the query */
    enum api_method method_bit;
    struct api_match match;
    struct api_query query;
    char request_id[API_REQUEST_ID_MAX + 1];
    struct timespec started;       /* CLOCK_MONOTONIC, for the request duration */
    unsigned status;               /* the status sent; 0 until then */
    int64_t resp_bytes;            /* body bytes of the response sent, for the access log;
                                      -1 when not known (a stream, or a response not built by
                                      api_response_take/static/json) */
    bool begun;                    /* routing and the op's begin step have run */
    bool http11;                   /* the request line says HTTP/1.1 (Host is then required) */

    /* The body (POST /v1/jobs), capped at cfg->max_body_bytes. */
    bool wants_body;
    enum api_body_type body_type;
    struct sbuf body;
    int body_err;                  /* 0, or why the body could not be kept (-E2BIG past
                                      the cap, -ENOMEM): answered 413 at the end */
    uint64_t body_received;        /* bytes of body received, kept or not */

    /* A body streamed elsewhere instead of into `body` (createObject writes
     * it into shared memory as it arrives): set by the begin step. Each
     * piece goes to sink_feed (MHD_YES to go on, MHD_NO to close the
     * connection); the sink remembers its own errors for the finish step.
     * sink_free(sink) runs when the request ends, answered or not (a
     * client that left mid-body), and releases what the sink holds. */
    enum MHD_Result (*sink_feed)(void *sink, const char *data, size_t n);
    void (*sink_free)(void *sink);
    void *sink;
    const struct api_op *op;       /* the operation (handlers.h), once matched */

    /* Long-poll (getJob ?wait=S, longpoll.h): the server's registry
     * (borrowed), this request's wait, its engine watch and deadline. A
     * request that waits is suspended; libmicrohttpd calls the handler
     * again when it is resumed, and the begin step runs again. */
    struct api_longpoll *longpoll;
    struct api_longpoll_wait lp_wait;
    struct engine_watch *watch;
    uint64_t wait_deadline_ns;     /* CLOCK_MONOTONIC; 0 = not waiting */
};

/*
 * Returns a new request for `conn` with its request id set (the client's
 * X-Request-Id when api_request_id_valid(), else a new one) and the clock
 * started, or NULL when out of memory.
 */
struct api_req *api_req_new(struct MHD_Connection *conn, struct engine *engine,
                            struct objects *objects, const struct config *cfg,
                            const atomic_bool *stopping, const char *method, const char *path);

/* Frees the request and its body buffer. NULL is fine. */
void api_req_free(struct api_req *r);

/* Seconds since the request started. */
double api_req_seconds(const struct api_req *r);

/* The request header `name` (case-insensitive), or NULL. Borrowed. */
const char *api_req_header(const struct api_req *r, const char *name);

/*
 * Queues `resp` with `status`, after adding X-Request-Id and the CORS
 * headers, and records the status and the body size. Takes `resp`
 * (destroys its reference in every case). Returns MHD_YES when queued;
 * MHD_NO when `resp` is NULL or libmicrohttpd refused it, which makes
 * libmicrohttpd close the connection (the only answer left without memory).
 */
enum MHD_Result api_send(struct api_req *r, unsigned status, struct MHD_Response *resp);

/*
 * Returns a new response whose body is `len` bytes at `data`, which it
 * takes (freed with free() by libmicrohttpd, or here on failure), with
 * Content-Type `ctype`; NULL when out of memory.
 */
struct MHD_Response *api_response_take(char *data, size_t len, const char *ctype);

/* Returns a new response whose body is the static string `body` (never
 * freed; use literals), with Content-Type `ctype`; NULL when out of memory. */
struct MHD_Response *api_response_static(const char *body, const char *ctype);

/* Returns a new application/json response holding the compact
 * serialization of `body` (borrowed), or NULL when out of memory. */
struct MHD_Response *api_response_json(const json_t *body);

/* Answers `status` with the JSON `body` (borrowed). On out of memory it
 * answers 500 instead. Returns what api_send() returns. */
enum MHD_Result api_send_json(struct api_req *r, unsigned status, const json_t *body);

/*
 * Answers 200 with the JSON `body` (borrowed) and an ETag that is a hash
 * of the exact text sent (a strong validator: equal tags, equal bytes), or
 * 304 with that ETag and no body when If-None-Match names it. For
 * representations with no version counter of their own (the job list:
 * every job on the page, its counts, the page's order). On out of memory
 * it answers 500. Returns what api_send() returns.
 */
enum MHD_Result api_send_json_etag(struct api_req *r, const json_t *body);

/*
 * Answers with the problem *p (instance = the request path), adding Allow
 * for 405 and Retry-After for 503. Logs 5xx problems as warnings. Returns
 * what api_send() returns.
 */
enum MHD_Result api_send_problem(struct api_req *r, const struct api_problem *p);

/* api_problem_set() and api_send_problem() in one call. */
enum MHD_Result api_send_problemf(struct api_req *r, enum api_problem_kind kind,
                                  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
