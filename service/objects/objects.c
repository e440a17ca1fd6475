/*
 * objects.c: the object store's region (objects.h says what it is for).
 *
 * Layout of the memfd, every offset from the region's start:
 *
 *   struct obj_header   magic, limits, offsets, counters, the robust mutex
 *   struct obj_entry[]  max_objects entries
 *   uint64_t tags[]     max_objects: the first 8 characters of each entry's
 *                       id, so that a lookup scans 8 bytes per entry, not
 *                       a whole entry (finds run once per item reference)
 *   uint64_t bitmap[]   one bit per data page, 1 = in use
 *   uint64_t warm[]     one bit per data page, 1 = free but still resident
 *                       (the pool, below); always 0 for a page in use
 *   data                n_pages x OBJECTS_PAGE, OBJECTS_PAGE-aligned
 *
 * Crash consistency (the robust mutex, EOWNERDEAD): an entry's state is
 * the truth; the bitmap, pages_used and ready are derived from the entries
 * and rebuilt by obj_repair() when a locker finds the mutex's owner dead.
 * Every change is ordered so that, after any single store, no page is
 * claimed by two things:
 *   - alloc writes the entry's fields while it is FREE (nobody looks at a
 *     FREE entry), marks its pages in the bitmap, and writes state =
 *     PENDING last. A death in between leaves pages marked that no entry
 *     claims: leaked until repair, never double-used.
 *   - free writes state = FREE first, then either keeps the pages in the
 *     pool (marks them warm) or gives them back to the kernel
 *     (MADV_REMOVE, while they are still marked, so nobody reuses them
 *     mid-way), then clears their in-use bits.
 * Repair also gives every free page back to the kernel and empties the
 * pool, so that a new object's bytes always read as zeros (or are
 * overwritten) whatever died where.
 *
 * The pool (why): on this kind of VM a page fault costs more than the
 * copy it serves; perf on uploads showed ~35% of the api process in
 * clear_page_erms under shmem_fault and ~23% in the fault entry, because
 * every delete gave the pages back and every upload faulted them in
 * again. So a free keeps up to pool_limit pages resident ("warm": they
 * still hold the old object's bytes), and an allocation that lands on
 * warm pages takes them as they are: objects_alloc zeroes them (a memset,
 * no fault), objects_alloc_uninit only zeroes what the caller will not
 * overwrite (the last page's tail). Pages that are not warm are faulted in
 * at once with MADV_POPULATE_WRITE (one system call instead of a fault per
 * 4 KiB page; skipped where the kernel lacks it). Both happen outside the
 * mutex, on pages only the allocating caller can see (its PENDING entry
 * claims them): the warm bits of the run are copied and cleared under the
 * mutex, so a page in use is never warm.
 *
 * A FREE entry keeps its id and seq until it is reused, so that a list
 * cursor naming an object deleted since still finds its place.
 */
#include "service/objects/objects.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "service/core/id.h"
#include "service/core/memfd.h"
#include "service/core/log.h"

#define OBJ_MAGIC 0x314a424f44484342ull /* "BCHDOBJ1" */
#define OBJ_VERSION 2u

_Static_assert(MODEL_OBJECT_ID_LEN == ID_LEN, "object ids are ids (service/core/id.h)");

enum obj_state {
    OBJ_FREE = 0, /* a zeroed region is all FREE */
    OBJ_PENDING = 1,
    OBJ_READY = 2,
};

struct obj_entry {
    uint32_t state; /* enum obj_state: written last when an entry is taken */
    uint32_t owner;
    uint32_t dtype;
    uint32_t ndim;
    uint64_t shape[MODEL_OBJECT_MAX_DIMS];
    uint64_t bytes;
    uint64_t first_page;
    uint64_t n_pages;
    uint64_t created_ns;
    uint64_t seq; /* commit order (list order); 0 = never committed */
    uint32_t pins;
    uint32_t made_by_worker;
    char id[MODEL_OBJECT_ID_LEN + 1];
};

struct obj_header {
    uint64_t magic;
    uint32_t version;
    uint32_t max_objects;
    uint64_t n_pages;
    uint64_t max_object_bytes;
    uint64_t table_off, tags_off, bitmap_off, data_off;
    /* Derived (see obj_repair), changed under the mutex. */
    uint64_t pages_used;
    uint32_t ready;
    uint32_t unused;
    uint64_t next_seq; /* only grows: a gap after a crash is harmless */
    uint64_t warm_off;
    uint64_t pool_pages;       /* free pages kept resident (warm bits set) */
    uint64_t pool_limit_pages; /* most kept at once */
    uint64_t pool_reused_pages;   /* counters since creation (metrics) */
    uint64_t pool_released_pages;
    pthread_mutex_t mu;
};

static uint64_t obj_align(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static struct obj_header *obj_hdr(const struct objects *o) { return o->base; }

static struct obj_entry *obj_table(const struct objects *o)
{
    return (struct obj_entry *)(void *)((char *)o->base + obj_hdr(o)->table_off);
}

static uint64_t *obj_tags(const struct objects *o)
{
    return (uint64_t *)(void *)((char *)o->base + obj_hdr(o)->tags_off);
}

static uint64_t *obj_bitmap(const struct objects *o)
{
    return (uint64_t *)(void *)((char *)o->base + obj_hdr(o)->bitmap_off);
}

static uint64_t *obj_warm(const struct objects *o)
{
    return (uint64_t *)(void *)((char *)o->base + obj_hdr(o)->warm_off);
}

static char *obj_page(const struct objects *o, uint64_t page)
{
    return (char *)o->base + obj_hdr(o)->data_off + page * OBJECTS_PAGE;
}

static uint64_t obj_tag(const char *id)
{
    uint64_t t;
    memcpy(&t, id, sizeof t);
    return t;
}

static bool obj_bit(const uint64_t *bm, uint64_t p) { return (bm[p >> 6] >> (p & 63)) & 1; }

static void obj_mark(uint64_t *bm, uint64_t first, uint64_t n, bool used)
{
    for (uint64_t p = first; p < first + n; p++) {
        if (used)
            bm[p >> 6] |= 1ull << (p & 63);
        else
            bm[p >> 6] &= ~(1ull << (p & 63));
    }
}

/* Hands a run of pages back to the kernel. The pages read as zeros after. */
static void obj_release_pages(struct objects *o, uint64_t first, uint64_t n)
{
    if (n && madvise(obj_page(o, first), n * OBJECTS_PAGE, MADV_REMOVE) != 0)
        log_warn("objects: madvise(MADV_REMOVE) of %llu pages failed: %s",
                 (unsigned long long)n, strerror(errno));
}

/* Set once a kernel refused MADV_POPULATE_WRITE (before 5.14: EINVAL):
 * then pages are faulted in by the writes themselves, as before. */
static atomic_bool obj_no_populate;

/* Faults len bytes at p in with one system call (MADV_POPULATE_WRITE).
 * Best effort: a failure only means the writes will fault instead. */
static void obj_populate(void *p, size_t len)
{
    if (len == 0 || atomic_load_explicit(&obj_no_populate, memory_order_relaxed))
        return;
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
        return;
    if (errno == EINVAL) {
        atomic_store_explicit(&obj_no_populate, true, memory_order_relaxed);
        log_info("objects: this kernel has no MADV_POPULATE_WRITE; object pages fault in "
                 "as they are written");
    }
    /* ENOMEM and the like: the first write faults, and fails there if it must */
}

/* Rebuilds what is derived from the entries after a process died holding
 * the mutex (see the top of the file). */
static void obj_repair(struct objects *o)
{
    struct obj_header *h = obj_hdr(o);
    struct obj_entry *t = obj_table(o);
    uint64_t *bm = obj_bitmap(o);
    memset(bm, 0, obj_align(h->n_pages, 64) / 8);
    /* the pool is rebuilt empty: every free page is released below */
    memset(obj_warm(o), 0, obj_align(h->n_pages, 64) / 8);
    h->pool_pages = 0;
    uint64_t used = 0;
    uint32_t ready = 0;
    for (uint32_t i = 0; i < h->max_objects; i++) {
        if (t[i].state == OBJ_FREE)
            continue;
        obj_mark(bm, t[i].first_page, t[i].n_pages, true);
        used += t[i].n_pages;
        ready += t[i].state == OBJ_READY;
    }
    /* Free pages may hold a half-freed object's bytes: zero them all. */
    for (uint64_t p = 0; p < h->n_pages;) {
        if (obj_bit(bm, p)) {
            p++;
            continue;
        }
        uint64_t q = p;
        while (q < h->n_pages && !obj_bit(bm, q))
            q++;
        obj_release_pages(o, p, q - p);
        p = q;
    }
    h->pages_used = used;
    h->ready = ready;
}

static void obj_lock(struct objects *o)
{
    struct obj_header *h = obj_hdr(o);
    int rc = pthread_mutex_lock(&h->mu);
    if (rc == EOWNERDEAD) {
        log_warn("objects: a process died holding the object store's lock; repairing");
        obj_repair(o);
        pthread_mutex_consistent(&h->mu);
        return;
    }
    if (rc != 0) {
        /* ENOTRECOVERABLE cannot happen (every EOWNERDEAD is made
         * consistent); anything else is a broken region. */
        log_error("objects: cannot lock the object store: %s", strerror(rc));
        abort();
    }
}

static void obj_unlock(struct objects *o) { pthread_mutex_unlock(&obj_hdr(o)->mu); }

bool objects_id_valid(const char *id) { return id && id_valid(id, strlen(id)); }

/* Object ids are ids like any other (service/core/id.h). */
static void obj_new_id(char *out) { id_new(out); }

int objects_create(struct objects *o, uint64_t capacity, uint32_t max_objects,
                   uint64_t max_object_bytes)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (capacity == 0 || max_objects == 0 || max_objects > OBJECTS_MAX_OBJECTS ||
        max_object_bytes == 0 || capacity > OBJECTS_MAX_CAPACITY || max_object_bytes > capacity)
        return -EINVAL;
    uint64_t n_pages = obj_align(capacity, OBJECTS_PAGE) / OBJECTS_PAGE;
    uint64_t off = obj_align(sizeof(struct obj_header), 64);
    uint64_t table_off = off;
    off = obj_align(off + (uint64_t)max_objects * sizeof(struct obj_entry), 64);
    uint64_t tags_off = off;
    off = obj_align(off + (uint64_t)max_objects * sizeof(uint64_t), 64);
    uint64_t bitmap_off = off;
    off = obj_align(off + obj_align(n_pages, 64) / 8, 64);
    uint64_t warm_off = off;
    off = obj_align(off + obj_align(n_pages, 64) / 8, OBJECTS_PAGE);
    uint64_t data_off = off;
    uint64_t size = data_off + n_pages * OBJECTS_PAGE;

    int rc;
    /* tmpfs pages cost nothing until written: the size is a ceiling. */
    void *base;
    int fd;
    rc = memfd_map("batchd-objects", size, MAP_NORESERVE, &base, &fd);
    if (rc != 0)
        return rc;
    o->base = base;
    o->size = size;
    o->fd = fd;

    struct obj_header *h = base;
    h->version = OBJ_VERSION;
    h->max_objects = max_objects;
    h->n_pages = n_pages;
    h->max_object_bytes = max_object_bytes;
    h->table_off = table_off;
    h->tags_off = tags_off;
    h->bitmap_off = bitmap_off;
    h->warm_off = warm_off;
    h->data_off = data_off;
    uint64_t pool = capacity / 4 < OBJECTS_POOL_MAX_DEFAULT ? capacity / 4
                                                           : OBJECTS_POOL_MAX_DEFAULT;
    h->pool_limit_pages = pool / OBJECTS_PAGE;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    rc = -pthread_mutex_init(&h->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc)
        goto fail_map;
    h->magic = OBJ_MAGIC;
    return 0;

fail_map:
    munmap(base, size);
    o->base = NULL;
    o->size = 0;
    close(fd);
    o->fd = -1;
    return rc;
}

void objects_destroy(struct objects *o)
{
    if (o->base) {
        pthread_mutex_destroy(&obj_hdr(o)->mu);
        munmap(o->base, o->size);
    }
    if (o->fd >= 0)
        close(o->fd);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

/* The entry whose id is `id` in one of the states of the mask, or NULL.
 * Under the mutex. */
static struct obj_entry *obj_lookup(struct objects *o, const char *id, unsigned state_mask)
{
    if (!id || strnlen(id, MODEL_OBJECT_ID_LEN + 1) != MODEL_OBJECT_ID_LEN)
        return NULL;
    struct obj_header *h = obj_hdr(o);
    struct obj_entry *t = obj_table(o);
    const uint64_t *tags = obj_tags(o);
    uint64_t tag = obj_tag(id);
    for (uint32_t i = 0; i < h->max_objects; i++)
        if (tags[i] == tag && ((1u << t[i].state) & state_mask) &&
            memcmp(t[i].id, id, MODEL_OBJECT_ID_LEN) == 0)
            return &t[i];
    return NULL;
}

#define OBJ_MASK(s) (1u << (s))

/* First run of `want` free pages (first fit), or -1. Under the mutex. */
static int64_t obj_find_run(const uint64_t *bm, uint64_t n_pages, uint64_t want)
{
    uint64_t run = 0, start = 0;
    for (uint64_t p = 0; p < n_pages;) {
        if ((p & 63) == 0 && p + 64 <= n_pages) {
            /* whole words: skip full ones, take empty ones at once */
            if (bm[p >> 6] == ~0ull) {
                run = 0;
                p += 64;
                continue;
            }
            if (bm[p >> 6] == 0 && want - run >= 64) {
                if (run == 0)
                    start = p;
                run += 64;
                p += 64;
                if (run == want)
                    return (int64_t)start;
                continue;
            }
        }
        if (obj_bit(bm, p)) {
            run = 0;
        } else {
            if (run == 0)
                start = p;
            if (++run == want)
                return (int64_t)start;
        }
        p++;
    }
    return -1;
}

static void obj_fill(const struct objects *o, const struct obj_entry *e, struct model_object *m)
{
    memset(m, 0, sizeof *m);
    memcpy(m->id, e->id, sizeof m->id);
    m->dtype = e->dtype;
    m->ndim = e->ndim;
    memcpy(m->shape, e->shape, sizeof m->shape);
    m->bytes = e->bytes;
    m->data = obj_page(o, e->first_page);
}

static void obj_info(const struct objects *o, const struct obj_entry *e, struct objects_info *info)
{
    obj_fill(o, e, &info->obj);
    info->created_ns = e->created_ns;
    info->pins = e->pins;
    info->made_by_worker = e->made_by_worker;
}

/* Takes the warm bits of pages [first, first + n) out of the pool into
 * out[] (bit k = page first + k was warm), clearing them. Returns how many
 * were warm. Under the mutex. */
static uint64_t obj_take_warm(struct objects *o, uint64_t first, uint64_t n, uint64_t *out)
{
    uint64_t *warm = obj_warm(o);
    uint64_t count = 0;
    if (out)
        memset(out, 0, obj_align(n, 64) / 8);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t p = first + k;
        /* a whole word of cold pages is skipped at once */
        if ((p & 63) == 0 && k + 64 <= n && warm[p >> 6] == 0) {
            k += 63;
            continue;
        }
        if (obj_bit(warm, p)) {
            warm[p >> 6] &= ~(1ull << (p & 63));
            if (out)
                out[k >> 6] |= 1ull << (k & 63);
            count++;
        }
    }
    return count;
}

enum obj_warmth { OBJ_ALL_COLD, OBJ_ALL_WARM, OBJ_BITS };

/*
 * Makes a new object's pages ready, outside the mutex (only the caller can
 * see them): warm pages (`how`: none, all, or those whose bit is set in
 * warm[]) are zeroed
 * from byte `keep` of the object on (keep = 0 zeroes them whole; an
 * uninitialised allocation keeps what its caller will overwrite), and the
 * cold ones are faulted in at once up to the object's last byte.
 */
static void obj_prepare(char *data, uint64_t n_pages, uint64_t bytes, const uint64_t *warm,
                        enum obj_warmth how, uint64_t keep)
{
    for (uint64_t k = 0; k < n_pages;) {
        bool w = how == OBJ_BITS ? (warm[k >> 6] >> (k & 63)) & 1 : how == OBJ_ALL_WARM;
        uint64_t e = k + 1;
        if (how != OBJ_BITS)
            e = n_pages;
        while (e < n_pages && (bool)((warm[e >> 6] >> (e & 63)) & 1) == w)
            e++;
        uint64_t lo = k * OBJECTS_PAGE, hi = e * OBJECTS_PAGE;
        if (w) {
            uint64_t from = keep > lo ? keep : lo;
            if (from < hi)
                memset(data + from, 0, (size_t)(hi - from));
        } else {
            /* whole 4 KiB pages up to the last byte: the tail stays unfaulted */
            uint64_t end = bytes < hi ? bytes : hi;
            if (end > lo)
                obj_populate(data + lo, (size_t)(obj_align(end, 4096) - lo));
        }
        k = e;
    }
}

static int obj_alloc(struct objects *o, uint32_t owner, uint32_t dtype, uint32_t ndim,
                     const uint64_t *shape, struct model_object *obj, bool zero)
{
    struct obj_header *h = obj_hdr(o);
    size_t esize = model_dtype_size(dtype);
    if (esize == 0 || ndim == 0 || ndim > MODEL_OBJECT_MAX_DIMS || !shape)
        return -EINVAL;
    uint64_t bytes = esize;
    for (uint32_t d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(bytes, shape[d], &bytes))
            return -EINVAL;
    if (bytes > h->max_object_bytes)
        return -EFBIG;
    uint64_t n_pages = obj_align(bytes, OBJECTS_PAGE) / OBJECTS_PAGE;
    /* which of the run's pages were warm: on the stack for objects up to
     * 4 MiB, else allocated; without memory every page counts as warm
     * (zeroed by memset: slower, never wrong) */
    uint64_t warm_small[1];
    uint64_t *warm = n_pages <= 64 ? warm_small : malloc(obj_align(n_pages, 64) / 8);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);

    obj_lock(o);
    struct obj_entry *t = obj_table(o);
    struct obj_entry *e = NULL;
    uint32_t i;
    for (i = 0; i < h->max_objects; i++) {
        if (t[i].state == OBJ_FREE) {
            e = &t[i];
            break;
        }
    }
    if (!e) {
        obj_unlock(o);
        if (warm != warm_small)
            free(warm);
        return -EMFILE;
    }
    int64_t first = n_pages ? obj_find_run(obj_bitmap(o), h->n_pages, n_pages) : 0;
    if (first < 0) {
        obj_unlock(o);
        if (warm != warm_small)
            free(warm);
        return -ENOSPC;
    }
    /* The entry is FREE: nobody reads these fields until state is set. */
    obj_new_id(e->id);
    e->owner = owner;
    e->dtype = dtype;
    e->ndim = ndim;
    memset(e->shape, 0, sizeof e->shape);
    memcpy(e->shape, shape, ndim * sizeof *shape);
    e->bytes = bytes;
    e->first_page = (uint64_t)first;
    e->n_pages = n_pages;
    e->created_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    e->seq = 0;
    e->pins = 0;
    e->made_by_worker = owner != OBJECTS_OWNER_API;
    obj_tags(o)[i] = obj_tag(e->id);
    uint64_t reused = h->pool_pages ? obj_take_warm(o, e->first_page, n_pages, warm) : 0;
    h->pool_pages -= reused;
    h->pool_reused_pages += reused;
    obj_mark(obj_bitmap(o), e->first_page, n_pages, true);
    h->pages_used += n_pages;
    e->state = OBJ_PENDING; /* last: now the entry claims its pages */
    obj_fill(o, e, obj);
    obj_unlock(o);
    if (n_pages) {
        /* no page warm: all cold; warm pages but no copy of which: treat
         * every page as warm */
        enum obj_warmth how = reused == 0 ? OBJ_ALL_COLD : warm ? OBJ_BITS : OBJ_ALL_WARM;
        obj_prepare((char *)(uintptr_t)obj->data, n_pages, bytes, warm, how, zero ? 0 : bytes);
    }
    if (warm != warm_small)
        free(warm);
    return 0;
}

int objects_alloc(struct objects *o, uint32_t owner, uint32_t dtype, uint32_t ndim,
                  const uint64_t *shape, struct model_object *obj)
{
    return obj_alloc(o, owner, dtype, ndim, shape, obj, true);
}

int objects_alloc_uninit(struct objects *o, uint32_t owner, uint32_t dtype, uint32_t ndim,
                         const uint64_t *shape, struct model_object *obj)
{
    return obj_alloc(o, owner, dtype, ndim, shape, obj, false);
}

int objects_commit(struct objects *o, const char *id)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_PENDING));
    if (!e) {
        obj_unlock(o);
        return -ENOENT;
    }
    struct obj_header *h = obj_hdr(o);
    e->seq = ++h->next_seq;
    e->state = OBJ_READY; /* last: the seq is in place when it shows */
    h->ready++;
    obj_unlock(o);
    return 0;
}

/* Frees an entry's pages and the entry itself. Under the mutex. As many
 * of the pages as the pool has room for stay resident (warm); the rest go
 * back to the kernel. */
static void obj_free(struct objects *o, struct obj_entry *e)
{
    struct obj_header *h = obj_hdr(o);
    bool was_ready = e->state == OBJ_READY;
    e->state = OBJ_FREE; /* first: the entry stops claiming its pages */
    if (was_ready)
        h->ready--;
    uint64_t room = h->pool_limit_pages > h->pool_pages ? h->pool_limit_pages - h->pool_pages : 0;
    uint64_t keep = e->n_pages < room ? e->n_pages : room;
    obj_release_pages(o, e->first_page + keep, e->n_pages - keep);
    h->pool_released_pages += e->n_pages - keep;
    obj_mark(obj_warm(o), e->first_page, keep, true);
    h->pool_pages += keep;
    obj_mark(obj_bitmap(o), e->first_page, e->n_pages, false);
    h->pages_used -= e->n_pages;
}

int objects_abort(struct objects *o, const char *id)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_PENDING));
    if (e)
        obj_free(o, e);
    obj_unlock(o);
    return e ? 0 : -ENOENT;
}

int objects_find(struct objects *o, const char *id, struct objects_info *info)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_READY));
    if (e && info)
        obj_info(o, e, info);
    obj_unlock(o);
    return e ? 0 : -ENOENT;
}

int objects_delete(struct objects *o, const char *id)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_READY));
    int rc = 0;
    if (!e)
        rc = -ENOENT;
    else if (e->pins > 0)
        rc = -EBUSY;
    else
        obj_free(o, e);
    obj_unlock(o);
    return rc;
}

int objects_pin(struct objects *o, const char *id)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_READY));
    if (e)
        e->pins++;
    obj_unlock(o);
    return e ? 0 : -ENOENT;
}

int objects_unpin(struct objects *o, const char *id)
{
    obj_lock(o);
    struct obj_entry *e = obj_lookup(o, id, OBJ_MASK(OBJ_READY));
    /* An unpin without its pin (after objects_unpin_all, say) stays at 0:
     * a count below zero would make the object undeletable forever. */
    if (e && e->pins > 0)
        e->pins--;
    obj_unlock(o);
    return e ? 0 : -ENOENT;
}

void objects_unpin_all(struct objects *o)
{
    obj_lock(o);
    struct obj_entry *t = obj_table(o);
    for (uint32_t i = 0; i < obj_hdr(o)->max_objects; i++)
        t[i].pins = 0;
    obj_unlock(o);
}

uint32_t objects_reclaim_owner(struct objects *o, uint32_t owner)
{
    uint32_t n = 0;
    obj_lock(o);
    struct obj_entry *t = obj_table(o);
    for (uint32_t i = 0; i < obj_hdr(o)->max_objects; i++) {
        if (t[i].state == OBJ_PENDING && t[i].owner == owner) {
            obj_free(o, &t[i]);
            n++;
        }
    }
    obj_unlock(o);
    return n;
}

size_t objects_list(struct objects *o, const char *after, struct objects_info *out, size_t max,
                    bool *more)
{
    size_t n = 0;
    bool have_more = false;
    obj_lock(o);
    struct obj_header *h = obj_hdr(o);
    struct obj_entry *t = obj_table(o);
    uint64_t from = 0;
    if (after && after[0]) {
        /* A deleted object's entry keeps its id and seq until reused. */
        struct obj_entry *c = obj_lookup(o, after, OBJ_MASK(OBJ_READY) | OBJ_MASK(OBJ_FREE));
        if (!c || c->seq == 0)
            goto out;
        from = c->seq;
    }
    /* Selection by repeated minimum: no allocation, and N x max compares
     * of 8 bytes is cheap for the table sizes allowed. One more round than
     * max tells whether others follow. */
    for (;;) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < h->max_objects; i++)
            if (t[i].state == OBJ_READY && t[i].seq > from &&
                (best == UINT32_MAX || t[i].seq < t[best].seq))
                best = i;
        if (best == UINT32_MAX)
            break;
        if (n == max) {
            have_more = true;
            break;
        }
        obj_info(o, &t[best], &out[n++]);
        from = t[best].seq;
    }
out:
    obj_unlock(o);
    if (more)
        *more = have_more;
    return n;
}

void objects_set_pool_limit(struct objects *o, uint64_t bytes)
{
    obj_lock(o);
    struct obj_header *h = obj_hdr(o);
    uint64_t limit = bytes / OBJECTS_PAGE;
    if (limit > h->n_pages)
        limit = h->n_pages;
    h->pool_limit_pages = limit;
    /* what the pool holds past the new limit goes back now */
    uint64_t *warm = obj_warm(o);
    for (uint64_t p = 0; p < h->n_pages && h->pool_pages > limit; p++) {
        if (!obj_bit(warm, p))
            continue;
        obj_release_pages(o, p, 1);
        warm[p >> 6] &= ~(1ull << (p & 63));
        h->pool_pages--;
        h->pool_released_pages++;
    }
    obj_unlock(o);
}

void objects_stats(struct objects *o, struct objects_stats *st)
{
    obj_lock(o);
    struct obj_header *h = obj_hdr(o);
    st->pool_bytes = h->pool_pages * OBJECTS_PAGE;
    st->pool_limit_bytes = h->pool_limit_pages * OBJECTS_PAGE;
    st->pool_reused_bytes = h->pool_reused_pages * OBJECTS_PAGE;
    st->pool_released_bytes = h->pool_released_pages * OBJECTS_PAGE;
    st->capacity_bytes = h->n_pages * OBJECTS_PAGE;
    st->used_bytes = h->pages_used * OBJECTS_PAGE;
    st->max_object_bytes = h->max_object_bytes;
    st->count = h->ready;
    st->max_objects = h->max_objects;
    obj_unlock(o);
}

void objects_test_lock(struct objects *o) { obj_lock(o); }
