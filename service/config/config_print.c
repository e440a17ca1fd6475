/*
 * config_print.c: the two texts written from the settings table:
 * --print-config (every effective value and where it came from, secrets
 * masked) and --help (every row's flag, help, variable, default and range).
 * Part of the config module (config.h); config_int.h declares what its
 * files share.
 */
#include "service/config/config_int.h"

#include <stdio.h>
#include <string.h>

static const char *const source_names[] = { "default", "file", "env", "flag" };

/* A store URI with its password, if any, hidden (user:PASSWORD@host). */
static void print_uri(FILE *f, const char *uri)
{
    const char *auth = strstr(uri, "://");
    const char *at = auth ? strchr(auth + 3, '@') : NULL;
    const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - auth - 3)) : NULL;
    if (!colon) {
        fputs(uri, f);
        return;
    }
    fprintf(f, "%.*s:********%s", (int)(colon - uri), uri, at);
}

void config_print(const struct config *cfg, FILE *f)
{
    const char *base = (const char *)cfg;
    char buf[64];

    fprintf(f, "# batchd %s: the effective configuration (flag > env > file > default)\n",
            &CONFIG_VERSION_TEXT[7]); /* past "batchd " */
    for (size_t i = 0; i < config_n_settings; i++) {
        const struct config_setting *st = &config_settings[i];
        const void *field = base + st->offset;
        fprintf(f, "%-18s ", st->flag);
        switch (st->kind) {
        case SET_LISTEN:
            fprintf(f, "%s:%u", cfg->listen_host, (unsigned)cfg->listen_port);
            break;
        case SET_STRING:
        case SET_CONFIG: {
            const char *s = *(char *const *)field;
            /* the signing secret is a password */
            if (s && st->offset == FIELD(webhook_secret))
                s = "********";
            if (s && st->offset == FIELD(store)) {
                print_uri(f, s);
                break;
            }
            fputs(s ? s : "none", f);
            break;
        }
        case SET_UNSIGNED:
            fprintf(f, "%u", *(const unsigned *)field);
            break;
        case SET_COUNT:
            fprintf(f, "%zu", *(const size_t *)field);
            break;
        case SET_BYTES:
            config_format_size(buf, sizeof buf, *(const size_t *)field);
            fputs(buf, f);
            break;
        case SET_MILLIS:
            config_format_seconds(buf, sizeof buf, *(const unsigned *)field);
            fputs(buf, f);
            break;
        case SET_BOOL:
            fputs(*(const bool *)field ? "true" : "false", f);
            break;
        case SET_LOG_LEVEL:
            fputs(config_log_level_names[*(const unsigned *)field & 3], f);
            break;
        case SET_MODELS:
            for (size_t m = 0; m < cfg->n_models; m++) {
                if (m)
                    fputc(' ', f);
                config_model_print(f, &cfg->models[m]);
            }
            break;
        case SET_TOKENS:
            /* the number only: a token is a password */
            if (cfg->n_api_tokens)
                fprintf(f, "******** (%zu token%s)", cfg->n_api_tokens,
                        cfg->n_api_tokens == 1 ? "" : "s");
            else
                fputs("none", f);
            break;
        case SET_ORIGINS:
            for (size_t k = 0; k < cfg->n_cors_origins; k++)
                fprintf(f, "%s%s", k ? "," : "", cfg->cors_origins[k]);
            if (!cfg->n_cors_origins)
                fputs("none", f);
            break;
        }
        unsigned src = cfg->source[i] < 4 ? cfg->source[i] : 0;
        fprintf(f, "  [%s", source_names[src]);
        if (src == CONFIG_SRC_FLAG)
            fprintf(f, " --%s]\n", st->flag);
        else if (src == CONFIG_SRC_ENV)
            fprintf(f, " %s]\n", st->env);
        else
            fputs("]\n", f);
    }
}

void config_usage(FILE *out)
{
    FILE *f = out;
    char names[256];

    fprintf(f, "Usage: batchd [OPTION]...\n"
               "       batchd healthcheck [OPTION]...\n"
               "Runs batch jobs, submitted over HTTP, on a pool of pre-forked worker processes\n"
               "that load each model once.\n\n");
    for (size_t i = 0; i < config_n_settings; i++) {
        const struct config_setting *st = &config_settings[i];
        fprintf(f, "  --%s %s\n      ", st->flag, st->arg);
        for (const char *p = st->help; *p; p++) {
            if (*p == '\n')
                fputs("\n      ", f);
            else
                fputc(*p, f);
        }
        fprintf(f, "\n      [%s; default %s", st->env, st->def);
        if (st->kind == SET_UNSIGNED || st->kind == SET_COUNT) {
            fprintf(f, "; %llu to %llu", st->min, st->max);
        } else if (st->kind == SET_BYTES) {
            char lo[32], hi[32];
            config_format_size(lo, sizeof lo, st->min);
            config_format_size(hi, sizeof hi, st->max);
            fprintf(f, "; %s to %s", lo, hi);
        } else if (st->kind == SET_MILLIS) {
            char lo[32], hi[32];
            config_format_seconds(lo, sizeof lo, st->min);
            config_format_seconds(hi, sizeof hi, st->max);
            fprintf(f, "; %s to %s", lo, hi);
        }
        fputc(']', f);
        fputc('\n', f);
    }
    config_builtin_names(names, sizeof names, true);
    fprintf(f, "  --print-config\n      print the effective configuration, with where each value "
               "came\n      from, and exit\n"
               "  -h, --help\n      print this help and exit\n"
               "  -V, --version\n      print the version and exit\n\n"
               "Flags override BATCHD_* environment variables, which override the config\n"
               "file, which overrides the defaults; an empty variable (or a null in the file)\n"
               "counts as unset. SIZE takes a K, M or G suffix (KiB, MiB, GiB). A model's\n"
               "workers=K runs K workers for it (1 to %d); its max_items=N and max_rss=SIZE\n"
               "replace its workers past N items or SIZE resident (0 = never), whatever\n"
               "the global --max-items-per-worker and --max-worker-rss say.\n"
               "Built-in models: %s.\n"
               "batchd healthcheck takes the same options (and file and variables) and exits\n"
               "0 when GET /healthz at --listen answers 200 within 3 seconds, 1 otherwise.\n",
            CONFIG_MAX_WORKERS_PER_MODEL, names);
}
