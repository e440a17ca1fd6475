/*
 * model.h: the model table, batchd's versioned interface for models.
 *
 * A model is a struct model_ops: built in (workers/models_builtin.c) or
 * exported by a plugin shared object (workers/plugin.h) as the symbol
 * `batchd_model` with abi_version == MODEL_ABI_VERSION. The life cycle, and which process runs
 * each hook:
 *
 *   load(params, host)   supervisor, once per model, BEFORE any worker is forked.
 *                  Builds read-only shared state (e.g. mmap'ed weights) that
 *                  every worker inherits copy-on-write. MUST NOT start
 *                  threads: the supervisor forks afterwards, and fork() in a
 *                  threaded process is what batchd exists to avoid.
 *   init(shared, host)   each worker, once, right after fork (the initializer).
 *                  Builds per-worker mutable state. May start threads.
 *   run(state, item) each item, in a worker. Items and outputs are JSON.
 *   fini(state)    worker exit (orderly shutdown only; a crash skips it).
 *   unload(shared) supervisor exit.
 *
 * Any hook may be NULL except run (or acc_run, for a stateful model). Errors are reported as a return value < 0
 * and a message written to `err` (NUL-terminated UTF-8, at most `errlen`
 * bytes): from load/init that message is logged and shown by /readyz; from
 * run it becomes that item's error result, and the job goes on.
 *
 * Ownership (jansson's words): `item` is borrowed for the duration of the
 * call; on success `*output` is a new reference that the caller releases.
 * `params` and everything it points to are borrowed during load() only.
 *
 * Versioning: a change to this table that is not purely additive at the end
 * bumps MODEL_ABI_VERSION; the loader refuses a table with another version.
 */
#ifndef BATCHD_MODEL_H
#define BATCHD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define MODEL_ABI_VERSION 2u

/* The key=value parameters of `--model NAME:key=value,...`, minus the ones
 * batchd itself consumes (workers=, plugin=). Borrowed. */
struct model_params {
    size_t n;
    const char *const *keys;
    const char *const *values;
};

/* Flags in model_ops.flags. */
#define MODEL_FLAG_NOT_DEFAULT 0x1u /* not loaded unless named (needs a file,
                                       or is a test tool like chaos) */

/*
 * Objects: large binary inputs uploaded once (POST /v1/objects) into shared
 * memory and read in place by every worker. An item names one as
 * {"$object": "ID"}. The element types, named as NumPy names them in the
 * API ("uint8", "int32", "int64", "float32", "float64"); raw bytes
 * (application/octet-stream) are uint8 with shape [bytes].
 */
enum model_dtype {
    MODEL_DTYPE_U8 = 0,
    MODEL_DTYPE_I32 = 1,
    MODEL_DTYPE_I64 = 2,
    MODEL_DTYPE_F32 = 3,
    MODEL_DTYPE_F64 = 4,
};
#define MODEL_OBJECT_MAX_DIMS 8
#define MODEL_OBJECT_ID_LEN 26 /* characters, without the NUL */

/* A resolved object. `data` points into the shared region, read-only, valid
 * while the task that resolved it runs (the engine pins every object a
 * running job names, so it cannot be freed under the task). */
struct model_object {
    char id[MODEL_OBJECT_ID_LEN + 1];
    uint32_t dtype; /* enum model_dtype */
    uint32_t ndim;  /* 1..MODEL_OBJECT_MAX_DIMS */
    uint64_t shape[MODEL_OBJECT_MAX_DIMS];
    uint64_t bytes; /* product of shape x element size */
    const void *data;
};

/*
 * What batchd offers a model, given to load() and init(); valid for the
 * life of the process. A plugin reaches batchd only through this table (it
 * links against nothing of batchd's).
 */
struct model_host {
    uint32_t abi_version; /* MODEL_ABI_VERSION */

    /* If `v` is an object reference {"$object": "ID"}: resolves it into *obj
     * and returns 1; returns 0 if `v` is not a reference (anything else);
     * returns -ENOENT (no such object) or -EINVAL (a malformed reference)
     * with the reason in err. Workers only. */
    int (*object_ref)(const json_t *v, struct model_object *obj, char *err, size_t errlen);

    /* Creates an object of `dtype` and `shape` (ndim dims) for the item
     * being run and returns where to write its bytes (*data, writable,
     * obj->bytes long) in *obj; its id is obj->id. The object becomes
     * visible when the task that made it completes; if the item fails or
     * the worker dies first, it is freed. Returns 0, -EFBIG (larger than
     * the per-object limit) or -ENOSPC (object memory full), with the
     * reason in err. Workers only. */
    int (*object_new)(uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                      struct model_object *obj, void **data, char *err, size_t errlen);
};

struct model_ops {
    uint32_t abi_version; /* MODEL_ABI_VERSION */
    uint32_t flags;       /* MODEL_FLAG_* */
    const char *name;
    const char *description;

    int (*load)(const struct model_params *params, const struct model_host *host, void **shared,
                char *err, size_t errlen);
    int (*init)(const void *shared, const struct model_host *host, void **state, char *err,
                size_t errlen);
    int (*run)(void *state, const json_t *item, json_t **output, char *err, size_t errlen);
    void (*fini)(void *state);
    void (*unload)(void *shared);

    /*
     * Stateful work (optional: a model sets all four, and then run() may be
     * NULL). Each worker keeps an accumulator per job across every task of
     * that job it runs:
     *
     *   acc_run(state, &acc, item, &output)   each item, instead of run();
     *                   *acc is NULL on the job's first item in this worker
     *                   and the model allocates it. The item still gets
     *                   its own result (output).
     *   acc_export(state, acc, &partial)      when the job's last item is
     *                   done: the worker's partial result as JSON (large
     *                   partials go into an object made with
     *                   host->object_new, and the JSON names it).
     *   acc_free(state, acc)                  after export, or when the job
     *                   is cancelled; also at fini for what is left.
     *   reduce(shared, partials, &result)     once per job, in one worker:
     *                   merges the array of every worker's partials into
     *                   the job's result (GET /v1/jobs/{id}/result).
     *
     * A worker that dies loses its accumulators: batchd runs that worker's
     * items of the job again (their results are not duplicated, only the
     * state is rebuilt), so the reduced result is exact.
     */
    int (*acc_run)(void *state, void **acc, const json_t *item, json_t **output, char *err,
                   size_t errlen);
    int (*acc_export)(void *state, void *acc, json_t **partial, char *err, size_t errlen);
    void (*acc_free)(void *state, void *acc);
    int (*reduce)(const void *shared, const json_t *partials, json_t **result, char *err,
                  size_t errlen);

    /* Significant digits of the reals in this model's outputs (1..17; 0 =
     * 17, enough to read back any double exactly). A model whose results
     * are float32 says 9 (enough for any float32): its outputs are then
     * about half as long to write, store, send and parse. */
    uint32_t real_digits;
};

/* Shared objects name this symbol: `const struct model_ops batchd_model`. */
#define MODEL_PLUGIN_SYMBOL "batchd_model"

/* The element size of a dtype (1, 4 or 8), 0 for an unknown one. */
size_t model_dtype_size(uint32_t dtype);

/* Its NumPy name ("uint8", "int32", "int64", "float32", "float64"), NULL if
 * unknown. */
const char *model_dtype_name(uint32_t dtype);

/* Returns the n-th built-in model, or NULL past the end. Borrowed, static. */
const struct model_ops *model_builtin_at(size_t i);

/* Returns the built-in model called `name`, or NULL. Borrowed, static. */
const struct model_ops *model_builtin_find(const char *name);

/* Helper for models without parameters: returns 0 when params is empty,
 * else -EINVAL with "model NAME takes no parameter 'KEY'" in err. */
int model_params_none(const char *model, const struct model_params *params, char *err,
                      size_t errlen);

/*
 * Helper for error messages that quote an item's string: returns the
 * length of the longest prefix of s (valid UTF-8, as every string jansson
 * parsed is) of at most max bytes that does not end inside a character,
 * for "%.*s". A run() error message is UTF-8 text (it becomes the item's
 * Result): "%.64s" can cut a character in two, and the worker then has to
 * turn the stray bytes into '?' (worker_utf8_repair) to keep
 * GET /v1/jobs/{id}/results valid JSON.
 */
int model_utf8_prefix(const char *s, size_t max);

#endif
