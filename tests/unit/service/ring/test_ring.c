/*
 * Unit tests of service/ring.c: the task-slot protocol in shared memory,
 * with real forked consumers, including consumers killed while they hold a
 * task. The parent plays the engine (publish, collect, re-queue).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "service/ring/ring.h"
#include "service/ring/shm.h"

static struct shm make_shm(uint32_t workers, uint32_t slots_per_worker)
{
    struct shm shm;
    uint32_t gw[1] = { workers };
    const char *names[1] = { "test" };
    struct shm_layout lay = { 1, gw, names, slots_per_worker, 4096, 4096 };
    assert_int_equal(shm_create(&shm, &lay), 0);
    return shm;
}

/* Writes one input record holding `v` into FREE slot idx and publishes it. */
static int publish_value(struct shm *shm, uint32_t idx, uint64_t key, uint32_t v)
{
    struct ring_slot *s = ring_slot(shm, idx);
    uint8_t *in = ring_slot_in(shm, idx);
    char text[16];
    uint32_t len = (uint32_t)snprintf(text, sizeof text, "%u", v);
    memcpy(in, &len, 4);
    memcpy(in + 4, text, len);
    s->job_key = key;
    s->first_index = v;
    s->n_items = 1;
    s->in_len = 4 + len;
    return ring_publish(shm, idx);
}

static void test_layout(void **state)
{
    (void)state;
    struct shm shm = make_shm(3, 4);
    struct shm_header *h = shm_header(&shm);
    assert_int_equal(h->magic, SHM_MAGIC);
    assert_int_equal(h->n_workers, 3);
    assert_int_equal(h->n_slots, 12);
    assert_true((h->queue_cap & (h->queue_cap - 1)) == 0);
    assert_true(h->queue_cap >= 24);
    assert_int_equal(shm_group(&shm, 0)->n_slots, 12);
    for (uint32_t i = 0; i < 12; i++)
        assert_int_equal(ring_state_code(ring_slot_state(&shm, i)), RING_FREE);
    shm_destroy(&shm);
}

static void test_bad_layout(void **state)
{
    (void)state;
    struct shm shm;
    uint32_t gw[1] = { 0 };
    const char *names[1] = { "x" };
    struct shm_layout lay = { 1, gw, names, 4, 4096, 4096 };
    assert_int_equal(shm_create(&shm, &lay), -EINVAL);
}

static void test_claim_complete_release(void **state)
{
    (void)state;
    struct shm shm = make_shm(1, 4);
    uint32_t idx;
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), -EAGAIN);
    assert_int_equal(publish_value(&shm, 2, 7, 42), 0);
    assert_int_equal(ring_publish(&shm, 2), -EBUSY); /* not FREE */
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), 0);
    assert_int_equal(idx, 2);
    uint64_t st = ring_slot_state(&shm, 2);
    assert_int_equal(ring_state_code(st), RING_CLAIMED);
    assert_int_equal(ring_state_worker(st), 0);

    uint32_t pos = 0, len;
    const uint8_t *data;
    assert_true(ring_next_input(&shm, idx, &pos, &data, &len));
    assert_memory_equal(data, "42", 2);
    assert_false(ring_next_input(&shm, idx, &pos, &data, &len));

    assert_int_equal(ring_put_output(&shm, idx, RING_OUT_OK, "1764", 4), 0);
    ring_complete(&shm, idx, 0);
    assert_int_equal(ring_state_code(ring_slot_state(&shm, 2)), RING_DONE);
    struct ring_slot *s = ring_slot(&shm, 2);
    assert_int_equal(s->out_count, 1);
    uint32_t kind;
    pos = 0;
    assert_true(ring_next_output(&shm, idx, s->out_len, &pos, &kind, &data, &len));
    assert_int_equal(kind, RING_OUT_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "1764", 4);
    ring_release(&shm, idx);
    assert_int_equal(ring_state_code(ring_slot_state(&shm, 2)), RING_FREE);
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), -EAGAIN);
    shm_destroy(&shm);
}

static void test_output_area_full(void **state)
{
    (void)state;
    struct shm shm = make_shm(1, 1);
    assert_int_equal(publish_value(&shm, 0, 1, 1), 0);
    uint32_t idx;
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), 0);
    uint32_t cap = shm_header(&shm)->out_cap;
    char *big = calloc(1, cap);
    assert_int_equal(ring_put_output(&shm, idx, RING_OUT_OK, big, cap), -ENOSPC);
    assert_int_equal(ring_put_output(&shm, idx, RING_OUT_OK, big, cap - 5), 0);
    assert_int_equal(ring_put_output(&shm, idx, RING_OUT_OK, "1", 1), -ENOSPC);
    assert_int_equal(ring_slot(&shm, idx)->out_count, 1);
    free(big);
    shm_destroy(&shm);
}

/* An entry whose slot was reclaimed and re-published is stale: passed over. */
static void test_stale_entries_passed_over(void **state)
{
    (void)state;
    struct shm shm = make_shm(1, 2);
    assert_int_equal(publish_value(&shm, 0, 1, 10), 0);
    assert_int_equal(publish_value(&shm, 1, 1, 11), 0);
    assert_int_equal(ring_reclaim_all(&shm), 0); /* a new engine takes them back */
    uint32_t idx;
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), -EAGAIN);
    assert_int_equal(publish_value(&shm, 1, 2, 21), 0);
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), 0);
    assert_int_equal(idx, 1);
    assert_int_equal(ring_slot(&shm, idx)->first_index, 21);
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), -EAGAIN);
    shm_destroy(&shm);
}

static void test_queue_full(void **state)
{
    (void)state;
    struct shm shm = make_shm(1, 2);
    uint32_t cap = shm_header(&shm)->queue_cap;
    /* Fill the queue with publish/reclaim cycles that leave stale entries. */
    uint32_t n = 0;
    int rc = 0;
    while (n < cap + 2 && (rc = publish_value(&shm, 0, 1, n)) == 0) {
        ring_reclaim_all(&shm);
        n++;
    }
    assert_int_equal(rc, -EAGAIN);
    assert_int_equal(n, cap);
    /* A claim attempt helps head past the stale entries: room again. */
    uint32_t idx;
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), -EAGAIN);
    assert_int_equal(publish_value(&shm, 0, 1, 99), 0);
    assert_int_equal(ring_claim(&shm, 0, 0, &idx), 0);
    shm_destroy(&shm);
}

/* A forked consumer: echoes every task's input until it sees value 0,
 * which it holds forever (it "hangs" while holding the task). */
static void consumer(struct shm *shm, uint32_t w, bool hang_on_zero)
{
    for (;;) {
        uint32_t idx;
        if (ring_claim(shm, 0, w, &idx) != 0) {
            ring_wait_ready(shm, 0, 0, 100);
            continue;
        }
        uint32_t pos = 0, len;
        const uint8_t *data;
        while (ring_next_input(shm, idx, &pos, &data, &len)) {
            if (hang_on_zero && len == 1 && data[0] == '0') {
                ring_put_output(shm, idx, RING_OUT_OK, "partial", 7);
                for (;;)
                    pause();
            }
            ring_put_output(shm, idx, RING_OUT_OK, data, len);
        }
        ring_complete(shm, idx, w);
    }
}

static pid_t spawn_consumer(struct shm *shm, uint32_t w, bool hang)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        consumer(shm, w, hang);
        _exit(0);
    }
    return pid;
}

/* The parent's engine loop: publishes values 1..n, collects every result,
 * re-publishes tasks of dead consumers; kills a random consumer every
 * `kill_every` collections (0 = never). Returns deliveries per value. */
static unsigned *run_engine(struct shm *shm, uint32_t n_workers, uint32_t n, unsigned kill_every)
{
    unsigned *seen = calloc(n + 1, sizeof *seen);
    uint32_t *pending = malloc((n + 64) * sizeof *pending);
    uint32_t n_pending = 0;
    for (uint32_t v = n; v >= 1; v--)
        pending[n_pending++] = v;
    pid_t pids[8];
    for (uint32_t w = 0; w < n_workers; w++)
        pids[w] = spawn_consumer(shm, w, false);
    uint32_t n_slots = shm_header(shm)->n_slots, delivered = 0, collected = 0, kills = 0;
    time_t deadline = time(NULL) + 60;
    srand(12345);
    while (delivered < n && time(NULL) < deadline) {
        for (uint32_t i = 0; i < n_slots; i++) {
            uint64_t st = ring_slot_state(shm, i);
            enum ring_code c = ring_state_code(st);
            if (c == RING_FREE && n_pending > 0) {
                if (publish_value(shm, i, 1, pending[n_pending - 1]) == 0) {
                    n_pending--;
                    ring_notify_workers(shm, 0, 1);
                }
            } else if (c == RING_DONE || c == RING_DIED) {
                struct ring_slot *s = ring_slot(shm, i);
                uint32_t v = (uint32_t)s->first_index;
                if (s->out_count == 1) {
                    seen[v]++;
                    delivered++;
                } else {
                    assert_int_equal(c, RING_DIED); /* a DONE task has its output */
                    pending[n_pending++] = v;
                }
                ring_release(shm, i);
                collected++;
                if (kill_every && collected % kill_every == 0) {
                    uint32_t w = (uint32_t)rand() % n_workers;
                    kill(pids[w], SIGKILL);
                    int status;
                    assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
                    ring_reclaim_worker(shm, w, status);
                    pids[w] = spawn_consumer(shm, w, false);
                    kills++;
                }
            }
        }
    }
    for (uint32_t w = 0; w < n_workers; w++) {
        kill(pids[w], SIGKILL);
        waitpid(pids[w], NULL, 0);
    }
    if (kill_every)
        assert_true(kills > 0);
    free(pending);
    return seen;
}

static void test_forked_consumers_exactly_once(void **state)
{
    (void)state;
    struct shm shm = make_shm(3, 4);
    const uint32_t n = 20000;
    unsigned *seen = run_engine(&shm, 3, n, 0);
    for (uint32_t v = 1; v <= n; v++)
        assert_int_equal(seen[v], 1);
    free(seen);
    shm_destroy(&shm);
}

static void test_consumers_killed_at_random(void **state)
{
    (void)state;
    struct shm shm = make_shm(3, 4);
    const uint32_t n = 20000;
    unsigned *seen = run_engine(&shm, 3, n, 500);
    for (uint32_t v = 1; v <= n; v++)
        assert_int_equal(seen[v], 1);
    free(seen);
    shm_destroy(&shm);
}

/* A consumer killed while it holds a task: the supervisor's reclaim marks
 * the slot DIED, keeps the committed output, records how it died, and the
 * task can be run again by another consumer. */
static void test_killed_holder_is_reclaimed(void **state)
{
    (void)state;
    struct shm shm = make_shm(2, 2);
    assert_int_equal(publish_value(&shm, 0, 1, 0), 0); /* 0: the consumer hangs */
    pid_t holder = spawn_consumer(&shm, 1, true);
    /* wait (bounded) until it holds the slot and committed its partial output */
    for (int i = 0; i < 500 && ring_slot(&shm, 0)->out_count == 0; i++)
        usleep(10000);
    uint64_t st = ring_slot_state(&shm, 0);
    assert_int_equal(ring_state_code(st), RING_CLAIMED);
    assert_int_equal(ring_state_worker(st), 1);
    assert_int_equal(ring_slot(&shm, 0)->out_count, 1);

    kill(holder, SIGKILL);
    int status;
    assert_int_equal(waitpid(holder, &status, 0), holder);
    assert_int_equal(ring_reclaim_worker(&shm, 0, status), 0); /* not worker 0's */
    assert_int_equal(ring_reclaim_worker(&shm, 1, status), 1);
    st = ring_slot_state(&shm, 0);
    assert_int_equal(ring_state_code(st), RING_DIED);
    struct ring_slot *s = ring_slot(&shm, 0);
    assert_true(WIFSIGNALED(s->died_status));
    assert_int_equal(WTERMSIG(s->died_status), SIGKILL);
    assert_int_equal(s->out_count, 1);

    /* the engine frees it and publishes the task again: a healthy consumer
     * finishes it */
    ring_release(&shm, 0);
    assert_int_equal(publish_value(&shm, 0, 1, 5), 0);
    pid_t good = spawn_consumer(&shm, 0, false);
    for (int i = 0; i < 500 && ring_state_code(ring_slot_state(&shm, 0)) != RING_DONE; i++)
        usleep(10000);
    assert_int_equal(ring_state_code(ring_slot_state(&shm, 0)), RING_DONE);
    kill(good, SIGKILL);
    waitpid(good, NULL, 0);
    shm_destroy(&shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_bad_layout),
        cmocka_unit_test(test_claim_complete_release),
        cmocka_unit_test(test_output_area_full),
        cmocka_unit_test(test_stale_entries_passed_over),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_forked_consumers_exactly_once),
        cmocka_unit_test(test_consumers_killed_at_random),
        cmocka_unit_test(test_killed_holder_is_reclaimed),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
