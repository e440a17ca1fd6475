/*
 * shm: the shared-memory region every batchd process maps.
 *
 * The supervisor creates one region (a memfd, mmap'ed MAP_SHARED) before it
 * forks anything; workers and the api process inherit the mapping. The
 * region holds offsets, never pointers, so its meaning does not depend on
 * where it is mapped; the accessors below turn offsets into addresses.
 *
 *   header       magic, version, layout, the engine's futex word
 *   groups[]     one per model group: its ready queue (see ring.h), futex,
 *                worker range, model load time, description, plugin path
 *   workers[]    one per worker slot: pid, state, counters, heartbeat,
 *                per-item latency histogram (written by that worker only)
 *   slots[]      task slots: state word and task metadata (see ring.h)
 *   queues       groups' ready-queue entries (u64 each)
 *   payload      per task slot: input bytes, then output bytes
 *
 * Who writes what is spelled out per field below and, for the task slots
 * and queues, in ring.h. The supervisor writes only worker-slot
 * bookkeeping (pid, restarts, state on death) and the DIED transition of a
 * dead worker's task; it never reads payloads (PostgreSQL's postmaster rule:
 * the process that must survive everything touches shared state least).
 *
 * Ownership: the region is created by shm_create() in the supervisor and
 * lives until the last process unmaps it; struct shm (a small private
 * handle) is owned by whoever called shm_create().
 */
#ifndef BATCHD_SHM_H
#define BATCHD_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "service/ring/ring_words.h"

#define SHM_MAGIC 0x3130646863746162ULL /* "batchd01" little-endian */
#define SHM_VERSION 1u
#define SHM_NAME_LEN 64
#define SHM_ERR_LEN 256
#define SHM_DESC_LEN 1024 /* a model's description in groups[] */
#define SHM_PATH_LEN 512  /* a plugin's path in groups[] */
#define SHM_HIST_BUCKETS 16 /* per-item latency buckets, see shm_hist_bounds */

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free in shared memory");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free in shared memory");

enum shm_worker_state {
    WORKER_EMPTY = 0, /* never started */
    WORKER_STARTING,  /* forked, init() running */
    WORKER_IDLE,      /* waiting for a task */
    WORKER_BUSY,      /* running a task */
    WORKER_STOPPING,  /* asked to stop, finishing its task */
    WORKER_DEAD,      /* exited; the supervisor will fork a replacement */
    WORKER_FAILED,    /* init() failed; respawned with back-off */
};

struct shm_header {
    uint64_t magic;
    uint32_t version;
    uint32_t n_groups;
    uint32_t n_workers;
    uint32_t n_slots;
    uint32_t queue_cap;   /* entries per group queue, a power of two */
    uint32_t in_cap;      /* input payload bytes per task slot */
    uint32_t out_cap;     /* output payload bytes per task slot */
    uint32_t pad0;
    uint64_t size;        /* bytes of the whole region */
    uint64_t off_groups, off_workers, off_slots, off_queues, off_payload;
    uint64_t started_ns;  /* CLOCK_REALTIME when the supervisor started */
    uint64_t max_output;  /* --max-output-size (supervisor, before fork; 0 = no
                             limit): a larger item output is that item's error */

    /* The engine's futex word (eventcount, see futex.h): bumped by workers
     * when a task is done, by the supervisor when a worker died, by api
     * threads when a job arrives or is cancelled. */
    _Alignas(64) _Atomic uint32_t engine_seq;
    _Atomic uint32_t engine_waiters;
    /* Bumped by each new api process: tells its tasks from a dead one's. */
    _Atomic uint32_t api_epoch;
    _Atomic uint32_t shutting_down; /* set by the supervisor on SIGTERM */
};

/* shm_group.flags */
#define SHM_GROUP_STATEFUL 0x1u /* the model keeps per-job state (acc_run...) */

struct shm_group {
    char name[SHM_NAME_LEN];
    uint32_t first_worker, n_workers;  /* workers[first_worker..+n_workers) */
    uint32_t first_slot, n_slots;      /* task slots owned by this group */
    uint64_t off_queue;                /* this group's queue entries */
    uint64_t load_ns;                  /* time model load() took (supervisor) */
    _Atomic uint32_t init_failures;    /* consecutive init() failures (supervisor) */
    uint32_t flags;                    /* SHM_GROUP_* (supervisor, before fork) */
    char load_error[SHM_ERR_LEN];      /* last init() failure, NUL-terminated */
    /* Written by the supervisor before the first fork, read-only after:
     * what GET /v1/models shows without looking the model up. UTF-8,
     * NUL-terminated, cut at a character boundary. */
    char description[SHM_DESC_LEN];    /* the model's description, "" if none */
    char plugin[SHM_PATH_LEN];         /* the plugin's path, "" for a built-in */
    char runtime[16];                  /* a coprocess model's runtime ("python"), "" if C */
    char module[SHM_PATH_LEN];         /* its module's path */
    /* A coprocess model's host (service/supervisor/zygote.h), written by the supervisor. */
    _Atomic int32_t host_pid;          /* 0 while it is down */
    _Atomic uint32_t host_loads;       /* load() calls that succeeded */
    _Atomic uint32_t host_restarts;    /* host starts after the first */
    /* Recycling limits of this group's workers (worker.h), 0 = none:
     * written by the supervisor before the first fork, read-only after. */
    uint64_t max_items;                /* items one worker process runs */
    uint64_t max_rss;                  /* bytes resident after a task */

    /* The ready queue's indices and futex: the ring's (ring_words.h,
     * protocol in ring.h). */
    struct ring_queue queue;
};

struct shm_worker {
    /* The worker process writes its own pid, first thing after fork and
     * before it can claim a task (release); the supervisor only clears it
     * to 0 once it has reaped the process. Readers (the engine: is the
     * process that holds a stateful job's state still the same?) acquire. */
    _Atomic int32_t pid;
    uint32_t group;
    _Atomic uint32_t restarts;          /* forks of this slot after the first */
    _Atomic uint32_t state;             /* enum shm_worker_state; the worker writes
                                           STARTING..STOPPING, the supervisor DEAD/FAILED */
    _Atomic uint64_t started_ns;        /* CLOCK_REALTIME of the fork (supervisor) */
    _Atomic int32_t coproc_pid;         /* a coprocess model's child of this worker, 0 if
                                           none (supervisor, before fork and at reap) */
    /* Planned replacements (WORKER_EXIT_RECYCLE), by the reason the worker
     * gave; apart from restarts, which count deaths (supervisor). */
    _Atomic uint32_t recycles_items, recycles_rss;
    uint32_t pad1;

    /* The worker process writes, others read (relaxed: statistics). */
    _Atomic uint32_t inits;             /* init() calls in this process */
    _Atomic uint32_t pad2;
    _Atomic uint64_t init_ns;           /* time init() took */
    _Atomic uint64_t tasks_done, items_done, items_failed;
    _Atomic uint64_t current_job;       /* job key of the task held, 0 when idle */
    _Atomic uint64_t task_started_ns;   /* CLOCK_MONOTONIC, 0 when idle */
    _Atomic uint64_t hist[SHM_HIST_BUCKETS]; /* per-item run time counts */
    _Atomic uint64_t hist_sum_ns;
    char init_error[SHM_ERR_LEN];       /* why init() failed (worker, before exit) */
    /* Targeted tasks (ring_publish_to): the ring's (ring_words.h). */
    struct ring_mailbox mailbox;
    /* Recycling (worker.h). The process that leaves writes the reason
     * (enum worker_recycle_reason) and CLOCK_MONOTONIC of its decision
     * before it exits; its replacement, once ready, writes how long the
     * slot was out of service (decision to ready) and clears recycle_at_ns.
     * These fields survive the respawn: the supervisor does not reset them. */
    _Atomic uint32_t recycle_reason;
    _Atomic uint32_t pad3;
    _Atomic uint64_t recycle_at_ns;
    _Atomic uint64_t last_recycle_ns;   /* 0 = never recycled */
} __attribute__((aligned(64)));

struct shm {
    void *base;
    size_t size;
    int fd;
};

/* Layout request for shm_create(). */
struct shm_layout {
    uint32_t n_groups;
    const uint32_t *group_workers; /* workers per group, n_groups entries */
    const char *const *group_names;
    uint32_t slots_per_worker;     /* task slots per worker of a group */
    uint32_t in_cap, out_cap;      /* payload bytes per slot */
};

/*
 * Creates and maps the region and fills in the layout. Supervisor only,
 * before any fork. Returns 0 and fills *shm, or a negative errno (-EINVAL
 * for an impossible layout, -ENOMEM, or the memfd/ftruncate/mmap error);
 * on failure nothing is left mapped.
 */
int shm_create(struct shm *shm, const struct shm_layout *layout);

/* Unmaps and closes. Each process may call it for its own mapping. */
void shm_destroy(struct shm *shm);

/* Accessors: offsets to addresses. Indices are not checked beyond asserts. */
struct shm_header *shm_header(const struct shm *shm);
struct shm_group *shm_group(const struct shm *shm, uint32_t g);
struct shm_worker *shm_worker(const struct shm *shm, uint32_t w);

/* Upper bounds (ns) of the latency histogram buckets; the last is +Inf
 * (UINT64_MAX). Returns the bucket an observation falls in. */
const uint64_t *shm_hist_bounds(void);
unsigned shm_hist_bucket(uint64_t ns);

/* CLOCK_MONOTONIC / CLOCK_REALTIME in nanoseconds. */
uint64_t shm_now_mono_ns(void);
uint64_t shm_now_real_ns(void);

#endif
