#include "api/handlers/upload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Longest .npy preamble plus header: what is buffered before the data. */
#define UPLOAD_HEAD_MAX (NPY_PREAMBLE_V2 + NPY_HEADER_MAX)

/* Records the first failure; later ones are consequences of it. */
static int upload_fail(struct api_upload *u, int rc, enum api_problem_kind kind,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int upload_fail(struct api_upload *u, int rc, enum api_problem_kind kind,
                       const char *fmt, ...)
{
    if (u->err)
        return u->err;
    va_list ap;
    va_start(ap, fmt);
    api_problem_vset(&u->prob, kind, fmt, ap);
    va_end(ap);
    u->err = rc;
    /* nothing of a failed upload is kept: its memory is free at once */
    if (u->allocated && !u->committed) {
        objects_abort(u->store, u->obj.id);
        u->allocated = false;
    }
    sbuf_free(&u->buf);
    free(u->head);
    u->head = NULL;
    return rc;
}

static int too_large(struct api_upload *u, uint64_t bytes, const char *what)
{
    upload_fail(u, -EFBIG, API_PROBLEM_TOO_LARGE,
                "%s %llu bytes; an object holds at most %llu (--max-object-bytes)", what,
                (unsigned long long)bytes, (unsigned long long)u->max_bytes);
    api_problem_set_limit(&u->prob, u->max_bytes);
    return u->err;
}

/* objects_alloc for the upload, its errors turned into problems. */
static int upload_alloc(struct api_upload *u, uint32_t dtype, uint32_t ndim,
                        const uint64_t *shape, uint64_t bytes)
{
    /* uninit: every byte is written before api_upload_finish commits
     * (it checks written == bytes), so pages reused from the pool need no
     * zeroing first (objects.h) */
    int rc = objects_alloc_uninit(u->store, OBJECTS_OWNER_API, dtype, ndim, shape, &u->obj);
    if (rc == 0) {
        u->allocated = true;
        return 0;
    }
    struct objects_stats st;
    objects_stats(u->store, &st);
    switch (rc) {
    case -EFBIG:
        return too_large(u, bytes, "the object would be");
    case -ENOSPC:
        return upload_fail(u, rc, API_PROBLEM_INSUFFICIENT_STORAGE,
                           "the object memory has no room for %llu more bytes (%llu of %llu "
                           "bytes in use, --object-memory); delete objects and retry",
                           (unsigned long long)bytes, (unsigned long long)st.used_bytes,
                           (unsigned long long)st.capacity_bytes);
    case -EMFILE:
        return upload_fail(u, rc, API_PROBLEM_INSUFFICIENT_STORAGE,
                           "the object table is full (%u objects, --max-objects); delete "
                           "objects and retry",
                           (unsigned)st.max_objects);
    default:
        return upload_fail(u, rc, API_PROBLEM_INVALID_OBJECT,
                           "the object cannot be made: %s", strerror(-rc));
    }
}

int api_upload_new(struct api_upload **out, struct objects *store, enum api_upload_type type,
                   bool has_length, uint64_t length, uint64_t max_bytes,
                   struct api_problem *prob)
{
    *out = NULL;
    struct api_upload *u = calloc(1, sizeof *u);
    if (!u) {
        api_problem_set(prob, API_PROBLEM_TOO_LARGE,
                        "the service has no memory for an upload right now");
        return -ENOMEM;
    }
    u->store = store;
    u->type = type;
    u->has_length = has_length;
    u->length = length;
    u->max_bytes = max_bytes;
    sbuf_set_limit(&u->buf, max_bytes > SIZE_MAX ? SIZE_MAX : (size_t)max_bytes);
    int rc = 0;
    if (has_length) {
        /* a .npy body carries its header on top of the data */
        uint64_t slack = type == API_UPLOAD_NPY ? UPLOAD_HEAD_MAX : 0;
        if (length > max_bytes && length - max_bytes > slack)
            rc = too_large(u, length, "the body is");
        else if (type == API_UPLOAD_RAW)
            rc = upload_alloc(u, MODEL_DTYPE_U8, 1, &length, length);
    }
    if (rc) {
        *prob = u->prob;
        api_upload_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

/* Copies data into the allocated object; more than it holds is an error. */
static int upload_write(struct api_upload *u, const unsigned char *p, size_t n)
{
    if (n > u->obj.bytes - u->written) {
        if (u->type == API_UPLOAD_NPY)
            return upload_fail(u, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT,
                               "the body goes on past the %llu data bytes its npy header "
                               "describes (dtype %s, %u dimensions)",
                               (unsigned long long)u->obj.bytes, model_dtype_name(u->obj.dtype),
                               (unsigned)u->obj.ndim);
        return upload_fail(u, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT,
                           "the body is longer than its Content-Length");
    }
    memcpy((unsigned char *)u->obj.data + u->written, p, n);
    u->written += n;
    return 0;
}

/* The npy header is complete in u->head: checks it against the limits and
 * the Content-Length, allocates the object. */
static int upload_npy_ready(struct api_upload *u)
{
    const struct npy_info *h = &u->npy;
    if (h->data_bytes > u->max_bytes)
        return too_large(u, h->data_bytes, "the npy header describes");
    if (u->has_length && (u->length < h->data_offset ||
                          u->length - h->data_offset != h->data_bytes))
        return upload_fail(u, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT,
                           "Content-Length is %llu bytes, but the npy header describes "
                           "%llu (%llu of header and %llu of data)",
                           (unsigned long long)u->length,
                           (unsigned long long)(h->data_offset + h->data_bytes),
                           (unsigned long long)h->data_offset,
                           (unsigned long long)h->data_bytes);
    free(u->head);
    u->head = NULL;
    return upload_alloc(u, h->dtype, h->ndim, h->shape, h->data_bytes);
}

/* Feeds an npy body: buffers the header, then writes the data. */
static int upload_npy_feed(struct api_upload *u, const unsigned char *p, size_t n)
{
    while (!u->head_done && n > 0) {
        if (!u->head) {
            u->head = malloc(UPLOAD_HEAD_MAX);
            if (!u->head)
                return upload_fail(u, -ENOMEM, API_PROBLEM_TOO_LARGE,
                                   "the service has no memory for an upload right now");
            u->head_need = NPY_MAGIC_LEN;
        }
        size_t take = u->head_need - u->head_len;
        if (take > n)
            take = n;
        memcpy(u->head + u->head_len, p, take);
        u->head_len += take;
        p += take;
        n -= take;
        if (u->head_len < u->head_need)
            return 0;
        char err[API_PROBLEM_DETAIL_MAX];
        size_t need = 0;
        int rc = npy_parse(u->head, u->head_len, &u->npy, &need, err, sizeof err);
        if (rc == -EAGAIN) {
            u->head_need = need; /* at most UPLOAD_HEAD_MAX: npy_parse's bound */
            continue;
        }
        if (rc == -E2BIG || rc == -EOVERFLOW) {
            upload_fail(u, rc, API_PROBLEM_TOO_LARGE, "%s", err);
            api_problem_set_limit(&u->prob, rc == -E2BIG ? NPY_HEADER_MAX : u->max_bytes);
            return u->err;
        }
        if (rc)
            return upload_fail(u, rc, API_PROBLEM_INVALID_OBJECT, "%s", err);
        u->head_done = true;
        rc = upload_npy_ready(u);
        if (rc)
            return rc;
    }
    return n ? upload_write(u, p, n) : 0;
}

int api_upload_feed(struct api_upload *u, const void *data, size_t n)
{
    u->received += n;
    if (u->err)
        return u->err;
    if (u->type == API_UPLOAD_NPY)
        return upload_npy_feed(u, data, n);
    if (u->allocated)
        return upload_write(u, data, n);
    int rc = sbuf_append(&u->buf, data, n);
    if (rc == -E2BIG)
        return too_large(u, u->received, "the body is at least");
    if (rc)
        return upload_fail(u, rc, API_PROBLEM_TOO_LARGE,
                           "the service has no memory for a body this large right now");
    return 0;
}

int api_upload_finish(struct api_upload *u, struct objects_info *info)
{
    if (u->err)
        return u->err;
    if (u->type == API_UPLOAD_NPY && !u->head_done) {
        if (u->received == 0)
            return upload_fail(u, -EINVAL, API_PROBLEM_INVALID_OBJECT,
                               "the body is empty: an application/x-npy body is a .npy file");
        return upload_fail(u, -EINVAL, API_PROBLEM_INVALID_OBJECT,
                           "the body ends inside its npy header (%llu bytes, the header needs "
                           "%zu)",
                           (unsigned long long)u->received, u->head_need);
    }
    if (u->type == API_UPLOAD_RAW && !u->allocated) {
        /* a chunked body: now its length is known */
        uint64_t len = u->buf.len;
        int rc = upload_alloc(u, MODEL_DTYPE_U8, 1, &len, len);
        if (rc)
            return rc;
        if (len)
            upload_write(u, (const unsigned char *)u->buf.data, (size_t)len);
        sbuf_free(&u->buf);
    }
    if (u->written != u->obj.bytes) {
        /* libmicrohttpd delimits a body by its Content-Length, so only a
         * .npy body can end early */
        return upload_fail(u, -EMSGSIZE, API_PROBLEM_INVALID_OBJECT,
                           "the body ends after %llu of the %llu data bytes its npy header "
                           "describes",
                           (unsigned long long)u->written, (unsigned long long)u->obj.bytes);
    }
    int rc = objects_commit(u->store, u->obj.id);
    if (rc)
        return upload_fail(u, rc, API_PROBLEM_INTERNAL, "committing the object failed: %s",
                           strerror(-rc));
    u->committed = true;
    rc = objects_find(u->store, u->obj.id, info);
    if (rc) {
        /* deleted already by another request: what was made is still
         * what this request made */
        memset(info, 0, sizeof *info);
        info->obj = u->obj;
        info->obj.data = NULL;
    }
    return 0;
}

const struct api_problem *api_upload_problem(const struct api_upload *u) { return &u->prob; }

void api_upload_free(struct api_upload *u)
{
    if (!u)
        return;
    if (u->allocated && !u->committed)
        objects_abort(u->store, u->obj.id);
    sbuf_free(&u->buf);
    free(u->head);
    free(u);
}
