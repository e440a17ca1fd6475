/*
 * config_models.c: model specs, NAME[:key=value,...], as --model,
 * BATCHD_MODELS and the file's "models" give them: the parse (batchd's own
 * keys workers=, plugin=, python=, node=, interpreter=, max_items=,
 * max_rss= taken out, the other pairs kept in order for the model), the
 * list of models (no name twice, at most CONFIG_MAX_MODELS), the built-in
 * defaults, and the spec written back for --print-config. Part of the
 * config module (config.h); config_int.h declares what its files share.
 */
#include "service/config/config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <batchd/model.h>
#include "workers/models/models_builtin.h"

void config_model_free(struct config_model *m)
{
    for (size_t i = 0; i < m->n_params; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    free(m->name);
    free(m->plugin);
    free(m->runtime);
    free(m->module);
    free(m->interpreter);
    memset(m, 0, sizeof *m);
}

/* "echo, square, ..." for error messages; with `mark`, for --help, the
 * models that are never loaded by default say so. */
void config_builtin_names(char *buf, size_t len, bool mark)
{
    const struct model_ops *m;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL && used < len; i++) {
        bool only_named = mark && (m->flags & MODEL_FLAG_NOT_DEFAULT);
        int n = snprintf(buf + used, len - used, "%s%s%s", i ? ", " : "", m->name,
                         only_named ? " (only when named)" : "");
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/*
 * A model's recycling limit, max_items=N or max_rss=SIZE, with the ranges
 * and the wording of the global flags. Returns 0 or -EINVAL with a message
 * naming the source, the model and the key.
 */
static int parse_model_limit(struct config_model *m, const char *src, const char *key,
                             const char *value, char *err, size_t errlen)
{
    bool rss = strcmp(key, "max_rss") == 0;
    unsigned long long v;
    if (config_parse_number(value, rss, 0, rss ? CONFIG_MAX_RECYCLE_RSS : CONFIG_MAX_RECYCLE_ITEMS,
                            &v) < 0) {
        if (rss) {
            char hi[32];
            config_format_size(hi, sizeof hi, CONFIG_MAX_RECYCLE_RSS);
            return config_fail(err, errlen, -EINVAL,
                               "%s %s: max_rss: expected a size in bytes from 0 to %s (K, M, G "
                               "suffixes allowed; 0 = no limit), got '%s'",
                               src, m->name, hi, value);
        }
        return config_fail(err, errlen, -EINVAL,
                           "%s %s: max_items: expected an integer from 0 to %llu (0 = no limit), "
                           "got '%s'",
                           src, m->name, CONFIG_MAX_RECYCLE_ITEMS, value);
    }
    if (rss) {
        m->max_rss = v;
        m->max_rss_set = true;
    } else {
        m->max_items = v;
        m->max_items_set = true;
    }
    return 0;
}

/*
 * Parses one NAME[:key=value,...] into *m (zeroed by the caller). workers=,
 * plugin=, max_items= and max_rss= are taken out; the other pairs keep their order. On failure
 * *m is freed and zeroed again.
 */
static int parse_model_spec(struct config_model *m, const char *src, const char *spec, char *err,
                            size_t errlen)
{
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
    char *params = NULL;
    int rc;

    if (!config_valid_name(spec, name_len)) {
        rc =
            config_fail(err, errlen, -EINVAL,
                        "%s: expected NAME[:key=value,...] with a NAME of 1 to %d letters, digits, "
                        "'_', '-' or '.', got '%s'",
                        src, CONFIG_MAX_NAME_LEN, spec);
        goto out;
    }
    m->name = strndup(spec, name_len);
    if (!m->name) {
        rc = config_out_of_memory(err, errlen);
        goto out;
    }
    if (colon) {
        size_t max_pairs = 1;
        for (const char *p = colon + 1; *p; p++)
            max_pairs += *p == ',';
        params = strdup(colon + 1);
        m->keys = calloc(max_pairs, sizeof *m->keys);
        m->values = calloc(max_pairs, sizeof *m->values);
        if (!params || !m->keys || !m->values) {
            rc = config_out_of_memory(err, errlen);
            goto out;
        }
        bool seen_workers = false;
        /* strsep, not strtok: an empty pair ("a=1,,b=2") must be an error,
         * not silently skipped. */
        for (char *rest = params, *pair; (pair = strsep(&rest, ",")) != NULL;) {
            char *eq = strchr(pair, '=');
            if (!eq || !config_valid_name(pair, (size_t)(eq - pair)) || eq[1] == '\0') {
                rc = config_fail(err, errlen, -EINVAL,
                                 "%s %s: expected key=value with a non-empty value, got '%s'", src,
                                 m->name, pair);
                goto out;
            }
            *eq = '\0';
            const char *key = pair, *value = eq + 1;
            bool coproc_key = strcmp(key, "python") == 0 || strcmp(key, "node") == 0;
            bool dup = (strcmp(key, "workers") == 0 && seen_workers) ||
                       (strcmp(key, "plugin") == 0 && m->plugin) ||
                       (strcmp(key, "interpreter") == 0 && m->interpreter) ||
                       (coproc_key && m->runtime && strcmp(m->runtime, key) == 0) ||
                       (strcmp(key, "max_items") == 0 && m->max_items_set) ||
                       (strcmp(key, "max_rss") == 0 && m->max_rss_set);
            for (size_t i = 0; i < m->n_params && !dup; i++)
                dup = strcmp(m->keys[i], key) == 0;
            if (dup) {
                rc =
                    config_fail(err, errlen, -EINVAL, "%s %s: '%s' given twice", src, m->name, key);
                goto out;
            }
            if (strcmp(key, "workers") == 0) {
                unsigned long long w;
                if (config_parse_number(value, false, 1, CONFIG_MAX_WORKERS_PER_MODEL, &w) < 0) {
                    rc = config_fail(err, errlen, -EINVAL,
                                     "%s %s: workers: expected an integer from 1 to %d, got '%s'",
                                     src, m->name, CONFIG_MAX_WORKERS_PER_MODEL, value);
                    goto out;
                }
                m->workers = (unsigned)w;
                seen_workers = true;
            } else if (strcmp(key, "max_items") == 0 || strcmp(key, "max_rss") == 0) {
                rc = parse_model_limit(m, src, key, value, err, errlen);
                if (rc < 0)
                    goto out;
            } else if (strcmp(key, "plugin") == 0) {
                m->plugin = strdup(value);
                if (!m->plugin) {
                    rc = config_out_of_memory(err, errlen);
                    goto out;
                }
            } else if (coproc_key) {
                if (m->runtime) {
                    rc = config_fail(err, errlen, -EINVAL,
                                     "%s %s: a model is in one language: %s= and %s= both given",
                                     src, m->name, m->runtime, key);
                    goto out;
                }
                m->runtime = strdup(key);
                m->module = strdup(value);
                if (!m->runtime || !m->module) {
                    rc = config_out_of_memory(err, errlen);
                    goto out;
                }
            } else if (strcmp(key, "interpreter") == 0) {
                m->interpreter = strdup(value);
                if (!m->interpreter) {
                    rc = config_out_of_memory(err, errlen);
                    goto out;
                }
            } else {
                m->keys[m->n_params] = strdup(key);
                m->values[m->n_params] = strdup(value);
                /* Count the pair before checking, so config_model_free() frees
                 * whichever of the two copies succeeded. */
                m->n_params++;
                if (!m->keys[m->n_params - 1] || !m->values[m->n_params - 1]) {
                    rc = config_out_of_memory(err, errlen);
                    goto out;
                }
            }
        }
    }
    if (m->runtime && m->plugin) {
        rc = config_fail(err, errlen, -EINVAL,
                         "%s %s: plugin= is a C model, %s= a %s model: give one of them", src,
                         m->name, m->runtime, m->runtime);
        goto out;
    }
    if (m->interpreter && !m->runtime) {
        rc = config_fail(err, errlen, -EINVAL,
                         "%s %s: interpreter= goes with python=PATH or node=PATH", src, m->name);
        goto out;
    }
    if (!m->plugin && !m->runtime && !model_builtin_find(m->name)) {
        char names[256];
        config_builtin_names(names, sizeof names, false);
        rc = config_fail(
            err, errlen, -EINVAL,
            "%s: no built-in model named '%s' (built-in: %s; a plugin needs plugin=PATH, "
            "a Python model python=PATH)",
            src, m->name, names);
        goto out;
    }
    rc = 0;
out:
    free(params);
    if (rc < 0)
        config_model_free(m);
    return rc;
}

/* Appends one parsed spec to c->models, refusing duplicates and overflow. */
int config_add_model(struct config *c, const char *src, const char *spec, char *err,
                     size_t errlen)
{
    if (c->n_models == CONFIG_MAX_MODELS)
        return config_fail(err, errlen, -EINVAL, "%s: at most %d models, got more", src,
                           CONFIG_MAX_MODELS);
    struct config_model m = {0};
    int rc = parse_model_spec(&m, src, spec, err, errlen);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n_models; i++) {
        if (strcmp(c->models[i].name, m.name) == 0) {
            rc = config_fail(err, errlen, -EINVAL, "%s: model '%s' is named twice", src, m.name);
            config_model_free(&m);
            return rc;
        }
    }
    c->models[c->n_models++] = m;
    return 0;
}

/* BATCHD_MODELS: specs separated by blanks or semicolons; empty ones skip. */
int config_parse_models_env(struct config *c, const char *src, const char *text, char *err,
                            size_t errlen)
{
    char *copy = strdup(text);
    if (!copy)
        return config_out_of_memory(err, errlen);
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t\r\n;", &save); tok && rc == 0;
         tok = strtok_r(NULL, " \t\r\n;", &save))
        rc = config_add_model(c, src, tok, err, errlen);
    free(copy);
    return rc;
}

int config_default_models(struct config *c, char *err, size_t errlen)
{
    const struct model_ops *m;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++) {
        if (m->flags & MODEL_FLAG_NOT_DEFAULT)
            continue;
        if (c->n_models == CONFIG_MAX_MODELS)
            break;
        c->models[c->n_models].name = strdup(m->name);
        if (!c->models[c->n_models].name)
            return config_out_of_memory(err, errlen);
        c->n_models++;
    }
    return 0;
}

/* Writes a model back as the spec that configures it. */
void config_model_print(FILE *f, const struct config_model *m)
{
    fprintf(f, "%s:workers=%u", m->name, m->workers);
    if (m->plugin)
        fprintf(f, ",plugin=%s", m->plugin);
    if (m->runtime)
        fprintf(f, ",%s=%s", m->runtime, m->module);
    if (m->interpreter)
        fprintf(f, ",interpreter=%s", m->interpreter);
    if (m->max_items)
        fprintf(f, ",max_items=%llu", m->max_items);
    if (m->max_rss) {
        char size[32];
        config_format_size(size, sizeof size, m->max_rss);
        fprintf(f, ",max_rss=%s", size);
    }
    for (size_t k = 0; k < m->n_params; k++)
        fprintf(f, ",%s=%s", m->keys[k], m->values[k]);
}
