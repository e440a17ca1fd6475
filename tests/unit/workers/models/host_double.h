/*
 * host_double.h: a test-only struct model_host for the models' unit tests:
 * objects are malloc'ed arrays registered by the test (th_add), not the
 * shared-memory store (service/objects.c has its own tests, and the models
 * reach objects only through this table). object_ref is strict (a
 * reference is exactly {"$object": "ID"}, as in workers/host.c);
 * object_new fails with th_new_fails when the test sets it.
 *
 * Included by one test file each (static state). Ownership: th_reset frees
 * every registered array.
 */
#ifndef BATCHD_TEST_HOST_DOUBLE_H
#define BATCHD_TEST_HOST_DOUBLE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <batchd/model.h>

#define TH_MAX 64

static struct model_object th_objs[TH_MAX];
static size_t th_n;
static int th_new_fails; /* object_new returns this when nonzero */

static inline void th_reset(void)
{
    for (size_t i = 0; i < th_n; i++)
        free((void *)th_objs[i].data);
    th_n = 0;
    th_new_fails = 0;
}

/* Registers an object; `data` (may be NULL) is copied. Returns its index. */
static inline size_t th_add(uint32_t dtype, uint32_t ndim, const uint64_t *shape, const void *data)
{
    assert_true(th_n < TH_MAX);
    struct model_object *o = &th_objs[th_n];
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "testobject%016zu", th_n);
    o->dtype = dtype;
    o->ndim = ndim;
    uint64_t n = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        o->shape[d] = shape[d];
        n *= shape[d];
    }
    o->bytes = n * model_dtype_size(dtype);
    void *p = calloc(1, o->bytes ? o->bytes : 1);
    assert_non_null(p);
    if (data)
        memcpy(p, data, o->bytes);
    o->data = p;
    return th_n++;
}

static inline int th_object_ref(const json_t *v, struct model_object *obj, char *err, size_t errlen)
{
    const json_t *id = json_object_get(v, "$object");
    if (!json_is_object(v) || !id)
        return 0;
    if (json_object_size(v) != 1 || !json_is_string(id)) {
        snprintf(err, errlen, "malformed object reference");
        return -EINVAL;
    }
    for (size_t i = 0; i < th_n; i++)
        if (strcmp(th_objs[i].id, json_string_value(id)) == 0) {
            *obj = th_objs[i];
            return 1;
        }
    snprintf(err, errlen, "no object '%s'", json_string_value(id));
    return -ENOENT;
}

static inline int th_object_new(uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                         struct model_object *obj, void **data, char *err, size_t errlen)
{
    if (th_new_fails) {
        snprintf(err, errlen, "object memory full");
        return th_new_fails;
    }
    size_t i = th_add(dtype, ndim, shape, NULL);
    *obj = th_objs[i];
    *data = (void *)th_objs[i].data;
    return 0;
}

static const struct model_host th_host = {
    .abi_version = MODEL_ABI_VERSION,
    .object_ref = th_object_ref,
    .object_new = th_object_new,
};

#endif
