/*
 * model.h: the model table, batchd's versioned interface for models.
 *
 * A model is a struct model_ops: built in (workers/models_builtin.c) or,
 * later, exported by a plugin shared object as `batchd_model` with
 * abi_version == MODEL_ABI_VERSION. The life cycle, and which process runs
 * each hook:
 *
 *   load(params)   supervisor, once per model, BEFORE any worker is forked.
 *                  Builds read-only shared state (e.g. mmap'ed weights) that
 *                  every worker inherits copy-on-write. MUST NOT start
 *                  threads: the supervisor forks afterwards, and fork() in a
 *                  threaded process is what batchd exists to avoid.
 *   init(shared)   each worker, once, right after fork (the initializer).
 *                  Builds per-worker mutable state. May start threads.
 *   run(state, item) each item, in a worker. Items and outputs are JSON.
 *   fini(state)    worker exit (orderly shutdown only; a crash skips it).
 *   unload(shared) supervisor exit.
 *
 * Any hook may be NULL except run. Errors are reported as a return value < 0
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

#define MODEL_ABI_VERSION 1u

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

struct model_ops {
    uint32_t abi_version; /* MODEL_ABI_VERSION */
    uint32_t flags;       /* MODEL_FLAG_* */
    const char *name;
    const char *description;

    int (*load)(const struct model_params *params, void **shared, char *err, size_t errlen);
    int (*init)(const void *shared, void **state, char *err, size_t errlen);
    int (*run)(void *state, const json_t *item, json_t **output, char *err, size_t errlen);
    void (*fini)(void *state);
    void (*unload)(void *shared);
};

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
