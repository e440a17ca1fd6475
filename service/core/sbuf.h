/*
 * sbuf: a growable byte buffer with a hard size cap.
 *
 * Used wherever a response body, a JSON fragment list or a request body is
 * assembled. Every sbuf has a cap (curl's rule: a buffer that client input can
 * grow has a hard limit), so a hostile request fails cleanly with -E2BIG
 * instead of eating the machine.
 *
 * Threads: an sbuf is owned by one thread at a time; no locking.
 * Ownership: the sbuf owns `data`; sbuf_steal() hands it to the caller.
 */
#ifndef BATCHD_SBUF_H
#define BATCHD_SBUF_H

#include <stdarg.h>
#include <stddef.h>

struct sbuf {
    char *data;   /* always NUL-terminated when non-NULL */
    size_t len;   /* bytes used, not counting the NUL */
    size_t cap;   /* bytes allocated */
    size_t limit; /* hard cap on len; 0 means SBUF_DEFAULT_LIMIT */
};

#define SBUF_DEFAULT_LIMIT ((size_t)1 << 30)
#define SBUF_INIT { NULL, 0, 0, 0 }

/* Sets the hard cap. Returns nothing; a later append past it fails. */
void sbuf_set_limit(struct sbuf *b, size_t limit);

/* Makes room for `extra` more bytes. Returns 0, -ENOMEM, or -E2BIG when
 * len + extra would pass the limit. On failure the buffer is unchanged. */
int sbuf_reserve(struct sbuf *b, size_t extra);

/* Appends bytes / a C string / a formatted string. Same returns as
 * sbuf_reserve; on failure the buffer is unchanged. */
int sbuf_append(struct sbuf *b, const void *p, size_t n);
int sbuf_puts(struct sbuf *b, const char *s);
int sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Appends `s` as a JSON string literal (quotes and escapes included). */
int sbuf_json_string(struct sbuf *b, const char *s);

/* Empties the buffer, keeping its memory. */
void sbuf_reset(struct sbuf *b);

/* Returns the data (new: caller frees with free()) and empties the buffer.
 * Never NULL for a buffer that was appended to; may be NULL otherwise. */
char *sbuf_steal(struct sbuf *b);

/* Frees the memory. The sbuf may be reused afterwards. */
void sbuf_free(struct sbuf *b);

#endif
