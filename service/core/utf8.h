/*
 * utf8: well-formed UTF-8, byte by byte.
 *
 * Text that batchd puts into JSON it writes itself (problem details that
 * quote a client's bytes, a model's error messages) must be UTF-8, or the
 * document is not JSON. Both places repair text with this one check.
 *
 * Pure functions: any process, any thread. Nothing is allocated.
 */
#ifndef BATCHD_UTF8_H
#define BATCHD_UTF8_H

#include <stddef.h>

/*
 * Returns the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..n), or 0 when none starts there: RFC 3629's table, so overlong
 * forms, surrogates, code points past U+10FFFF and sequences cut short by n
 * (or by a NUL) are all 0. n must be at least 1.
 */
size_t utf8_seq_len(const unsigned char *s, size_t n);

#endif
