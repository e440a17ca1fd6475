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

/* snprintf into a model hook's err buffer; err may be NULL or errlen 0. */
__attribute__((format(printf, 3, 4))) void model_err(char *err, size_t errlen, const char *fmt,
                                                     ...);

/* "an object", "an array", "a string", "a number", "a boolean", "null":
 * what a value is, for messages such as "filter: expected an array, got a
 * string". */
const char *model_json_kind(const json_t *v);

#endif
