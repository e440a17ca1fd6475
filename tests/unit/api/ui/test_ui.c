/* Unit tests of api/ui.c and the table scripts/embed.c generates from
 * api/ui/: every dashboard file is embedded with its type and an ETag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "api/ui/ui.h"

/* True when etag is a quoted string of 16 lowercase hex digits. */
static bool etag_ok(const char *etag)
{
    if (strlen(etag) != 18 || etag[0] != '"' || etag[17] != '"')
        return false;
    for (int i = 1; i < 17; i++)
        if (!strchr("0123456789abcdef", etag[i]))
            return false;
    return true;
}

static void test_find(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *type;
        const char *starts;
    } want[] = {
        { "index.html", "text/html; charset=utf-8", "<!doctype html>" },
        { "app.js", "application/javascript; charset=utf-8", "/*" },
        { "app.css", "text/css; charset=utf-8", "/*" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct api_ui_asset *a = api_ui_asset_find(want[i].name);
        assert_non_null(a);
        assert_string_equal(a->name, want[i].name);
        assert_string_equal(a->content_type, want[i].type);
        assert_true(a->len > strlen(want[i].starts));
        assert_memory_equal(a->data, want[i].starts, strlen(want[i].starts));
        assert_true(etag_ok(a->etag));
    }
    assert_null(api_ui_asset_find("nope.js"));
    assert_null(api_ui_asset_find("APP.JS"));
    assert_null(api_ui_asset_find(""));
    assert_null(api_ui_asset_find(NULL));
}

static void test_table(void **state)
{
    (void)state;
    assert_true(api_ui_assets_count >= 3);
    for (size_t i = 0; i < api_ui_assets_count; i++) {
        const struct api_ui_asset *a = &api_ui_assets[i];
        /* a NUL follows the bytes (the generator adds one) */
        assert_int_equal(a->data[a->len], 0);
        for (size_t k = i + 1; k < api_ui_assets_count; k++) {
            assert_string_not_equal(a->name, api_ui_assets[k].name);
            assert_string_not_equal(a->etag, api_ui_assets[k].etag);
        }
    }
}

/* The page must not need anything the policy forbids: no inline script or
 * style, nothing from another origin. */
static void test_page_fits_csp(void **state)
{
    (void)state;
    assert_non_null(strstr(API_UI_CSP, "default-src 'self'"));
    assert_null(strstr(API_UI_CSP, "unsafe-inline"));
    assert_null(strstr(API_UI_CSP, "unsafe-eval"));
    const struct api_ui_asset *a = api_ui_asset_find("index.html");
    assert_non_null(a);
    const char *html = (const char *)a->data;
    assert_null(strstr(html, "<script>"));
    assert_null(strstr(html, "<style"));
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, " onclick="));
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_non_null(strstr(html, "src=\"/ui/app.js\""));
    assert_non_null(strstr(html, "href=\"/ui/app.css\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_page_fits_csp),
    };
    return cmocka_run_group_tests_name("api/ui", tests, NULL, NULL);
}
