#include "api/handlers/object_ops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "service/core/log.h"
#include "service/core/rfc3339.h"
#include "service/objects/npy.h"
#include "api/http/query.h"
#include "api/handlers/upload.h"

/* Limits of listObjects' query parameters (openapi.yaml). */
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

/* Bytes libmicrohttpd asks a download for at a time. */
#define DOWNLOAD_BLOCK_BYTES (256 * 1024)

/* A failed upload's body is read and dropped until it ends (libmicrohttpd
 * answers only then); past this much more than the largest object, the
 * connection is closed instead. */
#define UPLOAD_DRAIN_SLACK ((uint64_t)64 << 20)

const char *const api_create_object_query[] = { NULL };
const char *const api_list_objects_query[] = { "limit", "after", NULL };
const char *const api_get_object_query[] = { "download", NULL };

/* ------------------------------------------------------------ helpers */

static struct objects *store_of(struct api_req *r) { return r->objects; }

static enum MHD_Result no_store(struct api_req *r)
{
    return api_send_problemf(r, API_PROBLEM_INTERNAL, "the object store is not available");
}

static enum MHD_Result not_found_object(struct api_req *r, const char *id)
{
    return api_send_problemf(r, API_PROBLEM_NOT_FOUND, "no object %s", id);
}

/* RFC 3339 UTC with milliseconds, as every timestamp of the API. */
static void format_time(uint64_t ns, char *buf, size_t len) { rfc3339_format(ns, buf, len); }

json_t *api_object_json(const struct objects_info *info)
{
    const struct model_object *o = &info->obj;
    json_t *shape = json_array();
    for (uint32_t i = 0; shape && i < o->ndim; i++)
        if (json_array_append_new(shape, json_integer((json_int_t)o->shape[i])) != 0) {
            json_decref(shape);
            shape = NULL;
        }
    if (!shape)
        return NULL;
    char created[40];
    format_time(info->created_ns, created, sizeof created);
    const char *dtype = model_dtype_name(o->dtype);
    /* json_pack steals shape ("o"), also when it fails */
    return json_pack("{s:s, s:s, s:o, s:I, s:s, s:I, s:b, s:s}", "id", o->id, "dtype",
                     dtype ? dtype : "unknown", "shape", shape, "bytes", (json_int_t)o->bytes,
                     "created_at", created, "pins", (json_int_t)info->pins, "in_use",
                     info->pins > 0, "origin", info->made_by_worker ? "model" : "upload");
}

int api_objects_metrics(struct objects *o, struct sbuf *out)
{
    if (!o)
        return 0;
    struct objects_stats st;
    objects_stats(o, &st);
    return sbuf_printf(out,
                       "# HELP batchd_objects Objects in the object store (ready to use).\n"
                       "# TYPE batchd_objects gauge\n"
                       "batchd_objects %" PRIu32 "\n"
                       "# HELP batchd_object_memory_used_bytes Object memory in use (whole "
                       "pages, pending uploads included).\n"
                       "# TYPE batchd_object_memory_used_bytes gauge\n"
                       "batchd_object_memory_used_bytes %" PRIu64 "\n"
                       "# HELP batchd_object_memory_capacity_bytes Object memory in all "
                       "(--object-memory).\n"
                       "# TYPE batchd_object_memory_capacity_bytes gauge\n"
                       "batchd_object_memory_capacity_bytes %" PRIu64 "\n"
                       "# HELP batchd_objects_limit Most objects kept at once (--max-objects).\n"
                       "# TYPE batchd_objects_limit gauge\n"
                       "batchd_objects_limit %" PRIu32 "\n"
                       "# HELP batchd_object_pool_bytes Freed object memory kept resident for "
                       "the next objects (no page faults when reused).\n"
                       "# TYPE batchd_object_pool_bytes gauge\n"
                       "batchd_object_pool_bytes %" PRIu64 "\n"
                       "# HELP batchd_object_pool_limit_bytes Most freed object memory the "
                       "pool keeps.\n"
                       "# TYPE batchd_object_pool_limit_bytes gauge\n"
                       "batchd_object_pool_limit_bytes %" PRIu64 "\n"
                       "# HELP batchd_object_pool_reused_bytes_total Object memory allocated "
                       "from the pool.\n"
                       "# TYPE batchd_object_pool_reused_bytes_total counter\n"
                       "batchd_object_pool_reused_bytes_total %" PRIu64 "\n"
                       "# HELP batchd_object_pool_released_bytes_total Freed object memory "
                       "given back to the kernel (the pool was full).\n"
                       "# TYPE batchd_object_pool_released_bytes_total counter\n"
                       "batchd_object_pool_released_bytes_total %" PRIu64 "\n",
                       st.count, st.used_bytes, st.capacity_bytes, st.max_objects,
                       st.pool_bytes, st.pool_limit_bytes, st.pool_reused_bytes,
                       st.pool_released_bytes);
}

/* ------------------------------------------------------------ createObject */

static enum MHD_Result upload_sink_feed(void *sink, const char *data, size_t n)
{
    struct api_upload *u = sink;
    if (api_upload_feed(u, data, n) != 0 && u->received > u->max_bytes + UPLOAD_DRAIN_SLACK)
        return MHD_NO;
    return MHD_YES;
}

static void upload_sink_free(void *sink) { api_upload_free(sink); }

enum MHD_Result api_create_object_begin(struct api_req *r)
{
    struct objects *store = store_of(r);
    if (!store)
        return no_store(r);
    const char *ct = api_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool npy = false;
    int rc = api_object_type_parse(ct, &npy);
    if (rc == -ENOENT)
        return api_send_problemf(r, API_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                 "a Content-Type is required: application/octet-stream (raw "
                                 "bytes) or application/x-npy (a .npy file)");
    if (rc)
        return api_send_problemf(r, API_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                 "Content-Type %s is not accepted: use application/octet-stream "
                                 "(raw bytes) or application/x-npy (a .npy file)",
                                 ct);
    if (atomic_load_explicit(r->stopping, memory_order_relaxed))
        return api_send_problemf(r, API_PROBLEM_SHUTTING_DOWN,
                                 "the service is shutting down and takes no new objects");
    const char *cl = api_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t length = 0;
    /* libmicrohttpd has already refused a malformed Content-Length; a
     * chunked body has none */
    bool has_length = cl && api_parse_u64(cl, 0, UINT64_MAX, &length) == 0;
    struct api_problem p;
    struct api_upload *u;
    rc = api_upload_new(&u, store, npy ? API_UPLOAD_NPY : API_UPLOAD_RAW, has_length, length,
                        r->cfg->max_object_bytes, &p);
    if (rc)
        return api_send_problem(r, &p);
    r->sink = u;
    r->sink_feed = upload_sink_feed;
    r->sink_free = upload_sink_free;
    r->wants_body = true;
    return MHD_YES;
}

enum MHD_Result api_create_object_finish(struct api_req *r)
{
    struct api_upload *u = r->sink;
    struct objects_info info;
    if (api_upload_finish(u, &info) != 0)
        return api_send_problem(r, api_upload_problem(u));
    json_t *body = api_object_json(&info);
    struct MHD_Response *resp = body ? api_response_json(body) : NULL;
    json_decref(body);
    char location[sizeof "/v1/objects/" + MODEL_OBJECT_ID_LEN];
    snprintf(location, sizeof location, "/v1/objects/%s", info.obj.id);
    if (!resp) {
        /* the object exists: the client still learns where */
        log_warn("request %s: object %s made, but no memory for its body", r->request_id,
                 info.obj.id);
        resp = api_response_take(NULL, 0, NULL);
    }
    if (resp && MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    log_info("object %s uploaded: %s, %llu bytes, request %s", info.obj.id,
             model_dtype_name(info.obj.dtype), (unsigned long long)info.obj.bytes,
             r->request_id);
    return api_send(r, MHD_HTTP_CREATED, resp);
}

/* ------------------------------------------------------------ listObjects */

enum MHD_Result api_list_objects(struct api_req *r)
{
    struct objects *store = store_of(r);
    if (!store)
        return no_store(r);
    uint64_t limit = LIST_LIMIT_DEFAULT;
    const char *lv = api_query_get(&r->query, "limit");
    if (lv && api_parse_u64(lv, 1, LIST_LIMIT_MAX, &limit) != 0)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter limit=%s: must be a decimal integer from 1 "
                                 "to %d",
                                 lv, LIST_LIMIT_MAX);
    const char *after = api_query_get(&r->query, "after");
    if (after && !objects_id_valid(after))
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter after=%s: must be an object id", after);
    struct objects_info *infos = calloc((size_t)limit, sizeof *infos);
    if (!infos)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory listing objects");
    bool more = false;
    size_t n = objects_list(store, after, infos, (size_t)limit, &more);
    struct objects_stats st;
    objects_stats(store, &st);
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        if (json_array_append_new(list, api_object_json(&infos[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *next = more && n > 0 ? json_string(infos[n - 1].obj.id) : json_null();
    free(infos);
    json_t *body = list && next
                       ? json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "objects", list,
                                   "next_after", next, "count", (json_int_t)st.count,
                                   "used_bytes", (json_int_t)st.used_bytes, "capacity_bytes",
                                   (json_int_t)st.capacity_bytes, "max_object_bytes",
                                   (json_int_t)st.max_object_bytes, "max_objects",
                                   (json_int_t)st.max_objects)
                       : NULL;
    if (!body) {
        /* json_pack took them; without it nobody did */
        if (!(list && next)) {
            json_decref(list);
            json_decref(next);
        }
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory listing objects");
    }
    enum MHD_Result ret = api_send_json(r, MHD_HTTP_OK, body);
    json_decref(body);
    return ret;
}

/* ------------------------------------------------------------ getObject */

/* A download in progress: the object is pinned until the response is freed. */
struct download {
    struct objects *store;
    char id[MODEL_OBJECT_ID_LEN + 1];
    const unsigned char *data;
    uint64_t bytes;
    unsigned char head[NPY_WRITE_MAX]; /* the .npy header, when one is sent */
    size_t head_len;
};

static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct download *d = cls;
    size_t n = 0;
    if (pos < d->head_len) {
        n = d->head_len - (size_t)pos;
        if (n > max)
            n = max;
        memcpy(buf, d->head + pos, n);
        pos += n;
    }
    uint64_t dpos = pos - d->head_len;
    if (n < max && dpos < d->bytes) {
        uint64_t m = d->bytes - dpos;
        if (m > max - n)
            m = max - n;
        memcpy(buf + n, d->data + dpos, (size_t)m);
        n += (size_t)m;
    }
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)n;
}

static void download_free(void *cls)
{
    struct download *d = cls;
    objects_unpin(d->store, d->id);
    free(d);
}

static enum MHD_Result download_start(struct api_req *r, struct objects *store)
{
    struct download *d = calloc(1, sizeof *d);
    if (!d)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory starting a download");
    d->store = store;
    memcpy(d->id, r->match.id, sizeof d->id);
    /* Pinned first, then looked at: a delete between the two cannot free
     * what is being read (ids are never reused, so the pin is this one's). */
    if (objects_pin(store, d->id) != 0) {
        free(d);
        return not_found_object(r, r->match.id);
    }
    struct objects_info info;
    if (objects_find(store, d->id, &info) != 0) {
        download_free(d);
        return not_found_object(r, r->match.id);
    }
    d->data = info.obj.data;
    d->bytes = info.obj.bytes;
    bool npy = api_accept_wants_npy(api_req_header(r, MHD_HTTP_HEADER_ACCEPT));
    if (npy) {
        int n = npy_header_write(info.obj.dtype, info.obj.ndim, info.obj.shape, d->head,
                                 sizeof d->head);
        if (n < 0) {
            download_free(d);
            return api_send_problemf(r, API_PROBLEM_INTERNAL, "writing the npy header failed: %s",
                                     strerror(-n));
        }
        d->head_len = (size_t)n;
    }
    /* The bytes go from the object's pages to the socket with no copy of
     * ours (sendmsg over an I/O vector: the .npy header, then the object
     * in place). The pin holds the pages until libmicrohttpd frees the
     * response (download_free). An empty object keeps the reader path:
     * an I/O vector of nothing is not worth a special case in the library. */
    struct MHD_IoVec iov[2];
    unsigned iovcnt = 0;
    if (d->head_len)
        iov[iovcnt++] = (struct MHD_IoVec){ d->head, d->head_len };
    if (d->bytes)
        iov[iovcnt++] = (struct MHD_IoVec){ d->data, (size_t)d->bytes };
    struct MHD_Response *resp =
        iovcnt ? MHD_create_response_from_iovec(iov, iovcnt, download_free, d)
               : MHD_create_response_from_callback(d->head_len + d->bytes, DOWNLOAD_BLOCK_BYTES,
                                                   download_read, d, download_free);
    if (!resp) {
        download_free(d);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory starting a download");
    }
    char disposition[96], shape[MODEL_OBJECT_MAX_DIMS * 21 + 1];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.%s\"", info.obj.id,
             npy ? "npy" : "bin");
    size_t used = 0;
    shape[0] = '\0';
    for (uint32_t i = 0; i < info.obj.ndim; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%llu", i ? "," : "",
                                 (unsigned long long)info.obj.shape[i]);
    const char *dtype = model_dtype_name(info.obj.dtype);
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                npy ? "application/x-npy" : "application/octet-stream") !=
            MHD_YES ||
        MHD_add_response_header(resp, "Content-Disposition", disposition) != MHD_YES ||
        MHD_add_response_header(resp, "X-Object-Dtype", dtype ? dtype : "unknown") != MHD_YES ||
        MHD_add_response_header(resp, "X-Object-Shape", shape) != MHD_YES ||
        MHD_add_response_header(resp, "Vary", "Accept") != MHD_YES) {
        MHD_destroy_response(resp);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory starting a download");
    }
    return api_send(r, MHD_HTTP_OK, resp);
}

enum MHD_Result api_get_object(struct api_req *r)
{
    struct objects *store = store_of(r);
    if (!store)
        return no_store(r);
    bool download = false;
    const char *dv = api_query_get(&r->query, "download");
    if (dv && api_parse_bool(dv, &download) != 0)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter download=%s: must be true or false", dv);
    if (download)
        return download_start(r, store);
    struct objects_info info;
    if (objects_find(store, r->match.id, &info) != 0)
        return not_found_object(r, r->match.id);
    json_t *body = api_object_json(&info);
    if (!body)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    enum MHD_Result ret = api_send_json(r, MHD_HTTP_OK, body);
    json_decref(body);
    return ret;
}

/* ------------------------------------------------------------ deleteObject */

enum MHD_Result api_delete_object(struct api_req *r)
{
    struct objects *store = store_of(r);
    if (!store)
        return no_store(r);
    int rc = objects_delete(store, r->match.id);
    if (rc == 0) {
        log_info("object %s deleted, request %s", r->match.id, r->request_id);
        return api_send(r, MHD_HTTP_NO_CONTENT, api_response_take(NULL, 0, NULL));
    }
    if (rc == -ENOENT)
        return not_found_object(r, r->match.id);
    if (rc == -EBUSY) {
        struct objects_info info;
        unsigned pins = objects_find(store, r->match.id, &info) == 0 ? info.pins : 0;
        return api_send_problemf(r, API_PROBLEM_CONFLICT,
                                 "object %s is in use (%u pin%s: running jobs that name it, or "
                                 "downloads in progress); delete it when they have finished",
                                 r->match.id, pins, pins == 1 ? "" : "s");
    }
    return api_send_problemf(r, API_PROBLEM_INTERNAL, "deleting object %s failed: %s",
                             r->match.id, strerror(-rc));
}
