/*
 * ring_words: the ring's own words inside shm's per-group and per-worker
 * records: a group's ready queue (head, tail, its futex) and a worker's
 * mailbox for targeted tasks. They sit in struct shm_group and struct
 * shm_worker (shm.h lays out the region), but only ring.c reads or writes
 * them, and ring.h states their protocol: who writes each, and which
 * release pairs with which acquire (docs/ring.md has the table).
 *
 * A header of its own because shm.h embeds these structs and ring.h needs
 * shm.h: neither can include the other for them.
 */
#ifndef BATCHD_RING_WORDS_H
#define BATCHD_RING_WORDS_H

#include <stdatomic.h>
#include <stdint.h>

/* A group's ready queue: entries (slot index | generation) in a ring of
 * queue_cap u64 (shm.h: off_queue), free-running counters. */
struct ring_queue {
    _Alignas(64) _Atomic uint64_t head; /* next entry to take: workers (release CAS) */
    _Alignas(64) _Atomic uint64_t tail; /* next entry to fill: the engine only (release) */
    _Alignas(64) _Atomic uint32_t ready_seq; /* futex: bumped after publishing */
    _Atomic uint32_t ready_waiters;          /* workers sleeping on ready_seq */
};

/* A worker's mailbox: the engine stores gen << 32 | idx + 1 of a task only
 * this worker process may run (ring_publish_to, release); the worker takes
 * it with an exchange (acquire). 0 when empty. */
struct ring_mailbox {
    _Atomic uint64_t mail;
};

#endif
