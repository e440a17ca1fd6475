/*
 * objects: the object store, large binary inputs kept once in shared memory
 * and read in place by every worker (POST /v1/objects, {"$object": "ID"}).
 *
 * The supervisor creates one region (a memfd, mapped MAP_SHARED) before it
 * forks anything, sized by --object-memory; its pages cost nothing until
 * written, and a freed object's pages are given back to the kernel
 * (madvise MADV_REMOVE), so the region's size is a ceiling, not a
 * reservation, except for a bounded pool of freed pages kept resident for
 * the next objects (a page fault costs more than the copy it serves: see
 * objects.c). Every process inherits the mapping at the same address.
 *
 *   header   magic, limits, a process-shared robust mutex, counters
 *   table    max_objects entries: id, dtype, shape, bytes, offset, state,
 *            pins, owner
 *   bitmap   one bit per page of the data area (in use or not)
 *   data     pages (OBJECTS_PAGE bytes each); an object is a run of pages
 *
 * An entry moves  FREE --alloc--> PENDING --commit--> READY --delete--> FREE
 * (PENDING --abort or owner died--> FREE). Only READY objects are found by
 * id. The table and bitmap change only under the mutex; an object's bytes
 * are written by its creator while PENDING (nobody else sees it) and are
 * read-only once READY.
 *
 * Who uses what:
 *   - api process: alloc/commit/abort (uploads), find, list, delete, pins
 *     (the engine pins every object a job names while the job runs, so a
 *     running job's objects cannot be deleted: -EBUSY, 409).
 *   - workers: find (model_host.object_ref) and alloc/commit/abort for
 *     objects a model makes (model_host.object_new; committed just before
 *     the task completes).
 *   - supervisor: create, and objects_reclaim_owner() after reaping a
 *     worker or the api process, so a creator that died leaves no PENDING
 *     object behind.
 * A process that dies holding the mutex is detected by the robust mutex
 * (EOWNERDEAD): every change to the table is made so that the table is
 * consistent after each single store (the entry's state is written last),
 * so the next locker marks it consistent and goes on.
 *
 * Objects live in memory: they survive the api process and workers, not a
 * restart of batchd (docs/architecture.md says why).
 *
 * Ownership: the region is owned by the supervisor (objects_create /
 * objects_destroy); struct objects is a small per-process handle. Pointers
 * returned into the data area are valid while the object is READY (and
 * pinned, or otherwise known not to be deleted) or PENDING by the caller.
 */
#ifndef BATCHD_OBJECTS_H
#define BATCHD_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <batchd/model.h>

#define OBJECTS_PAGE (64u * 1024u)
#define OBJECTS_OWNER_API 0xffffu /* owner of uploads in progress */
/* Bounds of objects_create's arguments (config.c checks the settings
 * against the same numbers). */
#define OBJECTS_MAX_OBJECTS (1u << 20)
#define OBJECTS_MAX_CAPACITY (1ull << 40) /* 1 TiB of object memory */
/* The pool of freed pages kept resident: a quarter of the capacity, at
 * most this (objects_set_pool_limit changes it). */
#define OBJECTS_POOL_MAX_DEFAULT (1ull << 30)

struct objects {
    void *base;
    size_t size;
    int fd;
};

/* One object's description (a snapshot: copied out under the mutex). */
struct objects_info {
    struct model_object obj; /* id, dtype, ndim, shape, bytes; data too */
    uint64_t created_ns;     /* CLOCK_REALTIME */
    uint32_t pins;           /* running jobs that name it */
    uint32_t made_by_worker; /* 1 if a model made it (output), 0 if uploaded */
};

/* Totals for GET /v1/objects, /metrics and /v1/health. */
struct objects_stats {
    uint64_t capacity_bytes; /* data area */
    uint64_t used_bytes;     /* pages in use x OBJECTS_PAGE */
    uint64_t max_object_bytes;
    uint32_t count;          /* READY objects */
    uint32_t max_objects;
    uint64_t pool_bytes;          /* freed pages kept resident for reuse */
    uint64_t pool_limit_bytes;    /* most the pool keeps */
    uint64_t pool_reused_bytes;   /* counters since creation: allocated from the pool */
    uint64_t pool_released_bytes; /*   freed past the pool, given back to the kernel */
};

/*
 * Supervisor, before any fork: creates and maps a region with a data area
 * of `capacity` bytes (rounded up to pages), room for `max_objects`
 * entries, and a per-object limit of `max_object_bytes`. Returns 0,
 * -EINVAL (a zero argument, max_objects > OBJECTS_MAX_OBJECTS, capacity >
 * OBJECTS_MAX_CAPACITY, max_object_bytes > capacity) or another negative
 * errno (memfd_create, ftruncate, mmap); nothing is left mapped on failure.
 */
int objects_create(struct objects *o, uint64_t capacity, uint32_t max_objects,
                   uint64_t max_object_bytes);
void objects_destroy(struct objects *o);

/*
 * Allocates a PENDING object for `owner` (a worker index, or
 * OBJECTS_OWNER_API) with a new random id, the given dtype and shape;
 * fills *obj (id, dtype, ndim, shape, bytes, data = where to write).
 * Returns 0, -EINVAL (bad dtype/shape, or bytes overflow), -EFBIG (larger
 * than max_object_bytes), -ENOSPC (no run of free pages that long) or
 * -EMFILE (the table is full); nothing changes on failure. The new
 * object's bytes read as zeros. A zero-sized shape (a dimension of 0) is
 * allowed and takes no page. The object's pages are resident on return
 * (from the pool, zeroed, or faulted in at once), so writing them costs
 * no page fault.
 */
int objects_alloc(struct objects *o, uint32_t owner, uint32_t dtype, uint32_t ndim,
                  const uint64_t *shape, struct model_object *obj);

/*
 * objects_alloc for a caller that writes every one of the object's bytes
 * before it commits (an upload: api_upload_finish commits only when all
 * were received; anything else is aborted). Pages reused from the pool
 * are not zeroed, except past the object's last byte; until the caller
 * has written them, the bytes are the pool's old contents, which is why
 * such an object must never be committed before it is fully written.
 * Same returns as objects_alloc.
 */
int objects_alloc_uninit(struct objects *o, uint32_t owner, uint32_t dtype, uint32_t ndim,
                         const uint64_t *shape, struct model_object *obj);

/* PENDING -> READY. Returns 0, or -ENOENT when `id` is not PENDING. */
int objects_commit(struct objects *o, const char *id);

/* Frees a PENDING object (upload failed, item failed). Returns 0 or -ENOENT. */
int objects_abort(struct objects *o, const char *id);

/* Finds a READY object: fills *info (may be NULL). Returns 0 or -ENOENT. */
int objects_find(struct objects *o, const char *id, struct objects_info *info);

/* Deletes a READY object. Returns 0, -ENOENT, or -EBUSY when pinned. */
int objects_delete(struct objects *o, const char *id);

/* Pins (+1) / unpins (-1) a READY object. Returns 0 or -ENOENT. */
int objects_pin(struct objects *o, const char *id);
int objects_unpin(struct objects *o, const char *id);

/* A new api process: every pin belonged to the old one's jobs; drops them
 * all (the new engine pins again what its recovered jobs name). */
void objects_unpin_all(struct objects *o);

/* Frees every PENDING object of `owner` (it died). Returns how many. */
uint32_t objects_reclaim_owner(struct objects *o, uint32_t owner);

/*
 * Copies up to `max` READY objects, oldest first (in the order they were
 * committed), starting after the one with id `after` (NULL or "" = from
 * the start) into out[]. Returns how many were copied; *more is set when
 * others follow. A cursor naming an object deleted since still works while
 * its table entry is not reused; an unknown cursor lists nothing (0, *more
 * false): the caller checks objects_id_valid() first to tell a malformed
 * one apart.
 */
size_t objects_list(struct objects *o, const char *after, struct objects_info *out, size_t max,
                    bool *more);

void objects_stats(struct objects *o, struct objects_stats *st);

/* Sets the most freed memory the pool keeps resident (rounded down to
 * pages, at most the capacity; 0 gives every freed page back at once, as
 * before the pool existed). What the pool holds past it is given back now. */
void objects_set_pool_limit(struct objects *o, uint64_t bytes);

/* True when `id` has the form of an object id: an id of service/core/id.h
 * (MODEL_OBJECT_ID_LEN characters of lowercase RFC 4648 base32, like a job
 * id), and nothing after. Says nothing of whether it exists. */
bool objects_id_valid(const char *id);

/* TESTS ONLY: takes the store's mutex and returns holding it, so that a
 * test can kill the process that holds it (the robust mutex's EOWNERDEAD
 * path). Never called by batchd. */
void objects_test_lock(struct objects *o);

#endif
