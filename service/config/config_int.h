/*
 * config_int.h: what the files of the config module share and its users do
 * not see. The module's files, one concern each:
 *   config.c         the parse (flags, variables, file, defaults), the
 *                    rules between settings, config_free();
 *   config_table.c   the settings table and what reads a row;
 *   config_models.c  model specs (--model, BATCHD_MODELS, "models");
 *   config_file.c    the JSON configuration file;
 *   config_print.c   --print-config and --help;
 *   config_values.c  the values of settings as text: numbers, seconds,
 *                    addresses, names, lists, the files settings name.
 * Process: any, before the settings are used (the supervisor, once); not
 * thread-safe. Ownership as in config.h; every int function returns 0 or
 * a negative errno with the message in err.
 */
#ifndef BATCHD_CONFIG_INT_H
#define BATCHD_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "service/config/config.h"

#include <jansson.h>

#define CONFIG_VERSION_TEXT "batchd 0.1.0"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

/* ---- the settings table (config_table.c) ---------------------------------- */

enum config_setting_kind {
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

struct config_setting {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum config_setting_kind kind;
    unsigned long long min, max; /* for the numeric kinds, in the field's unit */
    size_t offset;               /* of the field in struct config */
    const char *arg;             /* placeholder in --help */
    const char *help;            /* lines of at most 72 columns */
    const char *def;             /* the default, as --help shows it */
};

#define FIELD(f) offsetof(struct config, f)

/* The table, in --help order; config_n_settings rows (at most
 * CONFIG_MAX_SETTINGS, checked at compile time). */
extern const struct config_setting config_settings[];
extern const size_t config_n_settings;
/* "debug", "info", "warn", "error", indexed by enum log_level. */
extern const char *const config_log_level_names[4];

/* The row of the setting stored at `offset` (a FIELD() of a field that has
 * a row; anything else aborts, a bug in the module), its index in *index. */
const struct config_setting *config_setting_at(size_t offset, size_t *index);

/* The row a file key names: a flag's name ("models", or "model" like the
 * flag, for --model), its index in *index; NULL for an unknown key. */
const struct config_setting *config_setting_for_key(const char *key, size_t *index);

/* Writes "--flag", "BATCHD_VAR", "FILE: key 'flag'" or "the default
 * --flag" into buf: where a value came from, for messages. */
void config_source_name(char *buf, size_t len, const struct config_setting *st,
                        enum config_source src, const char *file);

/* The out-of-range or malformed message for a numeric row's `text`, with
 * the row's range in its unit. Returns -EINVAL. */
int config_number_error(const struct config_setting *st, const char *src, const char *text,
                        char *err, size_t errlen);

/* Applies one setting's text (from `src`: a flag, a variable or a file
 * key) to c by the row's kind; the lists replace what the field held.
 * SET_MODELS rows are the caller's (a list of specs). Returns 0, -EINVAL
 * or -ENOMEM with the message in err; on failure the field is unchanged. */
int config_apply_setting(struct config *c, const struct config_setting *st, const char *src,
                         const char *text, char *err, size_t errlen);

/* ---- model specs (config_models.c) ------------------------------------------ */

/* Frees a model's strings and zeroes it. */
void config_model_free(struct config_model *m);

/* "echo, square, ..." (the built-in models) into buf; with `mark`, for
 * --help, the ones never loaded by default say so. */
void config_builtin_names(char *buf, size_t len, bool mark);

/* Parses one spec and appends it to c->models. Returns 0, or -EINVAL (bad
 * spec, a name given twice, more than CONFIG_MAX_MODELS) / -ENOMEM with the
 * message naming `src`; c->models is unchanged on failure. */
int config_add_model(struct config *c, const char *src, const char *spec, char *err,
                     size_t errlen);

/* BATCHD_MODELS' text: specs separated by blanks or semicolons, each added
 * with config_add_model() (the ones before a failure stay). */
int config_parse_models_env(struct config *c, const char *src, const char *text, char *err,
                            size_t errlen);

/* Adds the built-in models that are loaded when none is named. Returns 0
 * or -ENOMEM. */
int config_default_models(struct config *c, char *err, size_t errlen);

/* Writes a model back as the spec that configures it. */
void config_model_print(FILE *f, const struct config_model *m);

/* ---- the configuration file (config_file.c) -------------------------------- */

/* Loads the config file and checks its keys. Returns 0 with *root (new
 * reference) set; -EINVAL with the message in err (unreadable, not JSON,
 * not an object, an unknown key, the "config" key). */
int config_load_file(const char *path, json_t **root, char *err, size_t errlen);

/* The text a flag would carry for the file's value v of row st (new
 * string, caller frees), or NULL with *rc (-EINVAL, -ENOMEM) and err set. */
char *config_file_value_text(const struct config_setting *st, const json_t *v, const char *src,
                             int *rc, char *err, size_t errlen);

/* The file's "models": an array of specs, or one string of specs as in
 * BATCHD_MODELS. Returns 0, -EINVAL or -ENOMEM. */
int config_apply_file_models(struct config *c, const json_t *v, const char *src, char *err,
                             size_t errlen);

/* ---- the values of settings (config_values.c) ------------------------------ */

/* Longest model name or parameter key; names appear in URLs and metrics. */
#define CONFIG_MAX_NAME_LEN 64

/* Writes the formatted message into err (when err and errlen) and returns
 * rc: every parse error of the module goes through here. */
__attribute__((format(printf, 4, 0))) int config_vfail(char *err, size_t errlen, int rc,
                                                      const char *fmt, va_list ap);
__attribute__((format(printf, 4, 5))) int config_fail(char *err, size_t errlen, int rc,
                                                      const char *fmt, ...);
/* config_fail with -ENOMEM and the module's one out-of-memory message. */
int config_out_of_memory(char *err, size_t errlen);

/* Formats a byte count with the largest suffix that divides it exactly. */
void config_format_size(char *buf, size_t len, unsigned long long v);

/* Formats milliseconds as seconds with only the decimals needed: 2500 ->
 * "2.5", 1 -> "0.001", 3600000 -> "3600". */
void config_format_seconds(char *buf, size_t len, unsigned long long ms);

/* A decimal integer using the whole string, with an optional K/M/G
 * (KiB/MiB/GiB) suffix when `suffix`. Returns 0 with *out set, or -EINVAL
 * (bad text or outside [min, max]). */
int config_parse_number(const char *s, bool suffix, unsigned long long min,
                        unsigned long long max, unsigned long long *out);

/* Seconds as "S" or "S.f" (1 to 3 decimals) to whole milliseconds. Returns
 * 0 with *ms set, or -EINVAL (bad text or outside [min, max] ms). */
int config_parse_millis(const char *s, unsigned long long min, unsigned long long max,
                        unsigned long long *ms);

/* Replaces *field with a copy of s. Returns 0 or -ENOMEM (field unchanged). */
int config_set_string(char **field, const char *s);

/* --listen's HOST:PORT into c->listen_host and c->listen_port (IPv4
 * literals and "localhost", stored as 127.0.0.1). Returns 0 or -EINVAL /
 * -ENOMEM with the reason in err. */
int config_parse_listen(struct config *c, const char *src, const char *text, char *err,
                        size_t errlen);

/* A model or group name: 1..CONFIG_MAX_NAME_LEN of [A-Za-z0-9_.-]. */
bool config_valid_name(const char *s, size_t len);

/* Frees a string array and its strings, overwriting them first when `wipe`
 * (they may be secrets). NULL is fine. */
void config_strv_free(char **v, size_t n, bool wipe);

/* RFC 6750's b64token: what may follow "Bearer " unquoted. */
bool config_token_valid(const char *s, size_t len);

/* A --cors-origins entry: "*" or an origin (scheme://host[:port]). */
bool config_origin_entry_valid(const char *s, size_t len);

/*
 * Splits a comma-separated list (blanks around entries trimmed, empty
 * entries skipped) into a new string array, each entry checked by `valid`.
 * Returns 0 with *out and *n set; -EINVAL (err names the bad entry, or says
 * the list holds none) or -ENOMEM, with nothing allocated.
 */
int config_split_list(const char *src, const char *text, const char *what, size_t max,
                      bool (*valid)(const char *, size_t), bool secret, char ***out, size_t *n,
                      char *err, size_t errlen);

/* Reads a small file (a settings file, a PEM, the tokens file) into a new
 * NUL-terminated buffer (*out, caller frees; its length in *len if not
 * NULL). Returns 0 or a negative errno (-EFBIG past the size limit). */
int config_read_small_file(const char *path, char **out, size_t *len);

/* Writes "WHAT PATH: why" for a config_read_small_file error into err and
 * returns -EINVAL. */
int config_file_error(const char *what, const char *path, int rc, char *err, size_t errlen);

#endif
