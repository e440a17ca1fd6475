/*
 * model_util: small helpers the built-in models share for their error
 * messages. Not part of the model ABI: plugins do not link against batchd,
 * they write their own (examples/plugins/stats.c shows how).
 *
 * Process: any. Thread-safe (no state). Ownership: returned strings are
 * static.
 */
#ifndef BATCHD_MODEL_UTIL_H
#define BATCHD_MODEL_UTIL_H

#include <stddef.h>

#include <jansson.h>

struct model_params;

/* Helper for models without parameters: returns 0 when params is empty,
 * else -EINVAL with "model NAME takes no parameter 'KEY'" in err. */
int model_params_none(const char *model, const struct model_params *params, char *err,
                      size_t errlen);

/*
 * Helper for error messages that quote an item's string: returns the
 * length of the longest prefix of s (valid UTF-8, as every string jansson
 * parsed is) of at most max bytes that does not end inside a character,
 * for "%.*s". A run() error message is UTF-8 text (it becomes the item's
 * Result): "%.64s" can cut a character in two, and the worker then has to
 * turn the stray bytes into '?' (worker_utf8_repair) to keep
 * GET /v1/jobs/{id}/results valid JSON.
 */
int model_utf8_prefix(const char *s, size_t max);

/* snprintf into a model hook's err buffer; err may be NULL or errlen 0. */
__attribute__((format(printf, 3, 4))) void model_err(char *err, size_t errlen, const char *fmt,
                                                     ...);

/* "an object", "an array", "a string", "a number", "a boolean", "null":
 * what a value is, for messages such as "filter: expected an array, got a
 * string". */
const char *model_json_kind(const json_t *v);

#endif
