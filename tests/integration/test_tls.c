/*
 * test_tls: HTTPS with --tls-cert and --tls-key.
 *
 * A self-signed certificate for 127.0.0.1 is made here with the openssl
 * command (a failure without it). Then:
 *   - batchd serves HTTPS with it: libcurl, trusting exactly that
 *     certificate and verifying the peer and the host, gets /readyz, runs
 *     a job and reads its results; a client that does not trust it is
 *     refused by its own verification; plain HTTP to the port gets no HTTP
 *     answer;
 *   - `batchd healthcheck` with the same options exits 0 (it checks that
 *     the port accepts connections: it speaks no TLS);
 *   - a certificate without its key, a file that does not exist, and a key
 *     that is not the certificate's stop batchd at start with exit 2.
 *
 * The harness's requests are plain HTTP, so this file uses its own libcurl
 * handle for HTTPS (with a timeout on every request, like the harness).
 */
#include "tests/integration/harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_TIMEOUT_S 30

static const char *bin;
static char cert[512], key[512], other_key[512];
static bool have_cert;

struct body {
    char buf[65536];
    size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n;
    size_t room = sizeof b->buf - 1 - b->len;
    size_t take = len < room ? len : room;
    memcpy(b->buf + b->len, p, take);
    b->len += take;
    b->buf[b->len] = '\0';
    return len;
}

/*
 * One request to 127.0.0.1:port over `scheme`; `ca` NULL means the
 * system's trust store. Returns the curl code; *status and *body filled.
 */
static CURLcode fetch(const char *scheme, int port, const char *method, const char *path,
                      const char *json, const char *ca, long *status, struct body *body)
{
    CURL *c = curl_easy_init();
    if (!c)
        return CURLE_FAILED_INIT;
    char url[256];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, port, path);
    struct curl_slist *h = NULL;
    body->len = 0;
    body->buf[0] = '\0';
    *status = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    if (json) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void make_cert(void)
{
    const char *dir = h_tmpdir();
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(other_key, sizeof other_key, "%s/other-key.pem", dir);
    /* scripts/deps.sh build installs it; without it HTTPS is untested,
     * which is a failure, not a skip */
    if (!CHECKF(system("command -v openssl >/dev/null 2>&1") == 0,
                "the openssl command is not installed (sh scripts/deps.sh build, as root): "
                "HTTPS cannot be tested"))
        return;
    const char *argv[] = {"/usr/bin/env", "openssl", "req", "-x509", "-newkey", "rsa:2048",
                          "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                          NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(r.exit_code == 0, "openssl req: exit %d: %s", r.exit_code, r.err);
    h_run_result_free(&r);
    const char *argv2[] = {"/usr/bin/env", "openssl", "genpkey", "-algorithm", "RSA",
                           "-pkeyopt", "rsa_keygen_bits:2048", "-out", other_key, NULL};
    if (!CHECK(h_run(argv2, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(r.exit_code == 0, "openssl genpkey: exit %d: %s", r.exit_code, r.err);
    h_run_result_free(&r);
    have_cert = h_failures_total() == 0;
}

static void test_https(void)
{
    if (!have_cert) {
        h_skip("no certificate (see above)");
        return;
    }
    const char *args[] = {"--workers", "1", "--model", "square", "--tls-cert", cert,
                          "--tls-key", key, NULL};
    struct h_service s;
    /* the harness's readiness probe is plain HTTP: wait for /readyz here */
    struct h_service_opts o = {.args = args, .no_ready_wait = true};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    struct body *b = calloc(1, sizeof *b);
    long st = 0;
    CURLcode rc = CURLE_OK;
    for (int i = 0; i < 500; i++) {
        rc = fetch("https", s.port, "GET", "/readyz", NULL, cert, &st, b);
        if (rc == CURLE_OK && st == 200)
            break;
        h_sleep_ms(20);
    }
    CHECKF(rc == CURLE_OK && st == 200, "https /readyz: %s, status %ld", curl_easy_strerror(rc),
           st);

    rc = fetch("https", s.port, "POST", "/v1/jobs", "{\"model\":\"square\",\"inputs\":[4,5]}", cert,
               &st, b);
    char id[64] = "";
    if (CHECKF(rc == CURLE_OK && st == 202, "https POST /v1/jobs: %s, %ld %s",
               curl_easy_strerror(rc), st, b->buf)) {
        json_t *j = h_json_loads(b->buf, b->len);
        if (CHECK(h_jstr(j, "id") != NULL))
            snprintf(id, sizeof id, "%s", h_jstr(j, "id"));
        json_decref(j);
    }
    if (id[0]) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s", id);
        bool done = false;
        for (int i = 0; i < 500 && !done; i++) {
            if (fetch("https", s.port, "GET", path, NULL, cert, &st, b) != CURLE_OK || st != 200)
                break;
            done = strstr(b->buf, "\"status\":\"succeeded\"") != NULL;
            if (!done)
                h_sleep_ms(20);
        }
        CHECKF(done, "the job did not succeed: %s", b->buf);
        snprintf(path, sizeof path, "/v1/jobs/%s/results", id);
        rc = fetch("https", s.port, "GET", path, NULL, cert, &st, b);
        CHECKF(rc == CURLE_OK && st == 200 &&
                   strstr(b->buf, "{\"index\":0,\"output\":16},{\"index\":1,\"output\":25}"),
               "results: %ld %s", st, b->buf);
    }

    /* a client that does not trust the certificate refuses the server */
    rc = fetch("https", s.port, "GET", "/healthz", NULL, NULL, &st, b);
    CHECKF(rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE,
           "an unverified certificate was accepted: %s", curl_easy_strerror(rc));
    /* plain HTTP to an HTTPS port gets no HTTP answer */
    rc = fetch("http", s.port, "GET", "/healthz", NULL, NULL, &st, b);
    CHECKF(rc != CURLE_OK || st != 200, "plain HTTP was answered %ld", st);

    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", s.port);
    const char *hc[] = {bin, "healthcheck", "--listen", where, "--tls-cert", cert, "--tls-key",
                        key, NULL};
    struct h_run_result r;
    if (CHECK(h_run(hc, NULL, RUN_TIMEOUT_S, &r) == 0)) {
        CHECKF(r.exit_code == 0, "healthcheck over TLS: exit %d: %s", r.exit_code, r.err);
        CHECKF(strstr(r.out, "accepts connections") != NULL, "healthcheck said: %s", r.out);
        h_run_result_free(&r);
    }
    free(b);
    CHECK_INT(h_service_stop(&s, 0), 0);
    h_service_cleanup(&s);
}

static void test_bad_tls_settings(void)
{
    if (!have_cert) {
        h_skip("no certificate (see above)");
        return;
    }
    char data[600], missing[600];
    snprintf(data, sizeof data, "%s/data", h_tmpdir());
    snprintf(missing, sizeof missing, "%s/none.pem", h_tmpdir());
    struct {
        const char *args[6];
        const char *err_has;
    } cases[] = {
        {{"--tls-cert", cert, NULL}, "--tls-cert and --tls-key go together"},
        {{"--tls-key", key, NULL}, "--tls-cert and --tls-key go together"},
        {{"--tls-cert", missing, "--tls-key", key, NULL}, "cannot read"},
        /* both readable, but not a pair: libmicrohttpd refuses to start */
        {{"--tls-cert", cert, "--tls-key", other_key, NULL}, "cannot listen"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[16] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data, "--workers",
                                "1", "--model", "echo"};
        size_t n = 9;
        for (size_t k = 0; cases[i].args[k]; k++)
            argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        struct h_run_result r;
        if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
            continue;
        CHECKF(r.exit_code == 2 && !r.timed_out, "case %zu: exit %d%s", i, r.exit_code,
               r.timed_out ? " (timed out)" : "");
        CHECKF(strstr(r.err, cases[i].err_has) != NULL, "case %zu: stderr lacks \"%s\": %.2000s",
               i, cases[i].err_has, r.err);
        h_run_result_free(&r);
    }
}

int main(void)
{
    static const struct h_test tests[] = {
        {"a self-signed certificate (openssl)", make_cert},
        {"HTTPS: verified by libcurl, a job runs; healthcheck", test_https},
        {"bad TLS settings stop batchd at start (exit 2)", test_bad_tls_settings},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    bin = getenv("BATCHD_BIN");
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
