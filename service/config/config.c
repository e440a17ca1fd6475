/*
 * config.c: command line, BATCHD_* environment and config file -> struct
 * config: the parse (its three passes below), the defaults, the rules
 * between settings, and config_free().
 *
 * Every setting is a row of one table (flag, variable, kind, range, field;
 * config_table.c): parsing, precedence, error messages, the file's keys
 * (config_file.c), --print-config and the --help text (config_print.c) all
 * come from it, so they cannot drift apart. Model specs are
 * config_models.c's, the values' text config_values.c's. Parsing runs in
 * three passes:
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

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "service/core/log.h"
#include "service/webhooks/webhook.h"

/* getopt_long values: settings are 256 + their index, above any char. */
#define OPT_SETTING_BASE 256

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
    c->max_output_size = 64 * MIB;
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

/* Where the value of the field at `offset` (a FIELD() with a row) came
 * from, for a message: "--flag", "BATCHD_VAR", "FILE: key 'flag'" or "the
 * default --flag". */
static void field_source(const struct config *c, size_t offset, char *buf, size_t len)
{
    size_t i;
    const struct config_setting *st = config_setting_at(offset, &i);
    config_source_name(buf, len, st, c->source[i], c->config_file);
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
        char tsrc[300], msrc[300], tval[32], mval[32];
        field_source(c, FIELD(item_timeout_ms), tsrc, sizeof tsrc);
        field_source(c, FIELD(max_item_timeout_ms), msrc, sizeof msrc);
        config_format_seconds(tval, sizeof tval, c->item_timeout_ms);
        config_format_seconds(mval, sizeof mval, c->max_item_timeout_ms);
        return config_fail(err, errlen, -EINVAL,
                           "%s: %s seconds exceeds %s (%s seconds), the longest item timeout a job "
                           "may ask for", tsrc, tval, msrc, mval);
    }
    if (c->max_object_bytes > c->object_memory) {
        char bsrc[300], msrc[300], bval[32], mval[32];
        field_source(c, FIELD(max_object_bytes), bsrc, sizeof bsrc);
        field_source(c, FIELD(object_memory), msrc, sizeof msrc);
        config_format_size(bval, sizeof bval, c->max_object_bytes);
        config_format_size(mval, sizeof mval, c->object_memory);
        return config_fail(err, errlen, -EINVAL,
                           "%s: %s exceeds %s (%s), the memory all objects share", bsrc, bval, msrc,
                           mval);
    }
    bool pg = strncmp(c->store, "postgresql://", 13) == 0 ||
              strncmp(c->store, "postgres://", 11) == 0;
    if (!pg && strcmp(c->store, "sqlite") != 0) {
        char src[300];
        field_source(c, FIELD(store), src, sizeof src);
        /* the value is not quoted back: a mistyped URI may hold a password */
        return config_fail(err, errlen, -EINVAL,
                           "%s: give sqlite or a PostgreSQL URI "
                           "(postgresql://USER@HOST:PORT/DATABASE)",
                           src);
    }
    if (pg && c->webhook_hosts) {
        char hsrc[300];
        field_source(c, FIELD(webhook_hosts), hsrc, sizeof hsrc);
        return config_fail(err, errlen, -EINVAL,
                           "%s: completion webhooks are not available with a PostgreSQL store "
                           "yet (--store): use sqlite, or leave webhooks off",
                           hsrc);
    }
    if (c->webhook_hosts || c->webhook_secret) {
        char hsrc[300], ssrc[300], why[256];
        field_source(c, FIELD(webhook_hosts), hsrc, sizeof hsrc);
        field_source(c, FIELD(webhook_secret), ssrc, sizeof ssrc);
        uint8_t key[WEBHOOK_KEY_MAX];
        size_t klen;
        if (c->webhook_hosts && webhook_hosts_check(c->webhook_hosts, why, sizeof why) != 0)
            return config_fail(err, errlen, -EINVAL, "%s: %s", hsrc, why);
        if (c->webhook_hosts && !c->webhook_secret)
            return config_fail(err, errlen, -EINVAL,
                               "%s: webhooks need a signing secret (--webhook-secret or "
                               "BATCHD_WEBHOOK_SECRET: whsec_ and a base64 key)",
                               hsrc);
        /* a secret is never quoted back, not even a malformed one */
        if (c->webhook_secret && webhook_secret_decode(c->webhook_secret, key, &klen) != 0)
            return config_fail(err, errlen, -EINVAL,
                               "%s: the secret must be whsec_ followed by the base64 of a key of "
                               "%d to %d bytes",
                               ssrc, WEBHOOK_KEY_MIN, WEBHOOK_KEY_MAX);
        explicit_bzero(key, sizeof key);
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        char src[300];
        field_source(c, c->tls_cert ? FIELD(tls_cert) : FIELD(tls_key), src, sizeof src);
        return config_fail(err, errlen, -EINVAL,
                           "%s: --tls-cert and --tls-key go together, got only %s", src,
                           c->tls_cert ? "the certificate" : "the key");
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
        return config_fail(err, errlen, -EINVAL, "option '%s' needs a value", name);
    if (optopt == 'h' || optopt == 'V' || optopt == 'P') {
        /* "-hx" lands here as an unknown 'x', so only "--help=..." remains. */
        return config_fail(err, errlen, -EINVAL, "option '%s' takes no value", name);
    }
    if (optopt > 0 && optopt < OPT_SETTING_BASE)
        return config_fail(err, errlen, -EINVAL, "unknown option '-%c' (see --help)", optopt);
    return config_fail(err, errlen, -EINVAL, "unknown or ambiguous option '%s' (see --help)", name);
}

/* ---- parse ------------------------------------------------------------------ */

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    struct option longopts[CONFIG_MAX_SETTINGS + 4];
    const char *flag_value[CONFIG_MAX_SETTINGS] = {0};
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

    for (size_t i = 0; i < config_n_settings; i++)
        longopts[i] = (struct option){config_settings[i].flag, required_argument, NULL,
                                      OPT_SETTING_BASE + (int)i};
    longopts[config_n_settings] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[config_n_settings + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[config_n_settings + 2] = (struct option){"print-config", no_argument, NULL, 'P'};
    longopts[config_n_settings + 3] = (struct option){NULL, 0, NULL, 0};

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
        if (config_settings[idx].kind == SET_MODELS) {
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
        rc = config_fail(err, errlen, -EINVAL,
                         "unexpected argument '%.64s' (batchd takes only options)", argv[optind]);
        goto early_error;
    }
    if (too_many_models) {
        rc = config_fail(err, errlen, -EINVAL, "--model: at most %d models, got more",
                         CONFIG_MAX_MODELS);
        goto early_error;
    }

    if (set_defaults(&c) < 0) {
        rc = config_out_of_memory(err, errlen);
        goto error;
    }
    c.print_config = print_config;
    /* The file first: every other setting may come from it. */
    for (size_t i = 0; i < config_n_settings; i++) {
        if (config_settings[i].kind != SET_CONFIG)
            continue;
        const char *env = getenv(config_settings[i].env);
        const char *path = flag_value[i] ? flag_value[i] : (env && env[0]) ? env : NULL;
        if (!path)
            break;
        snprintf(optname, sizeof optname, flag_value[i] ? "--%s" : "%s",
                 flag_value[i] ? config_settings[i].flag : config_settings[i].env);
        rc = config_apply_setting(&c, &config_settings[i], optname, path, err, errlen);
        if (rc < 0)
            goto error;
        c.source[i] = flag_value[i] ? CONFIG_SRC_FLAG : CONFIG_SRC_ENV;
        rc = config_load_file(c.config_file, &file, err, errlen);
        if (rc < 0)
            goto error;
        break;
    }
    for (size_t i = 0; i < config_n_settings; i++) {
        const struct config_setting *st = &config_settings[i];
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
        config_source_name(optname, sizeof optname, st, from, c.config_file);
        if (st->kind == SET_MODELS) {
            rc = 0;
            if (from == CONFIG_SRC_FLAG)
                for (size_t k = 0; k < n_model_flags && rc == 0; k++)
                    rc = config_add_model(&c, "--model", model_flags[k], err, errlen);
            else if (from == CONFIG_SRC_ENV)
                rc = config_parse_models_env(&c, st->env, env, err, errlen);
            else
                rc = config_apply_file_models(&c, fv, optname, err, errlen);
        } else if (from == CONFIG_SRC_FILE) {
            char *text = config_file_value_text(st, fv, optname, &rc, err, errlen);
            if (text) {
                rc = config_apply_setting(&c, st, optname, text, err, errlen);
                explicit_bzero(text, strlen(text));
                free(text);
            }
        } else {
            rc = config_apply_setting(&c, st, optname,
                                      from == CONFIG_SRC_FLAG ? flag_value[i] : env, err, errlen);
        }
        if (rc < 0)
            goto error;
        c.source[i] = (unsigned char)from;
    }
    /* A small --object-memory with the default object size limit means
     * "objects up to the whole memory", not an error about a setting the
     * user never gave. */
    size_t mob;
    config_setting_at(FIELD(max_object_bytes), &mob);
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
        rc = config_default_models(&c, err, errlen);
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
            config_model_free(&cfg->models[i]);
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
