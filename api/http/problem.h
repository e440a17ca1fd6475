/*
 * problem: RFC 9457 problem details, batchd's one error body.
 *
 * Every 4xx and 5xx the api answers is a problem+json object:
 *
 *   {"type":"urn:batchd:problem:<slug>","title":"...","status":N,
 *    "detail":"...","instance":"<request path>",
 *    "pointer":"/inputs/3","index":3,"line":1,"column":9,"limit":1000}
 *
 * with the extension members only when they were set. The kinds (slug,
 * status, title) are fixed by openapi.yaml; a handler picks a kind and says
 * what went wrong in the detail. The encoder never emits invalid JSON: bytes
 * that came from the client (a query key, a jansson error quoting the body,
 * the request path) and are not valid UTF-8 are replaced by U+FFFD.
 *
 * Process and threads: api process, any thread. A struct api_problem is a
 * plain value owned by whoever declared it (usually on the stack); there is
 * no shared state, so concurrent use of distinct structs is safe.
 * Ownership: no function here allocates except api_problem_encode(), which
 * appends to a caller-owned sbuf.
 */
#ifndef BATCHD_API_PROBLEM_H
#define BATCHD_API_PROBLEM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/core/sbuf.h"

/* The kinds of openapi.yaml; each has one slug, status and title. */
enum api_problem_kind {
    API_PROBLEM_INVALID_JSON = 0,      /* 400 */
    API_PROBLEM_INVALID_PARAMETER,     /* 400 */
    API_PROBLEM_NOT_FOUND,             /* 404 */
    API_PROBLEM_METHOD_NOT_ALLOWED,    /* 405 */
    API_PROBLEM_NOT_ACCEPTABLE,        /* 406 */
    API_PROBLEM_CONFLICT,              /* 409 */
    API_PROBLEM_TOO_LARGE,             /* 413 */
    API_PROBLEM_UNSUPPORTED_MEDIA_TYPE, /* 415 */
    API_PROBLEM_INVALID_JOB,           /* 422 */
    API_PROBLEM_UNKNOWN_MODEL,         /* 422 */
    API_PROBLEM_OVERLOADED,            /* 429 */
    API_PROBLEM_INTERNAL,              /* 500 */
    API_PROBLEM_NOT_READY,             /* 503 */
    API_PROBLEM_SHUTTING_DOWN,         /* 503 */
    API_PROBLEM_MODEL_UNAVAILABLE,     /* 503 */
    API_PROBLEM_UNAUTHORIZED,          /* 401, with WWW-Authenticate: Bearer */
    API_PROBLEM_INSUFFICIENT_STORAGE,  /* 507 */
    API_PROBLEM_INVALID_OBJECT,        /* 400: a malformed .npy upload (upload.h) */
    API_PROBLEM_KIND_COUNT
};

/* Fixed buffer sizes: a detail or pointer that would not fit is cut (the
 * detail) or replaced by its parent (the pointer); see the setters. */
#define API_PROBLEM_DETAIL_MAX 1024
#define API_PROBLEM_POINTER_MAX 256

/* Which optional members are present (api_problem.has). */
#define API_PROBLEM_HAS_POINTER 0x1u
#define API_PROBLEM_HAS_INDEX 0x2u
#define API_PROBLEM_HAS_LINE 0x4u
#define API_PROBLEM_HAS_COLUMN 0x8u
#define API_PROBLEM_HAS_LIMIT 0x10u

struct api_problem {
    enum api_problem_kind kind;
    unsigned has; /* API_PROBLEM_HAS_* */
    char detail[API_PROBLEM_DETAIL_MAX];
    char pointer[API_PROBLEM_POINTER_MAX];
    uint64_t index;
    uint64_t line;
    uint64_t column;
    uint64_t limit;
};

/* The slug ("invalid-json"), HTTP status and title of a kind. Static
 * strings; an out-of-range kind is treated as API_PROBLEM_INTERNAL. */
const char *api_problem_slug(enum api_problem_kind kind);
int api_problem_status(enum api_problem_kind kind);
const char *api_problem_title(enum api_problem_kind kind);

/* Resets *p to `kind` with the formatted detail and no optional member.
 * A detail longer than API_PROBLEM_DETAIL_MAX - 1 bytes is cut (at a UTF-8
 * character boundary) and ends in "...". Cannot fail. */
void api_problem_set(struct api_problem *p, enum api_problem_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with a va_list. */
void api_problem_vset(struct api_problem *p, enum api_problem_kind kind, const char *fmt,
                      va_list ap) __attribute__((format(printf, 3, 0)));

/* Sets the "pointer" member to the formatted JSON pointer (the caller
 * escapes; use this for pointers built from numbers such as "/inputs/%zu").
 * A pointer that does not fit leaves the member unset. */
void api_problem_set_pointer(struct api_problem *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets "pointer" to parent + "/" + key with key escaped per RFC 6901 (~ as
 * ~0, / as ~1). When the result does not fit, the pointer is `parent`
 * itself (still true, less precise). `parent` is "" for the document root. */
void api_problem_set_pointer_key(struct api_problem *p, const char *parent, const char *key);

/* Setters of the integer members. */
void api_problem_set_index(struct api_problem *p, uint64_t index);
void api_problem_set_position(struct api_problem *p, uint64_t line, uint64_t column);
void api_problem_set_limit(struct api_problem *p, uint64_t limit);

/*
 * Appends the problem+json body of *p, with "instance" = `instance` (the
 * request path; NULL is encoded as ""), to `out`.
 * Returns 0, or -ENOMEM / -E2BIG from the buffer, in which case `out` is
 * left as it was before the call.
 */
int api_problem_encode(const struct api_problem *p, const char *instance, struct sbuf *out);

/*
 * Appends `s` (n bytes) as a JSON string literal, replacing every byte
 * sequence that is not well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF) with U+FFFD and escaping controls.
 * Returns 0, -ENOMEM or -E2BIG; on failure `out` is unchanged.
 */
int api_json_string_sanitized(struct sbuf *out, const char *s, size_t n);

#endif
