/*
 * Unit tests for service/config/config_file.c: the configuration file
 * through the parse (every setting, precedence under variables and flags,
 * each refusal with its message), and its functions called directly:
 * config_load_file and the text a flag would carry for each JSON value.
 */
#include "tests/unit/service/config/config_fixture.h"

#include "service/config/config_int.h"

struct file_error_case {
    const char *text;
    const char *message; /* after "<path>: "; PATH stands for the file's path */
};

/* Every setting of test_every_flag, from a file instead. */
static void test_file_every_setting(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\n"
                                 "  \"listen\": \"0.0.0.0:9001\",\n"
                                 "  \"data-dir\": \"/var/lib/batchd\",\n"
                                 "  \"workers\": 5,\n"
                                 "  \"models\": [\"square\", \"echo:workers=2\"],\n"
                                 "  \"max-body-bytes\": \"2M\",\n"
                                 "  \"max-items\": 1234,\n"
                                 "  \"max-item-bytes\": 4096,\n"
                                 "  \"max-connections\": 17,\n"
                                 "  \"idle-timeout\": 9,\n"
                                 "  \"max-attempts\": 7,\n"
                                 "  \"item-timeout\": 2.5,\n"
                                 "  \"port-file\": \"/tmp/port\",\n"
                                 "  \"max-queued-items\": 10000000000,\n"
                                 "  \"grace\": \"1.25\",\n"
                                 "  \"max-item-timeout\": 60.5\n"
                                 "}\n");
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    check_all_set(&c);
    for (size_t i = 0; i < CONFIG_MAX_SETTINGS; i++)
        assert_true(c.source[i] == CONFIG_SRC_DEFAULT || c.source[i] == CONFIG_SRC_FILE ||
                    c.source[i] == CONFIG_SRC_FLAG /* --config itself */);
    config_free(&c);
    /* "model" (the flag's name) is accepted too, and a string of specs */
    const char *g = temp_file(1, "{\"model\": \"square echo:workers=2\", \"workers\": 5}");
    assert_int_equal(PARSE(&c, err, "--config", g), 0);
    assert_int_equal(c.n_models, 2);
    assert_int_equal(c.models[1].workers, 2);
    config_free(&c);
    unlink(f);
    unlink(g);
}

static void test_file_precedence(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\"workers\": 2, \"max-items\": 100, \"idle-timeout\": 7,"
                                 " \"models\": [\"echo\"], \"port-file\": null}");
    const char *g = temp_file(1, "{\"workers\": 3}");
    struct config c;
    char err[256];
    setenv("BATCHD_MAX_ITEMS", "200", 1);
    setenv("BATCHD_IDLE_TIMEOUT", "8", 1);
    setenv("BATCHD_CONFIG", g, 1);
    assert_int_equal(PARSE(&c, err, "--config", f, "--idle-timeout", "9"), 0);
    assert_string_equal(c.config_file, f);  /* the flag's file, not the variable's */
    assert_int_equal(c.workers, 2);          /* file */
    assert_int_equal(c.max_items, 200);      /* env over file */
    assert_int_equal(c.idle_timeout_s, 9);   /* flag over env over file */
    assert_null(c.port_file);                /* null is unset */
    assert_int_equal(c.n_models, 1);
    assert_int_equal(c.models[0].workers, 2);
    config_free(&c);
    /* BATCHD_MODELS replaces the file's models whole; --model replaces both */
    setenv("BATCHD_MODELS", "square", 1);
    assert_int_equal(PARSE(&c, err, "--config", f), 0);
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "square");
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--config", f, "--model", "sum_squares"), 0);
    assert_string_equal(c.models[0].name, "sum_squares");
    config_free(&c);
    /* the variable's file when there is no flag */
    assert_int_equal(PARSE(&c, err, "--max-attempts", "2"), 0);
    assert_string_equal(c.config_file, g);
    assert_int_equal(c.workers, 3);
    config_free(&c);
    unlink(f);
    unlink(g);
}

static void test_file_errors(void **unused)
{
    (void)unused;
    static const struct file_error_case cases[] = {
        {"{\"wokers\": 2}",
         "unknown key 'wokers' (the keys are the flags' names, see --help; \"models\" for "
         "--model)"},
        {"{\"help\": true}",
         "unknown key 'help' (the keys are the flags' names, see --help; \"models\" for --model)"},
        {"{\"config\": \"x\"}", "key 'config' cannot be set in a config file"},
        {"[]", "expected a JSON object of settings keyed by flag name"},
        {"{\"model\": \"echo\", \"models\": [\"square\"]}",
         "give \"models\" or \"model\", not both"},
        {"{\"workers\": 0}", "key 'workers': expected an integer from 1 to 256, got '0'"},
        {"{\"workers\": -3}", "key 'workers': expected an integer from 1 to 256, got '-3'"},
        {"{\"workers\": true}", "key 'workers': expected an integer, got a JSON boolean"},
        {"{\"data-dir\": 5}", "key 'data-dir': expected a string, got a JSON integer"},
        {"{\"max-body-bytes\": [1]}",
         "key 'max-body-bytes': expected an integer or a string such as \"64M\", got a JSON "
         "array"},
        {"{\"grace\": 1.0005}",
         "key 'grace': expected seconds from 0 to 3600 (up to 3 decimals), got '1.0005'"},
        {"{\"access-log\": 1}", "key 'access-log': expected true or false, got a JSON integer"},
        {"{\"log-level\": \"loud\"}",
         "key 'log-level': expected debug, info, warn or error, got 'loud'"},
        {"{\"api-tokens\": [\"ok\", 3]}", "key 'api-tokens': expected an array of strings"},
        {"{\"api-tokens\": \",,\"}", "key 'api-tokens': expected at least one token, got none"},
        {"{\"models\": {\"a\": 1}}",
         "key 'models': expected an array of model specs such as \"square:workers=2\""},
        {"{\"item-timeout\": 5, \"max-item-timeout\": 4}",
         "key 'item-timeout': 5 seconds exceeds PATH: key 'max-item-timeout' (4 seconds), the "
         "longest item timeout a job may ask for"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f = temp_file(0, cases[i].text);
        char want[700], with_path[512];
        const char *pp = strstr(cases[i].message, "PATH");
        if (pp)
            snprintf(with_path, sizeof with_path, "%.*s%s%s", (int)(pp - cases[i].message),
                     cases[i].message, f, pp + 4);
        else
            snprintf(with_path, sizeof with_path, "%s", cases[i].message);
        snprintf(want, sizeof want, "%s: %s", f, with_path);
        struct config c;
        memset(&c, 0xA5, sizeof c);
        char err[512];
        int rc = PARSE(&c, err, "--config", f);
        if (rc != -EINVAL || strcmp(err, want) != 0)
            fail_msg("case %zu: rc %d, err\n  '%s'\nwant\n  '%s'", i, rc, err, want);
        assert_true(is_zeroed(&c));
        unlink(f);
    }
    /* syntax errors name the line; an unreadable file says why */
    const char *f = temp_file(0, "{\n\"workers\": 2,\n}");
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--config", f), -EINVAL);
    assert_non_null(strstr(err, ": line 3, column"));
    unlink(f);
    assert_int_equal(PARSE(&c, err, "--config", "/nonexistent/batchd.json"), -EINVAL);
    assert_string_equal(err, "config file: cannot read /nonexistent/batchd.json: No such file or "
                             "directory");
    setenv("BATCHD_CONFIG", "", 1); /* empty: unset */
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_null(c.config_file);
    config_free(&c);
}

/* The JSON value of a row, as the text its flag would carry. */
static void test_value_text(void **unused)
{
    (void)unused;
    static const struct {
        const char *flag;
        const char *json;
        const char *text; /* NULL: refused, err starts with `message` */
        const char *message;
    } cases[] = {
        {"workers", "4", "4", NULL},
        {"workers", "\"4\"", "4", NULL},
        {"max-body-bytes", "\"64M\"", "64M", NULL},
        {"grace", "2.5", "2.5", NULL},
        {"grace", "3", "3", NULL},
        {"grace", "0.0001", NULL, "K: expected seconds from 0 to 3600 (up to 3 decimals), got '0.0001'"},
        {"access-log", "false", "false", NULL},
        {"api-tokens", "[\"a\", \"b\"]", "a,b", NULL},
        {"cors-origins", "[\"https://x.org\"]", "https://x.org", NULL},
        {"api-tokens", "[\"a,b\"]", NULL, "K: expected an array of strings"},
        {"api-tokens", "[1]", NULL, "K: expected an array of strings"},
        {"workers", "true", NULL, "K: expected an integer, got a JSON boolean"},
        {"max-body-bytes", "{}", NULL, "K: expected an integer or a string such as \"64M\", got a JSON object"},
        {"access-log", "1", NULL, "K: expected true or false, got a JSON integer"},
        {"data-dir", "[\"x\"]", NULL, "K: expected a string, got a JSON array"},
        {"data-dir", "\"a\\u0000b\"", NULL, "K: the string holds a NUL character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t index;
        const struct config_setting *st = config_setting_for_key(cases[i].flag, &index);
        assert_non_null(st);
        json_error_t jerr;
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        assert_non_null(v);
        int rc = 0;
        char err[256] = "";
        char *text = config_file_value_text(st, v, "K", &rc, err, sizeof err);
        if (cases[i].text) {
            if (!text)
                fail_msg("%s %s: refused: %s", cases[i].flag, cases[i].json, err);
            assert_string_equal(text, cases[i].text);
        } else {
            assert_null(text);
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, cases[i].message);
        }
        free(text);
        json_decref(v);
    }
}

/* config_load_file: a document of known keys loads (a new reference); the
 * keys are checked before any value is. */
static void test_load_file(void **unused)
{
    (void)unused;
    const char *f = temp_file(0, "{\"workers\": \"not checked here\", \"models\": []}");
    json_t *root = NULL;
    char err[256];
    assert_int_equal(config_load_file(f, &root, err, sizeof err), 0);
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 2);
    json_decref(root);
    unlink(f);
    root = NULL;
    assert_int_equal(config_load_file(f, &root, err, sizeof err), -EINVAL);
    assert_null(root);
    assert_non_null(strstr(err, f));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_file_every_setting), T(test_file_precedence), T(test_file_errors),
        T(test_value_text),         T(test_load_file),
    };
    return cmocka_run_group_tests_name("config_file", tests, NULL, NULL);
}
