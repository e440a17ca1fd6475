/*
 * jsonfmt: JSON text with reals in their shortest exact form.
 *
 * jansson writes a real with "%.17g" (or JSON_REAL_PRECISION(n)), so 1.7e-7
 * comes out as 1.6999999999999999e-7: exact, but longer than it needs to be
 * and not what the client sent. Every place batchd writes JSON (answers,
 * stored items, workers' outputs, the reduce task's partials) passes the
 * text through jsonfmt_shorten(), which rewrites each real as the shortest
 * of "%.15g", "%.16g" and "%.17g" that reads back to the same double. The
 * shortest of the three is the shortest decimal that reads back at all: a
 * double that 15 digits can name prints its short form with %.15g (trailing
 * zeros dropped), and the few that need more get 16 or 17. Values do not
 * change, only their spelling; a model's real_digits (fewer digits on
 * purpose) stays in force, since a real is never written longer than it was.
 *
 * Pure functions: any process, any thread. Only jsonfmt_dumps allocates.
 */
#ifndef BATCHD_JSONFMT_H
#define BATCHD_JSONFMT_H

#include <stddef.h>

#include <jansson.h>

/* Room for any text jsonfmt_real writes, with its NUL. */
#define JSONFMT_REAL_MAX 32

/*
 * Writes the shortest text that reads back (strtod) to exactly `v`, as
 * jansson would spell a real: ".0" added when it would read as an integer,
 * the exponent without '+' or leading zeros ("1.7e-7", "1e+16" -> "1e16").
 * `buf` has at least JSONFMT_REAL_MAX bytes. Returns the length, or 0 (and
 * buf "") when v is not finite: JSON has no such number.
 */
size_t jsonfmt_real(double v, char *buf);

/*
 * Rewrites every real (a number token with '.', 'e' or 'E', outside
 * strings) of the JSON text text[0..len) in place with jsonfmt_real's
 * spelling when that is shorter; integers, strings and everything else are
 * copied as they are. The text need not end in a NUL and none is added.
 * Returns the new length (at most len). Text that is not JSON is not
 * rejected: whatever is not a real number token is left alone.
 */
size_t jsonfmt_shorten(char *text, size_t len);

/*
 * json_dumps(v, flags) with jsonfmt_shorten applied. Returns a new
 * NUL-terminated string (the caller frees it), or NULL when jansson fails
 * (out of memory, or a value that `flags` cannot encode).
 */
char *jsonfmt_dumps(const json_t *v, size_t flags);

#endif
