/*
 * test_auth: bearer tokens and CORS against the real service.
 *
 *   - With BATCHD_API_TOKENS and --tokens-file: every /v1 operation answers
 *     401 without a token (WWW-Authenticate: Bearer, problem "unauthorized"),
 *     401 with a wrong one (error="invalid_token") or another scheme; the
 *     variable's token and the file's token both work (scheme in any case);
 *     /healthz, /readyz and /metrics stay open.
 *   - SIGHUP to the supervisor (our child, by PID) reloads the tokens file:
 *     the new token works, the removed one is refused, the variable's
 *     token still works; a file made invalid is not loaded (the tokens in
 *     use stay, the log says why).
 *   - CORS (--cors-origins): a preflight (OPTIONS) from a listed origin gets
 *     Access-Control-Allow-Origin/-Methods/-Headers; from another origin it
 *     gets none; an actual request from a listed origin gets the origin and
 *     the exposed headers; preflights need no token. Every /v1 route's
 *     preflight is exercised (they are operations of openapi.yaml).
 *   - --auth-metrics true: /metrics needs a token, /healthz does not.
 *   - Without tokens: /v1 is open, the log says authentication is off, and
 *     nothing is allowed cross-origin by default.
 */
#include "tests/integration/harness.h"
#include "tests/integration/raw.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENV_TOKEN "tok-env-0123456789abcdef"
#define FILE_TOKEN "tok-file-0123456789abcdef"
#define NEW_TOKEN "tok-new-0123456789abcdef"
#define ORIGIN "https://dash.example:8443"
#define OTHER_ORIGIN "https://evil.example"
#define SOME_ID "aaaaaaaaaaaaaaaaaaaaaaaaaa" /* well-formed, never issued */

static struct h_service svc;
static bool svc_up;
static char tokens_path[512];

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!CHECKF(f != NULL, "cannot write %s: %s", path, strerror(errno)))
        return false;
    fputs(text, f);
    return CHECK(fclose(f) == 0);
}

/* One request with an optional bearer token and extra header lines. */
static int req_auth(struct h_service *s, const char *method, const char *path, const char *auth,
                    const char *body, const char *const *extra, struct h_resp *r)
{
    const char *hdrs[8];
    char authz[256];
    size_t n = 0;
    if (auth) {
        snprintf(authz, sizeof authz, "Authorization: %s", auth);
        hdrs[n++] = authz;
    }
    if (body)
        hdrs[n++] = "Content-Type: application/json";
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        hdrs[n++] = extra[i];
    hdrs[n] = NULL;
    struct h_req req = {.method = method, .path = path, .headers = hdrs, .body = body,
                        .body_len = body ? strlen(body) : 0, .timeout_s = 10};
    return h_request(s, &req, r);
}

/* The status of one request, after freeing the response. */
static long status_of(struct h_service *s, const char *method, const char *path,
                      const char *auth)
{
    struct h_resp r;
    long st = req_auth(s, method, path, auth, NULL, NULL, &r) == 0 ? r.status : 0;
    h_resp_free(&r);
    return st;
}

static void start(void)
{
    snprintf(tokens_path, sizeof tokens_path, "%s/tokens", h_tmpdir());
    if (!write_text(tokens_path, "# batchd tokens\n\n  " FILE_TOKEN "  \n"))
        return;
    const char *args[] = {"--workers", "1", "--model", "square", "--tokens-file", tokens_path,
                          "--cors-origins", ORIGIN, NULL};
    const char *env[] = {"BATCHD_API_TOKENS=" ENV_TOKEN, NULL};
    struct h_service_opts o = {.args = args, .env = env};
    svc_up = h_service_start(&svc, &o) == 0;
    CHECK(svc_up);
}

static void stop(void)
{
    CHECK_INT(h_service_stop(&svc, 0), 0);
    svc_up = false;
}

/* 401 with the problem and the challenge; `invalid` when a token was sent. */
static void check_401(struct h_resp *r, const char *path, bool invalid)
{
    CHECK_PROBLEM(r, 401, "unauthorized", path);
    const char *ch = h_resp_header(r, "WWW-Authenticate");
    if (CHECKF(ch != NULL, "401 without WWW-Authenticate on %s", path)) {
        CHECKF(strncmp(ch, "Bearer", 6) == 0, "WWW-Authenticate: %s", ch);
        CHECKF((strstr(ch, "invalid_token") != NULL) == invalid, "WWW-Authenticate: %s", ch);
    }
}

static void test_missing_token(void)
{
    static const struct {
        const char *method, *path, *body;
    } ops[] = {
        {"POST", "/v1/jobs", "{\"model\":\"square\",\"inputs\":[1]}"},
        {"GET", "/v1/jobs", NULL},
        {"GET", "/v1/jobs/" SOME_ID, NULL},
        {"DELETE", "/v1/jobs/" SOME_ID, NULL},
        {"GET", "/v1/jobs/" SOME_ID "/results", NULL},
        {"GET", "/v1/jobs/" SOME_ID "/result", NULL},
        {"GET", "/v1/models", NULL},
        {"GET", "/v1/workers", NULL},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct h_resp r;
        if (CHECK(req_auth(&svc, ops[i].method, ops[i].path, NULL, ops[i].body, NULL, &r) == 0))
            check_401(&r, ops[i].path, false);
        h_resp_free(&r);
    }
    /* under /v1 the token comes first: a 404 or 405 would tell a caller
     * without one which routes exist */
    static const struct {
        const char *method, *path;
    } hidden[] = {{"GET", "/v1/nothing"}, {"PUT", "/v1/jobs"}, {"GET", "/v1"},
                  {"DELETE", "/v1/models"}, {"GET", "/v1/jobs/not-an-id"}};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        struct h_resp r;
        if (CHECK(req_auth(&svc, hidden[i].method, hidden[i].path, NULL, NULL, NULL, &r) == 0))
            check_401(&r, hidden[i].path, false);
        h_resp_free(&r);
    }
    /* with a token they are answered as before */
    CHECK_INT(status_of(&svc, "GET", "/v1/nothing", "Bearer " ENV_TOKEN), 404);
    CHECK_INT(status_of(&svc, "PUT", "/v1/jobs", "Bearer " ENV_TOKEN), 405);
    /* outside /v1 nothing is secret: 404 without a token */
    CHECK_INT(status_of(&svc, "GET", "/nothing", NULL), 404);
}

/* "Bearer TOKEN<NUL>junk": libmicrohttpd cuts the value at the NUL, so it
 * would read as the right token; it is refused (400) before any route. */
static void test_nul_in_token(void)
{
    static const char *const paths[] = {"/v1/models", "/v1/nothing"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         "%s%cjunk\r\nConnection: close\r\n\r\n",
                         paths[i], ENV_TOKEN, 0);
        struct h_resp r;
        if (CHECK(h_raw_exchange(svc.port, req, (size_t)n, 10, &r) == 0)) {
            CHECK_PROBLEM(&r, 400, "invalid-parameter", paths[i]);
            CHECKF(r.body && strstr(r.body, "Authorization holds a NUL byte"),
                   "detail names the header: %s", r.body ? r.body : "(none)");
        }
        h_resp_free(&r);
    }
    /* the same token without the NUL is accepted (the test's request is sound) */
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                     "%s\r\nConnection: close\r\n\r\n",
                     ENV_TOKEN);
    struct h_resp r;
    if (CHECK(h_raw_exchange(svc.port, req, (size_t)n, 10, &r) == 0))
        CHECK_INT(r.status, 200);
    h_resp_free(&r);
}

static void test_wrong_token(void)
{
    static const char *const bad[] = {
        "Bearer not-a-token",
        "Bearer " ENV_TOKEN "x",           /* a longer token */
        "Bearer tok-env-0123456789abcde",  /* a prefix of a real one */
        "Bearer " FILE_TOKEN " extra",     /* a token, then more */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct h_resp r;
        if (CHECK(req_auth(&svc, "GET", "/v1/models", bad[i], NULL, NULL, &r) == 0))
            check_401(&r, "/v1/models", true);
        h_resp_free(&r);
    }
    /* not the Bearer scheme, or no token after it: as good as none */
    static const char *const other[] = {"Basic dXNlcjpwYXNz", "Bearer", "Bearer    ",
                                        ENV_TOKEN};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        struct h_resp r;
        if (CHECK(req_auth(&svc, "GET", "/v1/workers", other[i], NULL, NULL, &r) == 0))
            CHECK_PROBLEM(&r, 401, "unauthorized", "/v1/workers");
        h_resp_free(&r);
    }
}

/* A whole job with a token: submit, poll, results. */
static void run_job_with(const char *auth)
{
    struct h_resp r;
    char id[32] = "";
    if (CHECK(req_auth(&svc, "POST", "/v1/jobs", auth, "{\"model\":\"square\",\"inputs\":[2,3]}",
                       NULL, &r) == 0) &&
        CHECKF(r.status == 202, "POST /v1/jobs with %s: %ld %s", auth, r.status, r.body)) {
        const char *jid = h_jstr(h_json(&r), "id");
        if (CHECK(jid != NULL))
            snprintf(id, sizeof id, "%s", jid);
    }
    h_resp_free(&r);
    if (!id[0])
        return;
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    const char *status = NULL;
    for (int i = 0; i < 500; i++) {
        if (req_auth(&svc, "GET", path, auth, NULL, NULL, &r) != 0 || r.status != 200) {
            CHECKF(false, "GET %s: %ld", path, r.status);
            h_resp_free(&r);
            return;
        }
        status = h_jstr(h_json(&r), "status");
        bool done = status && strcmp(status, "succeeded") == 0;
        h_resp_free(&r);
        if (done)
            break;
        h_sleep_ms(20);
    }
    snprintf(path, sizeof path, "/v1/jobs/%s/results", id);
    if (CHECK(req_auth(&svc, "GET", path, auth, NULL, NULL, &r) == 0) && CHECK_INT(r.status, 200)) {
        char *text = h_json_dump(h_jget(h_json(&r), "results"));
        CHECK_STR(text, "[{\"index\":0,\"output\":4},{\"index\":1,\"output\":9}]");
        free(text);
    }
    h_resp_free(&r);
    /* and the listing, and cancelling a finished job (409, not 401) */
    CHECK_INT(status_of(&svc, "GET", "/v1/jobs?limit=5", auth), 200);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    CHECK_INT(status_of(&svc, "DELETE", path, auth), 409);
}

static void test_right_tokens(void)
{
    run_job_with("Bearer " ENV_TOKEN);
    run_job_with("bearer " FILE_TOKEN); /* the scheme is case-insensitive */
    CHECK_INT(status_of(&svc, "GET", "/v1/models", "BEARER  " ENV_TOKEN "  "), 200);
    CHECK_INT(status_of(&svc, "GET", "/v1/workers", "Bearer " FILE_TOKEN), 200);
}

static void test_open_routes(void)
{
    CHECK_INT(status_of(&svc, "GET", "/healthz", NULL), 200);
    CHECK_INT(status_of(&svc, "GET", "/readyz", NULL), 200);
    CHECK_INT(status_of(&svc, "GET", "/metrics", NULL), 200);
    /* a wrong token on an open route does not matter either */
    CHECK_INT(status_of(&svc, "GET", "/healthz", "Bearer nope"), 200);
    /* an unknown path outside /v1 is 404 without a token (under /v1: 401,
     * test_missing_token) */
    CHECK_INT(status_of(&svc, "GET", "/nothing", NULL), 404);
}

/* Polls (bounded) until GET /v1/models with `auth` answers `want`. */
static bool wait_status(const char *auth, long want)
{
    long st = 0;
    for (int i = 0; i < 250; i++) {
        st = status_of(&svc, "GET", "/v1/models", auth);
        if (st == want)
            return true;
        h_sleep_ms(20);
    }
    h_note("GET /v1/models with %s: %ld, expected %ld", auth, st, want);
    return false;
}

static void test_sighup_reload(void)
{
    if (!write_text(tokens_path, "# rotated\n" NEW_TOKEN "\n"))
        return;
    if (!CHECK(kill(svc.pid, SIGHUP) == 0))
        return;
    CHECK(wait_status("Bearer " NEW_TOKEN, 200));
    CHECK_INT(status_of(&svc, "GET", "/v1/models", "Bearer " FILE_TOKEN), 401);
    CHECK_INT(status_of(&svc, "GET", "/v1/models", "Bearer " ENV_TOKEN), 200);

    /* A file that no longer parses is not loaded: what was in use stays. */
    if (!write_text(tokens_path, "this line has spaces in it\n"))
        return;
    CHECK(kill(svc.pid, SIGHUP) == 0);
    bool logged = false;
    for (int i = 0; i < 250 && !logged; i++) {
        FILE *f = fopen(svc.log_file, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f))
            logged |= strstr(line, "tokens not reloaded") != NULL;
        if (f)
            fclose(f);
        if (!logged)
            h_sleep_ms(20);
    }
    CHECKF(logged, "no \"tokens not reloaded\" line in %s", svc.log_file);
    CHECK_INT(status_of(&svc, "GET", "/v1/models", "Bearer " NEW_TOKEN), 200);

    /* Restored for the tests that follow. */
    if (write_text(tokens_path, FILE_TOKEN "\n") && CHECK(kill(svc.pid, SIGHUP) == 0))
        CHECK(wait_status("Bearer " FILE_TOKEN, 200));
}

static void test_cors(void)
{
    static const char *const paths[] = {"/v1/jobs", "/v1/jobs/" SOME_ID,
                                        "/v1/jobs/" SOME_ID "/results",
                                        "/v1/jobs/" SOME_ID "/result", "/v1/models",
                                        "/v1/workers"};
    const char *allowed[] = {"Origin: " ORIGIN, "Access-Control-Request-Method: GET",
                             "Access-Control-Request-Headers: authorization", NULL};
    const char *denied[] = {"Origin: " OTHER_ORIGIN, "Access-Control-Request-Method: GET",
                            NULL};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct h_resp r;
        /* no token: preflights never carry one */
        if (CHECK(req_auth(&svc, "OPTIONS", paths[i], NULL, NULL, allowed, &r) == 0) &&
            CHECKF(r.status == 204, "OPTIONS %s: %ld %s", paths[i], r.status, r.body)) {
            const char *ao = h_resp_header(&r, "Access-Control-Allow-Origin");
            const char *am = h_resp_header(&r, "Access-Control-Allow-Methods");
            const char *ah = h_resp_header(&r, "Access-Control-Allow-Headers");
            CHECKF(ao && strcmp(ao, ORIGIN) == 0, "%s: Allow-Origin %s", paths[i], ao);
            CHECKF(am && strstr(am, "GET"), "%s: Allow-Methods %s", paths[i], am);
            CHECKF(ah && strcasestr(ah, "Authorization") && strcasestr(ah, "Content-Type") &&
                       strcasestr(ah, "If-None-Match") && strcasestr(ah, "X-Request-Id"),
                   "%s: Allow-Headers %s", paths[i], ah);
            CHECKF(h_resp_header(&r, "Access-Control-Max-Age") != NULL, "%s: no Max-Age",
                   paths[i]);
            const char *allow = h_resp_header(&r, "Allow");
            CHECKF(allow && strstr(allow, "OPTIONS"), "%s: Allow %s", paths[i], allow);
            CHECK(r.len == 0);
        }
        h_resp_free(&r);
        if (CHECK(req_auth(&svc, "OPTIONS", paths[i], NULL, NULL, denied, &r) == 0) &&
            CHECK_INT(r.status, 204)) {
            CHECKF(h_resp_header(&r, "Access-Control-Allow-Origin") == NULL,
                   "%s: an origin not on the list was allowed", paths[i]);
            CHECK(h_resp_header(&r, "Access-Control-Allow-Methods") == NULL);
        }
        h_resp_free(&r);
    }
    CHECK_INT(status_of(&svc, "OPTIONS", "/v1/jobs/not-an-id", NULL), 404);
    /* OPTIONS is a /v1 matter: /healthz does not have it */
    CHECK_INT(status_of(&svc, "OPTIONS", "/healthz", NULL), 405);

    /* the actual request from a listed origin */
    const char *from[] = {"Origin: " ORIGIN, NULL};
    struct h_resp r;
    if (CHECK(req_auth(&svc, "GET", "/v1/models", "Bearer " ENV_TOKEN, NULL, from, &r) == 0) &&
        CHECK_INT(r.status, 200)) {
        const char *ao = h_resp_header(&r, "Access-Control-Allow-Origin");
        const char *eh = h_resp_header(&r, "Access-Control-Expose-Headers");
        const char *vary = h_resp_header(&r, "Vary");
        CHECKF(ao && strcmp(ao, ORIGIN) == 0, "Allow-Origin %s", ao);
        CHECKF(eh && strstr(eh, "ETag") && strstr(eh, "Location") && strstr(eh, "Retry-After") &&
                   strstr(eh, "X-Request-Id"),
               "Expose-Headers %s", eh);
        CHECKF(vary && strcasestr(vary, "Origin"), "Vary %s", vary);
    }
    h_resp_free(&r);
    /* a 401 to a listed origin carries the origin too, so the page can read it */
    if (CHECK(req_auth(&svc, "GET", "/v1/models", NULL, NULL, from, &r) == 0)) {
        CHECK_PROBLEM(&r, 401, "unauthorized", "/v1/models");
        CHECK(h_resp_header(&r, "Access-Control-Allow-Origin") != NULL);
    }
    h_resp_free(&r);
    const char *other[] = {"Origin: " OTHER_ORIGIN, NULL};
    if (CHECK(req_auth(&svc, "GET", "/v1/models", "Bearer " ENV_TOKEN, NULL, other, &r) == 0)) {
        CHECK_INT(r.status, 200);
        CHECK(h_resp_header(&r, "Access-Control-Allow-Origin") == NULL);
    }
    h_resp_free(&r);
}

/* Starts a second service with `args` and `env`; fn runs against it. */
static void with_service(const char *const *args, const char *const *env,
                         void (*fn)(struct h_service *))
{
    struct h_service s;
    struct h_service_opts o = {.args = args, .env = env};
    if (h_service_start(&s, &o) == 0) {
        fn(&s);
        CHECK_INT(h_service_stop(&s, 0), 0);
    }
    h_service_cleanup(&s);
}

static void metrics_locked(struct h_service *s)
{
    struct h_resp r;
    if (CHECK(req_auth(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 0))
        check_401(&r, "/metrics", false);
    h_resp_free(&r);
    CHECK_INT(status_of(s, "GET", "/metrics", "Bearer " ENV_TOKEN), 200);
    CHECK_INT(status_of(s, "GET", "/healthz", NULL), 200);
    CHECK_INT(status_of(s, "GET", "/readyz", NULL), 200);
}

static void test_auth_metrics(void)
{
    const char *args[] = {"--workers", "1", "--model", "echo", "--auth-metrics", "true", NULL};
    const char *env[] = {"BATCHD_API_TOKENS=other-token," ENV_TOKEN, NULL};
    with_service(args, env, metrics_locked);
}

static void no_tokens(struct h_service *s)
{
    CHECK_INT(status_of(s, "GET", "/v1/models", NULL), 200);
    CHECK_INT(status_of(s, "GET", "/v1/models", "Bearer anything"), 200);
    const char *pre[] = {"Origin: " ORIGIN, "Access-Control-Request-Method: POST", NULL};
    struct h_resp r;
    if (CHECK(req_auth(s, "OPTIONS", "/v1/jobs", NULL, NULL, pre, &r) == 0)) {
        CHECK_INT(r.status, 204);
        CHECKF(h_resp_header(&r, "Access-Control-Allow-Origin") == NULL,
               "no --cors-origins, yet an origin was allowed");
    }
    h_resp_free(&r);
    bool said = false;
    FILE *f = fopen(s->log_file, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        said |= strstr(line, "authentication is off") != NULL;
    if (f)
        fclose(f);
    CHECKF(said, "the log does not say that authentication is off");
}

static void test_no_tokens(void)
{
    const char *args[] = {"--workers", "1", "--model", "echo", NULL};
    with_service(args, NULL, no_tokens);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"no token: 401 + WWW-Authenticate + problem on every /v1 operation", test_missing_token},
        {"wrong token or scheme: 401", test_wrong_token},
        {"a token cut by a NUL byte: 400, not accepted", test_nul_in_token},
        {"the variable's and the file's tokens work", test_right_tokens},
        {"/healthz, /readyz, /metrics stay open", test_open_routes},
        {"SIGHUP reloads the tokens file; a bad file is not loaded", test_sighup_reload},
        {"CORS: preflight from listed and other origins, actual requests", test_cors},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_one("start batchd with tokens and CORS", start);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    h_run_one("--auth-metrics: /metrics needs a token, probes do not", test_auth_metrics);
    h_run_one("no tokens: /v1 open, said in the log, no CORS by default", test_no_tokens);
    return h_finish();
}
