#include "api/http/http.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http/cors.h"
#include "service/core/jsonfmt.h"
#include "service/core/log.h"

/*
 * The body size of the last response built on this thread by
 * api_response_take/static, which api_send() records for the access log.
 * libmicrohttpd has no getter for a response's size, and the constructors
 * do not know the request; a handler builds and queues its response in one
 * call on one thread, so the response a thread built last is the one it is
 * about to send, and the pointer is compared so that any other response
 * counts as unknown.
 */
static _Thread_local struct {
    const struct MHD_Response *resp;
    int64_t bytes;
} last_built;

static struct MHD_Response *remember_size(struct MHD_Response *resp, size_t len)
{
    last_built.resp = resp;
    last_built.bytes = (int64_t)len;
    return resp;
}

struct api_req *api_req_new(struct MHD_Connection *conn, struct engine *engine,
                            struct objects *objects, const struct config *cfg,
                            const atomic_bool *stopping, const char *method, const char *path)
{
    struct api_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    r->conn = conn;
    r->engine = engine;
    r->objects = objects;
    r->cfg = cfg;
    r->stopping = stopping;
    r->method = method;
    r->path = path;
    r->method_bit = api_method_parse(method);
    r->resp_bytes = -1;
    const char *rid = api_req_header(r, "X-Request-Id");
    if (api_request_id_valid(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        api_request_id_new(r->request_id);
    api_query_init(&r->query, NULL);
    /* the cap is the contract's --max-body-bytes; sbuf treats 0 as "default",
     * so a configured 0 still means a bounded buffer */
    sbuf_set_limit(&r->body, cfg->max_body_bytes ? cfg->max_body_bytes : 1);
    return r;
}

void api_req_free(struct api_req *r)
{
    if (!r)
        return;
    if (r->sink_free)
        r->sink_free(r->sink);
    /* a wait ends with its answer; this is for a request cut short */
    api_longpoll_unwatch(r->longpoll, &r->lp_wait);
    engine_unwatch(r->engine, r->watch);
    sbuf_free(&r->body);
    free(r);
}

double api_req_seconds(const struct api_req *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - r->started.tv_sec) +
           (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
}

const char *api_req_header(const struct api_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

enum MHD_Result api_send(struct api_req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    r->resp_bytes = last_built.resp == resp ? last_built.bytes : -1;
    last_built.resp = NULL;
    enum MHD_Result ok = MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (ok == MHD_YES)
        ok = api_cors_add_headers(r, resp);
    if (ok == MHD_YES)
        ok = MHD_queue_response(r->conn, status, resp);
    /* the connection holds its own reference once queued */
    MHD_destroy_response(resp);
    if (ok == MHD_YES)
        r->status = status;
    else
        log_warn("request %s: could not queue a %u response", r->request_id, status);
    return ok;
}

struct MHD_Response *api_response_take(char *data, size_t len, const char *ctype)
{
    struct MHD_Response *resp;
    if (data) {
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(data);
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (resp && ctype &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    return remember_size(resp, data ? len : 0);
}

struct MHD_Response *api_response_static(const char *body, const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    return remember_size(resp, strlen(body));
}

struct MHD_Response *api_response_json(const json_t *body)
{
    char *text = jsonfmt_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!text)
        return NULL;
    return api_response_take(text, strlen(text), API_CT_JSON);
}

enum MHD_Result api_send_json(struct api_req *r, unsigned status, const json_t *body)
{
    struct MHD_Response *resp = body ? api_response_json(body) : NULL;
    if (!resp)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    return api_send(r, status, resp);
}

/* FNV-1a, 64 bits: a content tag, not a secret; a collision would cost
 * one poll a stale page, at odds of 2^-64 per pair. */
static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

enum MHD_Result api_send_json_etag(struct api_req *r, const json_t *body)
{
    char *text = jsonfmt_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!text)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    size_t len = strlen(text);
    char etag[40];
    snprintf(etag, sizeof etag, "\"l-%016" PRIx64 "-%zx\"", fnv1a64(text, len), len);
    struct MHD_Response *resp;
    unsigned status;
    if (api_etag_matches(api_req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), etag)) {
        free(text);
        resp = api_response_take(NULL, 0, NULL);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = api_response_take(text, len, API_CT_JSON);
        status = MHD_HTTP_OK;
    }
    if (!resp)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag) != MHD_YES) {
        MHD_destroy_response(resp);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    }
    return api_send(r, status, resp);
}

enum MHD_Result api_send_problem(struct api_req *r, const struct api_problem *p)
{
    int status = api_problem_status(p->kind);
    if (status >= 500)
        log_warn("request %s %s %s: %d %s: %s", r->request_id, r->method, r->path, status,
                 api_problem_slug(p->kind), p->detail);
    struct sbuf body = SBUF_INIT;
    if (api_problem_encode(p, r->path, &body) != 0) {
        sbuf_free(&body);
        return MHD_NO;
    }
    size_t len = body.len;
    struct MHD_Response *resp = api_response_take(sbuf_steal(&body), len, API_CT_PROBLEM);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ok = MHD_YES;
    if (p->kind == API_PROBLEM_METHOD_NOT_ALLOWED) {
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                     api_route_allow(r->match.route));
    } else if (p->kind == API_PROBLEM_UNAUTHORIZED) {
        /* RFC 6750 3: the scheme and realm; an invalid token is told so */
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                     api_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION)
                                         ? "Bearer realm=\"batchd\", error=\"invalid_token\""
                                         : "Bearer realm=\"batchd\"");
    } else if (p->kind == API_PROBLEM_NOT_READY || p->kind == API_PROBLEM_SHUTTING_DOWN ||
               p->kind == API_PROBLEM_OVERLOADED || p->kind == API_PROBLEM_MODEL_UNAVAILABLE) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d",
                 p->kind == API_PROBLEM_NOT_READY       ? API_RETRY_NOT_READY_S
                 : p->kind == API_PROBLEM_OVERLOADED    ? API_RETRY_OVERLOADED_S
                 : p->kind == API_PROBLEM_SHUTTING_DOWN ? API_RETRY_SHUTTING_DOWN_S
                                                        : API_RETRY_MODEL_UNAVAILABLE_S);
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    if (ok != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    return api_send(r, (unsigned)status, resp);
}

enum MHD_Result api_send_problemf(struct api_req *r, enum api_problem_kind kind,
                                  const char *fmt, ...)
{
    struct api_problem p;
    va_list ap;
    va_start(ap, fmt);
    api_problem_vset(&p, kind, fmt, ap);
    va_end(ap);
    return api_send_problem(r, &p);
}
