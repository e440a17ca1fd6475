/*
 * Unit tests of api/http/server.c and api/http/http.c: a real
 * libmicrohttpd daemon on a port the kernel picks (port 0), over a real
 * engine (with its shared-memory ring and store; no workers are forked,
 * none of these requests needs one), answering requests made with libcurl.
 * Covers start/port/stop, the request state (request id made or echoed,
 * status recorded into the answer), api_send's headers, problem answers
 * (404, 405 with Allow, 400 unknown query parameter, 401 with
 * WWW-Authenticate when a tokens file is set) and that nothing listens
 * once stopped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "api/http/headers.h"
#include "api/http/route.h"
#include "api/http/server.h"
#include "service/config/config.h"
#include "service/core/id.h"
#include "service/core/listener.h"
#include "service/jobs/engine.h"
#include "service/ring/shm.h"

struct fixture {
    char dir[64];
    char tokens[96];
    struct config cfg;
    struct shm shm;
    struct engine *engine;
    struct api_server *server;
    uint16_t port;
};

struct answer {
    long status;
    char body[8192];
    size_t body_len;
    char headers[8192];
    size_t headers_len;
    CURLcode rc;
};

/* Appends what fits of p[0..len) to buf (cap bytes, NUL-terminated). */
static void append(char *buf, size_t *used, size_t cap, const char *p, size_t len)
{
    size_t room = cap - 1 - *used, n = len < room ? len : room;
    memcpy(buf + *used, p, n);
    *used += n;
    buf[*used] = '\0';
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct answer *a = ud;
    append(a->body, &a->body_len, sizeof a->body, p, size * n);
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct answer *a = ud;
    append(a->headers, &a->headers_len, sizeof a->headers, p, size * n);
    return size * n;
}

/* The value of response header `name` (case-insensitive) into out, or "". */
static const char *header(const struct answer *a, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *l = a->headers; *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (len > nl && strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(l + len - v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            snprintf(out, cap, "%.*s", (int)(vl < cap ? vl : cap - 1), v);
            return out;
        }
        l += len + (end != NULL);
    }
    return out;
}

static void request(uint16_t port, const char *method, const char *path, const char *hdr,
                    struct answer *a)
{
    memset(a, 0, sizeof *a);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = hdr ? curl_slist_append(NULL, hdr) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    a->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static int setup_with(void **state, bool tokens)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/batchd-test-server.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char *argv[8] = {"batchd", "--data-dir", f->dir, "--listen", "127.0.0.1:0", NULL};
    int argc = 5;
    if (tokens) {
        snprintf(f->tokens, sizeof f->tokens, "%s/tokens", f->dir);
        FILE *t = fopen(f->tokens, "w");
        assert_non_null(t);
        fputs("s3cret-token-for-the-unit-test\n", t);
        fclose(t);
        argv[argc++] = "--tokens-file";
        argv[argc++] = f->tokens;
    }
    char err[256];
    if (config_parse(&f->cfg, argc, argv, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    uint32_t gw[1] = {1};
    const char *names[1] = {"echo"};
    struct shm_layout lay = {1, gw, names, 8, 4096, 4096};
    assert_int_equal(shm_create(&f->shm, &lay), 0);
    f->engine = engine_create(&f->cfg, &f->shm, NULL);
    assert_non_null(f->engine);
    int fd = listener_open(f->cfg.listen_host, f->cfg.listen_port, err, sizeof err);
    if (fd < 0)
        fail_msg("listen: %s", err);
    int rc = 0;
    /* no objects store, no webhooks configured: NULL, as api.c passes them */
    f->server = api_server_start(&f->cfg, f->engine, NULL, NULL, fd, &rc);
    assert_non_null(f->server);
    f->port = api_server_port(f->server);
    assert_int_not_equal(f->port, 0);  /* the kernel's choice, read back */
    assert_int_equal(f->port, listener_port(fd));
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_with(state, false); }
static int setup_auth(void **state) { return setup_with(state, true); }

static int teardown(void **state)
{
    struct fixture *f = *state;
    api_server_stop(f->server);
    engine_destroy(f->engine);
    shm_destroy(&f->shm);
    config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_health_and_request_id(void **state)
{
    struct fixture *f = *state;
    assert_false(api_server_auth_enabled(f->server));
    struct answer a;
    char v[256];
    request(f->port, "GET", "/healthz", NULL, &a);
    assert_int_equal(a.rc, CURLE_OK);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Type", v, sizeof v), "application/json");
    json_t *j = json_loads(a.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    /* a new request id on every answer, one that could be echoed */
    char first[256];
    header(&a, "X-Request-Id", first, sizeof first);
    assert_true(first[0] != '\0');
    assert_true(api_request_id_valid(first));
    assert_true(id_valid(first, strlen(first)));  /* the one id form (service/core/id.h) */
    request(f->port, "GET", "/healthz", NULL, &a);
    assert_string_not_equal(header(&a, "X-Request-Id", v, sizeof v), first);
    /* the client's own id is echoed */
    request(f->port, "GET", "/healthz", "X-Request-Id: trace-42.a_b", &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "X-Request-Id", v, sizeof v), "trace-42.a_b");
}

static void test_ready_follows_the_engine(void **state)
{
    struct fixture *f = *state;
    char why[512] = "";
    bool ready = engine_ready(f->engine, why, sizeof why);
    struct answer a;
    char v[256];
    request(f->port, "GET", "/readyz", NULL, &a);
    assert_int_equal(a.rc, CURLE_OK);
    if (ready) {
        assert_int_equal(a.status, 200);
    } else {
        /* no worker ever started: a 503 problem with Retry-After */
        assert_int_equal(a.status, 503);
        assert_string_equal(header(&a, "Content-Type", v, sizeof v), "application/problem+json");
        assert_true(atoi(header(&a, "Retry-After", v, sizeof v)) > 0);
    }
}

static void test_problems(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    char v[256];
    request(f->port, "GET", "/nope", NULL, &a);
    assert_int_equal(a.status, 404);
    assert_string_equal(header(&a, "Content-Type", v, sizeof v), "application/problem+json");
    json_t *j = json_loads(a.body, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "/nope");
    json_decref(j);
    assert_true(header(&a, "X-Request-Id", v, sizeof v)[0] != '\0');

    request(f->port, "DELETE", "/healthz", NULL, &a);
    assert_int_equal(a.status, 405);
    assert_string_equal(header(&a, "Allow", v, sizeof v), api_route_allow(API_ROUTE_HEALTHZ));

    request(f->port, "GET", "/v1/models?bogus=1", NULL, &a);
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(a.body, "bogus"));  /* says which parameter */
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    assert_true(api_server_auth_enabled(f->server));
    struct answer a;
    char v[256];
    request(f->port, "GET", "/v1/models", NULL, &a);
    assert_int_equal(a.status, 401);
    assert_non_null(strstr(header(&a, "WWW-Authenticate", v, sizeof v), "Bearer"));
    request(f->port, "GET", "/v1/models", "Authorization: Bearer wrong", &a);
    assert_int_equal(a.status, 401);
    request(f->port, "GET", "/v1/models", "Authorization: Bearer s3cret-token-for-the-unit-test",
            &a);
    assert_int_equal(a.status, 200);
    /* /healthz stays open */
    request(f->port, "GET", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
}

/* After api_server_stop() nothing listens on the port any more. */
static void test_stop_closes_the_port(void **state)
{
    (void)state;
    void *s = NULL;
    setup(&s);
    struct fixture *f = s;
    uint16_t port = f->port;
    struct answer a;
    request(port, "GET", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
    api_server_stop(f->server);
    f->server = NULL;
    request(port, "GET", "/healthz", NULL, &a);
    assert_int_equal(a.rc, CURLE_COULDNT_CONNECT);
    teardown(&s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_follows_the_engine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup_auth, teardown),
        cmocka_unit_test(test_stop_closes_the_port),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
