/*
 * upload: one POST /v1/objects body, streamed into a PENDING object of the
 * shared-memory object store (objects.h) as it arrives.
 *
 * Two bodies (openapi.yaml, createObject):
 *   raw  application/octet-stream: the bytes, dtype uint8, shape [n].
 *        With a Content-Length the object is allocated before the first
 *        byte arrives and every piece is copied straight into it; a chunked
 *        body (no length) is buffered, up to --max-object-bytes, and copied
 *        at the end.
 *   npy  application/x-npy: a .npy file (npy.h). Its preamble and header
 *        are buffered (at most NPY_HEADER_MAX bytes and the preamble);
 *        once parsed, the object is allocated from the header's dtype and
 *        shape and the data is copied straight into it. With a
 *        Content-Length, it must equal the header's size exactly.
 * Nothing is visible to anyone until api_upload_finish() commits; any
 * failure, and a client that goes away (api_upload_free() without a
 * finish), frees the PENDING object at once, so its memory is reusable.
 * (If the api process itself dies, the supervisor frees it:
 * objects_reclaim_owner(OBJECTS_OWNER_API).)
 *
 * The first failure is sticky: it is kept as a problem (problem.h) with its
 * status, and everything that arrives afterwards is counted and dropped,
 * because libmicrohttpd answers only once the body has ended.
 *   400 invalid-object  a malformed or unsupported .npy (npy.h says what and
 *                       where), a body that ends inside the header, a body
 *                       longer or shorter than its header says
 *   413 too-large       Content-Length, or the .npy's data, over
 *                       --max-object-bytes (limit); an absurd .npy header
 *   507 insufficient-storage  the object memory (-ENOSPC) or the object
 *                       table (-EMFILE) is full
 *
 * Process and threads: api process, the request's thread; a struct
 * api_upload belongs to one request. The store is thread- and
 * process-safe (objects.h).
 * Ownership: api_upload_new() returns a new upload the caller frees with
 * api_upload_free(); the store is borrowed and must outlive it.
 */
#ifndef BATCHD_API_UPLOAD_H
#define BATCHD_API_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/objects/npy.h"
#include "service/objects/objects.h"
#include "api/http/problem.h"
#include "service/core/sbuf.h"

enum api_upload_type {
    API_UPLOAD_RAW = 0, /* application/octet-stream */
    API_UPLOAD_NPY,     /* application/x-npy */
};

struct api_upload {
    struct objects *store;       /* borrowed */
    enum api_upload_type type;
    bool has_length;             /* a Content-Length was given */
    uint64_t length;             /* it, when has_length */
    uint64_t max_bytes;          /* --max-object-bytes */
    uint64_t received;           /* body bytes seen, kept or dropped */

    unsigned char *head;         /* npy: preamble and header as they arrive (new) */
    size_t head_len, head_need;
    bool head_done;
    struct npy_info npy;

    struct sbuf buf;             /* raw without a length: the body so far */

    bool allocated, committed;
    struct model_object obj;     /* the PENDING object, once allocated */
    uint64_t written;            /* bytes of it written */

    int err;                     /* 0, or the first failure (negative errno) */
    struct api_problem prob;     /* what to answer for it */
};

/*
 * Starts an upload of `type` into `store`: has_length and length are the
 * request's Content-Length, max_bytes the largest object accepted.
 * Checks what can be checked before the body is read: the length against
 * max_bytes (a .npy body may be longer by its header), and for a raw body
 * with a length allocates the object. Returns 0 with *out set (new), or a
 * negative errno with *prob set and *out NULL: -EFBIG (413), -ENOSPC or
 * -EMFILE (507), -ENOMEM (413: no memory for the upload right now).
 */
int api_upload_new(struct api_upload **out, struct objects *store, enum api_upload_type type,
                   bool has_length, uint64_t length, uint64_t max_bytes,
                   struct api_problem *prob);

/*
 * Takes the next n bytes of the body. Returns 0, or the first failure's
 * negative errno (also on every later call: the bytes are then counted and
 * dropped); api_upload_problem() says what to answer.
 */
int api_upload_feed(struct api_upload *u, const void *data, size_t n);

/*
 * The body has ended: checks that it was complete (a .npy's data, raw
 * bytes buffered) and commits the object. Returns 0 with *info describing
 * the READY object, or a negative errno (the object, if any, is freed) with
 * api_upload_problem() set. Call once.
 */
int api_upload_finish(struct api_upload *u, struct objects_info *info);

/* The problem of the first failure (borrowed from u); meaningful only
 * after a call returned an error. */
const struct api_problem *api_upload_problem(const struct api_upload *u);

/* Frees the upload; a PENDING object it made (not committed) is freed
 * too. NULL is fine. */
void api_upload_free(struct api_upload *u);

#endif
