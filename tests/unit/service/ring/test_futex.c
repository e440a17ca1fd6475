/*
 * Unit tests of service/futex.c: the eventcount of futex.h.
 *
 * The bookkeeping (prepare announces a waiter, cancel and every return of
 * futex_wait withdraw it), the three returns of futex_wait (-ETIMEDOUT,
 * -EINTR, 0 when the word moved), the no-lost-wake-up rule (a notify that
 * lands between prepare and wait makes the wait return at once), and real
 * sleepers in forked processes woken through a MAP_SHARED mapping, the way
 * batchd's workers and engine use it.
 *
 * Every wait has a timeout (at most 10 s) and every child an alarm, so a
 * broken futex fails the test instead of hanging it. Nothing is asserted
 * about how long anything took, only about which value came back: a wait
 * that should have been woken and instead reached its generous timeout
 * returns -ETIMEDOUT, and that is the failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "service/ring/futex.h"

/* Long enough that no loaded machine reaches it when a wake is due. */
#define GENEROUS_MS 10000

/* ---- in one process -------------------------------------------------------- */

static void test_prepare_cancel_bookkeeping(void **unused)
{
    (void)unused;
    _Atomic uint32_t word = 41, waiters = 0;
    assert_int_equal(futex_prepare(&word, &waiters), 41);
    assert_int_equal(atomic_load(&waiters), 1);
    assert_int_equal(futex_prepare(&word, &waiters), 41);
    assert_int_equal(atomic_load(&waiters), 2);
    futex_cancel(&waiters);
    assert_int_equal(atomic_load(&waiters), 1);
    futex_cancel(&waiters);
    assert_int_equal(atomic_load(&waiters), 0);
    /* Prepare only reads the word. */
    assert_int_equal(atomic_load(&word), 41);

    /* The word wraps like any free-running counter. */
    atomic_store(&word, UINT32_MAX);
    assert_int_equal(futex_prepare(&word, &waiters), UINT32_MAX);
    futex_cancel(&waiters);
    futex_notify(&word, &waiters, 1);
    assert_int_equal(atomic_load(&word), 0);
    assert_int_equal(atomic_load(&waiters), 0);
}

static void test_wait_times_out(void **unused)
{
    (void)unused;
    _Atomic uint32_t word = 7, waiters = 0;
    uint32_t seq = futex_prepare(&word, &waiters);
    assert_int_equal(futex_wait(&word, &waiters, seq, 30), -ETIMEDOUT);
    /* The wait withdrew the announcement and left the word alone. */
    assert_int_equal(atomic_load(&waiters), 0);
    assert_int_equal(atomic_load(&word), 7);

    /* 0 ms: a poll that still times out rather than returning 0. */
    seq = futex_prepare(&word, &waiters);
    assert_int_equal(futex_wait(&word, &waiters, seq, 0), -ETIMEDOUT);
    assert_int_equal(atomic_load(&waiters), 0);

    /* A timeout of more than a second (the seconds part of the timespec). */
    seq = futex_prepare(&word, &waiters);
    assert_int_equal(futex_wait(&word, &waiters, seq, 1050), -ETIMEDOUT);
    assert_int_equal(atomic_load(&waiters), 0);
}

/* The race futex.h is about: the notify lands after prepare and before
 * the wait. The wait must not sleep (it would sleep for the whole timeout
 * and return -ETIMEDOUT). */
static void test_notify_between_prepare_and_wait(void **unused)
{
    (void)unused;
    _Atomic uint32_t word = 3, waiters = 0;
    uint32_t seq = futex_prepare(&word, &waiters);
    futex_notify(&word, &waiters, 1);
    assert_int_equal(atomic_load(&word), 4);
    assert_int_equal(futex_wait(&word, &waiters, seq, GENEROUS_MS), 0);
    assert_int_equal(atomic_load(&waiters), 0);

    /* Any change of the word counts, not only a notify; and so does a wait
     * without a time limit (it must not sleep at all here). */
    seq = futex_prepare(&word, &waiters);
    atomic_store(&word, seq + 100);
    assert_int_equal(futex_wait(&word, &waiters, seq, -1), 0);
    assert_int_equal(atomic_load(&waiters), 0);

    /* A stale seq from long ago, too. */
    seq = futex_prepare(&word, &waiters);
    assert_int_equal(futex_wait(&word, &waiters, seq - 1, GENEROUS_MS), 0);
    assert_int_equal(atomic_load(&waiters), 0);
}

/* A notifier with nobody announced still bumps the word, so a waiter that
 * read the word before it cannot sleep on the old value. */
static void test_notify_without_waiters(void **unused)
{
    (void)unused;
    _Atomic uint32_t word = 0, waiters = 0;
    for (uint32_t i = 1; i <= 5; i++) {
        futex_notify(&word, &waiters, 1);
        assert_int_equal(atomic_load(&word), i);
        assert_int_equal(atomic_load(&waiters), 0);
    }
}

static volatile sig_atomic_t got_alarm;

static void on_alarm(int sig)
{
    (void)sig;
    got_alarm = 1;
}

/* A caught signal (no SA_RESTART) ends the wait with -EINTR and the
 * announcement is withdrawn. If the signal never came, the wait would
 * reach its timeout and return -ETIMEDOUT instead. */
static void test_signal_interrupts_wait(void **unused)
{
    (void)unused;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);

    static const int timeouts[] = { GENEROUS_MS, -1 };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        _Atomic uint32_t word = 0, waiters = 0;
        got_alarm = 0;
        /* The first tick after 50 ms; then every second, in case one is
         * delivered before the wait starts (the no-limit wait must end). */
        struct itimerval it = { { 1, 0 }, { 0, 50000 } }, off = { { 0, 0 }, { 0, 0 } };
        assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
        uint32_t seq = futex_prepare(&word, &waiters);
        int rc = futex_wait(&word, &waiters, seq, timeouts[i]);
        assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
        assert_int_equal(rc, -EINTR);
        assert_true(got_alarm);
        assert_int_equal(atomic_load(&waiters), 0);
    }
    /* A tick generated before the disarm may still be pending: ignore it
     * rather than let the default action end the test process. */
    signal(SIGALRM, SIG_IGN);
    assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
}

/* ---- across processes ------------------------------------------------------ */

/* What parent and children share: MAP_SHARED anonymous memory, inherited
 * over fork, as batchd's region is. */
struct shared {
    _Atomic uint32_t word;
    _Atomic uint32_t waiters;
    _Atomic uint32_t cond;    /* the condition the children wait for */
    _Atomic uint32_t started; /* children that reached their first prepare */
};

static struct shared *map_shared(void)
{
    void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    memset(p, 0, sizeof(struct shared));
    return p;
}

/* Child exit codes. */
enum { CHILD_WOKEN = 0, CHILD_TIMED_OUT = 1, CHILD_OTHER = 2 };

/*
 * The waiter's side of futex.h's pattern: announce, re-check the
 * condition, sleep, and loop on a wake that found the condition still
 * false. Exits CHILD_WOKEN once the condition is seen, CHILD_TIMED_OUT if
 * a wait reached its timeout first.
 */
__attribute__((noreturn)) static void child_wait(struct shared *sh, int timeout_ms)
{
    signal(SIGALRM, SIG_DFL);
    alarm(30); /* bounded even with timeout_ms < 0 */
    bool counted = false;
    for (int round = 0; round < 1000; round++) {
        uint32_t seq = futex_prepare(&sh->word, &sh->waiters);
        if (!counted) {
            atomic_fetch_add(&sh->started, 1);
            counted = true;
        }
        if (atomic_load(&sh->cond)) {
            futex_cancel(&sh->waiters);
            _exit(CHILD_WOKEN);
        }
        int rc = futex_wait(&sh->word, &sh->waiters, seq, timeout_ms);
        if (rc == -ETIMEDOUT)
            _exit(CHILD_TIMED_OUT);
        if (rc != 0 && rc != -EINTR)
            _exit(CHILD_OTHER);
        if (atomic_load(&sh->cond))
            _exit(CHILD_WOKEN);
    }
    _exit(CHILD_OTHER);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* True when /proc says pid is asleep (state S), so a notify now is a real
 * wake of a sleeper and not the word-changed fast path. */
static bool is_sleeping(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces */
    return rp && rp[1] == ' ' && rp[2] == 'S';
}

/* Waits for pid to exit, at most GENEROUS_MS * 2; kills it past that.
 * Returns its exit code, or -1 when it had to be killed or died by a
 * signal. */
static int reap(pid_t pid)
{
    for (int i = 0; i < GENEROUS_MS * 2 / 10; i++) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        assert_true(got == 0 || (got < 0 && errno == EINTR));
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/*
 * Forks n waiters on one shared word, lets them announce themselves and
 * (as far as /proc can tell, within a bound) fall asleep, then makes the
 * condition true and notifies: every child must see it and exit woken.
 */
static void wake_children(int n, int timeout_ms)
{
    struct shared *sh = map_shared();
    pid_t pids[4];
    assert_true(n <= 4);
    fflush(NULL);
    for (int k = 0; k < n; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0)
            child_wait(sh, timeout_ms);
    }
    /* Bounded: all announced, then (best effort) all asleep. */
    for (int i = 0; i < 1000 && atomic_load(&sh->started) < (uint32_t)n; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&sh->started), n);
    for (int k = 0; k < n; k++)
        for (int i = 0; i < 200 && !is_sleeping(pids[k]); i++)
            sleep_ms(5);
    assert_true(atomic_load(&sh->waiters) <= (uint32_t)n);

    /* The notifier's side: condition first, then notify. */
    atomic_store(&sh->cond, 1);
    futex_notify(&sh->word, &sh->waiters, n);

    for (int k = 0; k < n; k++) {
        int code = reap(pids[k]);
        if (code != CHILD_WOKEN)
            fail_msg("child %d of %d: exit %d (%s)", k, n, code,
                     code == CHILD_TIMED_OUT ? "not woken before its timeout" : "killed or failed");
    }
    assert_int_equal(atomic_load(&sh->waiters), 0);
    munmap(sh, sizeof *sh);
}

static void test_child_woken_by_parent(void **unused)
{
    (void)unused;
    wake_children(1, GENEROUS_MS);
}

static void test_child_without_time_limit_woken(void **unused)
{
    (void)unused;
    wake_children(1, -1);
}

static void test_several_children_woken(void **unused)
{
    (void)unused;
    wake_children(3, GENEROUS_MS);
}

/* Ping-pong between two processes on two words, many rounds: each side
 * waits for the other's move, so a single lost wake-up stalls a round until
 * the wait's timeout, which the child reports as a failure. */
static void test_ping_pong(void **unused)
{
    (void)unused;
    struct {
        _Atomic uint32_t word[2], waiters[2], turn;
    } *pp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(pp != MAP_FAILED);
    memset(pp, 0, sizeof *pp);
    enum { ROUNDS = 2000 };
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    int me = pid == 0 ? 1 : 0;
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(60);
    }
    int failure = 0;
    for (uint32_t t = (uint32_t)me; t < 2 * ROUNDS && !failure; t += 2) {
        /* Wait for turn == t, then pass it on. */
        for (int tries = 0; atomic_load(&pp->turn) != t; tries++) {
            if (tries > 100) {
                failure = 2;
                break;
            }
            uint32_t seq = futex_prepare(&pp->word[me], &pp->waiters[me]);
            if (atomic_load(&pp->turn) == t) {
                futex_cancel(&pp->waiters[me]);
                break;
            }
            int rc = futex_wait(&pp->word[me], &pp->waiters[me], seq, GENEROUS_MS);
            if (rc == -ETIMEDOUT) {
                failure = 1;
                break;
            }
        }
        if (failure)
            break;
        atomic_store(&pp->turn, t + 1);
        futex_notify(&pp->word[!me], &pp->waiters[!me], 1);
    }
    if (pid == 0)
        _exit(failure);
    int code = reap(pid);
    if (failure || code != 0)
        fail_msg("ping-pong stalled: parent %d, child %d (1: a wait timed out)", failure, code);
    assert_int_equal(atomic_load(&pp->turn), 2 * ROUNDS);
    assert_int_equal(atomic_load(&pp->waiters[0]), 0);
    assert_int_equal(atomic_load(&pp->waiters[1]), 0);
    munmap(pp, 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepare_cancel_bookkeeping),
        cmocka_unit_test(test_wait_times_out),
        cmocka_unit_test(test_notify_between_prepare_and_wait),
        cmocka_unit_test(test_notify_without_waiters),
        cmocka_unit_test(test_signal_interrupts_wait),
        cmocka_unit_test(test_child_woken_by_parent),
        cmocka_unit_test(test_child_without_time_limit_woken),
        cmocka_unit_test(test_several_children_woken),
        cmocka_unit_test(test_ping_pong),
    };
    return cmocka_run_group_tests_name("futex", tests, NULL, NULL);
}
