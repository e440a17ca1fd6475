/*
 * test_config_file: the configuration file and the one precedence rule,
 * flag > BATCHD_* variable > file (--config / BATCHD_CONFIG) > default.
 *
 *   - --print-config shows each setting's value and source (default, file,
 *     env, flag) and exits 0; the same setting given at several levels
 *     takes the highest; --config wins over BATCHD_CONFIG; API tokens are
 *     masked (their number only).
 *   - A bad file is refused at start with exit 2 and one line naming the
 *     problem: an unknown key (named), a syntax error (line), a value of
 *     the wrong type, the "config" key itself, a missing file.
 *   - A service started from a file runs with the file's models and
 *     limits, the variable overriding the file (max-items: a job over the
 *     variable's limit is refused with that limit, one within it runs).
 */
#include "tests/integration/harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_TIMEOUT_S 10
#define SECRET "s3cret-token-never-printed"

static const char *bin;

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!CHECKF(f != NULL, "cannot write %s: %s", path, strerror(errno)))
        return false;
    fputs(text, f);
    return CHECK(fclose(f) == 0);
}

/* A file in the test's temp dir; returns its path (static buffer per slot). */
static const char *tmp_file(int slot, const char *name, const char *text)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", h_tmpdir(), name);
    return write_text(paths[slot], text) ? paths[slot] : NULL;
}

/* The --print-config line of `name`: "name  value  [source...]" (new). */
static char *config_line(const char *out, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = out; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == ' ')
            return strndup(p, len);
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

/* Checks that setting `name` has `value` from `source` in the output. */
static void check_setting(const char *out, const char *name, const char *value,
                          const char *source)
{
    char *line = config_line(out, name);
    if (!CHECKF(line != NULL, "--print-config has no line for %s", name))
        return;
    char want_src[64];
    snprintf(want_src, sizeof want_src, "[%s", source);
    const char *v = line + strlen(name);
    while (*v == ' ')
        v++;
    CHECKF(strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == ' ',
           "%s: want value %s, line \"%s\"", name, value, line);
    CHECKF(strstr(line, want_src) != NULL, "%s: want source %s, line \"%s\"", name, source, line);
    free(line);
}

static void test_precedence(void)
{
    const char *file = tmp_file(0, "batchd.json",
                                "{\n"
                                "  \"workers\": 2,\n"
                                "  \"max-items\": 100,\n"
                                "  \"idle-timeout\": 7,\n"
                                "  \"grace\": 2.5,\n"
                                "  \"max-body-bytes\": \"2M\",\n"
                                "  \"models\": [\"square\", \"exp_sinh:workers=1\"],\n"
                                "  \"access-log\": false,\n"
                                "  \"api-tokens\": [\"" SECRET "\"],\n"
                                "  \"cors-origins\": [\"https://a.example\"],\n"
                                "  \"port-file\": null\n"
                                "}\n");
    if (!file)
        return;
    const char *argv[] = {bin, "--config", file, "--idle-timeout", "9", "--print-config", NULL};
    const char *env[] = {"BATCHD_MAX_ITEMS=200", "BATCHD_IDLE_TIMEOUT=8", NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, env, RUN_TIMEOUT_S, &r) == 0))
        return;
    if (CHECKF(r.exit_code == 0, "--print-config exit %d: %s", r.exit_code, r.err)) {
        check_setting(r.out, "workers", "2", "file");
        check_setting(r.out, "max-items", "200", "env BATCHD_MAX_ITEMS");
        check_setting(r.out, "idle-timeout", "9", "flag --idle-timeout");
        check_setting(r.out, "max-attempts", "3", "default");
        check_setting(r.out, "grace", "2.5", "file");
        check_setting(r.out, "max-body-bytes", "2M", "file");
        check_setting(r.out, "model", "square:workers=2 exp_sinh:workers=1", "file");
        check_setting(r.out, "access-log", "false", "file");
        check_setting(r.out, "cors-origins", "https://a.example", "file");
        check_setting(r.out, "port-file", "none", "default"); /* null = unset */
        check_setting(r.out, "config", file, "flag --config");
        check_setting(r.out, "api-tokens", "********", "file");
        CHECKF(strstr(r.out, SECRET) == NULL, "--print-config printed a token:\n%s", r.out);
        CHECKF(strstr(r.out, "(1 token)") != NULL, "the token count is not shown:\n%s", r.out);
    }
    h_run_result_free(&r);

    /* --config wins over BATCHD_CONFIG; a variable over the file. */
    const char *other = tmp_file(1, "other.json", "{\"workers\": 3, \"max-attempts\": 5}");
    const char *argv2[] = {bin, "--config", other, "--print-config", NULL};
    char envcfg[600];
    snprintf(envcfg, sizeof envcfg, "BATCHD_CONFIG=%s", file);
    const char *env2[] = {envcfg, "BATCHD_WORKERS=4", NULL};
    if (other && CHECK(h_run(argv2, env2, RUN_TIMEOUT_S, &r) == 0)) {
        if (CHECKF(r.exit_code == 0, "exit %d: %s", r.exit_code, r.err)) {
            check_setting(r.out, "config", other, "flag --config");
            check_setting(r.out, "workers", "4", "env BATCHD_WORKERS");
            check_setting(r.out, "max-attempts", "5", "file");
            check_setting(r.out, "max-items", "10000000", "default"); /* not from the other file */
        }
        h_run_result_free(&r);
    }
    /* BATCHD_CONFIG alone */
    const char *argv3[] = {bin, "--print-config", NULL};
    const char *env3[] = {envcfg, NULL};
    if (CHECK(h_run(argv3, env3, RUN_TIMEOUT_S, &r) == 0)) {
        if (CHECKF(r.exit_code == 0, "exit %d: %s", r.exit_code, r.err)) {
            check_setting(r.out, "config", file, "env BATCHD_CONFIG");
            check_setting(r.out, "workers", "2", "file");
        }
        h_run_result_free(&r);
    }
}

struct bad_file {
    const char *text; /* the file (NULL: a path that does not exist) */
    const char *err_has;
};

static void test_bad_files(void)
{
    static const struct bad_file cases[] = {
        {"{\"workers\": 2, \"wokers\": 3}", "unknown key 'wokers'"},
        {"{\"workers\": 2,\n \"max-items\": }", "line 2"},
        {"[1, 2]", "expected a JSON object"},
        {"{\"workers\": \"two\"}", "expected an integer from 1 to 256, got 'two'"},
        {"{\"workers\": 2.5}", "key 'workers': expected an integer, got a JSON real number"},
        {"{\"access-log\": \"yes\"}", "expected true or false, got 'yes'"},
        {"{\"models\": [\"square\", 7]}", "expected an array of model specs"},
        {"{\"models\": [\"nope\"]}", "no built-in model named 'nope'"},
        {"{\"config\": \"/etc/x.json\"}", "key 'config' cannot be set"},
        {"{\"grace\": 0.0001}", "expected seconds"},
        {"{\"workers\": 1, \"workers\": 2}", "duplicate"},
        {"{\"tls-cert\": \"/nonexistent/cert.pem\"}", "--tls-cert and --tls-key go together"},
        {"{\"api-tokens\": \"has space\"}", "not a valid bearer token"},
        {"{\"cors-origins\": [\"https://a.example/path\"]}", "expected * or origins"},
        {NULL, "cannot read"},
    };
    char data[600];
    snprintf(data, sizeof data, "%s/data", h_tmpdir());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad%zu.json", h_tmpdir(), i);
        if (cases[i].text && !write_text(path, cases[i].text))
            continue;
        if (!cases[i].text)
            snprintf(path, sizeof path, "%s/missing.json", h_tmpdir());
        const char *argv[] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data,
                              "--config", path, NULL};
        struct h_run_result r;
        if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
            continue;
        CHECKF(r.exit_code == 2 && !r.timed_out, "case %zu (%s): exit %d", i,
               cases[i].text ? cases[i].text : "missing", r.exit_code);
        CHECKF(strstr(r.err, cases[i].err_has) != NULL, "case %zu: stderr \"%s\" lacks \"%s\"", i,
               r.err, cases[i].err_has);
        size_t lines = 0;
        for (const char *p = r.err; *p; p++)
            lines += *p == '\n';
        CHECKF(lines == 1, "case %zu: %zu lines on stderr: %s", i, lines, r.err);
        CHECKF(strstr(r.err, SECRET) == NULL, "a token in an error message");
        h_run_result_free(&r);
    }
    /* a bad value is no error when a higher level overrides it */
    const char *path = tmp_file(2, "overridden.json", "{\"workers\": \"many\"}");
    const char *argv[] = {bin, "--config", path, "--workers", "2", "--print-config", NULL};
    struct h_run_result r;
    if (path && CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0)) {
        CHECKF(r.exit_code == 0, "exit %d: %s", r.exit_code, r.err);
        h_run_result_free(&r);
    }
}

/* POSTs n square items; returns the status (and the problem's limit). */
static long post_items(struct h_service *s, int n, long long *limit)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < n; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]}");
    struct h_resp r;
    long st = h_post(s, "/v1/jobs", "application/json", b.p, &r) == 0 ? r.status : 0;
    if (limit && st == 413)
        h_jint(h_json(&r), "limit", limit);
    h_resp_free(&r);
    h_buf_free(&b);
    return st;
}

static void test_service_from_file(void)
{
    /* the file's listen is overridden by the harness's --listen flag */
    const char *file = tmp_file(3, "service.json",
                                "{\"listen\": \"127.0.0.1:1\", \"workers\": 1,"
                                " \"models\": [\"square\"], \"max-items\": 3}");
    if (!file)
        return;
    const char *args[] = {"--config", file, NULL};
    const char *env[] = {"BATCHD_MAX_ITEMS=5", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args, .env = env};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    struct h_resp r;
    if (CHECK(h_get(&s, "/v1/models", &r) == 0) && CHECK_INT(r.status, 200)) {
        json_t *models = h_jget(h_json(&r), "models");
        CHECKF(json_array_size(models) == 1, "models: %s", r.body);
        CHECK_STR(h_jstr(models, "0/name"), "square");
    }
    h_resp_free(&r);
    long long limit = 0;
    CHECK_INT(post_items(&s, 5, NULL), 202);
    CHECK_INT(post_items(&s, 6, &limit), 413);
    CHECK_INT(limit, 5);
    CHECK_INT(h_service_stop(&s, 0), 0);
    h_service_cleanup(&s);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"precedence: flag > env > file > default (--print-config)", test_precedence},
        {"bad config files: exit 2 and one line naming the problem", test_bad_files},
        {"a service configured by a file, the variable overriding it", test_service_from_file},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    bin = getenv("BATCHD_BIN");
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
