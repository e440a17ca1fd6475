/*
 * query: strict query-string parameters.
 *
 * Each operation declares the parameter names it knows (openapi.yaml); the
 * server feeds every key=value pair of the request through api_query_add(),
 * and the first unknown or repeated key refuses the request with 400
 * invalid-parameter. Values are then parsed strictly: decimal integers with
 * nothing before or after the digits (no sign, no spaces, no "0x", no
 * trailing junk) and range-checked, booleans as exactly "true" or "false".
 * Being strict here is what lets a typo (?limt=5, ?limit=5x) fail loudly
 * instead of silently using a default.
 *
 * Process and threads: api process, any thread; a struct api_query belongs
 * to one request (one thread).
 * Ownership: keys and values are borrowed from the request (libmicrohttpd
 * keeps them until the request completes); the name list passed to
 * api_query_init() is borrowed and must outlive the struct (use a static
 * array).
 */
#ifndef BATCHD_API_QUERY_H
#define BATCHD_API_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* No operation knows more parameters than this. */
#define API_QUERY_MAX_PARAMS 8

struct api_query {
    const char *const *names;                  /* NULL-terminated, borrowed */
    size_t n_names;
    const char *values[API_QUERY_MAX_PARAMS];  /* by name index; NULL = absent */
    const char *bad_key;                       /* first refused key (borrowed) */
    int bad_err;                               /* why: -ENOENT unknown, -EEXIST repeated,
                                                  -EILSEQ a NUL byte (set by the server) */
};

/* Prepares *q for the parameter names in `names` (NULL-terminated, at most
 * API_QUERY_MAX_PARAMS, may be NULL for "none"). Cannot fail; names past the
 * maximum are ignored (and so refused as unknown). */
void api_query_init(struct api_query *q, const char *const *names);

/*
 * Records one key=value pair; `value` is NULL for a bare "key" (without
 * "="), which is stored as "" so that parsing it fails like any bad value.
 * An empty key without a value ("a=1&&b=2" leaves one) carries nothing and
 * is ignored. Returns 0; -ENOENT for a key the operation does not know,
 * -EEXIST for a key given twice. The first refused key is remembered in
 * q->bad_key / q->bad_err; later pairs are still accepted or refused but do
 * not overwrite it.
 */
int api_query_add(struct api_query *q, const char *key, const char *value);

/* Returns the value of `name` (borrowed), or NULL when it was not given or
 * is not one of the declared names. */
const char *api_query_get(const struct api_query *q, const char *name);

/*
 * Parses `s` as a decimal integer in [min, max].
 * Returns 0 and stores it in *out; -EINVAL when s is empty or holds anything
 * but ASCII digits; -ERANGE when the number is outside [min, max] (however
 * many digits it has). *out is untouched on failure.
 */
int api_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses exactly "true" or "false". Returns 0, or -EINVAL (out untouched). */
int api_parse_bool(const char *s, bool *out);

#endif
