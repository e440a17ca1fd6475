/*
 * test_ui: the dashboard's files as batchd serves them (getDashboard,
 * getUiAsset in openapi.yaml): types, ETag and 304, Cache-Control, the
 * Content-Security-Policy, 404 for an unknown file, and that the page needs
 * nothing but files batchd has. What the page does in a browser is
 * tests/browser/'s business.
 *
 * One batchd with one worker of `square`; no check depends on timing.
 */
#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_service svc;

static bool has(const char *hay, const char *needle)
{
    return hay != NULL && needle != NULL && strstr(hay, needle) != NULL;
}

/* True when etag is "<16 lowercase hex digits>", quotes included. */
static bool ui_etag_ok(const char *etag)
{
    if (etag == NULL || strlen(etag) != 18 || etag[0] != '"' || etag[17] != '"')
        return false;
    for (int i = 1; i < 17; i++)
        if (strchr("0123456789abcdef", etag[i]) == NULL)
            return false;
    return true;
}

/*
 * GETs path and checks a 200 of content type `essence` with the dashboard's
 * headers; copies the ETag to etag[64]. Returns true when all held (resp
 * is filled either way; the caller frees it).
 */
static bool get_asset(const char *path, const char *essence, struct h_resp *r, char *etag)
{
    etag[0] = '\0';
    if (!CHECKF(h_get(&svc, path, r) == 0, "%s: %s", path, r->error))
        return false;
    bool ok = CHECKF(r->status == 200, "%s: status %ld", path, r->status);
    ok &= CHECKF(h_resp_is(r, essence), "%s: Content-Type %s, expected %s", path,
                 r->content_type ? r->content_type : "(none)", essence);
    ok &= CHECKF(has(r->content_type, "charset=utf-8"), "%s: Content-Type %s has no charset",
                 path, r->content_type ? r->content_type : "(none)");
    const char *e = h_resp_header(r, "ETag");
    ok &= CHECKF(ui_etag_ok(e), "%s: ETag %s", path, e ? e : "(none)");
    if (e != NULL)
        snprintf(etag, 64, "%s", e);
    const char *cc = h_resp_header(r, "Cache-Control");
    ok &= CHECKF(cc != NULL && strcmp(cc, "no-cache") == 0, "%s: Cache-Control %s", path,
                 cc ? cc : "(none)");
    const char *csp = h_resp_header(r, "Content-Security-Policy");
    ok &= CHECKF(has(csp, "default-src 'self'") && !has(csp, "unsafe-inline") &&
                     has(csp, "frame-ancestors 'none'"),
                 "%s: Content-Security-Policy %s", path, csp ? csp : "(none)");
    const char *nosniff = h_resp_header(r, "X-Content-Type-Options");
    ok &= CHECKF(nosniff != NULL && strcmp(nosniff, "nosniff") == 0, "%s: nosniff", path);
    ok &= CHECKF(r->len > 100, "%s: only %zu bytes", path, r->len);
    /* served from the binary, and it must not reach out anywhere else */
    ok &= CHECKF(!has(r->body, "http://") && !has(r->body, "https://"),
                 "%s: the file names another origin", path);
    return ok;
}

/* GET path with If-None-Match: inm; returns the status (0 on no answer). */
static long get_conditional(const char *path, const char *inm, char *etag_out)
{
    char hdr[200];
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", inm);
    const char *hdrs[] = {hdr, NULL};
    struct h_resp r;
    long status = 0;
    if (CHECKF(h_get_hdr(&svc, path, hdrs, &r) == 0, "%s", r.error)) {
        status = r.status;
        if (status == 304) {
            CHECKF(r.len == 0, "a 304 with %zu bytes of body", r.len);
            const char *cc = h_resp_header(&r, "Cache-Control");
            CHECKF(cc != NULL && strcmp(cc, "no-cache") == 0, "304 without Cache-Control");
        }
        const char *e = h_resp_header(&r, "ETag");
        if (etag_out != NULL)
            snprintf(etag_out, 64, "%s", e ? e : "");
    }
    h_resp_free(&r);
    return status;
}

/* ------------------------------------------------------------------ tests */

static void test_dashboard(void)
{
    struct h_resp r;
    char etag[64];
    if (get_asset("/", "text/html", &r, etag)) {
        CHECK(has(r.body, "<!doctype html>"));
        CHECK(has(r.body, "<html lang=\"en\">"));
        CHECK(has(r.body, "<main"));
        CHECK(has(r.body, "name=\"viewport\""));
        /* no inline script or style: the CSP would block them */
        CHECK(!has(r.body, "<script>") && !has(r.body, "<style") && !has(r.body, " style="));
    }
    h_resp_free(&r);

    /* the page under its own name is the same file */
    char etag2[64];
    if (get_asset("/ui/index.html", "text/html", &r, etag2))
        CHECK_STR(etag2, etag);
    h_resp_free(&r);
}

static void test_assets(void)
{
    struct h_resp r;
    char etag_js[64], etag_css[64];
    if (get_asset("/ui/app.js", "application/javascript", &r, etag_js))
        CHECK(has(r.body, "'use strict'"));
    h_resp_free(&r);
    get_asset("/ui/app.css", "text/css", &r, etag_css);
    h_resp_free(&r);
    CHECK(strcmp(etag_js, etag_css) != 0);

    /* every /ui/ file the page names is served */
    struct h_resp page;
    if (CHECK(h_get(&svc, "/", &page) == 0 && page.status == 200)) {
        int n = 0;
        const char *p = page.body;
        for (int guard = 0; guard < 64 && (p = strstr(p, "\"/ui/")) != NULL; guard++) {
            const char *end = strchr(p + 1, '"');
            if (!CHECK(end != NULL) || end - p > 100)
                break;
            char path[128];
            snprintf(path, sizeof path, "%.*s", (int)(end - p - 1), p + 1);
            struct h_resp a;
            CHECKF(h_get(&svc, path, &a) == 0 && a.status == 200, "%s: %ld", path, a.status);
            h_resp_free(&a);
            n++;
            p = end;
        }
        CHECKF(n >= 2, "the page names %d /ui/ files", n);
    }
    h_resp_free(&page);
}

static void test_not_modified(void)
{
    static const char *const paths[] = {"/", "/ui/app.js", "/ui/app.css"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct h_resp r;
        if (!CHECK(h_get(&svc, paths[i], &r) == 0 && r.status == 200)) {
            h_resp_free(&r);
            continue;
        }
        char etag[64];
        const char *e = h_resp_header(&r, "ETag");
        snprintf(etag, sizeof etag, "%s", e ? e : "\"none\"");
        h_resp_free(&r);

        char got[64];
        CHECKF(get_conditional(paths[i], etag, got) == 304, "%s with its ETag", paths[i]);
        CHECK_STR(got, etag);
        char weak[80];
        snprintf(weak, sizeof weak, "W/%s", etag);
        CHECKF(get_conditional(paths[i], weak, NULL) == 304, "%s with W/ETag", paths[i]);
        char list[160];
        snprintf(list, sizeof list, "\"0000000000000000\", %s", etag);
        CHECKF(get_conditional(paths[i], list, NULL) == 304, "%s with a list", paths[i]);
        CHECKF(get_conditional(paths[i], "*", NULL) == 304, "%s with *", paths[i]);
        CHECKF(get_conditional(paths[i], "\"0000000000000000\"", NULL) == 200,
               "%s with another ETag", paths[i]);
    }
}

static void test_errors(void)
{
    struct h_resp r;
    if (CHECK(h_get(&svc, "/ui/nope.js", &r) == 0))
        CHECK_PROBLEM(&r, 404, "not-found", "/ui/nope.js");
    h_resp_free(&r);
    if (CHECK(h_get(&svc, "/ui/", &r) == 0))
        CHECK_PROBLEM(&r, 404, "not-found", "/ui/");
    h_resp_free(&r);
    if (CHECK(h_get(&svc, "/ui/a/app.js", &r) == 0))
        CHECK_PROBLEM(&r, 404, "not-found", "/ui/a/app.js");
    h_resp_free(&r);
    if (CHECK(h_get(&svc, "/index.html", &r) == 0))
        CHECK_PROBLEM(&r, 404, "not-found", "/index.html");
    h_resp_free(&r);
    if (CHECK(h_get(&svc, "/?x=1", &r) == 0))
        CHECK_PROBLEM(&r, 400, "invalid-parameter", "/");
    h_resp_free(&r);
    if (CHECK(h_post(&svc, "/", "text/plain", "x", &r) == 0)) {
        CHECK_PROBLEM(&r, 405, "method-not-allowed", "/");
        const char *allow = h_resp_header(&r, "Allow");
        CHECK(allow != NULL && strcmp(allow, "GET") == 0);
    }
    h_resp_free(&r);
    if (CHECK(h_delete(&svc, "/ui/app.js", &r) == 0))
        CHECK_PROBLEM(&r, 405, "method-not-allowed", "/ui/app.js");
    h_resp_free(&r);
}

/* The dashboard's requests are counted like any other, by route template:
 * an asset name never becomes a label value. */
static void test_metrics_labels(void)
{
    struct h_resp r;
    if (CHECK(h_get(&svc, "/metrics", &r) == 0 && r.status == 200)) {
        CHECK(has(r.body, "route=\"/ui/{asset}\""));
        CHECK(has(r.body, "route=\"/\""));
        CHECK(!has(r.body, "app.js"));
    }
    h_resp_free(&r);
}

/* ------------------------------------------------------------------- main */

int main(void)
{
    static const struct h_test tests[] = {
        {"GET / is the dashboard page", test_dashboard},
        {"GET /ui/{asset}: app.js, app.css", test_assets},
        {"ETag and 304", test_not_modified},
        {"404, 400, 405", test_errors},
        {"metrics label the routes by template", test_metrics_labels},
    };
    static const char *const args[] = {"--workers", "1", "--model", "square", NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 15, tests, sizeof tests / sizeof tests[0]);
}
