/*
 * host: the struct model_host that batchd gives a model (model.h), and the
 * bookkeeping of the objects a model makes while it runs a task.
 *
 One table, given to load() (host_load()) and to init() (host_worker()),
 * whose functions act according to the process they are called in:
 *   - in the supervisor (no host_worker_setup() was made): no object
 *     exists before the workers start, so they answer -ENOTSUP with a
 *     message saying so;
 *   - in a worker: object_ref resolves {"$object": "ID"} to a READY object
 *     of the store; object_new allocates a PENDING object owned by this
 *     worker.
 * It is one table, not two, because a model may keep the pointer load()
 * got in its shared state and use it in a worker later: reduce() is given
 * only the shared state (prefix_count reads its partials' objects so).
 * The static table is at the same address in every forked worker.
 *
 * The objects a task makes become visible only when the task completes:
 * worker.c calls host_item_end() after each item (a failed item's objects
 * are aborted at once) and host_task_commit() just before ring_complete(),
 * so that an object is never READY for a task that will run again. A
 * worker that dies first leaves its objects PENDING, and the supervisor
 * frees them (objects_reclaim_owner with the worker's index). The one
 * window left: a worker that dies between host_task_commit() and
 * ring_complete() leaves READY objects that no result names; they are
 * deleted like any other object (DELETE /v1/objects/{id}).
 *
 * Process: the supervisor (where the object functions refuse) and each
 * worker, after host_worker_setup(). Not thread-safe: a model calls
 * object_new from the thread that runs run() (or init()).
 *
 * Ownership: the tables are static and valid for the life of the process.
 * The store is borrowed (the supervisor owns the region). The ids of the
 * objects made by the current task are kept here until committed.
 */
#ifndef BATCHD_HOST_H
#define BATCHD_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include <batchd/model.h>

struct objects;

/* The table for load(), in the supervisor. Borrowed, static; the same as
 * host_worker()'s. */
const struct model_host *host_load(void);

/* In a worker, right after fork: the store this worker resolves and makes
 * objects in (borrowed; NULL = none, the object functions then answer
 * -ENOTSUP) and the worker's index (the owner of the objects it makes).
 * Forgets any objects a previous setup kept (tests set up several times). */
void host_worker_setup(struct objects *objects, uint32_t worker);

/* The table for init(), in a worker. Borrowed, static. */
const struct model_host *host_worker(void);

/* After each item: ok = the item's output was recorded as a success. When
 * not ok, the objects made during this item are aborted (freed) now; when
 * ok, they are kept for host_task_commit(). */
void host_item_end(bool ok);

/*
 * After a run_batch call (model.h, "Batches"): the objects made during the
 * call [since the last item end] are kept for the items whose outputs
 * (outputs[0..n), NULL for a failed item) name them as {"$object": ID},
 * anywhere in the output; the others are aborted now. Then the batch's
 * items are committed one by one, and an item whose output is not recorded
 * after all gives its objects back with host_drop_named().
 */
void host_batch_settle(json_t *const *outputs, size_t n);

/* Aborts the kept (not yet committed) objects that `out` names. */
void host_drop_named(const json_t *out);

/* Just before the task completes: commits (PENDING -> READY) every object
 * kept by its items; objects of an item that never ended are aborted.
 * Returns how many were committed. */
uint32_t host_task_commit(void);

/* Where a resolved object's bytes start in the object store's memfd (a
 * coprocess maps that file read-only and reads the object in place at
 * this offset). Returns 0, -ENOTSUP if this process has no store, -ERANGE
 * if obj->data is not inside it. */
int host_object_offset(const struct model_object *obj, uint64_t *off);

#endif
