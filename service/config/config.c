/*
 * config.c: command line, BATCHD_* environment and config file -> struct
 * config.
 *
 * Every setting is a row of one table (flag, variable, kind, range, field):
 * parsing, precedence, error messages, the file's keys, --print-config and
 * the --help text all come from it, so they cannot drift apart. Parsing
 * runs in three passes:
 *
 *   1. getopt_long collects the raw strings of the flags (the last of a
 *      repeated flag wins, as with most Unix tools; --model accumulates).
 *      --help and --version are remembered, not acted on yet.
 *   2. If --help or --version was seen, it is printed and nothing else is
 *      checked: someone asking for help should get it even when the rest of
 *      the line (or a stale environment variable) is wrong.
 *   3. The config file (--config, else BATCHD_CONFIG) is loaded, and every
 *      key is checked against the table: an unknown key is an error that
 *      names it, since a misspelt key silently ignored is a setting silently
 *      not applied. Then each setting takes its flag, else its non-empty
 *      variable, else the file's value, else the default, and is parsed
 *      strictly, by the same code whatever the source: a file value is
 *      turned into the text a flag would carry (a JSON number 2.5 into
 *      "2.5", an array of tokens into "a,b").
 *
 * The file is JSON (jansson, duplicate keys refused). TOML is not offered:
 * it would need a hand-written parser, and a second syntax for the same
 * keys buys little.
 *
 * An empty variable counts as unset, because container tooling and shell
 * scripts routinely export VAR= to mean "no value".
 *
 * The result is built in a local struct and copied out only on success, so
 * a failure leaves the caller's struct zeroed with nothing to free.
 */
#include "service/config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "service/core/log.h"
#include <batchd/model.h>
#include "workers/models/models_builtin.h"
#include "service/objects/objects.h"
#include "service/webhooks/webhook.h"

#define CONFIG_VERSION_TEXT "batchd 0.1.0"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

enum setting_kind {
    SET_LISTEN,   /* HOST:PORT -> listen_host, listen_port */
    SET_STRING,   /* char * field, non-empty */
    SET_UNSIGNED, /* unsigned field, plain integer */
    SET_COUNT,    /* size_t field, plain integer */
    SET_BYTES,    /* size_t field, integer with an optional K/M/G suffix */
    SET_MILLIS,   /* unsigned field in milliseconds, given as seconds with up to
                     3 decimals (min and max are in milliseconds) */
    SET_MODELS,   /* --model (repeatable) / BATCHD_MODELS */
    SET_BOOL,     /* bool field: true or false */
    SET_LOG_LEVEL, /* unsigned field: debug, info, warn, error (enum log_level) */
    SET_TOKENS,   /* api_tokens: comma-separated bearer tokens (secret) */
    SET_ORIGINS,  /* cors_origins: comma-separated origins, or "*" */
    SET_CONFIG,   /* config_file: resolved before every other setting */
};

struct setting {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum setting_kind kind;
    unsigned long long min, max; /* for the numeric kinds, in the field's unit */
    size_t offset;               /* of the field in struct config */
    const char *arg;             /* placeholder in --help */
    const char *help;            /* lines of at most 72 columns */
    const char *def;             /* the default, as --help shows it */
};

#define FIELD(f) offsetof(struct config, f)

/* The size_t rows' ranges (1024G bytes, 10^10 items) are stored unchecked
 * into size_t fields. */
_Static_assert(sizeof(size_t) >= sizeof(unsigned long long),
               "config's size_t settings need a 64-bit size_t");

static const struct setting settings[] = {
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

#define N_SETTINGS (sizeof settings / sizeof settings[0])
_Static_assert(N_SETTINGS <= CONFIG_MAX_SETTINGS, "raise CONFIG_MAX_SETTINGS");

enum config_source config_source_of(const struct config *cfg, const char *flag)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].flag, flag) == 0)
            return (enum config_source)cfg->source[i];
    return CONFIG_SRC_DEFAULT;
}

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };
static const char *const source_names[] = { "default", "file", "env", "flag" };

/* getopt_long values: settings are 256 + their index, above any char. */
#define OPT_SETTING_BASE 256

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = config_vfail(err, errlen, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static int out_of_memory(char *err, size_t errlen) { return config_out_of_memory(err, errlen); }

/* The value parsers and formatters live in config_values.c (config_int.h);
 * the short names below are this file's. */
static void format_size(char *buf, size_t len, unsigned long long v) { config_format_size(buf, len, v); }
static void format_seconds(char *buf, size_t len, unsigned long long ms)
{
    config_format_seconds(buf, len, ms);
}
static int parse_number(const char *s, bool suffix, unsigned long long min, unsigned long long max,
                        unsigned long long *out)
{
    return config_parse_number(s, suffix, min, max, out);
}
static int parse_millis(const char *s, unsigned long long min, unsigned long long max,
                        unsigned long long *ms)
{
    return config_parse_millis(s, min, max, ms);
}
static int set_string(char **field, const char *s) { return config_set_string(field, s); }
static bool valid_name(const char *s, size_t len) { return config_valid_name(s, len); }

static int number_error(const struct setting *st, const char *src, const char *text, char *err,
                        size_t errlen)
{
    if (st->kind == SET_BYTES) {
        char lo[32], hi[32];
        format_size(lo, sizeof lo, st->min);
        format_size(hi, sizeof hi, st->max);
        return fail(err, errlen, -EINVAL,
                    "%s: expected a size in bytes from %s to %s (K, M, G suffixes allowed), "
                    "got '%s'", src, lo, hi, text);
    }
    if (st->kind == SET_MILLIS) {
        char lo[32], hi[32];
        format_seconds(lo, sizeof lo, st->min);
        format_seconds(hi, sizeof hi, st->max);
        return fail(err, errlen, -EINVAL,
                    "%s: expected seconds from %s to %s (up to 3 decimals), got '%s'", src, lo,
                    hi, text);
    }
    return fail(err, errlen, -EINVAL, "%s: expected an integer from %llu to %llu, got '%s'", src,
                st->min, st->max, text);
}

static void model_free(struct config_model *m)
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
static void builtin_names(char *buf, size_t len, bool mark)
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
    if (parse_number(value, rss, 0, rss ? CONFIG_MAX_RECYCLE_RSS : CONFIG_MAX_RECYCLE_ITEMS,
                     &v) < 0) {
        if (rss) {
            char hi[32];
            format_size(hi, sizeof hi, CONFIG_MAX_RECYCLE_RSS);
            return fail(err, errlen, -EINVAL,
                        "%s %s: max_rss: expected a size in bytes from 0 to %s (K, M, G "
                        "suffixes allowed; 0 = no limit), got '%s'", src, m->name, hi, value);
        }
        return fail(err, errlen, -EINVAL,
                    "%s %s: max_items: expected an integer from 0 to %llu (0 = no limit), "
                    "got '%s'", src, m->name, CONFIG_MAX_RECYCLE_ITEMS, value);
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

    if (!valid_name(spec, name_len)) {
        rc = fail(err, errlen, -EINVAL,
                  "%s: expected NAME[:key=value,...] with a NAME of 1 to %d letters, digits, "
                  "'_', '-' or '.', got '%s'", src, CONFIG_MAX_NAME_LEN, spec);
        goto out;
    }
    m->name = strndup(spec, name_len);
    if (!m->name) {
        rc = out_of_memory(err, errlen);
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
            rc = out_of_memory(err, errlen);
            goto out;
        }
        bool seen_workers = false;
        /* strsep, not strtok: an empty pair ("a=1,,b=2") must be an error,
         * not silently skipped. */
        for (char *rest = params, *pair; (pair = strsep(&rest, ",")) != NULL;) {
            char *eq = strchr(pair, '=');
            if (!eq || !valid_name(pair, (size_t)(eq - pair)) || eq[1] == '\0') {
                rc = fail(err, errlen, -EINVAL,
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
                rc = fail(err, errlen, -EINVAL, "%s %s: '%s' given twice", src, m->name, key);
                goto out;
            }
            if (strcmp(key, "workers") == 0) {
                unsigned long long w;
                if (parse_number(value, false, 1, CONFIG_MAX_WORKERS_PER_MODEL, &w) < 0) {
                    rc = fail(err, errlen, -EINVAL,
                              "%s %s: workers: expected an integer from 1 to %d, got '%s'", src,
                              m->name, CONFIG_MAX_WORKERS_PER_MODEL, value);
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
                    rc = out_of_memory(err, errlen);
                    goto out;
                }
            } else if (coproc_key) {
                if (m->runtime) {
                    rc = fail(err, errlen, -EINVAL,
                              "%s %s: a model is in one language: %s= and %s= both given", src,
                              m->name, m->runtime, key);
                    goto out;
                }
                m->runtime = strdup(key);
                m->module = strdup(value);
                if (!m->runtime || !m->module) {
                    rc = out_of_memory(err, errlen);
                    goto out;
                }
            } else if (strcmp(key, "interpreter") == 0) {
                m->interpreter = strdup(value);
                if (!m->interpreter) {
                    rc = out_of_memory(err, errlen);
                    goto out;
                }
            } else {
                m->keys[m->n_params] = strdup(key);
                m->values[m->n_params] = strdup(value);
                /* Count the pair before checking, so model_free() frees
                 * whichever of the two copies succeeded. */
                m->n_params++;
                if (!m->keys[m->n_params - 1] || !m->values[m->n_params - 1]) {
                    rc = out_of_memory(err, errlen);
                    goto out;
                }
            }
        }
    }
    if (m->runtime && m->plugin) {
        rc = fail(err, errlen, -EINVAL,
                  "%s %s: plugin= is a C model, %s= a %s model: give one of them", src, m->name,
                  m->runtime, m->runtime);
        goto out;
    }
    if (m->interpreter && !m->runtime) {
        rc = fail(err, errlen, -EINVAL,
                  "%s %s: interpreter= goes with python=PATH or node=PATH", src, m->name);
        goto out;
    }
    if (!m->plugin && !m->runtime && !model_builtin_find(m->name)) {
        char names[256];
        builtin_names(names, sizeof names, false);
        rc = fail(err, errlen, -EINVAL,
                  "%s: no built-in model named '%s' (built-in: %s; a plugin needs plugin=PATH, "
                  "a Python model python=PATH)",
                  src, m->name, names);
        goto out;
    }
    rc = 0;
out:
    free(params);
    if (rc < 0)
        model_free(m);
    return rc;
}

/* Appends one parsed spec to c->models, refusing duplicates and overflow. */
static int add_model(struct config *c, const char *src, const char *spec, char *err,
                     size_t errlen)
{
    if (c->n_models == CONFIG_MAX_MODELS)
        return fail(err, errlen, -EINVAL, "%s: at most %d models, got more", src,
                    CONFIG_MAX_MODELS);
    struct config_model m = {0};
    int rc = parse_model_spec(&m, src, spec, err, errlen);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n_models; i++) {
        if (strcmp(c->models[i].name, m.name) == 0) {
            rc = fail(err, errlen, -EINVAL, "%s: model '%s' is named twice", src, m.name);
            model_free(&m);
            return rc;
        }
    }
    c->models[c->n_models++] = m;
    return 0;
}

/* BATCHD_MODELS: specs separated by blanks or semicolons; empty ones skip. */
static int parse_models_env(struct config *c, const char *src, const char *text, char *err,
                            size_t errlen)
{
    char *copy = strdup(text);
    if (!copy)
        return out_of_memory(err, errlen);
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t\r\n;", &save); tok && rc == 0;
         tok = strtok_r(NULL, " \t\r\n;", &save))
        rc = add_model(c, src, tok, err, errlen);
    free(copy);
    return rc;
}

static int default_models(struct config *c, char *err, size_t errlen)
{
    const struct model_ops *m;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++) {
        if (m->flags & MODEL_FLAG_NOT_DEFAULT)
            continue;
        if (c->n_models == CONFIG_MAX_MODELS)
            break;
        c->models[c->n_models].name = strdup(m->name);
        if (!c->models[c->n_models].name)
            return out_of_memory(err, errlen);
        c->n_models++;
    }
    return 0;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    if (n > CONFIG_MAX_WORKERS_PER_MODEL)
        return CONFIG_MAX_WORKERS_PER_MODEL;
    return (unsigned)n;
}

static int set_defaults(struct config *c)
{
    c->listen_host = strdup("127.0.0.1");
    c->data_dir = strdup("./data");
    c->store = strdup("sqlite");
    c->models = calloc(CONFIG_MAX_MODELS, sizeof *c->models);
    if (!c->listen_host || !c->data_dir || !c->store || !c->models)
        return -ENOMEM;
    c->listen_port = 8080;
    c->workers = online_cpus();
    c->max_body_bytes = 64 * MIB;
    c->max_items = 10000000;
    c->max_item_bytes = 256 * KIB;
    c->object_memory = GIB;
    c->max_object_bytes = 256 * MIB;
    c->max_objects = 4096;
    c->max_connections = 4096;
    c->idle_timeout_s = 30;
    c->header_timeout_s = 20;
    c->min_body_rate = 1024;
    c->http_threads = 4;
    c->max_attempts = 3;
    c->max_json_depth = 64;
    c->retention_s = 604800;
    c->max_store_bytes = 0;
    c->item_timeout_ms = 0;
    c->max_item_timeout_ms = 3600000;
    c->max_queued_items = 20000000;
    c->grace_ms = 10000;
    c->port_file = NULL;
    c->log_level = LOG_INFO;
    c->access_log = true;
    c->auth_metrics = false;
    c->webhook_retry_for_s = 86400;
    return 0;
}


/* Applies one setting's text (from `src`: a flag, a variable or a file
 * key); the lists replace what the field held. */
static int apply_setting(struct config *c, const struct setting *st, const char *src,
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
            return fail(err, errlen, -EINVAL, "%s: expected a non-empty path, got ''", src);
        if (set_string((char **)(void *)(base + st->offset), text) < 0)
            return out_of_memory(err, errlen);
        return 0;
    case SET_UNSIGNED:
    case SET_COUNT:
    case SET_BYTES:
    case SET_MILLIS:
        if ((st->kind == SET_MILLIS ? parse_millis(text, st->min, st->max, &v)
                                    : parse_number(text, st->kind == SET_BYTES, st->min, st->max,
                                                   &v)) < 0)
            return number_error(st, src, text, err, errlen);
        if (st->kind == SET_UNSIGNED || st->kind == SET_MILLIS)
            *(unsigned *)(void *)(base + st->offset) = (unsigned)v;
        else
            *(size_t *)(void *)(base + st->offset) = (size_t)v;
        return 0;
    case SET_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return fail(err, errlen, -EINVAL, "%s: expected true or false, got '%s'", src, text);
        *(bool *)(void *)(base + st->offset) = text[0] == 't';
        return 0;
    case SET_LOG_LEVEL:
        for (unsigned i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
            /* any case, as BATCHD_LOG_LEVEL always took it */
            if (strcasecmp(text, log_level_names[i]) == 0) {
                *(unsigned *)(void *)(base + st->offset) = i;
                return 0;
            }
        }
        return fail(err, errlen, -EINVAL, "%s: expected debug, info, warn or error, got '%s'",
                    src, text);
    case SET_TOKENS: {
        char **v2;
        size_t n;
        int rc = config_split_list(src, text, "token", CONFIG_MAX_TOKENS, config_token_valid, true, &v2, &n,
                            err, errlen);
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
        int rc = config_split_list(src, text, "origin", CONFIG_MAX_ORIGINS, config_origin_entry_valid, false,
                            &v2, &n, err, errlen);
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
static const struct setting *setting_at(size_t offset, size_t *index)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (settings[i].kind != SET_LISTEN && settings[i].kind != SET_MODELS &&
            settings[i].kind != SET_TOKENS && settings[i].kind != SET_ORIGINS &&
            settings[i].offset == offset) {
            *index = i;
            return &settings[i];
        }
    }
    abort(); /* a FIELD() without a row is a bug in this file */
}

/* "--flag", "BATCHD_VAR", "FILE: key 'flag'" or "the default --flag". */
static void source_name(char *buf, size_t len, const struct setting *st,
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

/*
 * The rules between settings, checked once every setting has its final
 * value so that the order of flags and variables does not matter.
 * A server-wide item timeout longer than the longest one a job may ask for
 * would make the default more permissive than any explicit request. A TLS
 * certificate without its key (or the reverse) is a half-done HTTPS setup
 * that must not quietly serve plain HTTP. An object larger than the memory
 * all objects share could never be stored.
 * Returns 0, or -EINVAL with the message in err.
 */
static int check_settings(const struct config *c, char *err, size_t errlen)
{
    if (c->item_timeout_ms != 0 && c->item_timeout_ms > c->max_item_timeout_ms) {
        size_t ti, mi;
        const struct setting *t = setting_at(FIELD(item_timeout_ms), &ti);
        const struct setting *m = setting_at(FIELD(max_item_timeout_ms), &mi);
        char tsrc[300], msrc[300], tval[32], mval[32];
        source_name(tsrc, sizeof tsrc, t, c->source[ti], c->config_file);
        source_name(msrc, sizeof msrc, m, c->source[mi], c->config_file);
        format_seconds(tval, sizeof tval, c->item_timeout_ms);
        format_seconds(mval, sizeof mval, c->max_item_timeout_ms);
        return fail(err, errlen, -EINVAL,
                    "%s: %s seconds exceeds %s (%s seconds), the longest item timeout a job "
                    "may ask for", tsrc, tval, msrc, mval);
    }
    if (c->max_object_bytes > c->object_memory) {
        size_t bi, mi;
        const struct setting *b = setting_at(FIELD(max_object_bytes), &bi);
        const struct setting *m = setting_at(FIELD(object_memory), &mi);
        char bsrc[300], msrc[300], bval[32], mval[32];
        source_name(bsrc, sizeof bsrc, b, c->source[bi], c->config_file);
        source_name(msrc, sizeof msrc, m, c->source[mi], c->config_file);
        format_size(bval, sizeof bval, c->max_object_bytes);
        format_size(mval, sizeof mval, c->object_memory);
        return fail(err, errlen, -EINVAL,
                    "%s: %s exceeds %s (%s), the memory all objects share", bsrc, bval, msrc,
                    mval);
    }
    bool pg = strncmp(c->store, "postgresql://", 13) == 0 ||
              strncmp(c->store, "postgres://", 11) == 0;
    if (!pg && strcmp(c->store, "sqlite") != 0) {
        size_t si;
        const struct setting *st = setting_at(FIELD(store), &si);
        char src[300];
        source_name(src, sizeof src, st, c->source[si], c->config_file);
        /* the value is not quoted back: a mistyped URI may hold a password */
        return fail(err, errlen, -EINVAL,
                    "%s: give sqlite or a PostgreSQL URI (postgresql://USER@HOST:PORT/DATABASE)",
                    src);
    }
    if (pg && c->webhook_hosts) {
        size_t hi;
        const struct setting *h = setting_at(FIELD(webhook_hosts), &hi);
        char hsrc[300];
        source_name(hsrc, sizeof hsrc, h, c->source[hi], c->config_file);
        return fail(err, errlen, -EINVAL,
                    "%s: completion webhooks are not available with a PostgreSQL store yet "
                    "(--store): use sqlite, or leave webhooks off",
                    hsrc);
    }
    if (c->webhook_hosts || c->webhook_secret) {
        size_t hi, si;
        const struct setting *h = setting_at(FIELD(webhook_hosts), &hi);
        const struct setting *sc = setting_at(FIELD(webhook_secret), &si);
        char hsrc[300], ssrc[300], why[256];
        source_name(hsrc, sizeof hsrc, h, c->source[hi], c->config_file);
        source_name(ssrc, sizeof ssrc, sc, c->source[si], c->config_file);
        uint8_t key[WEBHOOK_KEY_MAX];
        size_t klen;
        if (c->webhook_hosts && webhook_hosts_check(c->webhook_hosts, why, sizeof why) != 0)
            return fail(err, errlen, -EINVAL, "%s: %s", hsrc, why);
        if (c->webhook_hosts && !c->webhook_secret)
            return fail(err, errlen, -EINVAL,
                        "%s: webhooks need a signing secret (--webhook-secret or "
                        "BATCHD_WEBHOOK_SECRET: whsec_ and a base64 key)",
                        hsrc);
        /* a secret is never quoted back, not even a malformed one */
        if (c->webhook_secret && webhook_secret_decode(c->webhook_secret, key, &klen) != 0)
            return fail(err, errlen, -EINVAL,
                        "%s: the secret must be whsec_ followed by the base64 of a key of "
                        "%d to %d bytes",
                        ssrc, WEBHOOK_KEY_MIN, WEBHOOK_KEY_MAX);
        explicit_bzero(key, sizeof key);
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        size_t i;
        const struct setting *st = setting_at(c->tls_cert ? FIELD(tls_cert) : FIELD(tls_key), &i);
        char src[300];
        source_name(src, sizeof src, st, c->source[i], c->config_file);
        return fail(err, errlen, -EINVAL, "%s: --tls-cert and --tls-key go together, got only %s",
                    src, c->tls_cert ? "the certificate" : "the key");
    }
    return 0;
}

/* Reads the files the settings name, so that a wrong path fails at start
 * with exit 2 rather than in a child process later. */
static int read_setting_files(struct config *c, char *err, size_t errlen)
{
    int rc;
    if (c->tls_cert) {
        if ((rc = config_read_small_file(c->tls_cert, &c->tls_cert_pem, NULL)) < 0)
            return config_file_error("--tls-cert", c->tls_cert, rc, err, errlen);
        if ((rc = config_read_small_file(c->tls_key, &c->tls_key_pem, NULL)) < 0)
            return config_file_error("--tls-key", c->tls_key, rc, err, errlen);
    }
    if (c->tokens_file) {
        char **tokens = NULL;
        size_t n = 0;
        rc = config_read_tokens_file(c->tokens_file, &tokens, &n, err, errlen);
        if (rc < 0)
            return rc == -ENOMEM ? rc : -EINVAL;
        config_tokens_free(tokens, n);
    }
    return 0;
}

/* "--name" of an option as the user typed it (without any "=value"). */
static void option_text(char *buf, size_t len, const char *arg)
{
    size_t n = strcspn(arg, "=");
    snprintf(buf, len, "%.*s", (int)(n < 64 ? n : 64), arg);
}

/* Words the error for getopt's ':' (missing value) or '?' (unknown option,
 * or a value given to --help/--version); `arg` is the argv element. */
static int option_error(int opt, const char *arg, char *err, size_t errlen)
{
    char name[80];
    option_text(name, sizeof name, arg);
    if (opt == ':')
        return fail(err, errlen, -EINVAL, "option '%s' needs a value", name);
    if (optopt == 'h' || optopt == 'V' || optopt == 'P') {
        /* "-hx" lands here as an unknown 'x', so only "--help=..." remains. */
        return fail(err, errlen, -EINVAL, "option '%s' takes no value", name);
    }
    if (optopt > 0 && optopt < OPT_SETTING_BASE)
        return fail(err, errlen, -EINVAL, "unknown option '-%c' (see --help)", optopt);
    return fail(err, errlen, -EINVAL, "unknown or ambiguous option '%s' (see --help)", name);
}

/* ---- the configuration file ---------------------------------------------- */

/* The row a file key names: a flag's name ("models", or "model" like the
 * flag, for --model), or NULL. */
static const struct setting *setting_for_key(const char *key, size_t *index)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        bool match = strcmp(key, settings[i].flag) == 0 ||
                     (settings[i].kind == SET_MODELS && strcmp(key, "models") == 0);
        if (match) {
            *index = i;
            return &settings[i];
        }
    }
    return NULL;
}

/*
 * Loads the config file and checks its keys. Returns 0 with *root (new
 * reference) set; -EINVAL with the message in err (unreadable, not JSON,
 * not an object, an unknown key, the "config" key).
 */
static int load_file(const char *path, json_t **root, char *err, size_t errlen)
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
        return fail(err, errlen, -EINVAL, "%s: line %d, column %d: %s", path, jerr.line,
                    jerr.column, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(err, errlen, -EINVAL,
                    "%s: expected a JSON object of settings keyed by flag name", path);
    }
    if (json_object_get(j, "model") && json_object_get(j, "models")) {
        json_decref(j);
        return fail(err, errlen, -EINVAL, "%s: give \"models\" or \"model\", not both", path);
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        size_t i;
        const struct setting *st = setting_for_key(key, &i);
        if (st && st->kind == SET_CONFIG) {
            json_decref(j);
            return fail(err, errlen, -EINVAL,
                        "%s: key 'config' cannot be set in a config file", path);
        }
        if (!st) {
            /* the message first: `key` belongs to the document */
            rc = fail(err, errlen, -EINVAL,
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
static char *file_value_text(const struct setting *st, const json_t *v, const char *src,
                             int *rc, char *err, size_t errlen)
{
    char buf[64];
    const char *text = NULL; /* the value as a flag's text, when it is one piece */
    bool numeric = st->kind == SET_UNSIGNED || st->kind == SET_COUNT || st->kind == SET_BYTES ||
                   st->kind == SET_MILLIS;
    if (json_is_string(v)) {
        /* "\u0000" would cut the C string: "a\u0000b" must not pass for "a" */
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            *rc = fail(err, errlen, -EINVAL, "%s: the string holds a NUL character", src);
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
            *rc = number_error(st, src, buf, err, errlen);
            return NULL;
        }
        format_seconds(buf, sizeof buf, (unsigned long long)llround(ms));
        text = buf;
    } else if (json_is_boolean(v) && st->kind == SET_BOOL) {
        text = json_is_true(v) ? "true" : "false";
    }
    if (text) {
        char *out = strdup(text);
        if (!out)
            *rc = out_of_memory(err, errlen);
        return out;
    }
    if (json_is_array(v) && (st->kind == SET_TOKENS || st->kind == SET_ORIGINS)) {
        /* ["a", "b"] is the list "a,b" (neither tokens nor origins hold commas) */
        size_t total = 1, i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e) || strchr(json_string_value(e), ',') ||
                strlen(json_string_value(e)) != json_string_length(e)) {
                *rc = fail(err, errlen, -EINVAL, "%s: expected an array of strings", src);
                return NULL;
            }
            total += json_string_length(e) + 1;
        }
        char *out = calloc(1, total);
        if (!out) {
            *rc = out_of_memory(err, errlen);
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
    *rc = fail(err, errlen, -EINVAL, "%s: expected %s, got a JSON %s", src, wanted[st->kind],
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
static int apply_file_models(struct config *c, const json_t *v, const char *src, char *err,
                             size_t errlen)
{
    if (json_is_string(v))
        return parse_models_env(c, src, json_string_value(v), err, errlen);
    if (!json_is_array(v))
        return fail(err, errlen, -EINVAL,
                    "%s: expected an array of model specs such as \"square:workers=2\"", src);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return fail(err, errlen, -EINVAL,
                        "%s: expected an array of model specs such as \"square:workers=2\"", src);
        int rc = add_model(c, src, json_string_value(e), err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- parse ------------------------------------------------------------------ */

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    struct option longopts[N_SETTINGS + 4];
    const char *flag_value[N_SETTINGS] = {0};
    const char *model_flags[CONFIG_MAX_MODELS];
    size_t n_model_flags = 0;
    bool too_many_models = false;
    bool print_config = false;
    int action = 0; /* 'h' or 'V' once seen */
    struct config c = {0};
    json_t *file = NULL;
    char optname[300];
    int rc = 0;

    if (err && errlen)
        err[0] = '\0';
    memset(cfg, 0, sizeof *cfg);

    for (size_t i = 0; i < N_SETTINGS; i++)
        longopts[i] = (struct option){settings[i].flag, required_argument, NULL,
                                      OPT_SETTING_BASE + (int)i};
    longopts[N_SETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_SETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_SETTINGS + 2] = (struct option){"print-config", no_argument, NULL, 'P'};
    longopts[N_SETTINGS + 3] = (struct option){NULL, 0, NULL, 0};

    /* optind = 0 makes glibc re-initialise getopt completely, so tests (and
     * anything else) can call this repeatedly; opterr = 0 because errors
     * are ours to word and the caller's to print. The leading ':' makes a
     * missing value come back as ':' rather than '?'. */
    optind = 0;
    opterr = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, ":hV", longopts, NULL);
        if (opt == -1)
            break;
        if (opt == 'h' || opt == 'V') {
            if (!action)
                action = opt;
            continue;
        }
        if (opt == 'P') {
            print_config = true;
            continue;
        }
        if (opt == ':' || opt == '?') {
            /* Keep scanning: a later --help still wins over this error. */
            if (rc == 0)
                rc = option_error(opt, argv[optind - 1], err, errlen);
            continue;
        }
        size_t idx = (size_t)(opt - OPT_SETTING_BASE);
        if (settings[idx].kind == SET_MODELS) {
            if (n_model_flags < CONFIG_MAX_MODELS)
                model_flags[n_model_flags++] = optarg;
            else
                too_many_models = true;
        } else {
            flag_value[idx] = optarg;
        }
    }
    if (action) {
        if (err && errlen)
            err[0] = '\0';
        if (action == 'h')
            config_usage(stdout);
        else
            printf("%s\n", CONFIG_VERSION_TEXT);
        return CONFIG_PRINTED;
    }
    if (rc < 0)
        goto early_error;
    if (optind < argc) {
        rc = fail(err, errlen, -EINVAL, "unexpected argument '%.64s' (batchd takes only options)",
                  argv[optind]);
        goto early_error;
    }
    if (too_many_models) {
        rc = fail(err, errlen, -EINVAL, "--model: at most %d models, got more", CONFIG_MAX_MODELS);
        goto early_error;
    }

    if (set_defaults(&c) < 0) {
        rc = out_of_memory(err, errlen);
        goto error;
    }
    c.print_config = print_config;
    /* The file first: every other setting may come from it. */
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (settings[i].kind != SET_CONFIG)
            continue;
        const char *env = getenv(settings[i].env);
        const char *path = flag_value[i] ? flag_value[i] : (env && env[0]) ? env : NULL;
        if (!path)
            break;
        snprintf(optname, sizeof optname, flag_value[i] ? "--%s" : "%s",
                 flag_value[i] ? settings[i].flag : settings[i].env);
        rc = apply_setting(&c, &settings[i], optname, path, err, errlen);
        if (rc < 0)
            goto error;
        c.source[i] = flag_value[i] ? CONFIG_SRC_FLAG : CONFIG_SRC_ENV;
        rc = load_file(c.config_file, &file, err, errlen);
        if (rc < 0)
            goto error;
        break;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *st = &settings[i];
        if (st->kind == SET_CONFIG)
            continue;
        const char *env = getenv(st->env);
        if (env && env[0] == '\0')
            env = NULL;
        json_t *fv = file ? json_object_get(file, st->flag) : NULL;
        if (file && !fv && st->kind == SET_MODELS)
            fv = json_object_get(file, "models");
        if (json_is_null(fv))
            fv = NULL; /* null in the file: unset, like an empty variable */
        enum config_source from = flag_value[i] || (st->kind == SET_MODELS && n_model_flags)
                                      ? CONFIG_SRC_FLAG
                                  : env ? CONFIG_SRC_ENV
                                  : fv  ? CONFIG_SRC_FILE
                                        : CONFIG_SRC_DEFAULT;
        if (from == CONFIG_SRC_DEFAULT)
            continue;
        source_name(optname, sizeof optname, st, from, c.config_file);
        if (st->kind == SET_MODELS) {
            rc = 0;
            if (from == CONFIG_SRC_FLAG)
                for (size_t k = 0; k < n_model_flags && rc == 0; k++)
                    rc = add_model(&c, "--model", model_flags[k], err, errlen);
            else if (from == CONFIG_SRC_ENV)
                rc = parse_models_env(&c, st->env, env, err, errlen);
            else
                rc = apply_file_models(&c, fv, optname, err, errlen);
        } else if (from == CONFIG_SRC_FILE) {
            char *text = file_value_text(st, fv, optname, &rc, err, errlen);
            if (text) {
                rc = apply_setting(&c, st, optname, text, err, errlen);
                explicit_bzero(text, strlen(text));
                free(text);
            }
        } else {
            rc = apply_setting(&c, st, optname, from == CONFIG_SRC_FLAG ? flag_value[i] : env,
                               err, errlen);
        }
        if (rc < 0)
            goto error;
        c.source[i] = (unsigned char)from;
    }
    /* A small --object-memory with the default object size limit means
     * "objects up to the whole memory", not an error about a setting the
     * user never gave. */
    size_t mob;
    setting_at(FIELD(max_object_bytes), &mob);
    if (c.source[mob] == CONFIG_SRC_DEFAULT && c.max_object_bytes > c.object_memory)
        c.max_object_bytes = c.object_memory;
    rc = check_settings(&c, err, errlen);
    if (rc < 0)
        goto error;
    rc = read_setting_files(&c, err, errlen);
    if (rc < 0)
        goto error;
    /* BATCHD_MODELS made only of separators names no model: the defaults. */
    if (c.n_models == 0) {
        rc = default_models(&c, err, errlen);
        if (rc < 0)
            goto error;
    }
    /* Only now are the global worker count (flag, variable or CPUs) and
     * the global recycling limits final. */
    for (size_t i = 0; i < c.n_models; i++) {
        if (c.models[i].workers == 0)
            c.models[i].workers = c.workers;
        if (!c.models[i].max_items_set)
            c.models[i].max_items = c.max_items_per_worker;
        if (!c.models[i].max_rss_set)
            c.models[i].max_rss = c.max_worker_rss;
    }

    json_decref(file);
    *cfg = c;
    return 0;

error:
    json_decref(file);
    config_free(&c);
early_error:
    memset(cfg, 0, sizeof *cfg);
    return rc;
}

static void secret_free(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen_host);
    free(cfg->data_dir);
    secret_free(cfg->store); /* a URI may hold a password */
    free(cfg->port_file);
    if (cfg->models)
        for (size_t i = 0; i < cfg->n_models; i++)
            model_free(&cfg->models[i]);
    free(cfg->models);
    free(cfg->config_file);
    config_strv_free(cfg->api_tokens, cfg->n_api_tokens, true);
    free(cfg->tokens_file);
    config_strv_free(cfg->cors_origins, cfg->n_cors_origins, false);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_cert_pem);
    secret_free(cfg->tls_key_pem);
    free(cfg->webhook_hosts);
    secret_free(cfg->webhook_secret);
    memset(cfg, 0, sizeof *cfg);
}

/* Writes a model back as the spec that configures it. */
static void print_model(FILE *f, const struct config_model *m)
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
        format_size(size, sizeof size, m->max_rss);
        fprintf(f, ",max_rss=%s", size);
    }
    for (size_t k = 0; k < m->n_params; k++)
        fprintf(f, ",%s=%s", m->keys[k], m->values[k]);
}

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
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *st = &settings[i];
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
            format_size(buf, sizeof buf, *(const size_t *)field);
            fputs(buf, f);
            break;
        case SET_MILLIS:
            format_seconds(buf, sizeof buf, *(const unsigned *)field);
            fputs(buf, f);
            break;
        case SET_BOOL:
            fputs(*(const bool *)field ? "true" : "false", f);
            break;
        case SET_LOG_LEVEL:
            fputs(log_level_names[*(const unsigned *)field & 3], f);
            break;
        case SET_MODELS:
            for (size_t m = 0; m < cfg->n_models; m++) {
                if (m)
                    fputc(' ', f);
                print_model(f, &cfg->models[m]);
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
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *st = &settings[i];
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
            format_size(lo, sizeof lo, st->min);
            format_size(hi, sizeof hi, st->max);
            fprintf(f, "; %s to %s", lo, hi);
        } else if (st->kind == SET_MILLIS) {
            char lo[32], hi[32];
            format_seconds(lo, sizeof lo, st->min);
            format_seconds(hi, sizeof hi, st->max);
            fprintf(f, "; %s to %s", lo, hi);
        }
        fputc(']', f);
        fputc('\n', f);
    }
    builtin_names(names, sizeof names, true);
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
