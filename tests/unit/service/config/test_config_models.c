/*
 * Unit tests for service/config/config_models.c: model specs through the
 * parse (parameters, BATCHD_MODELS, the limit on models, recycling
 * limits), and its functions called directly: config_add_model's
 * refusals, a spec written back by config_model_print parses to the same
 * model, the built-in names and defaults.
 */
#include "tests/unit/service/config/config_fixture.h"

#include "service/config/config_int.h"

struct models_env_case {
    const char *env;
    const char *names; /* space-separated expected names, in order */
    const char *workers; /* space-separated expected workers */
};

static void test_model_params(void **unused)
{
    (void)unused;
    struct config c;
    char err[256];
    assert_int_equal(PARSE(&c, err, "--workers", "2", "--model",
                           "mlp:plugin=/opt/mlp.so,weights=/w.safetensors,workers=3,alpha=0.5",
                           "--model", "square:workers=1", "--model", "echo"),
                     0);
    assert_int_equal(c.n_models, 3);
    const struct config_model *m = &c.models[0];
    assert_string_equal(m->name, "mlp");
    assert_string_equal(m->plugin, "/opt/mlp.so");
    assert_int_equal(m->workers, 3);
    assert_int_equal(m->n_params, 2);
    assert_string_equal(m->keys[0], "weights");
    assert_string_equal(m->values[0], "/w.safetensors");
    assert_string_equal(m->keys[1], "alpha");
    assert_string_equal(m->values[1], "0.5");
    assert_string_equal(c.models[1].name, "square");
    assert_null(c.models[1].plugin);
    assert_int_equal(c.models[1].workers, 1);
    assert_int_equal(c.models[1].n_params, 0);
    assert_string_equal(c.models[2].name, "echo");
    assert_int_equal(c.models[2].workers, 2);
    config_free(&c);

    /* Parameters of a built-in model are kept; its load() judges them. */
    assert_int_equal(PARSE(&c, err, "--model", "square:k=v=w"), 0);
    assert_int_equal(c.models[0].n_params, 1);
    assert_string_equal(c.models[0].keys[0], "k");
    assert_string_equal(c.models[0].values[0], "v=w");
    config_free(&c);

    /* A plugin may take any valid name, even a built-in one. */
    assert_int_equal(PARSE(&c, err, "--model", "my-model.v2:plugin=./x.so"), 0);
    assert_string_equal(c.models[0].name, "my-model.v2");
    config_free(&c);
}

static void test_models_variable(void **unused)
{
    (void)unused;
    const struct models_env_case cases[] = {
        {"square", "square", "4"},
        {"square echo", "square echo", "4 4"},
        {"square;echo", "square echo", "4 4"},
        {" ; square:workers=2 ;;\texp_sinh\n", "square exp_sinh", "2 4"},
        {"sum_squares;square;echo;exp_sinh", "sum_squares square echo exp_sinh", "4 4 4 4"},
        {"x:plugin=/p.so,a=1;echo", "x echo", "4 4"},
        {" ; ", "echo square sum_squares exp_sinh convolve2d prefix_count", "4 4 4 4 4 4"},
    };
    setenv("BATCHD_WORKERS", "4", 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("BATCHD_MODELS", cases[i].env, 1);
        struct config c;
        char err[256];
        char *argv[] = {(char *)"batchd", NULL};
        int rc = config_parse(&c, 1, argv, err, sizeof err);
        if (rc != 0)
            fail_msg("BATCHD_MODELS='%s': rc %d, %s", cases[i].env, rc, err);
        char names[256] = "", workers[256] = "";
        for (size_t k = 0; k < c.n_models; k++) {
            size_t nl = strlen(names), wl = strlen(workers);
            snprintf(names + nl, sizeof names - nl, "%s%s", k ? " " : "", c.models[k].name);
            snprintf(workers + wl, sizeof workers - wl, "%s%u", k ? " " : "",
                     c.models[k].workers);
        }
        if (strcmp(names, cases[i].names) != 0 || strcmp(workers, cases[i].workers) != 0)
            fail_msg("BATCHD_MODELS='%s': got [%s] [%s], want [%s] [%s]", cases[i].env, names,
                     workers, cases[i].names, cases[i].workers);
        config_free(&c);
    }
}

static void test_max_models(void **unused)
{
    (void)unused;
    const char *args[CONFIG_MAX_MODELS * 2 + 3];
    char specs[CONFIG_MAX_MODELS + 1][32];
    size_t n = 0;
    for (int i = 0; i < CONFIG_MAX_MODELS; i++) {
        snprintf(specs[i], sizeof specs[i], "m%d:plugin=/p.so", i);
        args[n++] = "--model";
        args[n++] = specs[i];
    }
    args[n] = NULL;
    struct config c;
    char err[256];
    assert_int_equal(parse_argv(&c, args, err, sizeof err), 0);
    assert_int_equal(c.n_models, CONFIG_MAX_MODELS);
    config_free(&c);

    snprintf(specs[CONFIG_MAX_MODELS], sizeof specs[0], "extra:plugin=/p.so");
    args[n++] = "--model";
    args[n++] = specs[CONFIG_MAX_MODELS];
    args[n] = NULL;
    assert_int_equal(parse_argv(&c, args, err, sizeof err), -EINVAL);
    assert_string_equal(err, "--model: at most 32 models, got more");
    assert_true(is_zeroed(&c));

    /* The same limit through the variable. */
    char env[2048] = "";
    for (int i = 0; i <= CONFIG_MAX_MODELS; i++) {
        size_t l = strlen(env);
        snprintf(env + l, sizeof env - l, "m%d:plugin=/p.so;", i);
    }
    setenv("BATCHD_MODELS", env, 1);
    char *argv[] = {(char *)"batchd", NULL};
    assert_int_equal(config_parse(&c, 1, argv, err, sizeof err), -EINVAL);
    assert_string_equal(err, "BATCHD_MODELS: at most 32 models, got more");
    assert_true(is_zeroed(&c));
}

/* The recycling limits: off by default; the global flag, variable and file
 * key reach every model; a model's own max_items= / max_rss= win, an
 * explicit 0 included; they are taken out of the model's parameters. */
static void test_recycle_limits(void **unused)
{
    (void)unused;
    struct config c;
    char err[512];
    assert_int_equal(PARSE(&c, err, "--model", "echo"), 0);
    assert_int_equal(c.max_items_per_worker, 0);
    assert_int_equal(c.max_worker_rss, 0);
    assert_int_equal(c.models[0].max_items, 0);
    assert_int_equal(c.models[0].max_rss, 0);
    config_free(&c);

    assert_int_equal(PARSE(&c, err, "--max-items-per-worker", "100", "--max-worker-rss", "512M",
                           "--model", "echo:max_items=50,a=1", "--model", "square:max_rss=1G",
                           "--model", "sum_squares:max_items=0,max_rss=0", "--model",
                           "exp_sinh"),
                     0);
    assert_int_equal(c.max_items_per_worker, 100);
    assert_int_equal(c.max_worker_rss, 512ull << 20);
    assert_int_equal(c.models[0].max_items, 50);        /* its own */
    assert_int_equal(c.models[0].max_rss, 512ull << 20); /* the global one */
    assert_int_equal(c.models[0].n_params, 1);          /* only a=1 reaches the model */
    assert_string_equal(c.models[0].keys[0], "a");
    assert_int_equal(c.models[1].max_items, 100);
    assert_int_equal(c.models[1].max_rss, 1ull << 30);
    assert_int_equal(c.models[2].max_items, 0); /* an explicit 0 turns the global off */
    assert_int_equal(c.models[2].max_rss, 0);
    assert_int_equal(c.models[3].max_items, 100);
    assert_int_equal(c.models[3].max_rss, 512ull << 20);
    config_free(&c);

    setenv("BATCHD_MAX_ITEMS_PER_WORKER", "7", 1);
    setenv("BATCHD_MAX_WORKER_RSS", "64K", 1);
    setenv("BATCHD_MODELS", "echo:max_rss=2M", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "1"), 0);
    assert_int_equal(c.models[0].max_items, 7);
    assert_int_equal(c.models[0].max_rss, 2ull << 20);
    assert_int_equal(c.max_worker_rss, 64ull << 10);
    config_free(&c);
    clear_env(NULL);

    const char *f = temp_file(0, "{\"max-items-per-worker\": 1000, \"max-worker-rss\": \"1G\","
                                 " \"models\": [\"echo\", \"square:max_items=3\"]}");
    assert_int_equal(PARSE(&c, err, "--config", f, "--max-worker-rss", "0"), 0);
    assert_int_equal(c.models[0].max_items, 1000);
    assert_int_equal(c.models[0].max_rss, 0); /* the flag beats the file */
    assert_int_equal(c.models[1].max_items, 3);
    config_free(&c);
    unlink(f);
}

/* A parsed model written back by config_model_print parses to the same
 * model: --print-config's "model" line can be pasted back as --model. */
static void test_spec_round_trip(void **unused)
{
    (void)unused;
    static const char *const specs[] = {
        "square",
        "echo:workers=3,gain=2,bias=x",
        "mlp:plugin=/x/libmlp.so,max_items=100,max_rss=64M,path=/w.safetensors",
        "py:python=/m/model.py,interpreter=python3.11,workers=2",
        "js:node=/m/model.js,max_items=0",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct config a, b;
        char err[256];
        assert_int_equal(PARSE(&a, err, "--model", specs[i]), 0);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        config_model_print(f, &a.models[0]);
        fclose(f);
        if (PARSE(&b, err, "--model", text) != 0)
            fail_msg("%s printed as %s: %s", specs[i], text, err);
        const struct config_model *x = &a.models[0], *y = &b.models[0];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->workers, y->workers);
        assert_int_equal(x->max_items, y->max_items);
        assert_int_equal(x->max_rss, y->max_rss);
        assert_true((x->plugin == NULL) == (y->plugin == NULL));
        if (x->plugin)
            assert_string_equal(x->plugin, y->plugin);
        assert_true((x->runtime == NULL) == (y->runtime == NULL));
        if (x->runtime) {
            assert_string_equal(x->runtime, y->runtime);
            assert_string_equal(x->module, y->module);
        }
        assert_true((x->interpreter == NULL) == (y->interpreter == NULL));
        assert_int_equal(x->n_params, y->n_params);
        for (size_t k = 0; k < x->n_params; k++) {
            assert_string_equal(x->keys[k], y->keys[k]);
            assert_string_equal(x->values[k], y->values[k]);
        }
        free(text);
        config_free(&a);
        config_free(&b);
    }
}

/* config_add_model refuses, with a message naming the source, and leaves
 * the list as it was. */
static void test_add_model_refusals(void **unused)
{
    (void)unused;
    static const struct {
        const char *spec;
        const char *message;
    } cases[] = {
        {"square", "SRC: model 'square' is named twice"},
        {"no_such_model", "SRC: no built-in model named 'no_such_model'"},
        {"x:plugin=/a.so,python=/m.py", "SRC x: plugin= is a C model, python= a python model"},
        {"x:python=/m.py,node=/m.js", "SRC x: a model is in one language: python= and node="},
        {"x:plugin=/a.so,interpreter=py", "SRC x: interpreter= goes with python=PATH or node=PATH"},
        {"echo:a=1,,b=2", "SRC echo: expected key=value with a non-empty value, got ''"},
        {"echo:a=1,a=2", "SRC echo: 'a' given twice"},
        {"echo:workers=0", "SRC echo: workers: expected an integer from 1 to 256, got '0'"},
        {"echo:max_rss=1T", "SRC echo: max_rss: expected a size in bytes from 0 to 1024G"},
        {"bad name", "SRC: expected NAME[:key=value,...]"},
    };
    struct config c = {0};
    char err[256];
    c.models = calloc(CONFIG_MAX_MODELS, sizeof *c.models);
    assert_non_null(c.models);
    assert_int_equal(config_add_model(&c, "SRC", "square", err, sizeof err), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(config_add_model(&c, "SRC", cases[i].spec, err, sizeof err), -EINVAL);
        if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("%s: got '%s', expected '%s...'", cases[i].spec, err, cases[i].message);
        assert_int_equal(c.n_models, 1);
    }
    config_free(&c);
}

static void test_builtin_names_and_defaults(void **unused)
{
    (void)unused;
    char plain[256], marked[256];
    config_builtin_names(plain, sizeof plain, false);
    config_builtin_names(marked, sizeof marked, true);
    struct config c = {0};
    char err[256];
    c.models = calloc(CONFIG_MAX_MODELS, sizeof *c.models);
    assert_non_null(c.models);
    assert_int_equal(config_default_models(&c, err, sizeof err), 0);
    const struct model_ops *m;
    size_t n_default = 0;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++) {
        assert_non_null(strstr(plain, m->name));
        char mark[96];
        snprintf(mark, sizeof mark, "%s (only when named)", m->name);
        bool only_named = (m->flags & MODEL_FLAG_NOT_DEFAULT) != 0;
        assert_int_equal(strstr(marked, mark) != NULL, only_named);
        if (!only_named)
            assert_string_equal(c.models[n_default++].name, m->name);
    }
    assert_null(strstr(plain, "only when named"));
    assert_int_equal(c.n_models, n_default);
    config_free(&c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_model_params),   T(test_models_variable),    T(test_max_models),
        T(test_recycle_limits), T(test_spec_round_trip),    T(test_add_model_refusals),
        T(test_builtin_names_and_defaults),
    };
    return cmocka_run_group_tests_name("config_models", tests, NULL, NULL);
}
