/*
 * test_answers: the text of batchd's answers, on one batchd:
 *   - reals are written in their shortest exact form (1.7e-7, not
 *     1.6999999999999999e-7): every real in the results (JSON pages and the
 *     NDJSON stream) and in /v1/models reads back to the same double, and
 *     no shorter decimal would (checked here with %.*g, independently of
 *     batchd's formatter); reals that need 17 digits keep them;
 *   - GET /v1/jobs (per query) carries an ETag: If-None-Match with it gets
 *     304 and no body while the page is unchanged, a changed page gets 200
 *     with another ETag, a list of tags and a weak comparison match too.
 */
#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_service svc;

/* Significant digits of a number token's mantissa, leading and trailing
 * zeros left out ("5.0" has 1, "0.30000000000000004" has 17). */
static int sig_digits(const char *t, size_t n)
{
    char d[64];
    size_t k = 0;
    for (size_t i = 0; i < n && t[i] != 'e' && t[i] != 'E' && k < sizeof d; i++)
        if (t[i] >= '0' && t[i] <= '9' && (k > 0 || t[i] != '0'))
            d[k++] = t[i];
    while (k > 0 && d[k - 1] == '0')
        k--;
    return (int)k;
}

/*
 * Checks every real token (outside strings) of text: no decimal with fewer
 * significant digits reads back to the same double. Returns how many reals
 * were checked (and counts a failed check per long one).
 */
static int check_reals_shortest(const char *text, const char *where)
{
    int n_reals = 0;
    bool in_str = false;
    for (const char *p = text; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"') {
            in_str = true;
            continue;
        }
        if (*p != '-' && (*p < '0' || *p > '9'))
            continue;
        size_t len = strspn(p, "0123456789+-.eE");
        char tok[64];
        if (len < sizeof tok && strpbrk((snprintf(tok, sizeof tok, "%.*s", (int)len, p), tok), ".eE")) {
            n_reals++;
            double v = strtod(tok, NULL);
            int d = sig_digits(tok, len);
            char shorter[400];
            snprintf(shorter, sizeof shorter, "%.*g", d > 1 ? d - 1 : 1, v);
            CHECKF(d == 1 || strtod(shorter, NULL) != v,
                   "%s: %s has %d significant digits, %s reads back the same", where, tok, d, shorter);
        }
        p += len - 1;
    }
    return n_reals;
}

static void test_reals_shortest(void)
{
    const char *body = "{\"model\":\"echo\",\"inputs\":[0.1,1.7e-7,0.30000000000000004,5.0,1e16,"
                       "-2.5e-300,123.456]}";
    char id[32];
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return;
    json_t *job = h_wait_job(&svc, id, 60);
    if (!CHECK(job != NULL))
        return;
    json_decref(job);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/results", id);
    struct h_resp r;
    if (CHECK(h_get(&svc, path, &r) == 0) && CHECK_INT(r.status, 200)) {
        h_note("%s", r.body);
        /* what the client sent comes back spelt the same */
        static const char *const want[] = {"\"output\":0.1}", "\"output\":1.7e-7}",
                                           "\"output\":0.30000000000000004}", "\"output\":5.0}",
                                           "\"output\":1e16}", "\"output\":-2.5e-300}",
                                           "\"output\":123.456}"};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
            CHECKF(strstr(r.body, want[i]) != NULL, "%s not in %s", want[i], r.body);
        CHECK_INT(check_reals_shortest(r.body, "results"), 7);
    }
    h_resp_free(&r);
    /* the NDJSON stream writes the same text */
    const char *nd[] = {"Accept: application/x-ndjson", NULL};
    if (CHECK(h_get_hdr(&svc, path, nd, &r) == 0) && CHECK_INT(r.status, 200)) {
        CHECKF(strstr(r.body, "\"output\":1.7e-7}") != NULL, "stream: %s", r.body);
        CHECK_INT(check_reals_shortest(r.body, "stream"), 7);
    }
    h_resp_free(&r);

    /* a computed real that needs 17 digits keeps them: 1.1 squared */
    const char *sq = "{\"model\":\"square\",\"inputs\":[1.1,0.5]}";
    if (!h_submit(&svc, "/v1/jobs", "application/json", sq, strlen(sq), id, 30))
        return;
    job = h_wait_job(&svc, id, 60);
    if (!CHECK(job != NULL))
        return;
    json_decref(job);
    snprintf(path, sizeof path, "/v1/jobs/%s/results", id);
    if (CHECK(h_get(&svc, path, &r) == 0) && CHECK_INT(r.status, 200)) {
        CHECKF(strstr(r.body, "\"output\":1.2100000000000002}") != NULL, "%s", r.body);
        CHECKF(strstr(r.body, "\"output\":0.25}") != NULL, "%s", r.body);
        check_reals_shortest(r.body, "square");
    }
    h_resp_free(&r);

    /* load and init times: small reals, the 1.6999999999999999e-7 */
    if (CHECK(h_get(&svc, "/v1/models", &r) == 0) && CHECK_INT(r.status, 200)) {
        int n = check_reals_shortest(r.body, "/v1/models");
        CHECKF(n > 0, "no reals in %s", r.body);
        h_note("/v1/models: %d reals, each in its shortest form", n);
    }
    h_resp_free(&r);
}

/* GET path with If-None-Match: inm (NULL: none). */
static int get_inm(const char *path, const char *inm, struct h_resp *r)
{
    char h[400];
    snprintf(h, sizeof h, "If-None-Match: %s", inm ? inm : "");
    const char *hdrs[] = {h, NULL};
    return h_get_hdr(&svc, path, inm ? hdrs : NULL, r);
}

static void test_list_etag(void)
{
    const char *body = "{\"model\":\"square\",\"inputs\":[1,2,3]}";
    char id[32];
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return;
    json_t *job = h_wait_job(&svc, id, 60);
    if (!CHECK(job != NULL))
        return;
    json_decref(job);

    const char *path = "/v1/jobs?limit=5";
    struct h_resp r;
    char etag[128] = "";
    if (CHECK(get_inm(path, NULL, &r) == 0) && CHECK_INT(r.status, 200)) {
        const char *et = h_resp_header(&r, "ETag");
        if (CHECKF(et && et[0] == '"' && et[strlen(et) - 1] == '"', "ETag %s", et ? et : "(none)"))
            snprintf(etag, sizeof etag, "%s", et);
    }
    h_resp_free(&r);
    if (!etag[0])
        return;

    /* unchanged: 304, no body, the same tag */
    if (CHECK(get_inm(path, etag, &r) == 0)) {
        CHECK_INT(r.status, 304);
        CHECK_INT(r.len, 0);
        const char *et = h_resp_header(&r, "ETag");
        CHECKF(et && strcmp(et, etag) == 0, "304 ETag %s, expected %s", et ? et : "(none)", etag);
    }
    h_resp_free(&r);
    char inm[300];
    snprintf(inm, sizeof inm, "\"x\", W/%s", etag);
    if (CHECK(get_inm(path, inm, &r) == 0))
        CHECK_INT(r.status, 304);
    h_resp_free(&r);

    /* another query is another page: its own tag, so the old one is 200 */
    if (CHECK(get_inm("/v1/jobs?status=failed", etag, &r) == 0)) {
        CHECK_INT(r.status, 200);
        const char *et = h_resp_header(&r, "ETag");
        CHECKF(et && strcmp(et, etag) != 0, "the empty page has the ETag %s of another", et ? et : "(none)");
    }
    h_resp_free(&r);

    /* a new job changes the page: 200 and a new tag */
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return;
    if (CHECK(get_inm(path, etag, &r) == 0)) {
        CHECK_INT(r.status, 200);
        const char *et = h_resp_header(&r, "ETag");
        CHECKF(et && strcmp(et, etag) != 0, "the page changed, its ETag did not (%s)", etag);
        CHECKF(strstr(r.body, id) != NULL, "the new job %s is not on the page", id);
    }
    h_resp_free(&r);
    job = h_wait_job(&svc, id, 60);
    json_decref(job);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"reals in their shortest exact form (results, stream, models)", test_reals_shortest},
        {"GET /v1/jobs: ETag per page, If-None-Match -> 304", test_list_etag},
    };
    static const char *const args[] = {"--workers", "1", "--model", "echo", "--model", "square", NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 15, tests, sizeof tests / sizeof tests[0]);
}
