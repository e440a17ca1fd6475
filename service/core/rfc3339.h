/*
 * rfc3339: the one spelling of a time in batchd's API and logs: RFC 3339
 * in UTC with milliseconds, "2026-11-22T07:03:32.262Z" (openapi.yaml's
 * date-time fields, the JSON logs' "ts").
 *
 * Process: any. Thread-safe (gmtime_r, no state). Ownership: the caller's
 * buffer.
 */
#ifndef BATCHD_RFC3339_H
#define BATCHD_RFC3339_H

#include <stddef.h>
#include <stdint.h>

/* Characters of a formatted time, without the NUL (years 0000-9999). */
#define RFC3339_LEN 24

/* Writes the time `ns` nanoseconds after the epoch (CLOCK_REALTIME) into
 * buf (len bytes; RFC3339_LEN + 1 holds it whole), always NUL-terminated;
 * a shorter buffer gets a cut string. Never fails. */
void rfc3339_format(uint64_t ns, char *buf, size_t len);

#endif
