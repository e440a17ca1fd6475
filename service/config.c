/*
 * config.c: command line and BATCHD_* environment -> struct config.
 *
 * Every scalar setting is a row of one table (flag, variable, kind, range,
 * field): parsing, precedence, error messages and the --help text all come
 * from it, so they cannot drift apart. Parsing runs in two passes:
 *
 *   1. getopt_long collects the raw strings of the flags (the last of a
 *      repeated flag wins, as with most Unix tools; --model accumulates).
 *      --help and --version are remembered, not acted on yet.
 *   2. If --help or --version was seen, it is printed and nothing else is
 *      checked: someone asking for help should get it even when the rest of
 *      the line (or a stale environment variable) is wrong. Otherwise each
 *      setting takes its flag, else its non-empty variable, else the
 *      default, and is parsed strictly.
 *
 * An empty variable counts as unset, because container tooling and shell
 * scripts routinely export VAR= to mean "no value".
 *
 * The result is built in a local struct and copied out only on success, so
 * a failure leaves the caller's struct zeroed with nothing to free.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

#define CONFIG_VERSION_TEXT "batchd 0.1.0"

/* Longest model name or parameter key; names appear in URLs and metrics. */
#define CONFIG_MAX_NAME_LEN 64

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
     "where jobs and results are kept", "./data"},
    {"workers", "BATCHD_WORKERS", SET_UNSIGNED, 1, CONFIG_MAX_WORKERS_PER_MODEL, FIELD(workers),
     "N", "worker processes per model, unless its workers=K says otherwise",
     "the number of online CPUs"},
    {"model", "BATCHD_MODELS", SET_MODELS, 0, 0, 0, "NAME[:key=value,...]",
     "a model to load; repeat the flag for several (BATCHD_MODELS: specs\n"
     "separated by spaces or semicolons). workers=K and plugin=PATH are\n"
     "batchd's; the other pairs are passed to the model",
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
    {"max-connections", "BATCHD_MAX_CONNECTIONS", SET_UNSIGNED, 1, 65535, FIELD(max_connections),
     "N", "most simultaneous HTTP connections", "256"},
    {"idle-timeout", "BATCHD_IDLE_TIMEOUT", SET_UNSIGNED, 1, 86400, FIELD(idle_timeout_s),
     "SECONDS", "close a connection that stays idle this long", "30"},
    {"max-json-depth", "BATCHD_MAX_JSON_DEPTH", SET_UNSIGNED, 1, 1000, FIELD(max_json_depth),
     "N", "deepest nesting of arrays and objects in a request body", "64"},
    {"max-attempts", "BATCHD_MAX_ATTEMPTS", SET_UNSIGNED, 1, 100, FIELD(max_attempts), "N",
     "tries of an item whose worker dies, before the item fails", "3"},
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
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* getopt_long values: settings are 256 + their index, above any char. */
#define OPT_SETTING_BASE 256

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int out_of_memory(char *err, size_t errlen)
{
    return fail(err, errlen, -ENOMEM, "out of memory while reading the configuration");
}

/* Formats a byte count with the largest suffix that divides it exactly. */
static void format_size(char *buf, size_t len, unsigned long long v)
{
    if (v && v % GIB == 0)
        snprintf(buf, len, "%lluG", v / GIB);
    else if (v && v % MIB == 0)
        snprintf(buf, len, "%lluM", v / MIB);
    else if (v && v % KIB == 0)
        snprintf(buf, len, "%lluK", v / KIB);
    else
        snprintf(buf, len, "%llu", v);
}

/* Formats milliseconds as seconds with only the decimals needed: 2500 ->
 * "2.5", 1 -> "0.001", 3600000 -> "3600". */
static void format_seconds(char *buf, size_t len, unsigned long long ms)
{
    unsigned long long frac = ms % 1000;
    if (frac == 0) {
        snprintf(buf, len, "%llu", ms / 1000);
        return;
    }
    int digits = 3;
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(buf, len, "%llu.%0*llu", ms / 1000, digits, frac);
}

/*
 * Parses a decimal integer that must use the whole string, with an optional
 * K/M/G (or KiB/MiB/GiB) suffix when `suffix`. strtoull alone would accept
 * leading blanks, a sign (and negate!) and trailing junk, so the first
 * character must be a digit and the end must be the end.
 * Returns 0 with *out set, or -EINVAL (bad text or outside [min, max]).
 */
static int parse_number(const char *s, bool suffix, unsigned long long min, unsigned long long max,
                        unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    if (suffix && *end) {
        unsigned shift;
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -EINVAL;
        }
        end++;
        if ((end[0] == 'i' || end[0] == 'I') && (end[1] == 'b' || end[1] == 'B'))
            end += 2;
        if (v > (~0ull >> shift))
            return -EINVAL;
        v <<= shift;
    }
    if (*end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/*
 * Seconds as "S" or "S.f" with 1 to 3 decimals, to whole milliseconds: a
 * finer value would be silently rounded, so it is refused instead.
 * Returns 0 with *ms set, or -EINVAL (bad text or outside [min, max] ms).
 */
static int parse_millis(const char *s, unsigned long long min, unsigned long long max,
                        unsigned long long *ms)
{
    char whole[24];
    const char *dot = strchr(s, '.');
    size_t wlen = dot ? (size_t)(dot - s) : strlen(s);
    unsigned long long secs, frac = 0;

    if (wlen == 0 || wlen >= sizeof whole)
        return -EINVAL;
    memcpy(whole, s, wlen);
    whole[wlen] = '\0';
    if (parse_number(whole, false, 0, ~0ull / 1000 - 1, &secs) < 0)
        return -EINVAL;
    if (dot) {
        size_t flen = strlen(dot + 1);
        if (flen < 1 || flen > 3)
            return -EINVAL;
        for (size_t i = 0; i < 3; i++) {
            char ch = i < flen ? dot[1 + i] : '0';
            if (ch < '0' || ch > '9')
                return -EINVAL;
            frac = frac * 10 + (unsigned)(ch - '0');
        }
    }
    unsigned long long v = secs * 1000 + frac;
    if (v < min || v > max)
        return -EINVAL;
    *ms = v;
    return 0;
}

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

/* Replaces *field with a copy of s. Returns 0 or -ENOMEM (field unchanged). */
static int set_string(char **field, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/*
 * HOST:PORT. Only IPv4 literals and "localhost" are accepted, and
 * "localhost" is stored as 127.0.0.1, so the api process can hand
 * listen_host to inet_pton() without a resolver (getaddrinfo after the
 * engine's threads exist, or a name that maps to ::1, is what we avoid).
 */
static int parse_listen(struct config *c, const char *src, const char *text, char *err,
                        size_t errlen)
{
    const char *colon = strrchr(text, ':');
    unsigned long long port;
    char host[INET_ADDRSTRLEN + 16];
    struct in_addr addr;
    size_t hlen = colon ? (size_t)(colon - text) : 0;

    if (!colon || hlen == 0 || hlen >= sizeof host ||
        parse_number(colon + 1, false, 0, 65535, &port) < 0)
        goto bad;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    else if (inet_pton(AF_INET, host, &addr) != 1)
        goto bad;
    if (set_string(&c->listen_host, host) < 0)
        return out_of_memory(err, errlen);
    c->listen_port = (uint16_t)port;
    return 0;
bad:
    return fail(err, errlen, -EINVAL,
                "%s: expected HOST:PORT (an IPv4 address or localhost, and a port from 0 to "
                "65535), got '%s'", src, text);
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > CONFIG_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
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
 * Parses one NAME[:key=value,...] into *m (zeroed by the caller). workers=
 * and plugin= are taken out; the other pairs keep their order. On failure
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
            bool dup = (strcmp(key, "workers") == 0 && seen_workers) ||
                       (strcmp(key, "plugin") == 0 && m->plugin);
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
            } else if (strcmp(key, "plugin") == 0) {
                m->plugin = strdup(value);
                if (!m->plugin) {
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
    if (!m->plugin && !model_builtin_find(m->name)) {
        char names[256];
        builtin_names(names, sizeof names, false);
        rc = fail(err, errlen, -EINVAL,
                  "%s: no built-in model named '%s' (built-in: %s; a plugin needs plugin=PATH)",
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
    c->models = calloc(CONFIG_MAX_MODELS, sizeof *c->models);
    if (!c->listen_host || !c->data_dir || !c->models)
        return -ENOMEM;
    c->listen_port = 8080;
    c->workers = online_cpus();
    c->max_body_bytes = 64 * MIB;
    c->max_items = 10000000;
    c->max_item_bytes = 256 * KIB;
    c->max_connections = 256;
    c->idle_timeout_s = 30;
    c->max_attempts = 3;
    c->max_json_depth = 64;
    c->item_timeout_ms = 0;
    c->max_item_timeout_ms = 3600000;
    c->max_queued_items = 20000000;
    c->grace_ms = 10000;
    c->port_file = NULL;
    return 0;
}

/* Applies one scalar setting's text (from `src`, a flag or a variable). */
static int apply_setting(struct config *c, const struct setting *st, const char *src,
                         const char *text, char *err, size_t errlen)
{
    char *base = (char *)c;
    unsigned long long v;

    switch (st->kind) {
    case SET_LISTEN:
        return parse_listen(c, src, text, err, errlen);
    case SET_STRING:
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
    case SET_MODELS:
        break; /* handled by the caller: it is a list, not a scalar */
    }
    return 0;
}

/* Where a setting's value came from, for the errors that involve two. */
enum setting_source { SRC_DEFAULT, SRC_FLAG, SRC_ENV };

/* The row of the setting stored at `offset` (always present: callers pass
 * FIELD() of a field that has a row). */
static const struct setting *setting_at(size_t offset, size_t *index)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (settings[i].kind != SET_LISTEN && settings[i].kind != SET_MODELS &&
            settings[i].offset == offset) {
            *index = i;
            return &settings[i];
        }
    }
    abort(); /* a FIELD() without a row is a bug in this file */
}

/* "--flag", "BATCHD_VAR" or "the default --flag". */
static void source_name(char *buf, size_t len, const struct setting *st,
                        enum setting_source src)
{
    if (src == SRC_FLAG)
        snprintf(buf, len, "--%s", st->flag);
    else if (src == SRC_ENV)
        snprintf(buf, len, "%s", st->env);
    else
        snprintf(buf, len, "the default --%s", st->flag);
}

/*
 * The rules between settings, checked once every setting has its final
 * value so that the order of flags and variables does not matter.
 * A server-wide item timeout longer than the longest one a job may ask for
 * would make the default more permissive than any explicit request.
 * Returns 0, or -EINVAL with the message in err.
 */
static int check_settings(const struct config *c, const enum setting_source *from, char *err,
                          size_t errlen)
{
    if (c->item_timeout_ms != 0 && c->item_timeout_ms > c->max_item_timeout_ms) {
        size_t ti, mi;
        const struct setting *t = setting_at(FIELD(item_timeout_ms), &ti);
        const struct setting *m = setting_at(FIELD(max_item_timeout_ms), &mi);
        char tsrc[80], msrc[80], tval[32], mval[32];
        source_name(tsrc, sizeof tsrc, t, from[ti]);
        source_name(msrc, sizeof msrc, m, from[mi]);
        format_seconds(tval, sizeof tval, c->item_timeout_ms);
        format_seconds(mval, sizeof mval, c->max_item_timeout_ms);
        return fail(err, errlen, -EINVAL,
                    "%s: %s seconds exceeds %s (%s seconds), the longest item timeout a job "
                    "may ask for", tsrc, tval, msrc, mval);
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
    if (optopt == 'h' || optopt == 'V') {
        /* "-hx" lands here as an unknown 'x', so only "--help=..." remains. */
        return fail(err, errlen, -EINVAL, "option '%s' takes no value", name);
    }
    if (optopt > 0 && optopt < OPT_SETTING_BASE)
        return fail(err, errlen, -EINVAL, "unknown option '-%c' (see --help)", optopt);
    return fail(err, errlen, -EINVAL, "unknown or ambiguous option '%s' (see --help)", name);
}

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    struct option longopts[N_SETTINGS + 3];
    const char *flag_value[N_SETTINGS] = {0};
    enum setting_source from[N_SETTINGS] = {SRC_DEFAULT};
    const char *model_flags[CONFIG_MAX_MODELS];
    size_t n_model_flags = 0;
    bool too_many_models = false;
    int action = 0; /* 'h' or 'V' once seen */
    struct config c = {0};
    char optname[80];
    int rc = 0;

    if (err && errlen)
        err[0] = '\0';
    memset(cfg, 0, sizeof *cfg);

    for (size_t i = 0; i < N_SETTINGS; i++)
        longopts[i] = (struct option){settings[i].flag, required_argument, NULL,
                                      OPT_SETTING_BASE + (int)i};
    longopts[N_SETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_SETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_SETTINGS + 2] = (struct option){NULL, 0, NULL, 0};

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
        return CONFIG_EXIT_OK;
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
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *st = &settings[i];
        const char *env = getenv(st->env);
        if (env && env[0] == '\0')
            env = NULL;
        if (st->kind == SET_MODELS) {
            rc = 0;
            if (n_model_flags) {
                for (size_t k = 0; k < n_model_flags && rc == 0; k++)
                    rc = add_model(&c, "--model", model_flags[k], err, errlen);
            } else if (env) {
                rc = parse_models_env(&c, st->env, env, err, errlen);
            }
            if (rc < 0)
                goto error;
            continue;
        }
        const char *text = flag_value[i] ? flag_value[i] : env;
        if (!text)
            continue;
        if (flag_value[i])
            snprintf(optname, sizeof optname, "--%s", st->flag);
        else
            snprintf(optname, sizeof optname, "%s", st->env);
        rc = apply_setting(&c, st, optname, text, err, errlen);
        if (rc < 0)
            goto error;
        from[i] = flag_value[i] ? SRC_FLAG : SRC_ENV;
    }
    rc = check_settings(&c, from, err, errlen);
    if (rc < 0)
        goto error;
    /* BATCHD_MODELS made only of separators names no model: the defaults. */
    if (c.n_models == 0) {
        rc = default_models(&c, err, errlen);
        if (rc < 0)
            goto error;
    }
    /* Only now is the global worker count final (flag, variable or CPUs). */
    for (size_t i = 0; i < c.n_models; i++)
        if (c.models[i].workers == 0)
            c.models[i].workers = c.workers;

    *cfg = c;
    return 0;

error:
    config_free(&c);
early_error:
    memset(cfg, 0, sizeof *cfg);
    return rc;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen_host);
    free(cfg->data_dir);
    free(cfg->port_file);
    if (cfg->models)
        for (size_t i = 0; i < cfg->n_models; i++)
            model_free(&cfg->models[i]);
    free(cfg->models);
    memset(cfg, 0, sizeof *cfg);
}

void config_usage(FILE *out)
{
    FILE *f = out;
    char names[256];

    fprintf(f, "Usage: batchd [OPTION]...\n"
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
    fprintf(f, "  -h, --help\n      print this help and exit\n"
               "  -V, --version\n      print the version and exit\n\n"
               "Flags override BATCHD_* environment variables, which override the defaults;\n"
               "an empty variable counts as unset. SIZE takes a K, M or G suffix (KiB, MiB,\n"
               "GiB). A model's workers=K runs K workers for it (1 to %d).\n"
               "Built-in models: %s.\n",
            CONFIG_MAX_WORKERS_PER_MODEL, names);
}
