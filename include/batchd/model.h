/*
 * batchd/model.h: the plugin ABI, batchd's versioned interface for models.
 *
 * This header is public and stands alone: a plugin compiles against it and
 * jansson only (`cc -I include $(pkg-config --cflags jansson) -fPIC -shared`)
 * and links against nothing of batchd's (`-Wl,-z,defs` passes with
 * `-ljansson` alone). batchd's own helpers for its built-in models live in
 * internal headers (workers/models/), never here.
 *
 * A model is a struct model_ops: built in (workers/models/models_builtin.c)
 * or exported by a plugin shared object as the symbol `batchd_model`
 * (MODEL_PLUGIN_SYMBOL) with abi_version == MODEL_ABI_VERSION. The life
 * cycle, and which process runs each hook:
 *
 *   load(params, host)   supervisor, once per model, BEFORE any worker is forked.
 *                  Builds read-only shared state (e.g. mmap'ed weights) that
 *                  every worker inherits copy-on-write. MUST NOT start
 *                  threads: the supervisor forks afterwards, and fork() in a
 *                  threaded process is what batchd exists to avoid.
 *   init(shared, host)   each worker, once, right after fork (the initializer).
 *                  Builds per-worker mutable state. May start threads.
 *   run(state, item) each item, in a worker. Items and outputs are JSON.
 *   run_batch(state, batch)  optional: several consecutive items of a task
 *                  in one call (a model that vectorizes: one matrix product
 *                  for many items, like Triton's dynamic batching or Ray
 *                  Data's map_batches). See "Batches" further
 *                  down.
 *   fini(state)    worker exit (orderly shutdown only; a crash skips it).
 *   unload(shared) supervisor exit.
 *
 * The rules every hook keeps:
 *   - Any hook may be NULL except run (or acc_run, for a stateful model).
 *   - Errors: a hook returns 0 on success and a negative errno on failure
 *     (-EINVAL for a bad item or parameter, -ENOMEM, ...), with a message
 *     in `err` (NUL-terminated UTF-8, at most `errlen` bytes, may be left
 *     empty): from load/init that message is logged and shown by /readyz;
 *     from run it becomes that item's error result, and the job goes on.
 *   - Outputs: `*output`, `*partial` and `*result` are NULL when the hook
 *     is called. On success the hook sets a NEW reference there, which
 *     batchd releases. On failure the hook leaves it NULL (batchd releases
 *     whatever a failing hook left there anyway, so nothing leaks, but a
 *     failure's output is never used).
 *   - Inputs are BORROWED for the duration of the call: `item`, `partials`,
 *     `params` and everything they point to; keep a reference
 *     (json_incref) or a copy to hold one longer.
 *   - `acc`: owned by the model from the acc_run that allocates it until
 *     acc_free; batchd only stores the pointer.
 *   - A hook never calls exit(), fork() or exec(), never installs a signal
 *     handler or changes the signal mask, and never closes descriptors it
 *     did not open: the worker process is batchd's (its supervisor reaps,
 *     classifies and restarts it, and a stop signal must reach it).
 *   - load() starts no thread (above); run() may block, but a stop request
 *     waits for at most one item.
 *
 * Versioning: a change to struct model_ops or struct model_host that is not
 * purely additive at the end bumps MODEL_ABI_VERSION, and batchd refuses a
 * table of another version. Additions at the end keep the version: batchd
 * reads a plugin's shorter struct model_ops from the size of its symbol
 * (newer hooks stay NULL), and a plugin learns which host functions exist
 * from model_host.size (MODEL_HOST_HAS).
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
    /* sizeof(struct model_host) as the batchd that made the table knew it:
     * the table grows at the end without a new ABI version, so a plugin
     * built against a newer model.h checks MODEL_HOST_HAS(host, fn) before
     * calling a function that an older batchd may lack. (It sits where the
     * padding before the first pointer was, so tables of ABI 2 without it
     * keep their layout.) */
    uint32_t size;

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

/*
 * Batches (model_ops.run_batch, optional; a stateless model only: a model
 * with acc_run is always run item by item).
 *
 * When a model has run_batch, the worker gives it the items of its task in
 * one call instead of calling run() per item; run() is still required, and
 * the worker calls it for a batch of one item. batch->items[0..n) are the
 * items (BORROWED), batch->outputs[0..n) are all NULL and batch->errors[i]
 * are all empty strings at the call. The hook returns:
 *   0         per item: outputs[i] set to a NEW reference is item i's
 *             output; an item left NULL failed, with errors[i] as its
 *             message (NUL-terminated UTF-8, at most MODEL_ERR_LEN bytes;
 *             empty: batchd says the model gave no output). One item's
 *             error never touches its neighbours.
 *   negative  the whole call failed: every item of the batch gets `err`
 *             as its error, and whatever outputs were set are released.
 * Objects made with host->object_new during the call belong to the items
 * whose outputs name them ({"$object": ID} anywhere in the output): the
 * others (and those of failed items) are freed.
 *
 * What stays batchd's, exactly as for run():
 *   - results are per item, in input order, each recorded once;
 *   - the per-item deadline (item_timeout_s) runs from the start of the
 *     call for the whole batch: a batch that passes it is stopped (its
 *     worker killed) and its items run again in batches half as big, down
 *     to single items, where the deadline is that item's own;
 *   - a crash (a signal, an exit) inside run_batch cannot name an item, so
 *     it costs none of them an attempt: the batch's items run again in
 *     halves, recursively, until a batch of one item crashes; that item is
 *     then retried alone and isolated after --max-attempts like any poison
 *     item, and every other item gets exactly one result;
 *   - cancellation and a stop request are honoured between calls.
 * A batch is the items of one task (the engine sizes a task at a few
 * milliseconds of work, or the job's chunk_size), cut where the worker
 * answers an item itself (an item that is not valid JSON), and smaller
 * after a crash or a deadline (above).
 */
#define MODEL_ERR_LEN 512

struct model_batch {
    size_t n;                       /* items in this call, >= 1 */
    const json_t *const *items;     /* [n], borrowed */
    json_t **outputs;               /* [n], NULL at the call; set new references */
    char (*errors)[MODEL_ERR_LEN];  /* [n], "" at the call; a failed item's message */
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

    /* Optional: run() over several items at once ("Batches" above). Added
     * at the end in ABI 2: a plugin built against an older model.h has a
     * shorter table, and batchd reads it as NULL. */
    int (*run_batch)(void *state, const struct model_batch *batch, char *err, size_t errlen);
};

/* Shared objects name this symbol: `const struct model_ops batchd_model`. */
#define MODEL_PLUGIN_SYMBOL "batchd_model"

/* True when `host` (a struct model_host *) offers the function `member`:
 * the table is long enough to hold it and it is set. */
#define MODEL_HOST_HAS(host, member)                                                       \
    ((host)->size >= offsetof(struct model_host, member) + sizeof((host)->member) &&       \
     (host)->member != NULL)

/* The element size of a dtype (1, 4 or 8), 0 for an unknown one. Inline so
 * that a plugin uses it without linking against batchd. */
static inline size_t model_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case MODEL_DTYPE_U8:
        return 1;
    case MODEL_DTYPE_I32:
    case MODEL_DTYPE_F32:
        return 4;
    case MODEL_DTYPE_I64:
    case MODEL_DTYPE_F64:
        return 8;
    default:
        return 0;
    }
}

/* Its NumPy name ("uint8", "int32", "int64", "float32", "float64"), NULL if
 * unknown. Static storage. */
static inline const char *model_dtype_name(uint32_t dtype)
{
    switch (dtype) {
    case MODEL_DTYPE_U8:
        return "uint8";
    case MODEL_DTYPE_I32:
        return "int32";
    case MODEL_DTYPE_I64:
        return "int64";
    case MODEL_DTYPE_F32:
        return "float32";
    case MODEL_DTYPE_F64:
        return "float64";
    default:
        return NULL;
    }
}

#endif
