/*
 * test_cli: batchd's command line and environment.
 *
 *   --help and --version exit 0; a bad flag or value, or an unknown model,
 *   exits 2 with a one-line message on stderr; BATCHD_* variables configure
 *   the service, and flags win over them.
 *
 * Runs that should fail get --listen 127.0.0.1:0 and a temporary data dir
 * first, so that a run that wrongly starts binds nothing public and is
 * killed (by its process group, which this program created) at the timeout.
 */
#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_TIMEOUT_S 10

static const char *bin;

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == c;
    return n;
}

static void test_help(void)
{
    const char *argv[] = {bin, "--help", NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(r.exit_code == 0, "--help exit %d (timed out: %d), stderr: %s", r.exit_code,
           r.timed_out, r.err);
    CHECKF(strstr(r.out, "--listen") != NULL && strstr(r.out, "--workers") != NULL &&
               strstr(r.out, "--model") != NULL,
           "--help does not describe --listen, --workers and --model: %.300s", r.out);
    h_run_result_free(&r);
}

static void test_version(void)
{
    const char *argv[] = {bin, "--version", NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(r.exit_code == 0, "--version exit %d, stderr: %s", r.exit_code, r.err);
    CHECKF(strncmp(r.out, "batchd", 6) == 0 && count_char(r.out, '\n') == 1 &&
               r.out[strlen(r.out) - 1] == '\n',
           "--version printed \"%s\" (expected one line starting with batchd)", r.out);
    h_run_result_free(&r);
}

/* A run that must fail with exit 2 and exactly one line on stderr. */
struct bad_case {
    const char *args[6];     /* NULL-terminated */
    const char *env[3];      /* NULL-terminated */
    const char *err_has;     /* the message names this, or NULL */
};

static void run_bad(const struct bad_case *c)
{
    char data[300];
    snprintf(data, sizeof data, "%s/data", h_tmpdir());
    const char *argv[16] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data};
    size_t n = 5;
    for (size_t i = 0; c->args[i] != NULL && n < 15; i++)
        argv[n++] = c->args[i];
    argv[n] = NULL;
    char label[200] = "";
    for (size_t i = 0; c->args[i] != NULL; i++)
        snprintf(label + strlen(label), sizeof label - strlen(label), " %s", c->args[i]);
    for (size_t i = 0; c->env[i] != NULL; i++)
        snprintf(label + strlen(label), sizeof label - strlen(label), " [env %s]", c->env[i]);
    printf("  case:%s\n", label);
    struct h_run_result r;
    if (!CHECK(h_run(argv, c->env, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(!r.timed_out, "%s: still running after %d s (it started instead of failing)", label,
           RUN_TIMEOUT_S);
    CHECKF(r.exit_code == 2, "%s: exit %d, expected 2 (stderr: %s)", label, r.exit_code, r.err);
    size_t len = strlen(r.err);
    CHECKF(len > 1 && count_char(r.err, '\n') == 1 && r.err[len - 1] == '\n',
           "%s: stderr is not one line: \"%s\"", label, r.err);
    if (c->err_has)
        CHECKF(strstr(r.err, c->err_has) != NULL, "%s: stderr \"%s\" does not name \"%s\"", label,
               r.err, c->err_has);
    CHECKF(r.out[0] == '\0', "%s: stdout is not empty: %.200s", label, r.out);
    h_run_result_free(&r);
}

static void test_bad_flags(void)
{
    static const struct bad_case cases[] = {
        {{"--no-such-flag", NULL}, {NULL}, "--no-such-flag"},
        {{"-x", NULL}, {NULL}, "-x"},
        {{"--workers", "abc", NULL}, {NULL}, "abc"},
        {{"--workers", "-1", NULL}, {NULL}, NULL},
        {{"--workers", NULL}, {NULL}, "--workers"},
        {{"--listen", "nonsense", NULL}, {NULL}, "nonsense"},
        {{"--listen", "127.0.0.1:99999", NULL}, {NULL}, NULL},
        {{"--max-body-bytes", "lots", NULL}, {NULL}, "lots"},
        {{"--max-items", "-5", NULL}, {NULL}, NULL},
        {{"--idle-timeout", "x", NULL}, {NULL}, NULL},
        {{"--port-file", NULL}, {NULL}, "--port-file"},
        {{"stray-argument", NULL}, {NULL}, "stray-argument"},
        /* recycling limits: the flag (or the model's key) is named */
        {{"--max-items-per-worker", "-1", NULL}, {NULL}, "--max-items-per-worker"},
        {{"--max-items-per-worker", "fifty", NULL}, {NULL}, "--max-items-per-worker"},
        {{"--max-worker-rss", "10X", NULL}, {NULL}, "--max-worker-rss"},
        {{"--model", "echo:max_items=lots", NULL}, {NULL}, "max_items"},
        {{"--model", "echo:max_rss=-64M", NULL}, {NULL}, "max_rss"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_bad(&cases[i]);
}

static void test_unknown_model(void)
{
    static const struct bad_case cases[] = {
        {{"--model", "nosuchmodel", NULL}, {NULL}, "nosuchmodel"},
        {{"--model", "square", "--model", "nosuchmodel", NULL}, {NULL}, "nosuchmodel"},
        {{NULL}, {"BATCHD_MODELS=nosuchmodel", NULL}, "nosuchmodel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_bad(&cases[i]);
}

static void test_bad_env(void)
{
    static const struct bad_case cases[] = {
        {{NULL}, {"BATCHD_WORKERS=abc", NULL}, "BATCHD_WORKERS"},
        {{NULL}, {"BATCHD_MAX_BODY_BYTES=-1", NULL}, "BATCHD_MAX_BODY_BYTES"},
        {{NULL}, {"BATCHD_MAX_WORKER_RSS=big", NULL}, "BATCHD_MAX_WORKER_RSS"},
        {{NULL}, {"BATCHD_MAX_ITEMS_PER_WORKER=1.5", NULL}, "BATCHD_MAX_ITEMS_PER_WORKER"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_bad(&cases[i]);
}

/* Counts workers per model from /v1/workers and checks /v1/models agrees. */
static void check_workers_per_model(struct h_service *s, int want, const char *const *models,
                                    size_t nmodels)
{
    struct h_resp r;
    if (!CHECK(h_get(s, "/v1/models", &r) == 0) || !CHECK_INT(r.status, 200)) {
        h_resp_free(&r);
        return;
    }
    json_t *ms = json_incref(h_jget(h_json(&r), "models"));
    if (models != NULL)
        CHECKF(json_array_size(ms) == nmodels, "%zu models loaded, expected %zu",
               json_array_size(ms), nmodels);
    CHECK(json_array_size(ms) > 0);
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m) {
        const char *name = h_jstr(m, "name");
        long long w = -1;
        CHECKF(h_jint(m, "workers", &w) && w == want, "model %s: %lld workers, expected %d", name,
               w, want);
        if (models != NULL) {
            bool listed = false;
            for (size_t k = 0; k < nmodels; k++)
                listed |= name && strcmp(name, models[k]) == 0;
            CHECKF(listed, "model %s was not asked for", name ? name : "?");
        }
    }
    h_resp_free(&r);
    if (!CHECK(h_get(s, "/v1/workers", &r) == 0) || !CHECK_INT(r.status, 200)) {
        h_resp_free(&r);
        json_decref(ms);
        return;
    }
    json_t *ws = h_jget(h_json(&r), "workers");
    json_array_foreach(ms, i, m) {
        const char *name = h_jstr(m, "name");
        int n = 0;
        size_t k;
        json_t *w;
        json_array_foreach(ws, k, w) n += name && h_jstr(w, "model") &&
                                         strcmp(h_jstr(w, "model"), name) == 0;
        CHECKF(n == want, "/v1/workers: %d workers of %s, expected %d", n, name ? name : "?", want);
    }
    CHECKF(json_array_size(ws) == (size_t)want * json_array_size(ms), "%zu workers in all",
           json_array_size(ws));
    h_resp_free(&r);
    json_decref(ms);
}

static void test_env_workers(void)
{
    static const char *const env[] = {"BATCHD_WORKERS=1", NULL};
    struct h_service s;
    struct h_service_opts o = {.env = env};
    if (h_service_start(&s, &o) == 0) {
        check_workers_per_model(&s, 1, NULL, 0);
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);
}

static void test_env_models_and_precedence(void)
{
    /* Models and a limit from the environment; --workers beats BATCHD_WORKERS. */
    static const char *const env[] = {"BATCHD_MODELS=square;echo", "BATCHD_WORKERS=3",
                                      "BATCHD_MAX_ITEMS=3", NULL};
    static const char *const args[] = {"--workers", "2", NULL};
    static const char *const models[] = {"square", "echo"};
    struct h_service s;
    struct h_service_opts o = {.args = args, .env = env};
    if (h_service_start(&s, &o) == 0) {
        check_workers_per_model(&s, 2, models, 2);
        struct h_resp r;
        const char *four = "{\"model\":\"square\",\"inputs\":[1,2,3,4]}";
        if (CHECK(h_post(&s, "/v1/jobs", "application/json", four, &r) == 0))
            CHECK_PROBLEM(&r, 413, "too-large", "/v1/jobs");
        h_resp_free(&r);
        char id[32];
        const char *three = "{\"model\":\"echo\",\"inputs\":[1,2,3]}";
        if (h_submit(&s, "/v1/jobs", "application/json", three, strlen(three), id, 30))
            json_decref(h_wait_job(&s, id, 60));
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"--help", test_help},
        {"--version", test_version},
        {"bad flags exit 2 with one line", test_bad_flags},
        {"unknown model exits 2", test_unknown_model},
        {"bad environment values exit 2", test_bad_env},
        {"BATCHD_WORKERS=1", test_env_workers},
        {"BATCHD_MODELS, BATCHD_MAX_ITEMS, flags over env", test_env_models_and_precedence},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    bin = getenv("BATCHD_BIN");
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
