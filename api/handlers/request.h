/*
 * request: a POST /v1/jobs body, parsed and validated into job items.
 *
 * Two body formats (openapi.yaml, createJob):
 *   JSON    {"model": "square", "inputs": [1,2,3], "options": {"chunk_size": 100}}
 *   NDJSON  one item per line; blank (whitespace-only) lines are skipped and
 *           "\r\n" line ends are accepted. The model and chunk size come from
 *           the query string, which the caller handles.
 *
 * The whole body is validated before anything is handed to the engine, so a
 * job either runs with all its items or is refused with one problem that
 * says what and where:
 *   400 invalid-json  syntax error, duplicate key, bad UTF-8 (line, column;
 *                     for NDJSON the line is the body's line number)
 *   422 invalid-job   wrong shape (pointer: "" for the body, "/model",
 *                     "/inputs", "/options/chunk_size", "/<unknown member>")
 *   413 too-large     more than max_items items (limit), or one item whose
 *                     compact JSON is over max_item_bytes (index, pointer:
 *                     "/inputs/<i>" for JSON, "/<i>" for NDJSON, and line)
 * Items are read by the fast path of scan.h first: one pass that checks
 * each item and copies its text into the job's arena (compact, numbers as
 * the client wrote them, strings as jansson spells them). Whatever it does
 * not accept, every error included, is parsed again with jansson (the
 * *_jansson functions below), whose answer is the reference: the same
 * problems as always, and items stored as their compact serialization
 * (reals in the shortest form that reads back to the same double).
 * Whether the model exists is not checked here (the engine knows that).
 *
 * Process and threads: api process, the HTTP thread of the request. Pure:
 * no shared state, nothing but the body and the limits decide the result.
 * Ownership: the body is borrowed; on success *out / *items hold new
 * allocations the caller releases with api_job_request_clear() /
 * job_items_free() (or hands to engine_submit()).
 */
#ifndef BATCHD_API_REQUEST_H
#define BATCHD_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "service/jobs/engine.h"
#include "api/http/problem.h"

struct api_request_limits {
    size_t max_items;      /* items per job (--max-items) */
    size_t max_item_bytes; /* compact JSON bytes of one item (what a ring slot carries) */
    unsigned max_item_timeout_ms; /* bound of options.item_timeout_s (--max-item-timeout);
                                     0 = API_REQUEST_DEFAULT_MAX_TIMEOUT_MS */
    unsigned max_depth;           /* deepest nesting of arrays/objects (--max-json-depth),
                                     counted from the body's root (NDJSON: each line's);
                                     0 = API_REQUEST_DEFAULT_MAX_DEPTH */
};

#define API_REQUEST_DEFAULT_MAX_DEPTH 64u

#define API_REQUEST_DEFAULT_MAX_TIMEOUT_MS 3600000u
#define API_REQUEST_MAX_ATTEMPTS 100u
/* Longest webhook URL a job may carry. */
#define API_REQUEST_WEBHOOK_URL_MAX 2048u

/* A parsed JSON body. */
struct api_job_request {
    char *model;               /* new; NUL-terminated */
    struct job_options opt;    /* chunk_size 0 = adaptive */
    struct job_items *items;   /* new; at least one item */
    char *webhook_url;         /* "webhook": {"url": ...}, new, or NULL; checked
                                  against --webhook-hosts by the handler */
};

/*
 * Parses a JSON body (body[0..len), no NUL needed) into *out.
 * Returns 0 with *out filled; on failure *out holds nothing to free and *prob
 * says why: -EINVAL (400 or 422), -E2BIG (413), -ENOMEM (413: the service
 * has no memory for a request this large right now).
 */
int api_request_parse_json(const char *body, size_t len, const struct api_request_limits *lim,
                           struct api_job_request *out, struct api_problem *prob);

/*
 * Parses an NDJSON body into a new item list in *items.
 * Returns 0 with at least one item; on failure *items is NULL and *prob says
 * why, with the same codes as api_request_parse_json (a body with no item at
 * all is -EINVAL, 422 invalid-job).
 */
int api_request_parse_ndjson(const char *body, size_t len, const struct api_request_limits *lim,
                             struct job_items **items, struct api_problem *prob);

/*
 * The jansson path alone (a DOM of the whole body, each item serialised
 * again): what api_request_parse_json / _ndjson fall back to, with the
 * same contract. Tests compare the fast path against it.
 */
int api_request_parse_json_jansson(const char *body, size_t len,
                                   const struct api_request_limits *lim,
                                   struct api_job_request *out, struct api_problem *prob);
int api_request_parse_ndjson_jansson(const char *body, size_t len,
                                     const struct api_request_limits *lim,
                                     struct job_items **items, struct api_problem *prob);

/* Frees what a successful api_request_parse_json() put in *r (items that
 * were handed to the engine must be set to NULL first) and zeroes it. */
void api_job_request_clear(struct api_job_request *r);

#endif
