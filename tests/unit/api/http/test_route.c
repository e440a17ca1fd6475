/* Unit tests of api/route.c: paths, methods, Allow values, job ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "api/http/route.h"

#define ID "abcdefghijklmnopqrstuvwxyz"  /* 26 valid characters */
#define ID2 "234567abcdefghijklmnopqrst"

static const struct {
    const char *path;
    int rc;
    enum api_route route;
    bool id_valid;
    const char *id;
} cases[] = {
    { "/v1/jobs", 0, API_ROUTE_JOBS, false, "" },
    { "/v1/models", 0, API_ROUTE_MODELS, false, "" },
    { "/v1/workers", 0, API_ROUTE_WORKERS, false, "" },
    { "/healthz", 0, API_ROUTE_HEALTHZ, false, "" },
    { "/readyz", 0, API_ROUTE_READYZ, false, "" },
    { "/metrics", 0, API_ROUTE_METRICS, false, "" },
    { "/v1/jobs/" ID, 0, API_ROUTE_JOB, true, ID },
    { "/v1/jobs/" ID2, 0, API_ROUTE_JOB, true, ID2 },
    { "/v1/jobs/" ID "/results", 0, API_ROUTE_JOB_RESULTS, true, ID },
    /* the shape of a route, a malformed id: route matched, id refused */
    { "/v1/jobs/nope", 0, API_ROUTE_JOB, false, "" },
    { "/v1/jobs/ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0, API_ROUTE_JOB, false, "" },
    { "/v1/jobs/abcdefghijklmnopqrstuvwxy1", 0, API_ROUTE_JOB, false, "" },  /* 1 is not base32 */
    { "/v1/jobs/abcdefghijklmnopqrstuvwxy8", 0, API_ROUTE_JOB, false, "" },
    { "/v1/jobs/" ID "a", 0, API_ROUTE_JOB, false, "" },                     /* 27 */
    { "/v1/jobs/abcdefghijklmnopqrstuvwxy", 0, API_ROUTE_JOB, false, "" },   /* 25 */
    { "/v1/jobs/x/results", 0, API_ROUTE_JOB_RESULTS, false, "" },
    { "/v1/jobs/" ID "/result", 0, API_ROUTE_JOB_RESULT, true, ID },
    /* the dashboard */
    { "/", 0, API_ROUTE_DASHBOARD, false, "" },
    { "/ui/app.js", 0, API_ROUTE_UI_ASSET, false, "" },
    { "/ui/nope", 0, API_ROUTE_UI_ASSET, false, "" },
    /* no route */
    { "/ui/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/ui", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/ui/a/b", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/ui/app.js/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/uiapp.js", -ENOENT, API_ROUTE_NONE, false, "" },
    { "//", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/index.html", -ENOENT, API_ROUTE_NONE, false, "" },
    { "", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs//results", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/" ID "/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/" ID "/results/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/" ID "/result/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/" ID "/resul", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobs/" ID "/results/x", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/Jobs", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/V1/models", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/healthz/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v2/jobs", -ENOENT, API_ROUTE_NONE, false, "" },
    { "v1/jobs", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/jobsx", -ENOENT, API_ROUTE_NONE, false, "" },
    /* objects: Crockford base32 ids; a malformed one still matches the route */
    { "/v1/objects", 0, API_ROUTE_OBJECTS, false, "" },
    { "/v1/objects/0123456789abcdefghjkmnpqrs", 0, API_ROUTE_OBJECT, true,
      "0123456789abcdefghjkmnpqrs" },
    { "/v1/objects/0123456789abcdefghjkmnpqri", 0, API_ROUTE_OBJECT, false, "" },
    { "/v1/objects/..", 0, API_ROUTE_OBJECT, false, "" },
    { "/v1/objects/0123456789ABCDEFGHJKMNPQRS", 0, API_ROUTE_OBJECT, false, "" },
    { "/v1/objects/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/objects/../etc", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/objects/0123456789abcdefghjkmnpqrs/", -ENOENT, API_ROUTE_NONE, false, "" },
    { "/v1/objectsx", -ENOENT, API_ROUTE_NONE, false, "" },
};

static void test_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct api_match m;
        int rc = api_route_match(cases[i].path, &m);
        if (rc != cases[i].rc || m.route != cases[i].route || m.id_valid != cases[i].id_valid)
            fail_msg("%s: rc %d route %d id_valid %d", cases[i].path, rc, m.route, m.id_valid);
        assert_string_equal(m.id, cases[i].id);
    }
    struct api_match m;
    assert_int_equal(api_route_match(NULL, &m), -ENOENT);
    /* the asset segment is borrowed from the path; other routes have none */
    const char *path = "/ui/app.css";
    assert_int_equal(api_route_match(path, &m), 0);
    assert_ptr_equal(m.asset, path + 4);
    assert_int_equal(api_route_match("/v1/models", &m), 0);
    assert_null(m.asset);
}

static void test_methods(void **state)
{
    (void)state;
    assert_int_equal(api_method_parse("GET"), API_METHOD_GET);
    assert_int_equal(api_method_parse("POST"), API_METHOD_POST);
    assert_int_equal(api_method_parse("DELETE"), API_METHOD_DELETE);
    assert_int_equal(api_method_parse("OPTIONS"), API_METHOD_OPTIONS);
    assert_int_equal(api_method_parse("options"), API_METHOD_OTHER);
    assert_int_equal(api_method_parse("get"), API_METHOD_OTHER);
    assert_int_equal(api_method_parse("HEAD"), API_METHOD_OTHER);
    assert_int_equal(api_method_parse("PUT"), API_METHOD_OTHER);
    assert_int_equal(api_method_parse(""), API_METHOD_OTHER);
    assert_int_equal(api_method_parse(NULL), API_METHOD_OTHER);

    assert_int_equal(api_route_methods(API_ROUTE_JOBS),
                     API_METHOD_GET | API_METHOD_POST | API_METHOD_OPTIONS);
    assert_int_equal(api_route_methods(API_ROUTE_JOB),
                     API_METHOD_GET | API_METHOD_DELETE | API_METHOD_OPTIONS);
    assert_int_equal(api_route_methods(API_ROUTE_JOB_RESULTS), API_METHOD_GET | API_METHOD_OPTIONS);
    assert_int_equal(api_route_methods(API_ROUTE_METRICS), API_METHOD_GET);
    assert_int_equal(api_route_methods(API_ROUTE_NONE), 0);
    assert_string_equal(api_route_allow(API_ROUTE_JOBS), "GET, POST, OPTIONS");
    assert_string_equal(api_route_allow(API_ROUTE_JOB), "GET, DELETE, OPTIONS");
    assert_string_equal(api_route_allow(API_ROUTE_METRICS), "GET");
    assert_int_equal(api_route_methods(API_ROUTE_DASHBOARD), API_METHOD_GET);
    assert_int_equal(api_route_methods(API_ROUTE_UI_ASSET), API_METHOD_GET);
    assert_string_equal(api_route_allow(API_ROUTE_UI_ASSET), "GET");
}

static void test_templates(void **state)
{
    (void)state;
    static const struct {
        enum api_route route;
        const char *tmpl;
    } t[] = {
        { API_ROUTE_NONE, "unmatched" },
        { API_ROUTE_JOBS, "/v1/jobs" },
        { API_ROUTE_JOB, "/v1/jobs/{id}" },
        { API_ROUTE_JOB_RESULTS, "/v1/jobs/{id}/results" },
        { API_ROUTE_MODELS, "/v1/models" },
        { API_ROUTE_WORKERS, "/v1/workers" },
        { API_ROUTE_HEALTHZ, "/healthz" },
        { API_ROUTE_READYZ, "/readyz" },
        { API_ROUTE_METRICS, "/metrics" },
        { API_ROUTE_DASHBOARD, "/" },
        { API_ROUTE_UI_ASSET, "/ui/{asset}" },
        { (enum api_route)1000, "unmatched" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_string_equal(api_route_template(t[i].route), t[i].tmpl);
}

static void test_job_id(void **state)
{
    (void)state;
    assert_true(api_job_id_valid(ID, 26));
    assert_true(api_job_id_valid("22222222222222222222222222", 26));
    assert_false(api_job_id_valid(ID, 25));
    assert_false(api_job_id_valid("", 0));
    assert_false(api_job_id_valid("abcdefghijklmnopqrstuvwxy0", 26));
    assert_false(api_job_id_valid("abcdefghijklmnopqrstuvwxy-", 26));
    assert_false(api_job_id_valid("abcdefghijklmnopqrstuvwxy\0", 26));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_job_id),
    };
    return cmocka_run_group_tests_name("api/route", tests, NULL, NULL);
}
