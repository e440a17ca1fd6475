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
#include "api/handlers/handlers.h"
#include "api/http/http.h"
#include "service/core/listener.h"
#include "service/core/log.h"
#include <batchd/model.h>

struct api_server {
    struct MHD_Daemon *daemon;
    const struct config *cfg;
    struct engine *engine;
    struct api_auth *auth;  /* the bearer tokens (auth.h) */
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

/* Authentication (auth.h), once the route and the method are known to
 * exist (404 and 405 come first: they say no more than a 401 would, that
 * the path exists or not) and before anything looks at the request's
 * parameters or body. */
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
                             api_route_template(r->match.route));
}

/* Routing, authentication, the query and the operation's begin step: the
 * headers are in. */
/* Remembers the first header whose value holds a NUL byte (RFC 9110 5.5:
 * such a field must be rejected; as a C string it would be cut short). */
static enum MHD_Result find_nul_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                       size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    const char **bad = cls;
    if (!*bad && (strlen(key) != key_size || (value && strlen(value) != value_size)))
        *bad = key;
    return *bad ? MHD_NO : MHD_YES;
}

/* Refuses what libmicrohttpd would otherwise accept and mishandle: header
 * values with NUL bytes, and a Transfer-Encoding other than chunked (its
 * body cannot be delimited: it would wait for it until the idle timeout).
 * Returns MHD_YES with nothing sent when the headers are fine. */
static enum MHD_Result check_headers(struct api_req *r, bool *refused)
{
    const char *bad = NULL;
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, find_nul_header, &bad);
    *refused = true;
    if (bad)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "header %.64s holds a NUL byte", bad);
    const char *te = api_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked") != 0)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "Transfer-Encoding %.64s is not supported (only chunked)", te);
    *refused = false;
    return MHD_YES;
}

static enum MHD_Result dispatch_begin(struct api_server *s, struct api_req *r)
{
    bool refused;
    enum MHD_Result hret = check_headers(r, &refused);
    if (refused)
        return hret;
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
    (void)version;
    struct api_server *s = cls;
    struct api_req *r = *req_cls;
    if (!r) {
        r = api_req_new(conn, s->engine, s->cfg, &s->stopping, method, url);
        if (!r)
            return MHD_NO;
        *req_cls = r;
        /* A response queued now, before the body, makes libmicrohttpd close
         * the connection afterwards (it will not read the unread body). That
         * is right for a body we refuse (413, 415) but would cost every
         * bodiless request its keep-alive: those are answered on the next
         * call, which comes at once. */
        if (!has_body(r))
            return MHD_YES;
        r->begun = true;
        return dispatch_begin(s, r);
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
    if (r->status)
        return MHD_YES;
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
    double secs = api_req_seconds(r);
    if (r->status)
        engine_count_request(s->engine, api_route_template(r->match.route),
                             method_label(r->method_bit), (int)r->status, secs);
    if (s->cfg->access_log)
        access_log(r, secs, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    api_req_free(r);
    *req_cls = NULL;
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
    if (strstr(msg, "application error generating response"))
        log_debug("libmicrohttpd: %s", msg);
    else
        log_warn("libmicrohttpd: %s", msg);
}

struct api_server *api_server_start(const struct config *cfg, struct engine *engine,
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
    atomic_init(&s->stopping, false);
    char aerr[256];
    s->auth = api_auth_create(cfg, aerr, sizeof aerr);
    if (!s->auth) {
        log_error("authentication cannot start: %s", aerr);
        free(s);
        *err = -EINVAL;
        return NULL;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    /* HTTPS: the PEM texts were read at start (config.h); libmicrohttpd
     * copies them into GnuTLS when the daemon starts. */
    struct MHD_OptionItem tls_opts[3] = { { MHD_OPTION_END, 0, NULL } };
    if (cfg->tls_cert_pem) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            log_error("--tls-cert: this libmicrohttpd was built without TLS support");
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
    /* poll() has no FD_SETSIZE ceiling, which select() would put on the
     * descriptor numbers of a busy process */
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
        flags |= MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    /* the logger goes first so that libmicrohttpd's own start-up messages
     * reach it too */
    /* The socket is the supervisor's (listener.h): same port across api
     * restarts. */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)API_CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!s->daemon) {
        int e = errno ? errno : EIO;
        log_error("cannot listen on %s:%u%s: %s", cfg->listen_host, (unsigned)cfg->listen_port,
                  cfg->tls_cert_pem ? " (HTTPS: is the key the certificate's, both PEM?)" : "",
                  strerror(e));
        api_auth_destroy(s->auth);
        free(s);
        *err = -e;
        return NULL;
    }
    s->port = listener_port(listen_fd);
    if (s->port == 0) {
        log_error("listening, but the bound port cannot be read");
        MHD_stop_daemon(s->daemon);
        api_auth_destroy(s->auth);
        free(s);
        *err = -EIO;
        return NULL;
    }
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
    /* before MHD_stop_daemon, which joins the connection threads: a stream
     * only ends when it sees this */
    atomic_store_explicit(&s->stopping, true, memory_order_relaxed);
    MHD_stop_daemon(s->daemon);
    /* after the daemon: no connection thread can be checking a token now */
    api_auth_destroy(s->auth);
    free(s);
}
