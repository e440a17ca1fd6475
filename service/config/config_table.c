/*
 * config_table.c: the settings table, one row per setting (flag, variable,
 * kind, range, field, --help text), and what reads a row: the lookups (by
 * field, by file key), the name of a value's source for messages, and
 * config_apply_setting(), which parses a value's text by its row's kind
 * whatever the source (flag, variable or file). Part of the config module
 * (config.h); config_int.h declares what its files share.
 *
 * A new setting is a row here, a field in struct config (config.h) and its
 * default in config.c's set_defaults(); --help, --print-config, the file
 * key and the error messages follow from the row.
 */
#include "service/config/config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/objects/objects.h"

/* The size_t rows' ranges (1024G bytes, 10^10 items) are stored unchecked
 * into size_t fields. */
_Static_assert(sizeof(size_t) >= sizeof(unsigned long long),
               "config's size_t settings need a 64-bit size_t");

const struct config_setting config_settings[] = {
    {"listen", "BATCHD_LISTEN", SET_LISTEN, 0, 0, 0, "HOST:PORT",
     "address to listen on: an IPv4 address or localhost, and a port\n"
     "(0 lets the kernel pick a free one)",
     "127.0.0.1:8080"},
    {"data-dir", "BATCHD_DATA_DIR", SET_STRING, 0, 0, FIELD(data_dir), "DIR",
     "where this replica keeps its lock and, with --store sqlite, jobs and\n"
     "results", "./data"},
    {"store", "BATCHD_STORE", SET_STRING, 0, 0, FIELD(store), "STORE",
     "where jobs, inputs and results are kept: sqlite (DATA_DIR/batchd.db)\n"
     "or a PostgreSQL URI (postgresql://USER@HOST:PORT/DATABASE), which\n"
     "several replicas may share",
     "sqlite"},
    {"workers", "BATCHD_WORKERS", SET_UNSIGNED, 1, CONFIG_MAX_WORKERS_PER_MODEL, FIELD(workers),
     "N", "worker processes per model, unless its workers=K says otherwise",
     "the number of online CPUs"},
    {"model", "BATCHD_MODELS", SET_MODELS, 0, 0, 0, "NAME[:key=value,...]",
     "a model to load; repeat the flag for several (BATCHD_MODELS: specs\n"
     "separated by spaces or semicolons). workers=K, plugin=PATH,\n"
     "python=PATH, node=PATH, interpreter=PROGRAM, max_items=N and\n"
     "max_rss=SIZE are batchd's; the other pairs are passed to the model",
     "the built-in models that need no file"},
    {"max-body-bytes", "BATCHD_MAX_BODY_BYTES", SET_BYTES, 1, 1024 * GIB, FIELD(max_body_bytes),
     "SIZE", "largest request body", "64M"},
    {"max-items", "BATCHD_MAX_ITEMS", SET_COUNT, 1, 1000000000ull, FIELD(max_items), "N",
     "most items in one job", "10000000"},
    {"max-queued-items", "BATCHD_MAX_QUEUED_ITEMS", SET_COUNT, 1, 10000000000ull,
     FIELD(max_queued_items), "N",
     "most items accepted but not yet finished, over all jobs; a job that\n"
     "would go past it is refused, and may be retried once others finish",
     "20000000"},
    {"max-item-bytes", "BATCHD_MAX_ITEM_BYTES", SET_BYTES, 1, GIB, FIELD(max_item_bytes), "SIZE",
     "largest item, as compact JSON; also sizes the task slots", "256K"},
    {"object-memory", "BATCHD_OBJECT_MEMORY", SET_BYTES, OBJECTS_PAGE, OBJECTS_MAX_CAPACITY,
     FIELD(object_memory), "SIZE",
     "shared memory for objects (POST /v1/objects), a ceiling: pages cost\n"
     "memory only while objects use them; lost on restart",
     "1G"},
    {"max-object-bytes", "BATCHD_MAX_OBJECT_BYTES", SET_BYTES, 1, OBJECTS_MAX_CAPACITY,
     FIELD(max_object_bytes), "SIZE", "largest object; at most --object-memory", "256M"},
    {"max-output-size", "BATCHD_MAX_OUTPUT_SIZE", SET_BYTES, 1, GIB, FIELD(max_output_size),
     "SIZE",
     "largest output of one item, as compact JSON; one past a task slot\n"
     "goes through an object (so also at most --max-object-bytes); past\n"
     "this it is the item's error",
     "64M"},
    {"max-objects", "BATCHD_MAX_OBJECTS", SET_UNSIGNED, 1, OBJECTS_MAX_OBJECTS,
     FIELD(max_objects), "N", "most objects kept at once (uploads and models' outputs)", "4096"},
    {"max-connections", "BATCHD_MAX_CONNECTIONS", SET_UNSIGNED, 1, 1000000,
     FIELD(max_connections), "N",
     "most simultaneous HTTP connections; past it the oldest connection\n"
     "still sending its request head is closed to make room. Must fit the\n"
     "open-file limit (ulimit -Hn), else batchd does not start",
     "4096, or what the open-file limit allows"},
    {"idle-timeout", "BATCHD_IDLE_TIMEOUT", SET_UNSIGNED, 1, 86400, FIELD(idle_timeout_s),
     "SECONDS", "close a connection that stays idle this long", "30"},
    {"header-timeout", "BATCHD_HEADER_TIMEOUT", SET_UNSIGNED, 1, 3600, FIELD(header_timeout_s),
     "SECONDS",
     "close a connection whose request head is not complete this long\n"
     "after it opened (or after its previous answer), however fast it\n"
     "trickles bytes",
     "20"},
    {"min-body-rate", "BATCHD_MIN_BODY_RATE", SET_BYTES, 0, GIB, FIELD(min_body_rate), "SIZE",
     "bytes per second a request body must average, after --header-timeout\n"
     "seconds of grace, or the connection is closed (0 = no minimum)",
     "1K"},
    {"http-threads", "BATCHD_HTTP_THREADS", SET_UNSIGNED, 1, 256, FIELD(http_threads), "N",
     "threads serving HTTP, each for many connections (epoll)", "4"},
    {"retention", "BATCHD_RETENTION", SET_UNSIGNED, 1, 315360000, FIELD(retention_s), "SECONDS",
     "delete finished jobs and their results this long after they finish", "604800"},
    {"max-store-bytes", "BATCHD_MAX_STORE_BYTES", SET_BYTES, 0, 1ull << 50, FIELD(max_store_bytes),
     "SIZE", "largest the job store may grow (0 = as large as the disk allows)", "0"},
    {"max-json-depth", "BATCHD_MAX_JSON_DEPTH", SET_UNSIGNED, 1, 1000, FIELD(max_json_depth),
     "N", "deepest nesting of arrays and objects in a request body", "64"},
    {"max-attempts", "BATCHD_MAX_ATTEMPTS", SET_UNSIGNED, 1, 100, FIELD(max_attempts), "N",
     "tries of an item whose worker dies, before the item fails", "3"},
    {"max-items-per-worker", "BATCHD_MAX_ITEMS_PER_WORKER", SET_COUNT, 0, CONFIG_MAX_RECYCLE_ITEMS,
     FIELD(max_items_per_worker), "N",
     "replace a worker process once it has run N items (it finishes its\n"
     "task first; 0 = never); a model's max_items=N overrides it",
     "0"},
    {"max-worker-rss", "BATCHD_MAX_WORKER_RSS", SET_BYTES, 0, CONFIG_MAX_RECYCLE_RSS,
     FIELD(max_worker_rss), "SIZE",
     "replace a worker process whose resident memory is past SIZE after a\n"
     "task (0 = never); a model's max_rss=SIZE overrides it",
     "0"},
    {"item-timeout", "BATCHD_ITEM_TIMEOUT", SET_MILLIS, 0, 86400000ull, FIELD(item_timeout_ms),
     "SECONDS",
     "fail an item that runs longer than this, for jobs that set no\n"
     "item_timeout_s (up to 3 decimals; 0 = no limit); at most\n"
     "--max-item-timeout",
     "0"},
    {"max-item-timeout", "BATCHD_MAX_ITEM_TIMEOUT", SET_MILLIS, 1, 86400000ull,
     FIELD(max_item_timeout_ms), "SECONDS",
     "the longest item timeout a job may ask for with options.item_timeout_s\n"
     "(up to 3 decimals)",
     "3600"},
    {"grace", "BATCHD_GRACE", SET_MILLIS, 0, 3600000ull, FIELD(grace_ms), "SECONDS",
     "on shutdown, how long running tasks may finish before their workers\n"
     "are killed (up to 3 decimals; 0 = do not wait)",
     "10"},
    {"port-file", "BATCHD_PORT_FILE", SET_STRING, 0, 0, FIELD(port_file), "PATH",
     "write the bound port there once listening", "none"},
    {"log-level", "BATCHD_LOG_LEVEL", SET_LOG_LEVEL, 0, 0, FIELD(log_level), "LEVEL",
     "least severe log lines written: debug, info, warn or error", "info"},
    {"access-log", "BATCHD_ACCESS_LOG", SET_BOOL, 0, 0, FIELD(access_log), "BOOL",
     "log one line per HTTP request (method, path, status, bytes,\n"
     "duration, request id): true or false",
     "true"},
    {"config", "BATCHD_CONFIG", SET_CONFIG, 0, 0, FIELD(config_file), "PATH",
     "a JSON file of settings, keyed by these flags' names (\"models\" for\n"
     "--model, a list); flags and variables override it",
     "none"},
    {"api-tokens", "BATCHD_API_TOKENS", SET_TOKENS, 0, 0, 0, "TOKEN[,TOKEN...]",
     "bearer tokens that /v1 requests must present (Authorization: Bearer\n"
     "TOKEN); prefer the variable or --tokens-file: a flag shows in ps",
     "none (no tokens: authentication is off)"},
    {"tokens-file", "BATCHD_TOKENS_FILE", SET_STRING, 0, 0, FIELD(tokens_file), "PATH",
     "a file of bearer tokens, one per line ('#' starts a comment), added\n"
     "to --api-tokens and read again on SIGHUP",
     "none"},
    {"auth-metrics", "BATCHD_AUTH_METRICS", SET_BOOL, 0, 0, FIELD(auth_metrics), "BOOL",
     "when tokens are configured, /metrics needs one too (/healthz and\n"
     "/readyz stay open for probes): true or false",
     "false"},
    {"cors-origins", "BATCHD_CORS_ORIGINS", SET_ORIGINS, 0, 0, 0, "ORIGIN[,ORIGIN...]",
     "browser origins (scheme://host[:port]) allowed to call the API\n"
     "cross-origin, or * for any",
     "none"},
    {"tls-cert", "BATCHD_TLS_CERT", SET_STRING, 0, 0, FIELD(tls_cert), "PATH",
     "serve HTTPS with this PEM certificate (chain); needs --tls-key", "none: plain HTTP"},
    {"tls-key", "BATCHD_TLS_KEY", SET_STRING, 0, 0, FIELD(tls_key), "PATH",
     "the PEM private key of --tls-cert", "none"},
    {"webhook-hosts", "BATCHD_WEBHOOK_HOSTS", SET_STRING, 0, 0, FIELD(webhook_hosts),
     "HOST:PORT[,...]",
     "the only hosts a job's completion webhook may call (SSRF guard);\n"
     "none: webhooks are off. Needs --webhook-secret",
     "none"},
    {"webhook-secret", "BATCHD_WEBHOOK_SECRET", SET_STRING, 0, 0, FIELD(webhook_secret),
     "whsec_BASE64",
     "signs webhook deliveries (Standard Webhooks: a key of 24 to 64\n"
     "bytes, base64); prefer the variable: a flag shows in ps",
     "none"},
    {"webhook-retry-for", "BATCHD_WEBHOOK_RETRY_FOR", SET_UNSIGNED, 1, 2592000,
     FIELD(webhook_retry_for_s), "SECONDS",
     "retry a failed webhook delivery (exponential back-off with jitter)\n"
     "this long after the job finished, then give up",
     "86400"},
};

const size_t config_n_settings = sizeof config_settings / sizeof config_settings[0];
_Static_assert(sizeof config_settings / sizeof config_settings[0] <= CONFIG_MAX_SETTINGS,
               "raise CONFIG_MAX_SETTINGS");

const char *const config_log_level_names[4] = {"debug", "info", "warn", "error"};

enum config_source config_source_of(const struct config *cfg, const char *flag)
{
    for (size_t i = 0; i < config_n_settings; i++)
        if (strcmp(config_settings[i].flag, flag) == 0)
            return (enum config_source)cfg->source[i];
    return CONFIG_SRC_DEFAULT;
}

int config_number_error(const struct config_setting *st, const char *src, const char *text,
                        char *err, size_t errlen)
{
    if (st->kind == SET_BYTES) {
        char lo[32], hi[32];
        config_format_size(lo, sizeof lo, st->min);
        config_format_size(hi, sizeof hi, st->max);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected a size in bytes from %s to %s (K, M, G suffixes allowed), "
                           "got '%s'", src, lo, hi, text);
    }
    if (st->kind == SET_MILLIS) {
        char lo[32], hi[32];
        config_format_seconds(lo, sizeof lo, st->min);
        config_format_seconds(hi, sizeof hi, st->max);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected seconds from %s to %s (up to 3 decimals), got '%s'", src,
                           lo, hi, text);
    }
    return config_fail(err, errlen, -EINVAL, "%s: expected an integer from %llu to %llu, got '%s'",
                       src, st->min, st->max, text);
}

/* Applies one setting's text (from `src`: a flag, a variable or a file
 * key); the lists replace what the field held. */
int config_apply_setting(struct config *c, const struct config_setting *st, const char *src,
                         const char *text, char *err, size_t errlen)
{
    char *base = (char *)c;
    unsigned long long v;

    switch (st->kind) {
    case SET_LISTEN:
        return config_parse_listen(c, src, text, err, errlen);
    case SET_STRING:
    case SET_CONFIG:
        if (text[0] == '\0')
            return config_fail(err, errlen, -EINVAL, "%s: expected a non-empty path, got ''", src);
        if (config_set_string((char **)(void *)(base + st->offset), text) < 0)
            return config_out_of_memory(err, errlen);
        return 0;
    case SET_UNSIGNED:
    case SET_COUNT:
    case SET_BYTES:
    case SET_MILLIS:
        if ((st->kind == SET_MILLIS ? config_parse_millis(text, st->min, st->max, &v)
             : config_parse_number(text, st->kind == SET_BYTES, st->min, st->max,
             &v)) < 0)
            return config_number_error(st, src, text, err, errlen);
        if (st->kind == SET_UNSIGNED || st->kind == SET_MILLIS)
            *(unsigned *)(void *)(base + st->offset) = (unsigned)v;
        else
            *(size_t *)(void *)(base + st->offset) = (size_t)v;
        return 0;
    case SET_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return config_fail(err, errlen, -EINVAL, "%s: expected true or false, got '%s'", src,
                               text);
        *(bool *)(void *)(base + st->offset) = text[0] == 't';
        return 0;
    case SET_LOG_LEVEL:
        for (unsigned i = 0; i < sizeof config_log_level_names / sizeof config_log_level_names[0];
             i++) {
            /* any case, as BATCHD_LOG_LEVEL always took it */
            if (strcasecmp(text, config_log_level_names[i]) == 0) {
                *(unsigned *)(void *)(base + st->offset) = i;
                return 0;
            }
        }
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected debug, info, warn or error, got '%s'", src, text);
    case SET_TOKENS: {
        char **v2;
        size_t n;
        int rc = config_split_list(src, text, "token", CONFIG_MAX_TOKENS, config_token_valid, true,
                                   &v2, &n, err, errlen);
        if (rc == 0) {
            config_strv_free(c->api_tokens, c->n_api_tokens, true);
            c->api_tokens = v2;
            c->n_api_tokens = n;
        }
        return rc;
    }
    case SET_ORIGINS: {
        char **v2;
        size_t n;
        int rc = config_split_list(src, text, "origin", CONFIG_MAX_ORIGINS,
                                   config_origin_entry_valid, false, &v2, &n, err, errlen);
        if (rc == 0) {
            config_strv_free(c->cors_origins, c->n_cors_origins, false);
            c->cors_origins = v2;
            c->n_cors_origins = n;
        }
        return rc;
    }
    case SET_MODELS:
        break; /* handled by the caller: it is a list of specs, not one value */
    }
    return 0;
}

/* The row of the setting stored at `offset` (always present: callers pass
 * FIELD() of a field that has a row). */
const struct config_setting *config_setting_at(size_t offset, size_t *index)
{
    for (size_t i = 0; i < config_n_settings; i++) {
        if (config_settings[i].kind != SET_LISTEN && config_settings[i].kind != SET_MODELS &&
            config_settings[i].kind != SET_TOKENS && config_settings[i].kind != SET_ORIGINS &&
            config_settings[i].offset == offset) {
            *index = i;
            return &config_settings[i];
        }
    }
    abort(); /* a FIELD() without a row is a bug in this file */
}

/* "--flag", "BATCHD_VAR", "FILE: key 'flag'" or "the default --flag". */
void config_source_name(char *buf, size_t len, const struct config_setting *st,
                        enum config_source src, const char *file)
{
    if (src == CONFIG_SRC_FLAG)
        snprintf(buf, len, "--%s", st->flag);
    else if (src == CONFIG_SRC_ENV)
        snprintf(buf, len, "%s", st->env);
    else if (src == CONFIG_SRC_FILE)
        snprintf(buf, len, "%s: key '%s'", file ? file : "config file",
                 st->kind == SET_MODELS ? "models" : st->flag);
    else
        snprintf(buf, len, "the default --%s", st->flag);
}

/* ---- the configuration file ---------------------------------------------- */

/* The row a file key names: a flag's name ("models", or "model" like the
 * flag, for --model), or NULL. */
const struct config_setting *config_setting_for_key(const char *key, size_t *index)
{
    for (size_t i = 0; i < config_n_settings; i++) {
        bool match = strcmp(key, config_settings[i].flag) == 0 ||
                     (config_settings[i].kind == SET_MODELS && strcmp(key, "models") == 0);
        if (match) {
            *index = i;
            return &config_settings[i];
        }
    }
    return NULL;
}
