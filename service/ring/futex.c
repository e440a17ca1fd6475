#include "service/ring/futex.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint32_t futex_prepare(_Atomic uint32_t *word, _Atomic uint32_t *waiters)
{
    /* Read the word before announcing: a notify that lands after this load
     * changes the word, so the later wait on this value cannot sleep. */
    uint32_t seq = atomic_load_explicit(word, memory_order_acquire);
    atomic_fetch_add_explicit(waiters, 1, memory_order_relaxed);
    /* Pairs with the fence in futex_notify(): orders our announcement
     * before the caller's re-check of the condition. */
    atomic_thread_fence(memory_order_seq_cst);
    return seq;
}

void futex_cancel(_Atomic uint32_t *waiters)
{
    atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
}

int futex_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, uint32_t seq, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seq, tsp, NULL, 0);
    int err = rc < 0 ? errno : 0;
    atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
    if (rc == 0 || err == EAGAIN)
        return 0;
    if (err == ETIMEDOUT)
        return -ETIMEDOUT;
    return -EINTR;
}

void futex_notify(_Atomic uint32_t *word, _Atomic uint32_t *waiters, int n)
{
    /* The bump is a release after the caller made its condition true: a
     * waiter whose prepare reads the new value also sees the condition. */
    atomic_fetch_add_explicit(word, 1, memory_order_seq_cst);
    /* Pairs with the fence in futex_prepare(): either we see the waiter's
     * announcement below, or its re-check sees the condition. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(waiters, memory_order_relaxed) == 0)
        return;
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n > 0 ? n : INT_MAX, NULL, NULL, 0);
}
