#include "service/ring/shm.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "service/core/memfd.h"
#include "service/ring/ring.h"

/* Task slots in all: 2^24, far beyond any real deployment (0xfffe workers
 * x 8 slots is under 2^20), and small enough that no count overflows. */
#define SHM_MAX_SLOTS (1u << 24)

static uint64_t shm_align(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static uint32_t shm_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int shm_create(struct shm *shm, const struct shm_layout *lay)
{
    memset(shm, 0, sizeof *shm);
    shm->fd = -1;
    if (lay->n_groups == 0 || lay->slots_per_worker == 0 || lay->in_cap < 64 ||
        lay->out_cap < 64 || lay->in_cap > (1u << 30) || lay->out_cap > (1u << 30))
        return -EINVAL;

    /* Counted in 64 bits and capped so that every count, and twice the
     * biggest group's (the queue), fits the 32-bit fields and shm_pow2(). */
    uint64_t n_workers = 0, n_slots = 0, max_group_slots = 0;
    for (uint32_t g = 0; g < lay->n_groups; g++) {
        if (lay->group_workers[g] == 0 || lay->group_workers[g] > 0xfffe)
            return -EINVAL;
        n_workers += lay->group_workers[g];
        uint64_t gs = (uint64_t)lay->group_workers[g] * lay->slots_per_worker;
        n_slots += gs;
        if (gs > max_group_slots)
            max_group_slots = gs;
    }
    if (n_workers > 0xfffe || n_slots > SHM_MAX_SLOTS)
        return -EINVAL;
    /* Room for every slot twice: stale entries (see ring.h) never block. */
    uint32_t queue_cap = shm_pow2((uint32_t)max_group_slots * 2);
    long page = sysconf(_SC_PAGESIZE);
    uint32_t in_cap = (uint32_t)shm_align(lay->in_cap, 64);
    uint32_t out_cap = (uint32_t)shm_align(lay->out_cap, 64);

    uint64_t off = shm_align(sizeof(struct shm_header), 64);
    uint64_t off_groups = off;
    off = shm_align(off + (uint64_t)lay->n_groups * sizeof(struct shm_group), 64);
    uint64_t off_workers = off;
    off = shm_align(off + (uint64_t)n_workers * sizeof(struct shm_worker), 64);
    uint64_t off_slots = off;
    off = shm_align(off + (uint64_t)n_slots * sizeof(struct ring_slot), 64);
    uint64_t off_queues = off;
    off = shm_align(off + (uint64_t)lay->n_groups * queue_cap * sizeof(uint64_t), (uint64_t)page);
    uint64_t off_payload = off;
    off = shm_align(off + (uint64_t)n_slots * ((uint64_t)in_cap + out_cap), (uint64_t)page);

    void *base;
    int fd;
    int rc = memfd_map("batchd-ring", off, 0, &base, &fd);
    if (rc != 0)
        return rc;
    shm->base = base;
    shm->size = off;
    shm->fd = fd;

    /* A fresh memfd reads as zeros: every state word starts FREE/EMPTY. */
    struct shm_header *h = base;
    h->magic = SHM_MAGIC;
    h->version = SHM_VERSION;
    h->n_groups = lay->n_groups;
    h->n_workers = (uint32_t)n_workers;
    h->n_slots = (uint32_t)n_slots;
    h->queue_cap = queue_cap;
    h->in_cap = in_cap;
    h->out_cap = out_cap;
    h->size = off;
    h->off_groups = off_groups;
    h->off_workers = off_workers;
    h->off_slots = off_slots;
    h->off_queues = off_queues;
    h->off_payload = off_payload;
    h->started_ns = shm_now_real_ns();

    uint32_t w = 0, s = 0;
    for (uint32_t g = 0; g < lay->n_groups; g++) {
        struct shm_group *gr = shm_group(shm, g);
        snprintf(gr->name, sizeof gr->name, "%s", lay->group_names[g]);
        gr->first_worker = w;
        gr->n_workers = lay->group_workers[g];
        gr->first_slot = s;
        gr->n_slots = lay->group_workers[g] * lay->slots_per_worker;
        gr->off_queue = off_queues + (uint64_t)g * queue_cap * sizeof(uint64_t);
        for (uint32_t i = 0; i < gr->n_workers; i++)
            shm_worker(shm, w + i)->group = g;
        for (uint32_t i = 0; i < gr->n_slots; i++)
            ring_slot(shm, s + i)->group = g;
        w += gr->n_workers;
        s += gr->n_slots;
    }
    return 0;
}

void shm_destroy(struct shm *shm)
{
    if (shm->base)
        munmap(shm->base, shm->size);
    if (shm->fd >= 0)
        close(shm->fd);
    shm->base = NULL;
    shm->fd = -1;
}

struct shm_header *shm_header(const struct shm *shm) { return shm->base; }

struct shm_group *shm_group(const struct shm *shm, uint32_t g)
{
    const struct shm_header *h = shm->base;
    assert(g < h->n_groups);
    return (struct shm_group *)(void *)((char *)shm->base + h->off_groups) + g;
}

struct shm_worker *shm_worker(const struct shm *shm, uint32_t w)
{
    const struct shm_header *h = shm->base;
    assert(w < h->n_workers);
    return (struct shm_worker *)(void *)((char *)shm->base + h->off_workers) + w;
}

/* Per-item run time buckets: 10 us .. 10 s, roughly x3 apart. */
static const uint64_t shm_bounds[SHM_HIST_BUCKETS] = {
    10000ULL,     25000ULL,     50000ULL,      100000ULL,     250000ULL,   500000ULL,
    1000000ULL,   2500000ULL,   5000000ULL,    10000000ULL,   25000000ULL, 100000000ULL,
    500000000ULL, 1000000000ULL, 10000000000ULL, UINT64_MAX,
};

const uint64_t *shm_hist_bounds(void) { return shm_bounds; }

unsigned shm_hist_bucket(uint64_t ns)
{
    unsigned b = 0;
    while (b < SHM_HIST_BUCKETS - 1 && ns > shm_bounds[b])
        b++;
    return b;
}

uint64_t shm_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t shm_now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
