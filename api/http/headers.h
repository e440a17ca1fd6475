/*
 * headers: the request headers the api interprets, parsed without a server.
 *
 *   Content-Type   which body parser a POST /v1/jobs uses (JSON or NDJSON),
 *                  or 415; a charset parameter other than UTF-8 is refused
 *                  because JSON text is UTF-8 (RFC 8259 8.1).
 *   Content-Type   also: raw bytes or .npy for a POST /v1/objects body.
 *   Accept         whether GET /v1/jobs/{id}/results streams NDJSON, and
 *                  whether an object's download is .npy.
 *   If-None-Match  whether a polling client already has the job's ETag.
 *   X-Request-Id   echoed when sane, else generated.
 *
 * Everything here is a pure function of its arguments (api_request_id_new
 * reads the kernel's random source), so it is unit-tested without HTTP.
 *
 * Process and threads: api process, any thread; no shared state.
 * Ownership: inputs are borrowed; outputs go to caller buffers.
 */
#ifndef BATCHD_API_HEADERS_H
#define BATCHD_API_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "service/core/id.h"

enum api_body_type {
    API_BODY_JSON = 0, /* application/json */
    API_BODY_NDJSON,   /* application/x-ndjson */
};

/*
 * Classifies a Content-Type value (media type names are case-insensitive;
 * parameters are allowed, and a "charset" parameter must be utf-8, quoted
 * or not, any case). Returns 0 and sets *type; -ENOENT when the header is
 * absent (NULL) or empty; -ENOTSUP for another media type or charset, or a
 * value that does not parse.
 */
int api_content_type_parse(const char *value, enum api_body_type *type);

/*
 * True when an Accept value asks for the NDJSON stream: it names
 * application/x-ndjson with q > 0, and application/json (if named) with no
 * higher q. Wildcards alone (* / *, application/ *) do not ask for a
 * stream: the page is the default. NULL → false.
 */
bool api_accept_wants_ndjson(const char *accept);

/*
 * Classifies the Content-Type of a POST /v1/objects body: *npy = false for
 * application/octet-stream, true for application/x-npy (case-insensitive,
 * parameters allowed and ignored). Returns 0; -ENOENT when absent or
 * empty; -ENOTSUP for another media type or a value that does not parse.
 */
int api_object_type_parse(const char *value, bool *npy);

/*
 * True when an Accept value asks for an object's download as .npy: it
 * names application/x-npy with q > 0, and application/octet-stream (if
 * named) with no higher q. Wildcards alone get the raw bytes. NULL → false.
 */
bool api_accept_wants_npy(const char *accept);

/*
 * True when an If-None-Match value matches `etag` (a quoted entity tag):
 * "*" matches, as does any listed tag equal to it under the weak comparison
 * RFC 9110 13.1.2 prescribes for If-None-Match (a W/ prefix is ignored on
 * either side). NULL → false.
 */
bool api_etag_matches(const char *if_none_match, const char *etag);

/* Longest X-Request-Id echoed. */
#define API_REQUEST_ID_MAX 128

/* True when `id` may be echoed: 1..API_REQUEST_ID_MAX characters of
 * [A-Za-z0-9._-] (nothing that could split a header or a log line). */
bool api_request_id_valid(const char *id);

/* Longest Idempotency-Key accepted. */
#define API_IDEMPOTENCY_KEY_MAX 128

/* True when `key` is 1..API_IDEMPOTENCY_KEY_MAX visible ASCII characters
 * (0x21..0x7e): a UUID, a hash, an order number all fit; nothing that could
 * split a log line or hide in trailing spaces. */
bool api_idempotency_key_valid(const char *key);

/*
 * True when `gap`, the `len` bytes libmicrohttpd left between the end of a
 * header's value (as its C string ends) and the start of the next line, is
 * only the line's end: libmicrohttpd parses the head in place and writes a
 * NUL over each CR and LF, so a clean gap is 1 or 2 NUL bytes (LF or CRLF),
 * or, after the last header (`last`), 2 to 4 (the empty line's end too).
 * Anything else means the value held a NUL byte and libmicrohttpd cut it
 * there ("Bearer TOKEN\0junk" reads as "Bearer TOKEN"): such a field must
 * be refused (RFC 9110 5.5). One case cannot be told apart: a NUL just
 * before a bare LF looks like CRLF, and the value is then the same.
 */
bool api_header_gap_clean(const char *gap, size_t len, bool last);

/* Writes a new request id and its NUL to out[ID_LEN + 1]: an id of the
 * one form every batchd id has (service/core/id.h: 26 characters of
 * lowercase base32), so logs and answers need one pattern. Never fails. */
void api_request_id_new(char out[ID_LEN + 1]);

#endif
