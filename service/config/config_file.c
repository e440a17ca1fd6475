/*
 * config_file.c: the configuration file (--config PATH / BATCHD_CONFIG), a
 * JSON object keyed by the flags' names: loading it (duplicate keys, an
 * unknown key and the "config" key refused, each named), and turning a
 * key's JSON value into the text a flag would carry, so that a value is
 * parsed by the same code whatever its source. Part of the config module
 * (config.h); config_int.h declares what its files share.
 */
#include "service/config/config_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Loads the config file and checks its keys. Returns 0 with *root (new
 * reference) set; -EINVAL with the message in err (unreadable, not JSON,
 * not an object, an unknown key, the "config" key).
 */
int config_load_file(const char *path, json_t **root, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = config_read_small_file(path, &text, &len);
    if (rc < 0)
        return config_file_error("config file", path, rc, err, errlen);
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    explicit_bzero(text, len); /* it may hold tokens */
    free(text);
    if (!j)
        return config_fail(err, errlen, -EINVAL, "%s: line %d, column %d: %s", path, jerr.line,
                           jerr.column, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected a JSON object of settings keyed by flag name", path);
    }
    if (json_object_get(j, "model") && json_object_get(j, "models")) {
        json_decref(j);
        return config_fail(err, errlen, -EINVAL, "%s: give \"models\" or \"model\", not both",
                           path);
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        size_t i;
        const struct config_setting *st = config_setting_for_key(key, &i);
        if (st && st->kind == SET_CONFIG) {
            json_decref(j);
            return config_fail(err, errlen, -EINVAL,
                               "%s: key 'config' cannot be set in a config file", path);
        }
        if (!st) {
            /* the message first: `key` belongs to the document */
            rc = config_fail(err, errlen, -EINVAL,
                             "%s: unknown key '%.64s' (the keys are the flags' names, see --help; "
                             "\"models\" for --model)", path, key);
            json_decref(j);
            return rc;
        }
    }
    *root = j;
    return 0;
}

/*
 * The text a flag would carry for the file's value `v` of setting `st`:
 * a string as it is; an integer in decimal; a real (seconds) with up to 3
 * decimals; true/false; an array of strings joined with commas (tokens,
 * origins). Returns a new string, or NULL with err set (-EINVAL in *rc, or
 * -ENOMEM).
 */
char *config_file_value_text(const struct config_setting *st, const json_t *v, const char *src,
                             int *rc, char *err, size_t errlen)
{
    char buf[64];
    const char *text = NULL; /* the value as a flag's text, when it is one piece */
    bool numeric = st->kind == SET_UNSIGNED || st->kind == SET_COUNT || st->kind == SET_BYTES ||
                   st->kind == SET_MILLIS;
    if (json_is_string(v)) {
        /* "\u0000" would cut the C string: "a\u0000b" must not pass for "a" */
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            *rc = config_fail(err, errlen, -EINVAL, "%s: the string holds a NUL character", src);
            return NULL;
        }
        text = json_string_value(v);
    } else if (json_is_integer(v) && numeric) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        text = buf;
    } else if (json_is_real(v) && st->kind == SET_MILLIS) {
        double d = json_real_value(v);
        double ms = d * 1000.0;
        /* 2.5 is 2500 ms; 0.0001 has no whole number of milliseconds */
        if (!(d >= 0 && d < 1e12 && fabs(ms - round(ms)) < 1e-6)) {
            snprintf(buf, sizeof buf, "%.15g", d); /* as written, not the binary's tail */
            *rc = config_number_error(st, src, buf, err, errlen);
            return NULL;
        }
        config_format_seconds(buf, sizeof buf, (unsigned long long)llround(ms));
        text = buf;
    } else if (json_is_boolean(v) && st->kind == SET_BOOL) {
        text = json_is_true(v) ? "true" : "false";
    }
    if (text) {
        char *out = strdup(text);
        if (!out)
            *rc = config_out_of_memory(err, errlen);
        return out;
    }
    if (json_is_array(v) && (st->kind == SET_TOKENS || st->kind == SET_ORIGINS)) {
        /* ["a", "b"] is the list "a,b" (neither tokens nor origins hold commas) */
        size_t total = 1, i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e) || strchr(json_string_value(e), ',') ||
                strlen(json_string_value(e)) != json_string_length(e)) {
                *rc = config_fail(err, errlen, -EINVAL, "%s: expected an array of strings", src);
                return NULL;
            }
            total += json_string_length(e) + 1;
        }
        char *out = calloc(1, total);
        if (!out) {
            *rc = config_out_of_memory(err, errlen);
            return NULL;
        }
        json_array_foreach(v, i, e) {
            if (i)
                strcat(out, ",");
            strcat(out, json_string_value(e));
        }
        return out;
    }
    static const char *const wanted[] = {
        [SET_LISTEN] = "a string \"HOST:PORT\"",
        [SET_STRING] = "a string",
        [SET_UNSIGNED] = "an integer",
        [SET_COUNT] = "an integer",
        [SET_BYTES] = "an integer or a string such as \"64M\"",
        [SET_MILLIS] = "a number of seconds",
        [SET_MODELS] = "an array of model specs",
        [SET_BOOL] = "true or false",
        [SET_LOG_LEVEL] = "a string",
        [SET_TOKENS] = "an array of strings",
        [SET_ORIGINS] = "an array of strings",
        [SET_CONFIG] = "a string",
    };
    *rc = config_fail(err, errlen, -EINVAL, "%s: expected %s, got a JSON %s", src, wanted[st->kind],
                      json_is_object(v)  ? "object"
                      : json_is_array(v) ? "array"
                      : json_is_real(v)  ? "real number"
                      : json_is_integer(v) ? "integer"
                      : json_is_boolean(v) ? "boolean"
                      : "string");
    return NULL;
}

/* The file's "models": an array of specs (as --model takes), or one string
 * of specs separated by blanks or semicolons (as BATCHD_MODELS). */
int config_apply_file_models(struct config *c, const json_t *v, const char *src, char *err,
                             size_t errlen)
{
    if (json_is_string(v))
        return config_parse_models_env(c, src, json_string_value(v), err, errlen);
    if (!json_is_array(v))
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected an array of model specs such as \"square:workers=2\"",
                           src);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return config_fail(err, errlen, -EINVAL,
                               "%s: expected an array of model specs such as \"square:workers=2\"",
                               src);
        int rc = config_add_model(c, src, json_string_value(e), err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}
