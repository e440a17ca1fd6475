/*
 * Unit tests of service/shm.c: the layout of the shared region.
 *
 * For layouts of one to several groups: the header describes the region
 * (magic, counts, sizes), each group owns a contiguous range of workers and
 * task slots that follow one another, every region starts on a 64-byte
 * boundary (cache lines; the payload on a page), the regions do not overlap
 * and fit in `size`, queue capacities are powers of two with room for every
 * slot twice, and the fresh region is zeroed (every worker EMPTY, every
 * slot FREE). Then the histogram buckets, the clocks, and every kind of
 * impossible layout, which must be -EINVAL with nothing left mapped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "service/ring/ring.h"
#include "service/ring/shm.h"

static bool is_pow2(uint64_t v) { return v && (v & (v - 1)) == 0; }

static uint64_t page_size(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

struct layout_case {
    const char *what;
    uint32_t n_groups;
    uint32_t workers[4];
    uint32_t slots_per_worker;
    uint32_t in_cap, out_cap;
};

/* Creates the region for c and checks everything shm.h says of it. */
static void check_layout(const struct layout_case *c)
{
    static const char *const names[4] = { "echo", "square", "a-model-with-a-long-name.v2",
                                          "exp_sinh" };
    struct shm_layout lay = { c->n_groups, c->workers, names, c->slots_per_worker, c->in_cap,
                              c->out_cap };
    struct shm shm;
    int rc = shm_create(&shm, &lay);
    if (rc != 0)
        fail_msg("%s: shm_create: %d", c->what, rc);
    assert_non_null(shm.base);
    assert_true(shm.fd >= 0);

    const struct shm_header *h = shm_header(&shm);
    assert_ptr_equal(h, shm.base);
    assert_int_equal(h->magic, SHM_MAGIC);
    assert_int_equal(h->version, SHM_VERSION);
    assert_int_equal(h->n_groups, c->n_groups);
    uint32_t n_workers = 0, max_group_slots = 0;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        n_workers += c->workers[g];
        if (c->workers[g] * c->slots_per_worker > max_group_slots)
            max_group_slots = c->workers[g] * c->slots_per_worker;
    }
    assert_int_equal(h->n_workers, n_workers);
    assert_int_equal(h->n_slots, n_workers * c->slots_per_worker);
    assert_int_equal(h->size, shm.size);

    /* Payload capacities: at least what was asked, in whole cache lines. */
    assert_true(h->in_cap >= c->in_cap && h->in_cap % 64 == 0);
    assert_true(h->out_cap >= c->out_cap && h->out_cap % 64 == 0);

    /* One queue capacity for all groups: a power of two with room for
     * every slot of the biggest group twice (ring.h: stale entries). */
    assert_true(is_pow2(h->queue_cap));
    assert_true(h->queue_cap >= 2 * max_group_slots);

    /* Regions: aligned, in order, not overlapping, inside the region. */
    assert_int_equal(h->off_groups % 64, 0);
    assert_int_equal(h->off_workers % 64, 0);
    assert_int_equal(h->off_slots % 64, 0);
    assert_int_equal(h->off_queues % 64, 0);
    assert_int_equal(h->off_payload % page_size(), 0);
    assert_int_equal(h->size % page_size(), 0);
    assert_true(h->off_groups >= sizeof(struct shm_header));
    assert_true(h->off_groups + (uint64_t)h->n_groups * sizeof(struct shm_group) <= h->off_workers);
    assert_true(h->off_workers + (uint64_t)h->n_workers * sizeof(struct shm_worker) <=
                h->off_slots);
    assert_true(h->off_slots + (uint64_t)h->n_slots * sizeof(struct ring_slot) <= h->off_queues);
    assert_true(h->off_queues + (uint64_t)h->n_groups * h->queue_cap * sizeof(uint64_t) <=
                h->off_payload);
    assert_true(h->off_payload + (uint64_t)h->n_slots * (h->in_cap + h->out_cap) <= h->size);

    /* Groups: consecutive worker and slot ranges, own queues. */
    uint32_t next_worker = 0, next_slot = 0;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        const struct shm_group *gr = shm_group(&shm, g);
        assert_int_equal((uintptr_t)gr % 64, 0);
        assert_string_equal(gr->name, names[g]);
        assert_int_equal(gr->first_worker, next_worker);
        assert_int_equal(gr->n_workers, c->workers[g]);
        assert_int_equal(gr->first_slot, next_slot);
        assert_int_equal(gr->n_slots, c->workers[g] * c->slots_per_worker);
        assert_int_equal(gr->off_queue,
                         h->off_queues + (uint64_t)g * h->queue_cap * sizeof(uint64_t));
        assert_int_equal(gr->off_queue % sizeof(uint64_t), 0);
        /* Zeroed: no load time yet, no failures, empty queue. */
        assert_int_equal(gr->load_ns, 0);
        assert_int_equal(atomic_load(&gr->init_failures), 0);
        assert_int_equal(gr->load_error[0], '\0');
        assert_int_equal(atomic_load(&gr->head), 0);
        assert_int_equal(atomic_load(&gr->tail), 0);
        for (uint32_t w = gr->first_worker; w < gr->first_worker + gr->n_workers; w++) {
            const struct shm_worker *sw = shm_worker(&shm, w);
            assert_int_equal((uintptr_t)sw % 64, 0);
            assert_int_equal(sw->group, g);
            assert_int_equal(atomic_load(&sw->pid), 0);
            assert_int_equal(atomic_load(&sw->state), WORKER_EMPTY);
            assert_int_equal(atomic_load(&sw->tasks_done), 0);
        }
        for (uint32_t s = gr->first_slot; s < gr->first_slot + gr->n_slots; s++) {
            assert_int_equal(ring_slot(&shm, s)->group, g);
            assert_int_equal(ring_state_code(ring_slot_state(&shm, s)), RING_FREE);
        }
        next_worker += gr->n_workers;
        next_slot += gr->n_slots;
    }
    assert_int_equal(next_worker, h->n_workers);
    assert_int_equal(next_slot, h->n_slots);

    /* Each slot's payload is its own, and the last one ends inside. */
    uint8_t *end = (uint8_t *)shm.base + shm.size;
    for (uint32_t s = 0; s < h->n_slots; s++) {
        uint8_t *in = ring_slot_in(&shm, s), *out = ring_slot_out(&shm, s);
        assert_int_equal((uintptr_t)in % 64, 0);
        assert_ptr_equal(out, in + h->in_cap);
        assert_true(out + h->out_cap <= end);
        if (s + 1 < h->n_slots)
            assert_ptr_equal(ring_slot_in(&shm, s + 1), out + h->out_cap);
    }

    /* The whole region is writable (and its last byte is really inside). */
    memset((char *)shm.base + h->off_payload, 0xa5, shm.size - h->off_payload);
    ((volatile char *)shm.base)[shm.size - 1] = 1;

    shm_destroy(&shm);
    assert_null(shm.base);
    assert_int_equal(shm.fd, -1);
}

static void test_layouts(void **unused)
{
    (void)unused;
    static const struct layout_case cases[] = {
        { "one group, one worker", 1, { 1 }, 1, 64, 64 },
        { "one group", 1, { 3 }, 4, 4096, 4096 },
        { "two groups", 2, { 2, 5 }, 8, 65536, 65536 },
        { "four groups, uneven", 4, { 1, 3, 7, 2 }, 3, 100, 1000 },
        { "caps not multiples of 64", 3, { 2, 2, 2 }, 2, 65, 127 },
        { "biggest group last", 3, { 1, 1, 9 }, 5, 64, 64 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_layout(&cases[i]);
}

/* Names longer than the field are cut and stay terminated. */
static void test_long_group_name(void **unused)
{
    (void)unused;
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    const char *names[1] = { name };
    uint32_t gw[1] = { 1 };
    struct shm_layout lay = { 1, gw, names, 1, 64, 64 };
    struct shm shm;
    assert_int_equal(shm_create(&shm, &lay), 0);
    const struct shm_group *g = shm_group(&shm, 0);
    assert_int_equal(strlen(g->name), SHM_NAME_LEN - 1);
    assert_memory_equal(g->name, name, SHM_NAME_LEN - 1);
    shm_destroy(&shm);
}

/* The region is shared: a write in a forked child is seen by the parent
 * (MAP_SHARED), and the start time is a real-time clock reading. */
static void test_shared_across_fork(void **unused)
{
    (void)unused;
    uint32_t gw[1] = { 2 };
    const char *names[1] = { "g" };
    struct shm_layout lay = { 1, gw, names, 2, 64, 64 };
    uint64_t before = shm_now_real_ns();
    struct shm shm;
    assert_int_equal(shm_create(&shm, &lay), 0);
    uint64_t after = shm_now_real_ns();
    assert_true(shm_header(&shm)->started_ns >= before && shm_header(&shm)->started_ns <= after);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        atomic_store(&shm_worker(&shm, 1)->pid, 4242);
        ring_slot_out(&shm, 3)[0] = 'x';
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(atomic_load(&shm_worker(&shm, 1)->pid), 4242);
    assert_int_equal(ring_slot_out(&shm, 3)[0], 'x');
    shm_destroy(&shm);
}

/* ---- impossible layouts --------------------------------------------------- */

/* shm_create must fail with -EINVAL and leave nothing mapped. */
static void expect_einval(const char *what, const struct shm_layout *lay)
{
    struct shm shm;
    memset(&shm, 0x5a, sizeof shm);
    int rc = shm_create(&shm, lay);
    if (rc != -EINVAL)
        fail_msg("%s: %d, want -EINVAL", what, rc);
    assert_null(shm.base);
    assert_int_equal(shm.fd, -1);
}

static void test_invalid_layouts(void **unused)
{
    (void)unused;
    const char *names[3] = { "a", "b", "c" };
    uint32_t one[3] = { 1, 1, 1 };
    uint32_t zero_mid[3] = { 2, 0, 2 };
    uint32_t too_many[1] = { 0xffff };
    uint32_t sum_too_many[2] = { 0x8000, 0x8000 };

    struct shm_layout lay = { 1, one, names, 1, 64, 64 };
    lay.n_groups = 0;
    expect_einval("no groups", &lay);
    lay = (struct shm_layout){ 1, one, names, 0, 64, 64 };
    expect_einval("no slots per worker", &lay);
    lay = (struct shm_layout){ 1, one, names, 1, 63, 64 };
    expect_einval("in_cap under 64", &lay);
    lay = (struct shm_layout){ 1, one, names, 1, 64, 0 };
    expect_einval("out_cap 0", &lay);
    lay = (struct shm_layout){ 1, one, names, 1, (1u << 30) + 1, 64 };
    expect_einval("in_cap over 1 GiB", &lay);
    lay = (struct shm_layout){ 1, one, names, 1, 64, UINT32_MAX };
    expect_einval("out_cap over 1 GiB", &lay);
    lay = (struct shm_layout){ 3, zero_mid, names, 1, 64, 64 };
    expect_einval("a group without workers", &lay);
    lay = (struct shm_layout){ 1, too_many, names, 1, 64, 64 };
    expect_einval("0xffff workers in a group", &lay);
    lay = (struct shm_layout){ 2, sum_too_many, names, 1, 64, 64 };
    expect_einval("0x10000 workers in all", &lay);

    /* The limits themselves are fine. */
    struct shm shm;
    lay = (struct shm_layout){ 1, one, names, 1, 1u << 30, 64 };
    assert_int_equal(shm_create(&shm, &lay), 0);
    shm_destroy(&shm);
}

/*
 * Slot counts that do not fit the 32-bit fields (workers x slots_per_worker,
 * and twice that for the queue) are an impossible layout too. Run in a
 * child with an alarm: a layout computed in wrapped arithmetic may loop or
 * map a region too small for the counts it records, and neither may take
 * the test process with it.
 */
static void test_slot_count_overflow(void **unused)
{
    (void)unused;
    static const struct {
        uint32_t workers;
        uint32_t slots_per_worker;
    } cases[] = {
        { 1, 0x40000001u },  /* 2 x slots passes 2^31: no power of two above */
        { 2, 0x80000000u },  /* workers x slots wraps to 0 */
        { 0xfffe, 0x10001u } /* workers x slots fits, 2 x that does not */
        /* Not { 1, 0x80000000u }: with the counts unchecked, that would map
         * and touch hundreds of GiB before any verdict. */
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            signal(SIGALRM, SIG_DFL);
            alarm(5);
            uint32_t gw[1] = { cases[i].workers };
            const char *names[1] = { "big" };
            struct shm_layout lay = { 1, gw, names, cases[i].slots_per_worker, 64, 64 };
            struct shm shm;
            int rc = shm_create(&shm, &lay);
            _exit(rc == -EINVAL ? 0 : rc == 0 ? 1 : 2);
        }
        int status;
        pid_t got;
        while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
            ;
        assert_int_equal(got, pid);
        const char *verdict = NULL;
        if (WIFSIGNALED(status))
            verdict = WTERMSIG(status) == SIGALRM ? "did not return within 5 s" : "died by a signal";
        else if (WEXITSTATUS(status) == 1)
            verdict = "succeeded";
        else if (WEXITSTATUS(status) != 0)
            verdict = "failed with another error";
        if (verdict) {
            /* Every case is tried before the verdict, each one reported. */
            print_message("%u workers x %u slots per worker: shm_create %s, want -EINVAL\n",
                          cases[i].workers, cases[i].slots_per_worker, verdict);
            bad++;
        }
    }
    if (bad)
        fail_msg("%d of %zu overflowing layouts were not refused", bad,
                 sizeof cases / sizeof cases[0]);
}

/* ---- histogram, clocks ---------------------------------------------------- */

static void test_hist_buckets(void **unused)
{
    (void)unused;
    const uint64_t *b = shm_hist_bounds();
    assert_non_null(b);
    for (unsigned i = 1; i < SHM_HIST_BUCKETS; i++)
        assert_true(b[i] > b[i - 1]);
    assert_int_equal(b[SHM_HIST_BUCKETS - 1], UINT64_MAX);

    /* A bound belongs to its own bucket (upper bounds are inclusive, as
     * Prometheus's "le" is), one more nanosecond to the next. */
    assert_int_equal(shm_hist_bucket(0), 0);
    for (unsigned i = 0; i < SHM_HIST_BUCKETS - 1; i++) {
        assert_int_equal(shm_hist_bucket(b[i]), i);
        assert_int_equal(shm_hist_bucket(b[i] + 1), i + 1);
        if (i > 0)
            assert_int_equal(shm_hist_bucket(b[i - 1] + 1), i);
    }
    assert_int_equal(shm_hist_bucket(UINT64_MAX), SHM_HIST_BUCKETS - 1);
    assert_int_equal(shm_hist_bucket(UINT64_MAX - 1), SHM_HIST_BUCKETS - 1);

    /* Every observation lands in range, and the bucket never decreases as
     * the observation grows. */
    unsigned prev = 0;
    for (uint64_t ns = 1; ns < 100000000000ULL; ns = ns * 3 / 2 + 1) {
        unsigned k = shm_hist_bucket(ns);
        assert_true(k < SHM_HIST_BUCKETS);
        assert_true(k >= prev);
        assert_true(ns <= b[k]);
        if (k > 0)
            assert_true(ns > b[k - 1]);
        prev = k;
    }
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(id, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void test_clocks(void **unused)
{
    (void)unused;
    uint64_t m0 = shm_now_mono_ns();
    assert_true(m0 > 0);
    uint64_t prev = m0;
    for (int i = 0; i < 10000; i++) {
        uint64_t m = shm_now_mono_ns();
        assert_true(m >= prev);
        prev = m;
    }
    /* They are the documented clocks: a reading falls between two direct
     * readings of that clock (an order, not a duration). */
    static const struct {
        clockid_t id;
        uint64_t (*read)(void);
    } clocks[] = { { CLOCK_MONOTONIC, shm_now_mono_ns }, { CLOCK_REALTIME, shm_now_real_ns } };
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        uint64_t before = clock_ns(clocks[i].id);
        uint64_t via = clocks[i].read();
        uint64_t after = clock_ns(clocks[i].id);
        assert_true(before <= via && via <= after);
    }
    /* The real-time clock is a date after 2020, in nanoseconds. */
    assert_true(shm_now_real_ns() > 1577836800ULL * 1000000000ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_long_group_name),
        cmocka_unit_test(test_shared_across_fork),
        cmocka_unit_test(test_invalid_layouts),
        cmocka_unit_test(test_slot_count_overflow),
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}
