/*
 * Unit tests for api/http/http.c, the request's state and the senders,
 * through a real libmicrohttpd daemon of this test (no batchd server, no
 * engine: the access handler below makes an api_req and calls one sender
 * per path) and raw HTTP over a socket on 127.0.0.1 (a port the kernel
 * picks). Covered: the request id (made, or echoed when valid), the
 * status and body size recorded for the access log, api_send_json's
 * body, api_send_json_etag's tag and its 304 answer to If-None-Match,
 * problem answers (problem+json, WWW-Authenticate for 401, Retry-After
 * for 503). test_server.c covers http.c under the real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api/http/headers.h"
#include "api/http/http.h"
#include "service/config/config.h"
#include "service/core/listener.h"

/* What the handler recorded of its api_req (under mu). */
static struct {
    pthread_mutex_t mu;
    unsigned status;
    int64_t resp_bytes;
    char request_id[API_REQUEST_ID_MAX + 1];
} last = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct config cfg;
static atomic_bool stopping;

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)cls, (void)version, (void)upload, (void)upload_size, (void)con_cls;
    struct api_req *r = api_req_new(conn, NULL, NULL, &cfg, &stopping, method, url);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok;
    if (strcmp(url, "/json") == 0) {
        json_t *b = json_pack("{s:i, s:s, s:f}", "a", 1, "b", "x\u00e9", "c", 0.1);
        ok = api_send_json(r, 201, b);
        json_decref(b);
    } else if (strcmp(url, "/etag") == 0) {
        json_t *b = json_pack("{s:[i,i,i]}", "page", 1, 2, 3);
        ok = api_send_json_etag(r, b);
        json_decref(b);
    } else if (strcmp(url, "/static") == 0) {
        ok = api_send(r, 202, api_response_static("hello", "text/plain"));
    } else if (strcmp(url, "/empty") == 0) {
        ok = api_send(r, 204, api_response_take(NULL, 0, NULL));
    } else if (strcmp(url, "/401") == 0) {
        ok = api_send_problemf(r, API_PROBLEM_UNAUTHORIZED, "a bearer token is required");
    } else if (strcmp(url, "/503") == 0) {
        ok = api_send_problemf(r, API_PROBLEM_NOT_READY, "not ready: %d workers", 0);
    } else {
        ok = api_send_problemf(r, API_PROBLEM_NOT_FOUND, "no route for %s", url);
    }
    pthread_mutex_lock(&last.mu);
    last.status = r->status;
    last.resp_bytes = r->resp_bytes;
    snprintf(last.request_id, sizeof last.request_id, "%s", r->request_id);
    pthread_mutex_unlock(&last.mu);
    api_req_free(r);
    return ok;
}

struct answer {
    int status;
    char headers[4096];
    char body[4096];
};

/* The value of header `name` in a (case-insensitive), or NULL; into out. */
static const char *header(const struct answer *a, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *l = a->headers; *l;) {
        const char *end = strstr(l, "\r\n");
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (len > nl + 1 && strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(l + len - v), v);
            return out;
        }
        l += len + (end ? 2 : 0);
    }
    return NULL;
}

/* GET path with extra header lines (each ending in \r\n, or NULL). */
static void get(uint16_t port, const char *path, const char *extra, struct answer *a)
{
    memset(a, 0, sizeof *a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
                     path, extra ? extra : "");
    assert_int_equal(write(fd, req, (size_t)n), n);
    char resp[8192];
    size_t got = 0;
    for (ssize_t r; got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0;)
        got += (size_t)r;
    resp[got] = '\0';
    close(fd);
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &a->status), 1);
    const char *hs = strstr(resp, "\r\n"), *he = strstr(resp, "\r\n\r\n");
    assert_non_null(he);
    snprintf(a->headers, sizeof a->headers, "%.*s", (int)(he - hs - 2), hs + 2);
    snprintf(a->body, sizeof a->body, "%s", he + 4);
}

static int setup(void **state)
{
    char err[256];
    int fd = listener_open("127.0.0.1", 0, err, sizeof err);
    if (fd < 0)
        fail_msg("listen: %s", err);
    cfg.max_body_bytes = 1024;
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0,
                                            NULL, NULL, handle, NULL, MHD_OPTION_LISTEN_SOCKET,
                                            (MHD_socket)fd, MHD_OPTION_END);
    assert_non_null(d);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    MHD_stop_daemon(*state);
    return 0;
}

static uint16_t port_of(void **state)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(*state, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(i);
    return i->port;
}

static void test_json_and_request_id(void **state)
{
    struct answer a;
    char v[256];
    get(port_of(state), "/json", NULL, &a);
    assert_int_equal(a.status, 201);
    assert_string_equal(header(&a, "Content-Type", v, sizeof v), "application/json");
    json_t *j = json_loads(a.body, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "b")), "x\u00e9");
    assert_true(json_real_value(json_object_get(j, "c")) == 0.1); /* 17 digits: exact */
    json_decref(j);
    /* a made id, sent and kept for the access log; the status and size too */
    assert_non_null(header(&a, "X-Request-Id", v, sizeof v));
    assert_true(api_request_id_valid(v));
    pthread_mutex_lock(&last.mu);
    assert_string_equal(last.request_id, v);
    assert_int_equal(last.status, 201);
    assert_int_equal(last.resp_bytes, (int64_t)strlen(a.body));
    pthread_mutex_unlock(&last.mu);

    /* a valid id is echoed; an invalid one replaced */
    get(port_of(state), "/json", "X-Request-Id: my-trace-0001\r\n", &a);
    assert_string_equal(header(&a, "X-Request-Id", v, sizeof v), "my-trace-0001");
    get(port_of(state), "/json", "X-Request-Id: bad id with spaces\r\n", &a);
    assert_string_not_equal(header(&a, "X-Request-Id", v, sizeof v), "bad id with spaces");
    assert_true(api_request_id_valid(v));
}

static void test_sizes_recorded(void **state)
{
    struct answer a;
    char v[64];
    get(port_of(state), "/static", NULL, &a);
    assert_int_equal(a.status, 202);
    assert_string_equal(a.body, "hello");
    assert_string_equal(header(&a, "Content-Type", v, sizeof v), "text/plain");
    pthread_mutex_lock(&last.mu);
    assert_int_equal(last.resp_bytes, 5);
    pthread_mutex_unlock(&last.mu);
    get(port_of(state), "/empty", NULL, &a);
    assert_int_equal(a.status, 204);
    pthread_mutex_lock(&last.mu);
    assert_int_equal(last.status, 204);
    assert_int_equal(last.resp_bytes, 0);
    pthread_mutex_unlock(&last.mu);
}

static void test_etag(void **state)
{
    struct answer a;
    char tag[64], v[64];
    get(port_of(state), "/etag", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "{\"page\":[1,2,3]}");
    assert_non_null(header(&a, "ETag", tag, sizeof tag));
    assert_true(strncmp(tag, "\"l-", 3) == 0);
    assert_non_null(strstr(tag, "-10\"")); /* the body's length, in hex */
    /* the same body, the same tag: 304 with no body */
    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", tag);
    get(port_of(state), "/etag", inm, &a);
    assert_int_equal(a.status, 304);
    assert_string_equal(a.body, "");
    assert_string_equal(header(&a, "ETag", v, sizeof v), tag);
    get(port_of(state), "/etag", "If-None-Match: \"l-0000000000000000-10\"\r\n", &a);
    assert_int_equal(a.status, 200);
}

static void test_problems(void **state)
{
    struct answer a;
    char v[128];
    get(port_of(state), "/nowhere", NULL, &a);
    assert_int_equal(a.status, 404);
    assert_string_equal(header(&a, "Content-Type", v, sizeof v), "application/problem+json");
    json_t *j = json_loads(a.body, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "no route for /nowhere");
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "/nowhere");
    json_decref(j);

    get(port_of(state), "/401", NULL, &a);
    assert_int_equal(a.status, 401);
    assert_string_equal(header(&a, "WWW-Authenticate", v, sizeof v), "Bearer realm=\"batchd\"");
    get(port_of(state), "/401", "Authorization: Bearer nope\r\n", &a);
    assert_string_equal(header(&a, "WWW-Authenticate", v, sizeof v),
                        "Bearer realm=\"batchd\", error=\"invalid_token\"");

    get(port_of(state), "/503", NULL, &a);
    assert_int_equal(a.status, 503);
    snprintf(v, sizeof v, "%d", API_RETRY_NOT_READY_S);
    char ra[16];
    assert_string_equal(header(&a, "Retry-After", ra, sizeof ra), v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_and_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_problems, setup, teardown),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
