#include "service/ring/ring.h"

#include <errno.h>
#include <string.h>

#include "service/ring/futex.h"

static struct shm_header *ring_hdr(const struct shm *shm) { return shm->base; }

struct ring_slot *ring_slot(const struct shm *shm, uint32_t idx)
{
    /* the layout (shm.c) aligns every offset for what lives there; the
     * void * step says so to -Wcast-align on targets (and compilers) that check */
    return (struct ring_slot *)(void *)((char *)shm->base + ring_hdr(shm)->off_slots) + idx;
}

uint8_t *ring_slot_in(const struct shm *shm, uint32_t idx)
{
    const struct shm_header *h = ring_hdr(shm);
    return (uint8_t *)shm->base + h->off_payload + (uint64_t)idx * (h->in_cap + h->out_cap);
}

uint8_t *ring_slot_out(const struct shm *shm, uint32_t idx)
{
    return ring_slot_in(shm, idx) + ring_hdr(shm)->in_cap;
}

static _Atomic uint64_t *ring_queue(const struct shm *shm, const struct shm_group *g)
{
    return (_Atomic uint64_t *)(void *)((char *)shm->base + g->off_queue);
}

/* Clears what the last task left in a FREE slot (before READY is published,
 * whose release store orders these relaxed ones). */
static void ring_slot_clear(struct ring_slot *s)
{
    atomic_store_explicit(&s->cancel, 0, memory_order_relaxed);
    atomic_store_explicit(&s->out_count, 0, memory_order_relaxed);
    atomic_store_explicit(&s->out_len, 0, memory_order_relaxed);
    atomic_store_explicit(&s->run_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->died_status, 0, memory_order_relaxed);
    atomic_store_explicit(&s->timeout_item, 0, memory_order_relaxed);
    atomic_store_explicit(&s->item_started_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->worker_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->batch_n, 0, memory_order_relaxed);
}

int ring_publish(struct shm *shm, uint32_t idx)
{
    struct ring_slot *s = ring_slot(shm, idx);
    struct shm_group *g = shm_group(shm, s->group);
    uint32_t mask = ring_hdr(shm)->queue_cap - 1;
    /* Only this thread moves the tail; head is read to see room. */
    uint64_t tail = atomic_load_explicit(&g->queue.tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&g->queue.head, memory_order_acquire);
    if (tail - head > mask)
        return -EAGAIN;
    uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    if (ring_state_code(st) != RING_FREE)
        return -EBUSY;
    uint32_t gen = ring_state_gen(st) + 1;
    ring_slot_clear(s);
    /* Release: the metadata and inputs written while FREE are visible to the
     * worker whose acquire CAS takes READY. */
    atomic_store_explicit(&s->state, ring_state(gen, 0, RING_READY), memory_order_release);
    atomic_store_explicit(&ring_queue(shm, g)[tail & mask], ((uint64_t)gen << 32) | idx,
                          memory_order_relaxed);
    /* Release: pairs with the worker's acquire load of tail; the entry (and
     * the READY state before it) are visible once tail covers them. */
    atomic_store_explicit(&g->queue.tail, tail + 1, memory_order_release);
    return 0;
}

void ring_notify_workers(struct shm *shm, uint32_t gi, int n)
{
    struct shm_group *g = shm_group(shm, gi);
    futex_notify(&g->queue.ready_seq, &g->queue.ready_waiters, n);
}

uint64_t ring_slot_state(const struct shm *shm, uint32_t idx)
{
    return atomic_load_explicit(&ring_slot(shm, idx)->state, memory_order_acquire);
}

void ring_release(struct shm *shm, uint32_t idx)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    atomic_store_explicit(&s->state, ring_state(ring_state_gen(st), 0, RING_FREE),
                          memory_order_release);
}

bool ring_retract(struct shm *shm, uint32_t idx)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (ring_state_code(st) != RING_READY)
        return false;
    return atomic_compare_exchange_strong_explicit(
        &s->state, &st, ring_state(ring_state_gen(st), 0, RING_FREE), memory_order_acq_rel,
        memory_order_acquire);
}

uint32_t ring_reclaim_all(struct shm *shm)
{
    uint32_t claimed = 0;
    for (uint32_t i = 0; i < ring_hdr(shm)->n_slots; i++) {
        struct ring_slot *s = ring_slot(shm, i);
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        uint64_t free_st = ring_state(ring_state_gen(st), 0, RING_FREE);
        switch (ring_state_code(st)) {
        case RING_READY:
            /* Races a worker's claim: exactly one CAS wins. */
            if (atomic_compare_exchange_strong_explicit(&s->state, &st, free_st,
                                                        memory_order_acq_rel,
                                                        memory_order_acquire))
                break;
            claimed++;
            break;
        case RING_DONE:
        case RING_DIED:
            atomic_store_explicit(&s->state, free_st, memory_order_release);
            break;
        case RING_CLAIMED:
            claimed++;
            break;
        case RING_FREE:
            break;
        }
    }
    return claimed;
}

int ring_claim(struct shm *shm, uint32_t gi, uint32_t w, uint32_t *idx)
{
    struct shm_group *g = shm_group(shm, gi);
    _Atomic uint64_t *q = ring_queue(shm, g);
    uint32_t mask = ring_hdr(shm)->queue_cap - 1;
    for (;;) {
        uint64_t head = atomic_load_explicit(&g->queue.head, memory_order_acquire);
        /* Acquire: pairs with the engine's release of tail, so the entries
         * below tail and their slots' READY states are visible. */
        uint64_t tail = atomic_load_explicit(&g->queue.tail, memory_order_acquire);
        if (head >= tail)
            return -EAGAIN;
        uint64_t e = atomic_load_explicit(&q[head & mask], memory_order_relaxed);
        uint32_t i = (uint32_t)e, gen = (uint32_t)(e >> 32);
        struct ring_slot *s = ring_slot(shm, i);
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (ring_state_code(st) == RING_READY && ring_state_gen(st) == gen) {
            /* The claim: one CAS that names us, so a death right after it
             * still tells the supervisor what we held. Acquire pairs with
             * the engine's release store of READY (inputs visible). */
            if (!atomic_compare_exchange_strong_explicit(&s->state, &st,
                                                         ring_state(gen, w, RING_CLAIMED),
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            /* Advisory: if we die before this, the next claimer skips the
             * entry because the slot is no longer READY(gen). */
            atomic_compare_exchange_strong_explicit(&g->queue.head, &head, head + 1,
                                                    memory_order_release, memory_order_relaxed);
            *idx = i;
            return 0;
        }
        /* Taken already (its claimer has not advanced head yet, or died) or
         * stale: help head past it. */
        atomic_compare_exchange_strong_explicit(&g->queue.head, &head, head + 1, memory_order_release,
                                                memory_order_relaxed);
    }
}

void ring_publish_to(struct shm *shm, uint32_t idx, uint32_t w)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    uint32_t gen = ring_state_gen(st) + 1;
    ring_slot_clear(s);
    /* Release, as in ring_publish: metadata and inputs before READY. */
    atomic_store_explicit(&s->state, ring_state(gen, 0, RING_READY), memory_order_release);
    /* Release: the worker's exchange (acquire) then sees READY(gen). */
    atomic_store_explicit(&shm_worker(shm, w)->mailbox.mail, ((uint64_t)gen << 32) | (idx + 1u),
                          memory_order_release);
    struct shm_group *g = shm_group(shm, s->group);
    futex_notify(&g->queue.ready_seq, &g->queue.ready_waiters, (int)g->n_workers);
}

int ring_claim_mail(struct shm *shm, uint32_t w, int32_t pid, uint32_t *idx)
{
    _Atomic uint64_t *mail = &shm_worker(shm, w)->mailbox.mail;
    if (!atomic_load_explicit(mail, memory_order_relaxed))
        return -EAGAIN; /* the common case: no exchange, no cache-line write */
    uint64_t m = atomic_exchange_explicit(mail, 0, memory_order_acquire);
    if (!m)
        return -EAGAIN;
    uint32_t i = (uint32_t)m - 1u, gen = (uint32_t)(m >> 32);
    if (i >= ring_hdr(shm)->n_slots)
        return -EAGAIN;
    struct ring_slot *s = ring_slot(shm, i);
    uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (ring_state_code(st) != RING_READY || ring_state_gen(st) != gen || s->target_pid != pid)
        return -EAGAIN;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &st, ring_state(gen, w, RING_CLAIMED),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return -EAGAIN;
    atomic_store_explicit(&s->worker_pid, pid, memory_order_relaxed);
    *idx = i;
    return 0;
}

bool ring_poll_ready(struct shm *shm, uint32_t gi, uint32_t w, uint64_t max_ns)
{
    struct shm_group *g = shm_group(shm, gi);
    _Atomic uint64_t *mail = &shm_worker(shm, w)->mailbox.mail;
    uint64_t t0 = shm_now_mono_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&g->queue.head, memory_order_relaxed) <
                atomic_load_explicit(&g->queue.tail, memory_order_relaxed) ||
            atomic_load_explicit(mail, memory_order_relaxed))
            return true;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if ((i & 63) == 0 && shm_now_mono_ns() - t0 >= max_ns)
            return false;
    }
}

int ring_wait_ready(struct shm *shm, uint32_t gi, uint32_t w, int timeout_ms)
{
    struct shm_group *g = shm_group(shm, gi);
    uint32_t seq = futex_prepare(&g->queue.ready_seq, &g->queue.ready_waiters);
    if (atomic_load_explicit(&g->queue.head, memory_order_acquire) <
            atomic_load_explicit(&g->queue.tail, memory_order_acquire) ||
        atomic_load_explicit(&shm_worker(shm, w)->mailbox.mail, memory_order_acquire)) {
        futex_cancel(&g->queue.ready_waiters);
        return 0;
    }
    return futex_wait(&g->queue.ready_seq, &g->queue.ready_waiters, seq, timeout_ms);
}

int ring_put_input(uint8_t *in, uint32_t *used, uint32_t cap, const void *data, size_t len)
{
    if (len > UINT32_MAX || *used > cap || (uint64_t)len + RING_IN_HDR > cap - *used)
        return -ENOSPC;
    uint32_t n = (uint32_t)len;
    memcpy(in + *used, &n, RING_IN_HDR);
    memcpy(in + *used + RING_IN_HDR, data, len);
    *used += RING_IN_HDR + n;
    return 0;
}

int ring_put_output(struct shm *shm, uint32_t idx, uint32_t kind, const void *data, uint32_t len)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint32_t cap = ring_hdr(shm)->out_cap;
    /* Only we write these while CLAIMED. */
    uint32_t used = atomic_load_explicit(&s->out_len, memory_order_relaxed);
    if (len > cap || (uint64_t)used + RING_OUT_HDR + len > cap)
        return -ENOSPC;
    uint8_t *p = ring_slot_out(shm, idx) + used;
    memcpy(p, &len, 4);
    p[4] = (uint8_t)kind;
    memcpy(p + RING_OUT_HDR, data, len);
    atomic_store_explicit(&s->out_len, used + RING_OUT_HDR + len, memory_order_release);
    /* Release: the record is complete before the count covers it; a death
     * after this point keeps the item's result. */
    atomic_fetch_add_explicit(&s->out_count, 1, memory_order_release);
    return 0;
}

void ring_complete(struct shm *shm, uint32_t idx, uint32_t w)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    if (ring_state_code(st) == RING_CLAIMED && ring_state_worker(st) == w)
        atomic_compare_exchange_strong_explicit(
            &s->state, &st, ring_state(ring_state_gen(st), w, RING_DONE),
            memory_order_release, memory_order_relaxed);
    /* Wake the engine only when it has something to do soon: its group's
     * queue running low (time to refill), or a task it waits for by itself
     * (export, reduce). While tasks are still queued, the completion of the
     * last of them will wake it and it collects everything at once: one
     * wake-up per batch of tiny tasks instead of one per task. The last
     * completion always sees a short queue (its own claim emptied it or
     * came after), so no DONE slot waits longer than the queue takes to
     * drain, nor past the engine's own tick. */
    struct shm_group *g = shm_group(shm, s->group);
    uint64_t head = atomic_load_explicit(&g->queue.head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&g->queue.tail, memory_order_acquire);
    if (s->kind != 0 || tail - head <= 2u * g->n_workers)
        ring_notify_engine(shm);
}

uint32_t ring_reclaim_worker(struct shm *shm, uint32_t w, int status)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ring_hdr(shm)->n_slots; i++) {
        struct ring_slot *s = ring_slot(shm, i);
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (ring_state_code(st) != RING_CLAIMED || ring_state_worker(st) != w)
            continue;
        atomic_store_explicit(&s->died_status, status, memory_order_relaxed);
        /* Release: the status is visible with DIED. The worker is dead, so
         * nothing else moves this slot; the CAS only guards a caller bug. */
        if (atomic_compare_exchange_strong_explicit(
                &s->state, &st, ring_state(ring_state_gen(st), w, RING_DIED),
                memory_order_release, memory_order_relaxed))
            n++;
    }
    if (n)
        ring_notify_engine(shm);
    return n;
}

bool ring_next_input(const struct shm *shm, uint32_t idx, uint32_t *pos, const uint8_t **data,
                     uint32_t *len)
{
    const struct ring_slot *s = ring_slot(shm, idx);
    uint32_t end = s->in_len;
    if (*pos + RING_IN_HDR > end)
        return false;
    const uint8_t *p = ring_slot_in(shm, idx) + *pos;
    uint32_t n;
    memcpy(&n, p, 4);
    if (n > end - *pos - RING_IN_HDR)
        return false;
    *data = p + RING_IN_HDR;
    *len = n;
    *pos += RING_IN_HDR + n;
    return true;
}

bool ring_next_output(const struct shm *shm, uint32_t idx, uint32_t limit, uint32_t *pos,
                      uint32_t *kind, const uint8_t **data, uint32_t *len)
{
    if (limit > ring_hdr(shm)->out_cap || *pos + RING_OUT_HDR > limit)
        return false;
    const uint8_t *p = ring_slot_out(shm, idx) + *pos;
    uint32_t n;
    memcpy(&n, p, 4);
    if (n > limit - *pos - RING_OUT_HDR)
        return false;
    *kind = p[4];
    *data = p + RING_OUT_HDR;
    *len = n;
    *pos += RING_OUT_HDR + n;
    return true;
}

void ring_notify_engine(struct shm *shm)
{
    struct shm_header *h = ring_hdr(shm);
    futex_notify(&h->engine_seq, &h->engine_waiters, 1);
}

int ring_wait_engine(struct shm *shm, bool (*has_work)(void *), void *arg, int timeout_ms)
{
    struct shm_header *h = ring_hdr(shm);
    uint32_t seq = futex_prepare(&h->engine_seq, &h->engine_waiters);
    if (has_work && has_work(arg)) {
        futex_cancel(&h->engine_waiters);
        return 0;
    }
    return futex_wait(&h->engine_seq, &h->engine_waiters, seq, timeout_ms);
}
