/*
 * Unit tests for service/config/config_table.c: the settings table's own
 * rules (each variable is BATCHD_ and the flag, help lines fit 72 columns,
 * ranges are ordered, a row per field), the lookups by field and by file
 * key, the names of sources, and config_apply_setting for each kind of
 * row, called directly.
 */
#include "tests/unit/service/config/config_fixture.h"

#include <ctype.h>

#include "service/config/config_int.h"
#include "service/core/log.h"

/* Every row: BATCHD_ + the flag in capitals with '_' for '-' (BATCHD_MODELS
 * for --model, which repeats); help lines of at most 72 columns; a numeric
 * range with min <= max; a unique flag. */
static void test_rows(void **unused)
{
    (void)unused;
    assert_true(config_n_settings > 0 && config_n_settings <= CONFIG_MAX_SETTINGS);
    for (size_t i = 0; i < config_n_settings; i++) {
        const struct config_setting *st = &config_settings[i];
        char env[80];
        int n = snprintf(env, sizeof env, "BATCHD_%s%s", st->flag,
                         st->kind == SET_MODELS ? "S" : "");
        for (int k = 7; k < n; k++)
            env[k] = env[k] == '-' ? '_' : (char)toupper((unsigned char)env[k]);
        assert_string_equal(st->env, env);
        size_t col = 0;
        for (const char *p = st->help; *p; p++) {
            col = *p == '\n' ? 0 : col + 1;
            if (col > 72)
                fail_msg("--%s: a help line past 72 columns", st->flag);
        }
        assert_true(st->min <= st->max);
        assert_non_null(st->arg);
        assert_non_null(st->def);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(config_settings[j].flag, st->flag);
    }
}

/* config_setting_at finds each row that has a field of its own;
 * config_setting_for_key each flag, and "models" for --model. */
static void test_lookups(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < config_n_settings; i++) {
        const struct config_setting *st = &config_settings[i];
        size_t index = 999;
        assert_ptr_equal(config_setting_for_key(st->flag, &index), st);
        assert_int_equal(index, i);
        if (st->kind == SET_LISTEN || st->kind == SET_MODELS || st->kind == SET_TOKENS ||
            st->kind == SET_ORIGINS)
            continue;
        index = 999;
        assert_ptr_equal(config_setting_at(st->offset, &index), st);
        assert_int_equal(index, i);
    }
    size_t index;
    const struct config_setting *m = config_setting_for_key("models", &index);
    assert_non_null(m);
    assert_int_equal(m->kind, SET_MODELS);
    assert_null(config_setting_for_key("no-such-flag", &index));
    assert_null(config_setting_for_key("", &index));
    assert_null(config_setting_for_key("Workers", &index));
}

static void test_source_names(void **unused)
{
    (void)unused;
    size_t i;
    const struct config_setting *st = config_setting_at(FIELD(max_attempts), &i);
    char buf[300];
    config_source_name(buf, sizeof buf, st, CONFIG_SRC_FLAG, NULL);
    assert_string_equal(buf, "--max-attempts");
    config_source_name(buf, sizeof buf, st, CONFIG_SRC_ENV, NULL);
    assert_string_equal(buf, "BATCHD_MAX_ATTEMPTS");
    config_source_name(buf, sizeof buf, st, CONFIG_SRC_FILE, "/etc/b.json");
    assert_string_equal(buf, "/etc/b.json: key 'max-attempts'");
    config_source_name(buf, sizeof buf, st, CONFIG_SRC_FILE, NULL);
    assert_string_equal(buf, "config file: key 'max-attempts'");
    config_source_name(buf, sizeof buf, st, CONFIG_SRC_DEFAULT, NULL);
    assert_string_equal(buf, "the default --max-attempts");
    const struct config_setting *m = config_setting_for_key("model", &i);
    config_source_name(buf, sizeof buf, m, CONFIG_SRC_FILE, "f.json");
    assert_string_equal(buf, "f.json: key 'models'");

    /* config_source_of: what the parse recorded, by flag */
    struct config c;
    char err[256];
    setenv("BATCHD_GRACE", "1", 1);
    assert_int_equal(PARSE(&c, err, "--workers", "2"), 0);
    assert_int_equal(config_source_of(&c, "workers"), CONFIG_SRC_FLAG);
    assert_int_equal(config_source_of(&c, "grace"), CONFIG_SRC_ENV);
    assert_int_equal(config_source_of(&c, "max-items"), CONFIG_SRC_DEFAULT);
    assert_int_equal(config_source_of(&c, "no-such-flag"), CONFIG_SRC_DEFAULT);
    config_free(&c);
}

/* One value of each kind, applied to a zeroed struct config; each
 * refusal leaves the field as it was and says why. */
static void test_apply_each_kind(void **unused)
{
    (void)unused;
    struct config c = {0};
    char err[256];
    size_t i;
#define APPLY(key, text) \
    config_apply_setting(&c, config_setting_for_key((key), &i), "SRC", (text), err, sizeof err)

    assert_int_equal(APPLY("listen", "localhost:81"), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 81);
    assert_int_equal(APPLY("data-dir", "/var/b"), 0);
    assert_string_equal(c.data_dir, "/var/b");
    assert_int_equal(APPLY("data-dir", ""), -EINVAL);
    assert_string_equal(err, "SRC: expected a non-empty path, got ''");
    assert_string_equal(c.data_dir, "/var/b");
    assert_int_equal(APPLY("workers", "7"), 0);
    assert_int_equal(c.workers, 7);
    assert_int_equal(APPLY("workers", "0"), -EINVAL);
    assert_string_equal(err, "SRC: expected an integer from 1 to 256, got '0'");
    assert_int_equal(c.workers, 7);
    assert_int_equal(APPLY("max-items", "12"), 0);
    assert_int_equal(c.max_items, 12);
    assert_int_equal(APPLY("max-body-bytes", "3K"), 0);
    assert_int_equal(c.max_body_bytes, 3072);
    assert_int_equal(APPLY("max-body-bytes", "0"), -EINVAL);
    assert_string_equal(err, "SRC: expected a size in bytes from 1 to 1024G (K, M, G suffixes "
                             "allowed), got '0'");
    assert_int_equal(APPLY("grace", "0.25"), 0);
    assert_int_equal(c.grace_ms, 250);
    assert_int_equal(APPLY("grace", "3601"), -EINVAL);
    assert_string_equal(err, "SRC: expected seconds from 0 to 3600 (up to 3 decimals), got '3601'");
    assert_int_equal(APPLY("access-log", "true"), 0);
    assert_true(c.access_log);
    assert_int_equal(APPLY("access-log", "yes"), -EINVAL);
    assert_string_equal(err, "SRC: expected true or false, got 'yes'");
    assert_int_equal(APPLY("log-level", "WARN"), 0);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_string_equal(config_log_level_names[c.log_level], "warn");
    assert_int_equal(APPLY("log-level", "loud"), -EINVAL);
    assert_int_equal(c.log_level, LOG_WARN);
    /* a list replaces what the field held */
    assert_int_equal(APPLY("api-tokens", "t1,t2"), 0);
    assert_int_equal(c.n_api_tokens, 2);
    assert_int_equal(APPLY("api-tokens", "t3"), 0);
    assert_int_equal(c.n_api_tokens, 1);
    assert_string_equal(c.api_tokens[0], "t3");
    assert_int_equal(APPLY("cors-origins", "*"), 0);
    assert_int_equal(c.n_cors_origins, 1);
    assert_int_equal(APPLY("cors-origins", "nope"), -EINVAL);
    assert_int_equal(c.n_cors_origins, 1);
#undef APPLY
    config_free(&c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_rows),
        T(test_lookups),
        T(test_source_names),
        T(test_apply_each_kind),
    };
    return cmocka_run_group_tests_name("config_table", tests, NULL, NULL);
}
