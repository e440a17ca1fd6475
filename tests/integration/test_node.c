/*
 * test_node: the second coprocess host, in Node.js (workers/node/
 * batchd_host.js), written from docs/coprocess.md: the protocol is not
 * Python-shaped. One batchd runs --model js:node=MODULE.js,workers=2 and a
 * job gets its outputs, an exception as the item's error (type and
 * message), and an object's values; GET /v1/models shows runtime "node";
 * a stateful module (acc_run, acc_export, reduce) gives its reduced result.
 * Node.js is installed through scripts/deps.sh node when it is missing.
 */
#include "harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_service svc;
static bool svc_up;
static char dir[PATH_MAX];

static const char model_js[] =
    "exports.load = (params) => ({ k: Number(params.k) });\n"
    "exports.run = (state, item) => {\n"
    "  if (item === 'boom') throw new RangeError('bad item');\n"
    "  if (item && item.a) return { sum: item.a.reduce((s, x) => s + x, 0), n: item.a.length };\n"
    "  return item * state.k;\n"
    "};\n";

static void test_job(void)
{
    /* an object: 4 uint8 bytes 1..4 (application/octet-stream) */
    const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = headers,
                        .body = "\1\2\3\4", .body_len = 4};
    struct h_resp r;
    if (!CHECK(h_request(&svc, &req, &r) == 0) || !CHECK_INT(r.status, 201))
        return;
    char body[512], id[32];
    snprintf(body, sizeof body,
             "{\"model\":\"js\",\"inputs\":[1,2,\"boom\",{\"a\":{\"$object\":\"%s\"}}]}",
             h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 10))
        return;
    json_t *job = h_wait_job(&svc, id, 30);
    if (!CHECK(job != NULL))
        return;
    json_decref(job);
    json_t *res = h_fetch_results(&svc, id, 4, 10);
    if (!CHECK(res != NULL))
        return;
    long long v = 0;
    CHECK(h_jint(json_array_get(res, 0), "output", &v) && v == 5);
    CHECK(h_jint(json_array_get(res, 1), "output", &v) && v == 10);
    CHECK_STR(h_jstr(json_array_get(res, 2), "error/message"), "RangeError: bad item");
    CHECK(h_jint(json_array_get(res, 3), "output/sum", &v) && v == 10);
    CHECK(h_jint(json_array_get(res, 3), "output/n", &v) && v == 4);
    json_decref(res);
}

/* A stateful Node.js module: each worker sums its items; reduce adds the
 * partials. 1..100 over 2 workers in chunks of 5: the result is 5050
 * whichever worker ran what. */
static const char acc_js[] =
    "exports.acc_run = (state, acc, item) => [(acc || 0) + item, item];\n"
    "exports.acc_export = (state, acc) => acc;\n"
    "exports.reduce = (shared, partials) => ({ sum: partials.reduce((s, x) => s + x, 0),\n"
    "                                          partials: partials.length });\n";

static void test_stateful(void)
{
    struct h_buf b = {0};
    char id[32];
    h_buf_printf(&b, "{\"model\":\"jsacc\",\"inputs\":[");
    for (int i = 1; i <= 100; i++)
        h_buf_printf(&b, "%s%d", i > 1 ? "," : "", i);
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":5}}");
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 10);
    h_buf_free(&b);
    if (!ok)
        return;
    json_t *job = h_wait_job(&svc, id, 30);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s/result", id);
    struct h_resp r;
    long long sum = 0, parts = 0;
    if (CHECK(h_get(&svc, path, &r) == 0) && CHECK_INT(r.status, 200)) {
        CHECK(h_jint(h_json(&r), "sum", &sum) && sum == 5050);
        CHECK(h_jint(h_json(&r), "partials", &parts) && parts >= 1 && parts <= 2);
    }
    h_resp_free(&r);
}

static void test_models(void)
{
    struct h_resp r;
    if (!CHECK(h_get(&svc, "/v1/models", &r) == 0) || !CHECK_INT(r.status, 200))
        return;
    json_t *m = h_jget(h_json(&r), "models/0");
    CHECK_STR(h_jstr(m, "runtime"), "node");
    long long pid = 0;
    CHECK(h_jint(m, "host/pid", &pid) && pid > 0);
    h_resp_free(&r);
}

static void start(void)
{
    static char spec[PATH_MAX * 2];
    snprintf(spec, sizeof spec, "js:node=%s/model.js,workers=2,k=5", dir);
    static char spec_acc[PATH_MAX * 2];
    snprintf(spec_acc, sizeof spec_acc, "jsacc:node=%s/acc.js,workers=2", dir);
    const char *const args[] = {"--model", spec, "--model", spec_acc, NULL};
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void) { CHECK_INT(h_service_stop(&svc, 15), 0); }

int main(void)
{
    static const struct h_test tests[] = {
        {"a job through the Node.js host: outputs, an exception, an object", test_job},
        {"GET /v1/models: runtime node, its host", test_models},
        {"a stateful Node.js model: acc_run, acc_export, reduce", test_stateful},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    if (system("command -v node >/dev/null 2>&1") != 0 && system("sh scripts/deps.sh node") != 0) {
        h_fail_test("node", "cannot install Node.js (sh scripts/deps.sh node)");
        return h_finish();
    }
    snprintf(dir, sizeof dir, "%s", h_tmpdir());
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/model.js", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(model_js, f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/acc.js", dir);
    f = fopen(path, "w");
    if (f) {
        fputs(acc_js, f);
        fclose(f);
    }
    h_run_one("start batchd with a Node.js model", start);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    return h_finish();
}
