/*
 * result_text: what batchd reads back out of a stored Result text.
 *
 * The engine writes every Result as compact JSON of exactly one of two
 * shapes (engine.c, job_put_result):
 *   {"index":N,"output":...}
 *   {"index":N,"error":{"message":"..."}}
 * so "did this item fail" is a look at the member after the index, not a
 * JSON parse: the error file of a million-result job (filter=errors) is
 * read at the store's speed.
 *
 * Process: api. Threads: pure functions, safe anywhere.
 * Ownership: buffers are borrowed.
 */
#ifndef BATCHD_RESULT_TEXT_H
#define BATCHD_RESULT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* True when text[0..len) is a Result of the error shape; false for an
 * output, and for anything that is not a Result of the engine's shapes. */
bool result_text_is_error(const char *text, size_t len);

/*
 * Keeps only the error Results of NDJSON text buf[0..len) (whole lines,
 * each ending in '\n'), moving them to the front in order. Returns the new
 * length. A last line without '\n' is judged like the others.
 */
size_t result_text_keep_errors(char *buf, size_t len);

#endif
