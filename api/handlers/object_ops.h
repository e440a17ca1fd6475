/*
 * object_ops: the /v1/objects operations of openapi.yaml (createObject,
 * listObjects, getObject, deleteObject) and the object store's lines of
 * /metrics. handlers.c puts them in its operations table; the calling
 * convention (begin / finish steps) is handlers.h's.
 *
 *   createObject  POST /v1/objects: the body is streamed into shared memory
 *                 (upload.h) as it arrives: 201 with the object and a
 *                 Location. Content-Length over --max-object-bytes is 413
 *                 before the body is read; another Content-Type is 415.
 *   listObjects   GET /v1/objects?limit=&after=: READY objects oldest first,
 *                 paged like listJobs (next_after), with the store's totals.
 *   getObject     GET /v1/objects/{id}: the object's description (pins:
 *                 running jobs that name it, and downloads in progress);
 *                 with ?download=true its bytes, as application/octet-stream
 *                 or, when Accept prefers application/x-npy, as a .npy file
 *                 (npy_header_write + the bytes). A download pins the object
 *                 while it is sent, so it cannot be freed under the reader.
 *   deleteObject  DELETE /v1/objects/{id}: 204, 404, or 409 while pinned.
 * The server has already refused a malformed id (400) and unknown query
 * parameters (400).
 *
 * Process and threads: api process, libmicrohttpd's pool threads; the
 * store (r->cfg->objects) is thread- and process-safe.
 * Ownership: what a handler allocates is freed before it returns, except
 * the upload (owned by the request: freed by api_req_free through
 * sink_free, which aborts an unfinished object) and a download's reader
 * state (owned by the response, which unpins the object when done).
 */
#ifndef BATCHD_API_OBJECT_OPS_H
#define BATCHD_API_OBJECT_OPS_H

#include <jansson.h>

#include "api/http/http.h"
#include "service/objects/objects.h"
#include "service/core/sbuf.h"

/* The query parameters each operation knows (NULL-terminated). */
extern const char *const api_create_object_query[];
extern const char *const api_list_objects_query[];
extern const char *const api_get_object_query[];

/* operationId createObject: begin (headers) and finish (body ended). */
enum MHD_Result api_create_object_begin(struct api_req *r);
enum MHD_Result api_create_object_finish(struct api_req *r);
/* operationId listObjects */
enum MHD_Result api_list_objects(struct api_req *r);
/* operationId getObject */
enum MHD_Result api_get_object(struct api_req *r);
/* operationId deleteObject */
enum MHD_Result api_delete_object(struct api_req *r);

/*
 * Returns the Object body of openapi.yaml for `info` (new reference), or
 * NULL when out of memory: {"id","dtype","shape","bytes","created_at",
 * "pins","in_use","origin"}.
 */
json_t *api_object_json(const struct objects_info *info);

/*
 * Appends the object gauges (batchd_objects, batchd_object_memory_used_bytes,
 * batchd_object_memory_capacity_bytes, batchd_object_max_bytes) in the
 * Prometheus text format to `out`. `o` NULL appends nothing. Returns 0, or
 * -ENOMEM / -E2BIG from the buffer.
 */
int api_objects_metrics(struct objects *o, struct sbuf *out);

#endif
