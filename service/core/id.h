/*
 * id: batchd's ids, job ids and object ids alike: 128 random bits written
 * as 26 characters of RFC 4648 base32 in lowercase ("a-z", "2-7", no
 * padding). One alphabet for every id, so one pattern matches them all
 * (`[a-z2-7]{26}`: openapi.yaml, the README's sed lines) and an id never
 * holds a character that looks like another (0/o, 1/l, 8/b).
 *
 * Process: any (the api process makes both kinds). Thread-safe: no state
 * (getrandom). Ownership: the caller's buffers.
 */
#ifndef BATCHD_ID_H
#define BATCHD_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ID_LEN 26 /* characters, without the NUL: ceil(128 / 5) */

/* Writes a new id and its NUL into out (ID_LEN + 1 bytes). Never fails:
 * should the kernel's random source fail (it cannot once seeded), the
 * clock and the pid stand in, so ids stay unique. */
void id_new(char out[ID_LEN + 1]);

/* Writes the base32 of the n bytes of `in` into out: ceil(8n / 5)
 * characters and a NUL (out holds that + 1). The last character carries
 * the remaining bits, zero-filled, as RFC 4648 does without padding. */
void id_encode(const uint8_t *in, size_t n, char *out);

/* True when the len bytes of s have the form of an id: exactly ID_LEN
 * characters of the alphabet. Says nothing of whether it exists. */
bool id_valid(const char *s, size_t len);

#endif
