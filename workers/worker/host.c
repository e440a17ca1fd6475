/*
 * host.c: the model_host tables and the objects of the task in hand
 * (host.h says what it is for).
 *
 * The ids a task made are kept in one array: [0, item_start) belong to the
 * items that ended well, [item_start, n) to the item being run.
 */
#include "workers/worker/host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/objects/objects.h"
#include "workers/models/model_util.h"

#define HOST_ID_SIZE (MODEL_OBJECT_ID_LEN + 1)

static struct {
    struct objects *objects;
    uint32_t worker;
    char (*ids)[HOST_ID_SIZE];
    size_t n, cap, item_start;
} host;

static int host_unavailable(const char *what, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s is not available in this process: objects exist only in "
                 "workers (use it in init(), run() or reduce(), not in load())", what);
    return -ENOTSUP;
}

static int host_ref(const json_t *v, struct model_object *obj, char *err, size_t errlen)
{
    if (!json_is_object(v))
        return 0;
    json_t *id = json_object_get(v, "$object");
    if (!id)
        return 0;
    if (json_object_size(v) != 1) {
        snprintf(err, errlen,
                 "an object reference has exactly one key, \"$object\"; this one has %zu",
                 json_object_size(v));
        return -EINVAL;
    }
    if (!json_is_string(id)) {
        snprintf(err, errlen, "\"$object\" must be a string (an object id), not a JSON %s",
                 json_is_number(id) ? "number" : json_is_array(id) ? "array" :
                 json_is_object(id) ? "object" : json_is_boolean(id) ? "boolean" : "null");
        return -EINVAL;
    }
    const char *s = json_string_value(id);
    size_t len = json_string_length(id);
    if (len != MODEL_OBJECT_ID_LEN || strlen(s) != len || !objects_id_valid(s)) {
        snprintf(err, errlen,
                 "\"$object\": '%.*s' is not an object id (%d characters of 0-9 and a-z "
                 "without i, l, o, u)",
                 model_utf8_prefix(s, 64), s, MODEL_OBJECT_ID_LEN);
        return -EINVAL;
    }
    if (!host.objects)
        return host_unavailable("object_ref", err, errlen);
    struct objects_info info;
    if (objects_find(host.objects, s, &info) != 0) {
        snprintf(err, errlen, "object '%s' not found", s);
        return -ENOENT;
    }
    *obj = info.obj;
    return 1;
}

static int host_keep(const char *id)
{
    if (host.n == host.cap) {
        size_t cap = host.cap ? host.cap * 2 : 16;
        void *p = realloc(host.ids, cap * sizeof *host.ids);
        if (!p)
            return -ENOMEM;
        host.ids = p;
        host.cap = cap;
    }
    memcpy(host.ids[host.n++], id, HOST_ID_SIZE);
    return 0;
}

static int host_new(uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                    struct model_object *obj, void **data, char *err, size_t errlen)
{
    if (!host.objects)
        return host_unavailable("object_new", err, errlen);
    int rc = objects_alloc(host.objects, host.worker, dtype, ndim, shape, obj);
    if (rc == 0) {
        if (host_keep(obj->id) != 0) {
            objects_abort(host.objects, obj->id);
            snprintf(err, errlen, "out of memory keeping the object's id");
            return -ENOMEM;
        }
        *data = (void *)obj->data;
        return 0;
    }
    struct objects_stats st;
    objects_stats(host.objects, &st);
    /* only -EINVAL comes before the size is known to fit 64 bits */
    unsigned long long bytes = model_dtype_size(dtype);
    for (uint32_t d = 0; rc != -EINVAL && d < ndim; d++)
        bytes *= shape[d];
    switch (rc) {
    case -EINVAL:
        if (model_dtype_size(dtype) == 0)
            snprintf(err, errlen, "object_new: unknown dtype %u", dtype);
        else if (ndim == 0 || ndim > MODEL_OBJECT_MAX_DIMS)
            snprintf(err, errlen, "object_new: %u dimensions, expected 1 to %d", ndim,
                     MODEL_OBJECT_MAX_DIMS);
        else
            snprintf(err, errlen, "object_new: the shape's size overflows 64 bits");
        return rc;
    case -EFBIG:
        snprintf(err, errlen,
                 "object_new: %llu bytes is larger than the limit of %llu bytes "
                 "(--max-object-bytes)",
                 bytes, (unsigned long long)st.max_object_bytes);
        return rc;
    case -ENOSPC:
        snprintf(err, errlen,
                 "object_new: no room for %llu bytes in object memory (%llu of %llu bytes in "
                 "use, --object-memory)",
                 bytes, (unsigned long long)st.used_bytes,
                 (unsigned long long)st.capacity_bytes);
        return rc;
    case -EMFILE:
        /* model.h promises -EFBIG or -ENOSPC: a full table is no room too */
        snprintf(err, errlen, "object_new: the object table is full (%u objects, --max-objects)",
                 st.max_objects);
        return -ENOSPC;
    default:
        snprintf(err, errlen, "object_new: %s", strerror(-rc));
        return rc;
    }
}

/* One table for load() and init(): what it does depends on the process
 * (host.h says why). */
static const struct model_host host_table = {
    .abi_version = MODEL_ABI_VERSION,
    .size = sizeof(struct model_host),
    .object_ref = host_ref,
    .object_new = host_new,
};

const struct model_host *host_load(void) { return &host_table; }

const struct model_host *host_worker(void) { return &host_table; }

void host_worker_setup(struct objects *objects, uint32_t worker)
{
    free(host.ids);
    memset(&host, 0, sizeof host);
    host.objects = objects;
    host.worker = worker;
}

/* Aborts the objects [from, n). */
static void host_abort_from(size_t from)
{
    for (size_t i = from; i < host.n; i++)
        objects_abort(host.objects, host.ids[i]);
    host.n = from;
}

void host_item_end(bool ok)
{
    if (ok)
        host.item_start = host.n;
    else
        host_abort_from(host.item_start);
}

/* Calls fn(id, arg) for each {"$object": "ID"} in v, depth first. */
static void host_each_named(const json_t *v, void (*fn)(const char *id, void *arg), void *arg)
{
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
            host_each_named(e, fn, arg);
        return;
    }
    if (!json_is_object(v))
        return;
    /* any object with a "$object" id: convolve2d's and mlp's results add
     * a "shape" beside it */
    const json_t *id = json_object_get(v, "$object");
    if (json_is_string(id)) {
        fn(json_string_value(id), arg);
        return;
    }
    const char *key;
    const json_t *e;
    json_object_foreach((json_t *)v, key, e)
        host_each_named(e, fn, arg);
}

/* The ids [lo, hi) being sorted out: a kept one moves to the front of the
 * range (the store's order of commits does not matter). */
struct host_range {
    size_t lo, hi, kept;
};

static void host_keep_named(const char *id, void *arg)
{
    struct host_range *r = arg;
    for (size_t i = r->lo + r->kept; i < r->hi; i++) {
        if (strcmp(host.ids[i], id) != 0)
            continue;
        char tmp[HOST_ID_SIZE];
        memcpy(tmp, host.ids[i], HOST_ID_SIZE);
        memcpy(host.ids[i], host.ids[r->lo + r->kept], HOST_ID_SIZE);
        memcpy(host.ids[r->lo + r->kept], tmp, HOST_ID_SIZE);
        r->kept++;
        return;
    }
}

void host_batch_settle(json_t *const *outputs, size_t n)
{
    struct host_range r = { host.item_start, host.n, 0 };
    for (size_t i = 0; i < n && r.kept < r.hi - r.lo; i++)
        if (outputs[i])
            host_each_named(outputs[i], host_keep_named, &r);
    host_abort_from(r.lo + r.kept);
    host.item_start = host.n;
}

static void host_drop_one(const char *id, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < host.item_start; i++) {
        if (strcmp(host.ids[i], id) != 0)
            continue;
        objects_abort(host.objects, host.ids[i]);
        /* keep [0, item_start) kept and [item_start, n) the current item's */
        memmove(host.ids[i], host.ids[i + 1], (host.n - i - 1) * sizeof *host.ids);
        host.n--;
        host.item_start--;
        return;
    }
}

void host_drop_named(const json_t *out)
{
    if (host.item_start > 0 && out)
        host_each_named(out, host_drop_one, NULL);
}

uint32_t host_task_commit(void)
{
    host_abort_from(host.item_start);
    uint32_t n = 0;
    for (size_t i = 0; i < host.n; i++)
        n += objects_commit(host.objects, host.ids[i]) == 0;
    host.n = host.item_start = 0;
    return n;
}

int host_object_offset(const struct model_object *obj, uint64_t *off)
{
    if (!host.objects || !host.objects->base)
        return -ENOTSUP;
    const uint8_t *base = host.objects->base, *p = obj->data;
    if (p < base || (size_t)(p - base) > host.objects->size ||
        obj->bytes > host.objects->size - (size_t)(p - base))
        return -ERANGE;
    *off = (uint64_t)(p - base);
    return 0;
}
