/*
 * config: batchd's settings, from the command line and the environment.
 *
 * Precedence: command-line flags over BATCHD_* environment variables over
 * built-in defaults. Parsed once, in the supervisor, before anything else;
 * the struct is then read-only and inherited by every forked child.
 *
 * Ownership: config_parse() fills a struct config whose strings and arrays
 * are new allocations; config_free() releases them.
 */
#ifndef BATCHD_CONFIG_H
#define BATCHD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_MODELS 32
#define CONFIG_MAX_WORKERS_PER_MODEL 256

/* One `--model NAME[:key=value,...]`. */
struct config_model {
    char *name;       /* the model's name (built-in, or the name given to a plugin) */
    char *plugin;     /* plugin=PATH, or NULL for a built-in */
    unsigned workers; /* workers=K, or the global --workers */
    size_t n_params;  /* the remaining key=value pairs, in order */
    char **keys;
    char **values;
};

struct config {
    char *listen_host;         /* --listen HOST:PORT / BATCHD_LISTEN; default 127.0.0.1:8080 */
    uint16_t listen_port;      /* 0 = let the kernel choose (tests) */
    char *data_dir;            /* --data-dir / BATCHD_DATA_DIR; default ./data */
    unsigned workers;          /* --workers / BATCHD_WORKERS; default: online CPUs */
    struct config_model *models; /* --model (repeatable) / BATCHD_MODELS (space- or
                                    semicolon-separated); default: every built-in
                                    model without MODEL_FLAG_NOT_DEFAULT */
    size_t n_models;
    size_t max_body_bytes;     /* --max-body-bytes / BATCHD_MAX_BODY_BYTES; default 64 MiB */
    size_t max_items;          /* --max-items / BATCHD_MAX_ITEMS: items per job; default 10,000,000 */
    size_t max_item_bytes;     /* --max-item-bytes / BATCHD_MAX_ITEM_BYTES: one item's JSON;
                                  default 256 KiB; also sizes the ring's payload slots */
    unsigned max_json_depth;   /* --max-json-depth / BATCHD_MAX_JSON_DEPTH: deepest nesting of
                                  arrays and objects in a request body; default 64 */
    unsigned max_connections;  /* --max-connections / BATCHD_MAX_CONNECTIONS; default 256 */
    unsigned idle_timeout_s;   /* --idle-timeout / BATCHD_IDLE_TIMEOUT: per connection; default 30 */
    unsigned max_attempts;     /* --max-attempts / BATCHD_MAX_ATTEMPTS: tries of an item whose
                                  worker dies; default 3 */
    unsigned item_timeout_ms;  /* --item-timeout SECONDS / BATCHD_ITEM_TIMEOUT: per-item
                                  deadline of a job that sets none; default 0 = none;
                                  when not 0, at most max_item_timeout_ms (checked here) */
    unsigned max_item_timeout_ms; /* --max-item-timeout SECONDS / BATCHD_MAX_ITEM_TIMEOUT:
                                  the largest options.item_timeout_s a job may ask for;
                                  default 3600 s; 1 ms to 86400 s (never 0) */
    size_t max_queued_items;   /* --max-queued-items / BATCHD_MAX_QUEUED_ITEMS: admission
                                  bound on items accepted but not yet finished, summed
                                  over all jobs; default 20,000,000; 1 to 10^10 */
    unsigned grace_ms;         /* --grace SECONDS / BATCHD_GRACE: how long a shutdown lets
                                  running tasks finish before their workers are killed;
                                  default 10 s; 0 to 3600 s (0 = do not wait) */
    char *port_file;           /* --port-file PATH / BATCHD_PORT_FILE: where the api writes the
                                  port it bound (for tests that listen on port 0); NULL = none */
};

/* Result codes of config_parse besides 0. */
#define CONFIG_EXIT_OK 1 /* --help or --version was printed: exit 0 */

/*
 * Parses argv (argv[0] is the program) and the environment into *cfg.
 * Returns 0 on success; CONFIG_EXIT_OK after printing --help or --version
 * to stdout; -EINVAL with a one-line message in err (no trailing newline)
 * for a bad flag or value; -ENOMEM. On failure *cfg holds nothing to free.
 * Rules: a repeated flag's last value wins; any --model replaces
 * BATCHD_MODELS whole; an empty BATCHD_* variable counts as unset;
 * "localhost" is stored as 127.0.0.1.
 * Built-in model names are checked here (an unknown name is -EINVAL), and
 * so is every rule between settings: a non-zero item timeout that exceeds
 * the max item timeout is -EINVAL whichever source each came from.
 */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Frees what config_parse allocated. Safe on a zeroed struct. */
void config_free(struct config *cfg);

/* Prints the usage text (the --help output) to `out`. */
void config_usage(FILE *out);

#endif
