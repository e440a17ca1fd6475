/*
 * futex: sleeping and waking on a 32-bit word in shared memory, as an
 * eventcount, so that no process ever busy-polls (the machine has few cores
 * and an idle batchd must use no CPU).
 *
 * The pattern (a waiter W, a notifier N, a condition C in shared memory):
 *
 *   W: seq = futex_prepare(word, waiters);   // announce, read the count
 *      if (C) { futex_cancel(waiters); ... } // re-check after announcing
 *      else futex_wait(word, waiters, seq, timeout);
 *   N: make C true; futex_notify(word, waiters, n);
 *
 * futex_prepare() increments *waiters and issues a seq_cst fence before the
 * caller re-checks C; futex_notify() issues a seq_cst fence after C was made
 * true and before it reads *waiters. The two fences pair (Dekker): either
 * the notifier sees the waiter (and bumps the word, so a wait on the stale
 * seq returns at once), or the waiter's re-check sees C. No wake is lost,
 * and a notifier with no sleepers makes no system call.
 *
 * Safe across threads and processes (the words live in MAP_SHARED memory,
 * so the non-private futex operations are used).
 */
#ifndef BATCHD_FUTEX_H
#define BATCHD_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

/* Announces a waiter and returns the word's current value. */
uint32_t futex_prepare(_Atomic uint32_t *word, _Atomic uint32_t *waiters);

/* Withdraws the announcement (the condition turned out true). */
void futex_cancel(_Atomic uint32_t *waiters);

/*
 * Sleeps while *word == seq, at most timeout_ms (< 0: no limit), then
 * withdraws the announcement. Returns 0 when woken or the word had changed,
 * -ETIMEDOUT, or -EINTR when a signal arrived (callers check their flags).
 */
int futex_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, uint32_t seq, int timeout_ms);

/* Bumps the word and wakes up to n sleepers if any announced themselves. */
void futex_notify(_Atomic uint32_t *word, _Atomic uint32_t *waiters, int n);

#endif
