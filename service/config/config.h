/*
 * config: batchd's settings, from the command line, the environment and a
 * configuration file.
 *
 * Precedence, one rule for every setting: command-line flags over BATCHD_*
 * environment variables over the configuration file (--config PATH /
 * BATCHD_CONFIG, a JSON object whose keys are the flags' names) over
 * built-in defaults. Parsed once, in the supervisor, before anything else;
 * the struct is then read-only and inherited by every forked child. The
 * files a setting names are read here too, at start: the TLS certificate
 * and key (kept in memory), and the tokens file (checked; the api process
 * reads it again at its start and on SIGHUP, see config_read_tokens_file).
 *
 * Ownership: config_parse() fills a struct config whose strings and arrays
 * are new allocations; config_free() releases them (and wipes the secrets
 * first).
 */
#ifndef BATCHD_CONFIG_H
#define BATCHD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>


#define CONFIG_MAX_MODELS 32
#define CONFIG_MAX_WORKERS_PER_MODEL 256
/* Bounds of the list settings and of the files a setting names. */
#define CONFIG_MAX_TOKENS 256          /* API tokens, from every source together */
#define CONFIG_MAX_TOKEN_LEN 512       /* bytes of one token */
#define CONFIG_MAX_ORIGINS 64          /* --cors-origins entries */
#define CONFIG_MAX_FILE_BYTES (1u << 20) /* config file, tokens file, PEM files */
/* Upper bounds of the recycling limits (global flags and max_items=,
 * max_rss= of a model): beyond them a limit means nothing. */
#define CONFIG_MAX_RECYCLE_ITEMS 1000000000000ull /* 10^12 items */
#define CONFIG_MAX_RECYCLE_RSS (1ull << 40)       /* 1 TiB */
/* Rows of the settings table (config.c checks that it fits). */
#define CONFIG_MAX_SETTINGS 48

/* Where a setting's effective value came from (--print-config). */
enum config_source {
    CONFIG_SRC_DEFAULT = 0,
    CONFIG_SRC_FILE,
    CONFIG_SRC_ENV,
    CONFIG_SRC_FLAG,
};

/* One `--model NAME[:key=value,...]`. */
struct config_model {
    char *name;       /* the model's name (built-in, or the name given to a plugin) */
    char *plugin;     /* plugin=PATH, or NULL for a built-in */
    char *runtime;    /* a coprocess model: "python" (python=PATH) or "node" (node=PATH);
                         NULL for a C model (docs/coprocess.md) */
    char *module;     /* the PATH of python=PATH / node=PATH */
    char *interpreter; /* interpreter=PROGRAM, or NULL: the runtime's default on PATH */
    unsigned workers; /* workers=K, or the global --workers */
    /* Recycling limits (worker.h), 0 = none: max_items=N and max_rss=SIZE,
     * else the global --max-items-per-worker / --max-worker-rss (an
     * explicit 0 here turns a global limit off for this model). */
    unsigned long long max_items, max_rss;
    bool max_items_set, max_rss_set; /* given in the spec (before resolution) */
    size_t n_params;  /* the remaining key=value pairs, in order */
    char **keys;
    char **values;
};

struct config {
    char *listen_host;         /* --listen HOST:PORT / BATCHD_LISTEN; default 127.0.0.1:8080 */
    uint16_t listen_port;      /* 0 = let the kernel choose (tests) */
    char *data_dir;            /* --data-dir / BATCHD_DATA_DIR; default ./data */
    char *store;               /* --store / BATCHD_STORE: "sqlite" (DATA_DIR/batchd.db) or a
                                  PostgreSQL URI (postgresql://...); default "sqlite" */
    unsigned workers;          /* --workers / BATCHD_WORKERS; default: online CPUs */
    struct config_model *models; /* --model (repeatable) / BATCHD_MODELS (space- or
                                    semicolon-separated); default: every built-in
                                    model without MODEL_FLAG_NOT_DEFAULT */
    size_t n_models;
    size_t max_body_bytes;     /* --max-body-bytes / BATCHD_MAX_BODY_BYTES; default 64 MiB */
    size_t max_items;          /* --max-items / BATCHD_MAX_ITEMS: items per job; default 10,000,000 */
    size_t max_item_bytes;     /* --max-item-bytes / BATCHD_MAX_ITEM_BYTES: one item's JSON;
                                  default 256 KiB; also sizes the ring's payload slots */
    unsigned retention_s;      /* --retention SECONDS / BATCHD_RETENTION: finished jobs and their
                                  results are deleted after this; default 7 days */
    size_t max_store_bytes;    /* --max-store-bytes / BATCHD_MAX_STORE_BYTES: cap on the store's
                                  size (507 past it); default 0 = the disk's size */
    unsigned max_json_depth;   /* --max-json-depth / BATCHD_MAX_JSON_DEPTH: deepest nesting of
                                  arrays and objects in a request body; default 64 */
    size_t object_memory;      /* --object-memory / BATCHD_OBJECT_MEMORY: the object store's data
                                  area (a ceiling, not a reservation); default 1 GiB */
    size_t max_object_bytes;   /* --max-object-bytes / BATCHD_MAX_OBJECT_BYTES: largest object;
                                  default 256 MiB; at most object_memory (checked here) */
    size_t max_output_size;    /* --max-output-size / BATCHD_MAX_OUTPUT_SIZE: one item's output
                                  as compact JSON; default 64 MiB; outputs past a task slot go
                                  through an object (worker.h) */
    unsigned max_objects;      /* --max-objects / BATCHD_MAX_OBJECTS: table entries; default
                                  4096 */
    unsigned max_connections;  /* --max-connections / BATCHD_MAX_CONNECTIONS: the connection
                                  ceiling (api/http/conns.h); default 4096, lowered at start to fit
                                  the open-file limit when not set (service/core/fdlimit.h) */
    unsigned idle_timeout_s;   /* --idle-timeout / BATCHD_IDLE_TIMEOUT: per connection; default 30 */
    unsigned header_timeout_s; /* --header-timeout / BATCHD_HEADER_TIMEOUT: a request head's
                                  deadline, not reset by bytes; default 20 */
    size_t min_body_rate;      /* --min-body-rate / BATCHD_MIN_BODY_RATE: bytes per second a body
                                  must average after header_timeout_s of grace; default 1K;
                                  0 = no minimum */
    unsigned http_threads;     /* --http-threads / BATCHD_HTTP_THREADS: libmicrohttpd's thread
                                  pool, each thread serving many connections; default 4 */
    unsigned max_attempts;     /* --max-attempts / BATCHD_MAX_ATTEMPTS: tries of an item whose
                                  worker dies; default 3 */
    unsigned item_timeout_ms;  /* --item-timeout SECONDS / BATCHD_ITEM_TIMEOUT: per-item
                                  deadline of a job that sets none; default 0 = none;
                                  when not 0, at most max_item_timeout_ms (checked here) */
    unsigned max_item_timeout_ms; /* --max-item-timeout SECONDS / BATCHD_MAX_ITEM_TIMEOUT:
                                  the largest options.item_timeout_s a job may ask for;
                                  default 3600 s; 1 ms to 86400 s (never 0) */
    size_t max_items_per_worker; /* --max-items-per-worker / BATCHD_MAX_ITEMS_PER_WORKER: items
                                  a worker process runs before it is replaced; default 0 =
                                  no limit; a model's max_items= overrides it */
    size_t max_worker_rss;     /* --max-worker-rss SIZE / BATCHD_MAX_WORKER_RSS: resident bytes
                                  past which a worker is replaced after its task; default 0 =
                                  no limit; a model's max_rss= overrides it */
    size_t max_queued_items;   /* --max-queued-items / BATCHD_MAX_QUEUED_ITEMS: admission
                                  bound on items accepted but not yet finished, summed
                                  over all jobs; default 20,000,000; 1 to 10^10 */
    unsigned grace_ms;         /* --grace SECONDS / BATCHD_GRACE: how long a shutdown lets
                                  running tasks finish before their workers are killed;
                                  default 10 s; 0 to 3600 s (0 = do not wait) */
    char *port_file;           /* --port-file PATH / BATCHD_PORT_FILE: where the api writes the
                                  port it bound (for tests that listen on port 0); NULL = none */
    unsigned log_level;        /* --log-level / BATCHD_LOG_LEVEL: debug, info, warn or error,
                                  stored as enum log_level (log.h); default info */
    bool access_log;           /* --access-log true|false / BATCHD_ACCESS_LOG: one log line
                                  per request; default true */

    /* Auth and exposure. Authentication is on when api_tokens is not
     * empty or tokens_file is set (an empty tokens file then lets nobody
     * in: it fails closed). */
    char *config_file;         /* --config / BATCHD_CONFIG: the file read; NULL = none */
    char **api_tokens;         /* --api-tokens / BATCHD_API_TOKENS: comma-separated bearer
                                  tokens (secret: masked by --print-config); n_api_tokens */
    size_t n_api_tokens;
    char *tokens_file;         /* --tokens-file / BATCHD_TOKENS_FILE: one token per line,
                                  '#' comments; re-read on SIGHUP; NULL = none */
    bool auth_metrics;         /* --auth-metrics / BATCHD_AUTH_METRICS: /metrics needs a token
                                  too; default false (/healthz, /readyz are always open) */
    char **cors_origins;       /* --cors-origins / BATCHD_CORS_ORIGINS: comma-separated
                                  origins (scheme://host[:port]) or "*"; default none */
    size_t n_cors_origins;
    char *tls_cert;            /* --tls-cert / BATCHD_TLS_CERT: PEM certificate (chain) path */
    char *tls_key;             /* --tls-key / BATCHD_TLS_KEY: PEM private key path; both or
                                  neither */
    char *tls_cert_pem;        /* the files' contents, read by config_parse (NUL-terminated) */
    char *tls_key_pem;         /* secret */

    /* Completion webhooks (webhook.h, issue 18): off until webhook_hosts
     * names at least one HOST:PORT. */
    char *webhook_hosts;       /* --webhook-hosts / BATCHD_WEBHOOK_HOSTS: HOST:PORT,...
                                  that a job's webhook URL may name; NULL = none */
    char *webhook_secret;      /* --webhook-secret / BATCHD_WEBHOOK_SECRET: whsec_<base64>
                                  (secret: masked by --print-config); required with
                                  webhook_hosts */
    unsigned webhook_retry_for_s; /* --webhook-retry-for SECONDS / BATCHD_WEBHOOK_RETRY_FOR:
                                  how long a delivery is retried; default 86400 */

    bool print_config;         /* --print-config was given: main prints and exits */
    unsigned char source[CONFIG_MAX_SETTINGS]; /* enum config_source of each row of the
                                  settings table, for config_print() */
};

/* Result codes of config_parse besides 0. */
#define CONFIG_PRINTED 1 /* --help or --version was printed to stdout: the caller
                            exits 0 (a result code, not an exit status) */

/*
 * Parses argv (argv[0] is the program), the environment and the
 * configuration file into *cfg.
 * Returns 0 on success (with cfg->print_config set when --print-config was
 * given: the caller prints and exits); CONFIG_PRINTED after printing --help
 * or --version to stdout; -EINVAL with a one-line message in err (no
 * trailing newline) for a bad flag, variable, file key or value, or a file
 * that cannot be read; -ENOMEM. On failure *cfg holds nothing to free.
 * Rules: a repeated flag's last value wins; any --model replaces
 * BATCHD_MODELS whole, which replaces the file's "models" whole; an empty
 * BATCHD_* variable, and a null in the file, count as unset; an unknown
 * key in the file is an error naming it; "localhost" is stored as
 * 127.0.0.1.
 * Built-in model names are checked here (an unknown name is -EINVAL), and
 * so is every rule between settings: a non-zero item timeout that exceeds
 * the max item timeout is -EINVAL whichever source each came from; so is a
 * TLS certificate without a key (or the reverse), and a max object size
 * above the object memory.
 */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Where the setting named `flag` (without "--") got its value; DEFAULT
 * for an unknown name. */
enum config_source config_source_of(const struct config *cfg, const char *flag);

/* Frees what config_parse allocated, wiping the secrets first. Safe on a
 * zeroed struct. */
void config_free(struct config *cfg);

/*
 * Prints the effective configuration to `out`, one setting per line:
 * its name (the flag's, which is also the file's key), its value, and
 * where the value came from (default, file, env or flag). Secrets (API
 * tokens) are masked: only their number is shown.
 */
void config_print(const struct config *cfg, FILE *out);

/*
 * Reads a tokens file: one token per line; blank lines and lines whose
 * first non-blank character is '#' are skipped; blanks around a token are
 * trimmed. A token is 1 to CONFIG_MAX_TOKEN_LEN characters of the RFC 6750
 * token68 alphabet (letters, digits, - . _ ~ + / and trailing =).
 * Returns 0 with *tokens (new array of new strings, NULL when *n == 0;
 * free with config_tokens_free) and *n set; -errno when the file cannot
 * be read, -EFBIG past CONFIG_MAX_FILE_BYTES, -EINVAL for a bad token or
 * more than CONFIG_MAX_TOKENS (err then says which line), -ENOMEM. On
 * failure nothing is allocated and err holds a one-line message.
 */
int config_read_tokens_file(const char *path, char ***tokens, size_t *n, char *err,
                            size_t errlen);

/* Wipes and frees a token array of config_read_tokens_file. NULL is fine. */
void config_tokens_free(char **tokens, size_t n);

/* Prints the usage text (the --help output) to `out`. */
void config_usage(FILE *out);

#endif
