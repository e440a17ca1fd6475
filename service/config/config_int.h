/*
 * config_int.h: what the files of the config module share and its users do
 * not see: config.c (the settings table, the parse, --help and
 * --print-config) and config_values.c (the values of settings as text:
 * numbers, seconds, addresses, names, lists, the files settings name). Process: any, before the settings are used; not
 * thread-safe. Ownership as in config.h.
 */
#ifndef BATCHD_CONFIG_INT_H
#define BATCHD_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "service/config/config.h"

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
