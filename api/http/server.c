#include "api/http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api/http/auth.h"
#include "api/http/conns.h"
#include "api/handlers/handlers.h"
#include "api/http/http.h"
#include "service/core/fdlimit.h"
#include "service/core/listener.h"
#include "service/core/log.h"
#include <batchd/model.h>
#include "api/http/longpoll.h"
#include "service/webhooks/webhook_sender.h"

struct api_server {
    struct MHD_Daemon *daemon;
    struct api_conns *conns;  /* deadlines and the ceiling (conns.h) */
    struct api_pump *pump;    /* wakes suspended streams (pump.h) */
    const struct config *cfg;
    struct engine *engine;
    struct objects *objects; /* the object store (borrowed) */
    struct webhook_sender *webhooks; /* webhook delivery, NULL when off (borrowed) */
    struct api_auth *auth;  /* the bearer tokens (auth.h) */
    struct api_longpoll *longpoll; /* suspended getJob?wait= requests */
    /* Set once at shutdown, read by streams on other threads; nothing is
     * published through it, so relaxed order is enough. */
    atomic_bool stopping;
    uint16_t port;
};

static const char *method_label(enum api_method m)
{
    switch (m) {
    case API_METHOD_GET: return "GET";
    case API_METHOD_POST: return "POST";
    case API_METHOD_DELETE: return "DELETE";
    case API_METHOD_OPTIONS: return "OPTIONS";
    default: return "other"; /* client-chosen strings never become labels */
    }
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct api_query *q = cls;
    /* A %00 in the query would cut the C string: "status=succeeded%00x"
     * must not pass for "succeeded". */
    if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
        if (!q->bad_key) {
            q->bad_key = key;
            q->bad_err = -EILSEQ;
        }
        return MHD_YES;
    }
    /* keep going: api_query remembers the first refused key */
    api_query_add(q, key, value);
    return MHD_YES;
}

/* Writes "a, b, c" of a NULL-terminated name list into out. */
static void join_names(const char *const *names, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; names && names[i]; i++) {
        int n = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(out, outlen, "none");
}

static enum MHD_Result refuse_query(struct api_req *r)
{
    if (r->query.bad_err == -EEXIST)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter %s is given more than once", r->query.bad_key);
    if (r->query.bad_err == -EILSEQ)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter %s holds a NUL byte", r->query.bad_key);
    char known[128];
    join_names(r->op->query, known, sizeof known);
    return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                             "unknown query parameter %s (%s takes: %s)", r->query.bad_key,
                             r->op->operation_id, known);
}

/* Authentication (auth.h), before anything looks at the request's
 * parameters or body; under /v1 before routing too (dispatch_begin). */
static enum MHD_Result refuse_unauthenticated(struct api_server *s, struct api_req *r)
{
    enum api_auth_result a =
        api_auth_check(s->auth, api_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION));
    if (a == API_AUTH_OK)
        return MHD_YES;
    return api_send_problemf(r, API_PROBLEM_UNAUTHORIZED,
                             a == API_AUTH_MISSING
                                 ? "%s needs a bearer token (Authorization: Bearer TOKEN)"
                                 : "the bearer token is not valid for %s",
                             r->match.route != API_ROUTE_NONE ? api_route_template(r->match.route)
                                                              : "the /v1 API");
}

/*
 * What one walk over the request's headers finds (scan_header). The head
 * is parsed in place by libmicrohttpd: the request line starts at the
 * method, header names and values are pointers into the same bytes, in
 * order, and the head ends at method + its header size. That lets the
 * walk see what libmicrohttpd hides: a header value that held a NUL byte
 * (cut there) leaves bytes between that value's end and the next line
 * (api_header_gap_clean). Should a libmicrohttpd ever store the head
 * otherwise (pointers out of that order), the NUL check is skipped rather
 * than refusing every request.
 */
struct head_scan {
    const char *start, *end;   /* the head in libmicrohttpd's buffer, or NULL */
    const char *prev_key;      /* the previous header, and where its value ends */
    const char *prev_end;
    bool layout_unknown;
    const char *nul;           /* the first header that held a NUL byte */
    unsigned hosts;            /* Host headers */
    unsigned lengths;          /* Content-Length headers */
    const char *length;        /* the first Content-Length value */
    bool lengths_differ;
    const char *te;            /* Transfer-Encoding, the first one */
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct head_scan *h = cls;
    if (!value)
        value = "";
    if (!h->nul && (strlen(key) != key_size || strlen(value) != value_size))
        h->nul = key;
    if (!h->start || key < h->start || value + value_size > h->end ||
        (h->prev_end && key < h->prev_end)) {
        h->layout_unknown = true;
    } else if (!h->layout_unknown) {
        if (h->prev_end && !h->nul &&
            !api_header_gap_clean(h->prev_end, (size_t)(key - h->prev_end), false))
            h->nul = h->prev_key;
        h->prev_key = key;
        h->prev_end = value + value_size;
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        h->hosts++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0 && !h->te)
        h->te = value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (h->length && strcmp(h->length, value) != 0)
            h->lengths_differ = true;
        if (!h->length)
            h->length = value;
        h->lengths++;
    }
    return MHD_YES;
}

/* Walks the request's headers once into *h. */
static void scan_head(const struct api_req *r, struct head_scan *h)
{
    memset(h, 0, sizeof *h);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci && r->method) {
        h->start = r->method;
        h->end = r->method + ci->header_size;
    }
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, h);
    if (!h->layout_unknown && h->prev_end && !h->nul &&
        !api_header_gap_clean(h->prev_end, (size_t)(h->end - h->prev_end), true))
        h->nul = h->prev_key;
}

/*
 * Refuses, with one 400 problem, what libmicrohttpd would otherwise accept
 * and mishandle or let through: a header value with a NUL byte (RFC 9110
 * 5.5; as a C string it would be cut short, and "Bearer TOKEN<NUL>junk"
 * would pass for the token), a Transfer-Encoding other than chunked (its
 * body cannot be delimited), Transfer-Encoding together with
 * Content-Length or two different Content-Lengths (RFC 9112 6.1 and 6.3:
 * the framing is ambiguous, the classic request-smuggling shape), and an
 * HTTP/1.1 request without exactly one Host (RFC 9112 3.2).
 * Returns MHD_YES with *refused false when the headers are fine.
 */
static enum MHD_Result check_headers(struct api_req *r, bool *refused)
{
    struct head_scan h;
    scan_head(r, &h);
    *refused = true;
    if (h.nul)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "header %.64s holds a NUL byte", h.nul);
    if (h.te && h.lengths)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "Content-Length and Transfer-Encoding are both given: the "
                                 "body's length is ambiguous (send one of them)");
    if (h.lengths_differ)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "Content-Length is given %u times with different values",
                                 h.lengths);
    if (h.te && strcasecmp(h.te, "chunked") != 0)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "Transfer-Encoding %.64s is not supported (only chunked)", h.te);
    if (r->http11 && h.hosts != 1)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 h.hosts ? "an HTTP/1.1 request has exactly one Host header "
                                           "(this one has %u)"
                                         : "an HTTP/1.1 request needs a Host header%.0u",
                                 h.hosts);
    *refused = false;
    return MHD_YES;
}

/* True when `path` is /v1 or under it. */
static bool under_v1(const char *path)
{
    return strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/');
}

/* Routing, authentication, the query and the operation's begin step: the
 * headers are in. */
static enum MHD_Result dispatch_begin(struct api_server *s, struct api_req *r)
{
    bool refused;
    enum MHD_Result hret = check_headers(r, &refused);
    if (refused)
        return hret;
    /* Under /v1 the token is checked before the path and the method: a 404
     * or 405 would tell a caller without a token which routes exist. A
     * CORS preflight (OPTIONS) carries no credentials by design, so it is
     * routed as before. */
    if (api_auth_enabled(s->auth) && under_v1(r->path) && r->method_bit != API_METHOD_OPTIONS) {
        enum MHD_Result ret = refuse_unauthenticated(s, r);
        if (ret != MHD_YES || r->status)
            return ret;
    }
    if (api_route_match(r->path, &r->match) != 0)
        return api_send_problemf(r, API_PROBLEM_NOT_FOUND, "no resource at %s", r->path);
    const struct api_op *op = api_op_find(r->match.route, r->method_bit);
    if (!op)
        return api_send_problemf(r, API_PROBLEM_METHOD_NOT_ALLOWED,
                                 "%s is not allowed on %s (allowed: %s)", r->method,
                                 api_route_template(r->match.route),
                                 api_route_allow(r->match.route));
    if (api_auth_enabled(s->auth) &&
        api_auth_protects(s->cfg, r->match.route, r->method_bit)) {
        enum MHD_Result ret = refuse_unauthenticated(s, r);
        if (ret != MHD_YES || r->status)
            return ret;
    }
    r->op = op;
    bool has_id = r->match.route == API_ROUTE_JOB || r->match.route == API_ROUTE_JOB_RESULTS;
    /* a malformed id is simply a job that does not exist; the engine never sees it */
    if (has_id && !r->match.id_valid)
        return api_send_problemf(r, API_PROBLEM_NOT_FOUND,
                                 "no such job (a job id is 26 characters of [a-z2-7])");
    /* an object id is checked before the engine or the store sees it too;
     * a malformed one is a client error (400), never a lookup */
    if (r->match.route == API_ROUTE_OBJECT && !r->match.id_valid)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "malformed object id: an object id is %d characters of "
                                 "0-9 and a-z without i, l, o, u",
                                 MODEL_OBJECT_ID_LEN);
    api_query_init(&r->query, op->query);
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &r->query);
    if (r->query.bad_key)
        return refuse_query(r);
    /* The body buffer is not sized from Content-Length up front: a client
     * could then make us allocate the whole limit without sending a byte.
     * It grows (doubling) with what actually arrives. */
    return op->begin(r);
}

/* A piece of the body. */
static enum MHD_Result body_feed(struct api_req *r, const char *data, size_t n)
{
    api_conn_body(r->conns, r->conn_entry, n);
    if (!r->wants_body)
        return MHD_YES;
    r->body_received += n;
    /* an operation that streams its body elsewhere (http.h: sink) keeps
     * its own limits and errors */
    if (r->sink_feed)
        return r->sink_feed(r->sink, data, n);
    if (!r->body_err) {
        int rc = sbuf_append(&r->body, data, n);
        if (rc == 0)
            return MHD_YES;
        /* libmicrohttpd cannot answer mid-body: remember, drop what comes */
        r->body_err = rc;
        sbuf_free(&r->body);
    }
    /* libmicrohttpd cannot answer before the body has ended, so what is
     * over the limit is read and dropped (no memory) and the 413 goes out at
     * the end; only a body absurdly far past it (more than the limit again
     * and 256 MiB on top) makes us close without an answer. */
    size_t cap = r->cfg->max_body_bytes;
    size_t drop = cap + ((size_t)256 << 20);
    if (r->body_received > cap && r->body_received - cap > drop) {
        log_info("request %s: body far past the limit, closing the connection",
                 r->request_id);
        return MHD_NO;
    }
    return MHD_YES;
}

/* The last call: the body is complete. */
static enum MHD_Result dispatch_finish(struct api_req *r)
{
    if (r->body_err == -E2BIG) {
        struct api_problem p;
        api_problem_set(&p, API_PROBLEM_TOO_LARGE, "the body is over the limit of %zu bytes",
                        r->cfg->max_body_bytes);
        api_problem_set_limit(&p, r->cfg->max_body_bytes);
        return api_send_problem(r, &p);
    }
    if (r->body_err)
        return api_send_problemf(r, API_PROBLEM_TOO_LARGE,
                                 "the service has no memory for a body this large right now");
    return r->op->finish(r);
}

/* True when the request announces a body (Content-Length > 0, or chunked). */
static bool has_body(const struct api_req *r)
{
    const char *cl = api_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strcmp(cl, "0") != 0)
        return true;
    return api_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls)
{
    struct api_server *s = cls;
    struct api_req *r = *req_cls;
    if (!r) {
        r = api_req_new(conn, s->engine, s->objects, s->cfg, &s->stopping, method, url);
        if (!r)
            return MHD_NO;
        r->longpoll = s->longpoll;
        r->webhooks = s->webhooks;
        *req_cls = r;
        r->pump = s->pump;
        r->conns = s->conns;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn_entry = ci ? ci->socket_context : NULL;
        /* the head is in: its deadline no longer applies; a body has a
         * minimum rate until it ends */
        r->http11 = version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
        /* A response queued now, before the body, makes libmicrohttpd close
         * the connection afterwards (it will not read the unread body). That
         * is right for a body we refuse (413, 415) but would cost every
         * bodiless request its keep-alive: those are answered on the next
         * call, which comes at once. */
        if (!has_body(r)) {
            api_conn_phase(s->conns, r->conn_entry, API_CONN_ANSWER);
            return MHD_YES;
        }
        api_conn_phase(s->conns, r->conn_entry, API_CONN_BODY);
        r->begun = true;
        enum MHD_Result ret = dispatch_begin(s, r);
        if (r->status)
            api_conn_phase(s->conns, r->conn_entry, API_CONN_ANSWER);
        return ret;
    }
    if (*upload_data_size > 0) {
        enum MHD_Result ok = body_feed(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok;
    }
    if (!r->begun) {
        r->begun = true;
        enum MHD_Result ret = dispatch_begin(s, r);
        if (ret != MHD_YES || r->status || !r->wants_body)
            return ret;
        /* a POST without a body goes on to its finish step: the parsers
         * refuse an empty body with the right problem */
    }
    /* the last call: the body (if any) is all in */
    api_conn_phase(s->conns, r->conn_entry, API_CONN_ANSWER);
    if (r->status)
        return MHD_YES;
    /* a long-poll resumed (longpoll.h): its begin step looks again */
    if (r->wait_deadline_ns && r->op)
        return r->op->begin(r);
    if (r->wants_body && r->op && r->op->finish)
        return dispatch_finish(r);
    /* every begin step answers or wants the body; this is a bug, not a client error */
    return api_send_problemf(r, API_PROBLEM_INTERNAL, "the request was not answered");
}

/* Longest path written whole in an access log line. */
#define ACCESS_LOG_PATH_MAX 256

/* Appends `"name":"<s as a JSON string>"`, s cut at `max` bytes (a cut
 * character becomes U+FFFD like any other invalid UTF-8 from a client). */
static void field_str(struct sbuf *b, const char *name, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (sbuf_printf(b, ",\"%s\":", name) == 0 &&
        api_json_string_sanitized(b, s ? s : "", n < max ? n : max) != 0)
        sbuf_puts(b, "null"); /* never a member without a value */
}

/*
 * The access log: one line per request, answered or not (status 0 when
 * the client left, or timed out, before an answer), with the method, path
 * (without the query, which may carry anything), route template, status,
 * body bytes (null when unknown: a stream), duration, request id and the
 * client's address. The path is cut at ACCESS_LOG_PATH_MAX bytes so that
 * the line always fits log.c's line buffer.
 */
static void access_log(const struct api_req *r, double secs, bool completed)
{
    if (!log_enabled(LOG_INFO))
        return;
    struct sbuf b = SBUF_INIT;
    sbuf_set_limit(&b, 1024 + ACCESS_LOG_PATH_MAX * 6);
    char addr[INET6_ADDRSTRLEN] = "";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                      sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      addr, sizeof addr);
    }
    sbuf_puts(&b, ",\"event\":\"access\"");
    field_str(&b, "method", r->method, 32);
    field_str(&b, "path", r->path, ACCESS_LOG_PATH_MAX);
    sbuf_printf(&b, ",\"route\":\"%s\",\"status\":%u", api_route_template(r->match.route),
                r->status);
    if (r->resp_bytes >= 0)
        sbuf_printf(&b, ",\"bytes\":%lld", (long long)r->resp_bytes);
    else
        sbuf_puts(&b, ",\"bytes\":null");
    sbuf_printf(&b, ",\"duration_ms\":%.3f,\"request_id\":\"%s\",\"remote\":\"%s\"%s",
                secs * 1000.0, r->request_id, addr, completed ? "" : ",\"completed\":false");
    /* the request id was checked (or generated) to be [A-Za-z0-9._-] */
    const char *fields = b.len > 0 && b.data ? b.data : NULL;
    /* the message holds only our own words (the client's are in the fields,
     * made valid UTF-8 there) */
    log_msg_fields(LOG_INFO, fields, "%s %s %u", method_label(r->method_bit),
                   api_route_template(r->match.route), r->status);
    sbuf_free(&b);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct api_server *s = cls;
    struct api_req *r = *req_cls;
    if (!r)
        return;
    /* a kept-alive connection now waits for its next head, on a new deadline */
    api_conn_phase(s->conns, r->conn_entry, API_CONN_HEAD);
    double secs = api_req_seconds(r);
    if (r->status)
        engine_count_request(s->engine, api_route_template(r->match.route),
                             method_label(r->method_bit), (int)r->status, secs);
    if (s->cfg->access_log)
        access_log(r, secs, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    api_req_free(r);
    *req_cls = NULL;
}

/* libmicrohttpd's connection start and end: the table follows every
 * connection from its accept (conns.h). Called on the connection's thread,
 * CLOSED before libmicrohttpd closes the descriptor. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct api_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? api_conn_opened(s->conns, ci->connect_fd) : NULL;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        api_conn_closed(s->conns, *socket_context);
        *socket_context = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* A results stream ends this way on purpose when its client leaves or
     * the service stops (handlers.c); that is not worth a warning. */
    /* A connection the table closed (conns.h: a late head, a slow body,
     * the ceiling) ends this way too: one line per sweep says so already,
     * and an attack must not write a line per connection. */
    if (strstr(msg, "application error generating response") ||
        strstr(msg, "closed by remote side with incomplete request"))
        log_debug("libmicrohttpd: %s", msg);
    else
        log_warn("libmicrohttpd: %s", msg);
}

struct api_server *api_server_start(const struct config *cfg, struct engine *engine,
                                    struct objects *objects, struct webhook_sender *webhooks,
                                    int listen_fd, int *err)
{
    bool v6 = listener_is_ipv6(listen_fd);
    struct api_server *s = calloc(1, sizeof *s);
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    s->cfg = cfg;
    s->engine = engine;
    s->objects = objects;
    s->webhooks = webhooks;
    atomic_init(&s->stopping, false);
    char aerr[256];
    s->auth = api_auth_create(cfg, aerr, sizeof aerr);
    if (!s->auth) {
        log_error("authentication cannot start: %s", aerr);
        free(s);
        *err = -EINVAL;
        return NULL;
    }

    /* epoll with a pool of threads, each serving many connections: an idle
     * or slow connection costs a descriptor and its 128 KiB pool at most,
     * not a thread (docs/architecture.md, "Connections") */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
        log_error("this libmicrohttpd was built without epoll");
        api_auth_destroy(s->auth);
        free(s);
        *err = -ENOTSUP;
        return NULL;
    }
    /* suspend/resume: long-polls wait suspended (longpoll.h) */
    s->longpoll = api_longpoll_create((flags & MHD_USE_THREAD_PER_CONNECTION) == 0);
    if (!s->longpoll) {
        api_auth_destroy(s->auth);
        free(s);
        *err = -ENOMEM;
        return NULL;
    }
    engine_set_watch_hook(engine, api_longpoll_notify, s->longpoll);
    /* a webhook's delivery state is part of the Job: its long-polls wake */
    if (s->webhooks)
        webhook_sender_set_change_hook(s->webhooks, api_longpoll_notify, s->longpoll);
    /* HTTPS: the PEM texts were read at start (config.h); libmicrohttpd
     * copies them into GnuTLS when the daemon starts. */
    struct MHD_OptionItem tls_opts[3] = { { MHD_OPTION_END, 0, NULL } };
    if (cfg->tls_cert_pem) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            log_error("--tls-cert: this libmicrohttpd was built without TLS support");
            engine_set_watch_hook(engine, NULL, NULL);
            if (s->webhooks)
                webhook_sender_set_change_hook(s->webhooks, NULL, NULL);
            api_longpoll_destroy(s->longpoll);
            api_auth_destroy(s->auth);
            free(s);
            *err = -ENOTSUP;
            return NULL;
        }
        flags |= MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls_key_pem };
        tls_opts[1] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem };
        tls_opts[2] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
    }
    if (v6)
        flags |= MHD_USE_IPv6;
    struct api_conns_limits lim = {
        .ceiling = cfg->max_connections,
        .header_timeout_ms = cfg->header_timeout_s * 1000u,
        .min_body_rate = cfg->min_body_rate,
    };
    s->conns = api_conns_create(&lim);
    int trc = s->conns ? api_conns_start(s->conns) : -ENOMEM;
    s->pump = trc == 0 ? api_pump_start() : NULL;
    if (!s->pump) {
        log_error("cannot start the connection sweeper or the stream pump: %s", strerror(trc ? -trc : ENOMEM));
        api_conns_destroy(s->conns);
        api_auth_destroy(s->auth);
        free(s);
        *err = trc ? trc : -ENOMEM;
        return NULL;
    }
    errno = 0;
    /* the logger goes first so that libmicrohttpd's own start-up messages
     * reach it too */
    /* The socket is the supervisor's (listener.h): same port across api
     * restarts. */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)cfg->http_threads, MHD_OPTION_CONNECTION_LIMIT,
        fdlimit_library_limit(cfg->max_connections), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)API_CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (!s->daemon) {
        int e = errno ? errno : EIO;
        log_error("cannot listen on %s:%u%s: %s", cfg->listen_host, (unsigned)cfg->listen_port,
                  cfg->tls_cert_pem ? " (HTTPS: is the key the certificate's, both PEM?)" : "",
                  strerror(e));
        engine_set_watch_hook(engine, NULL, NULL);
        if (s->webhooks)
            webhook_sender_set_change_hook(s->webhooks, NULL, NULL);
        api_longpoll_destroy(s->longpoll);
        api_pump_stop(s->pump);
        api_pump_free(s->pump);
        api_conns_destroy(s->conns);
        api_auth_destroy(s->auth);
        free(s);
        *err = -e;
        return NULL;
    }
    s->port = listener_port(listen_fd);
    if (s->port == 0) {
        log_error("listening, but the bound port cannot be read");
        api_pump_stop(s->pump);
        MHD_stop_daemon(s->daemon);
        engine_set_watch_hook(engine, NULL, NULL);
        if (s->webhooks)
            webhook_sender_set_change_hook(s->webhooks, NULL, NULL);
        api_longpoll_destroy(s->longpoll);
        api_pump_free(s->pump);
        api_conns_destroy(s->conns);
        api_auth_destroy(s->auth);
        free(s);
        *err = -EIO;
        return NULL;
    }
    log_info("serving HTTP with %u threads (epoll), at most %u connections, head deadline %u s, "
             "minimum body rate %zu bytes/s",
             cfg->http_threads, cfg->max_connections, cfg->header_timeout_s, cfg->min_body_rate);
    return s;
}

uint16_t api_server_port(const struct api_server *s) { return s->port; }

bool api_server_auth_enabled(const struct api_server *s) { return api_auth_enabled(s->auth); }

void api_server_reload(struct api_server *s)
{
    char err[256];
    if (!s->cfg->tokens_file) {
        log_info("SIGHUP: nothing to reload (no --tokens-file)");
        return;
    }
    if (api_auth_reload(s->auth, err, sizeof err) < 0)
        log_error("SIGHUP: tokens not reloaded, the previous ones stay in use: %s", err);
    else
        log_info("SIGHUP: tokens file %s reloaded: %zu token(s) accepted", s->cfg->tokens_file,
                 api_auth_count(s->auth));
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    /* before MHD_stop_daemon, which joins libmicrohttpd's threads: a stream
     * only ends when it sees this */
    atomic_store_explicit(&s->stopping, true, memory_order_relaxed);
    /* libmicrohttpd must not stop with suspended connections: the
     * long-polls are resumed first (they answer with the job as it is) */
    api_longpoll_shutdown(s->longpoll);
    /* suspended streams go back to libmicrohttpd, whose readers see the
     * flag above and end; a suspended connection would never end */
    api_pump_stop(s->pump);
    MHD_stop_daemon(s->daemon);
    /* after the daemon: every connection has been reported closed, and no
     * reader can reach the pump */
    api_pump_free(s->pump);
    api_conns_destroy(s->conns);
    engine_set_watch_hook(s->engine, NULL, NULL);
    if (s->webhooks)
        webhook_sender_set_change_hook(s->webhooks, NULL, NULL);
    api_longpoll_destroy(s->longpoll);
    /* after the daemon: no libmicrohttpd thread can be checking a token now */
    api_auth_destroy(s->auth);
    free(s);
}
