/*
 * engine_dispatch.c: the ring's writer side (see engine_int.h): how many
 * items go in a task, how deep a group's queue may be, and the fair
 * round over active jobs that writes tasks into free slots. Engine
 * thread, e->mu held.
 */

#include "service/jobs/engine_int.h"

/* --------------------------------------------------------------- dispatch */

uint32_t engine_chunk(const struct egroup *g, const struct job *j)
{
    if (j->chunk_size)
        return j->chunk_size;
    if (g->ns_per_item <= 0)
        return ENGINE_FIRST_CHUNK;
    double n = ENGINE_TARGET_TASK_NS / g->ns_per_item;
    if (n < 1)
        return 1;
    return n > ENGINE_MAX_CHUNK ? ENGINE_MAX_CHUNK : (uint32_t)n;
}

/* How many tasks this group keeps in the ring: enough to keep every worker
 * busy while the engine refills (~10 ms of work each), few enough that a
 * newly submitted job gets its turn quickly. */
static uint32_t engine_depth(const struct engine *e, const struct egroup *g, uint32_t chunk)
{
    uint32_t slots = g->n_free + g->n_inflight;
    double task_ns = g->ns_per_item > 0 ? g->ns_per_item * chunk : ENGINE_TARGET_TASK_NS;
    double per_worker = ceil(10e6 / (task_ns > 1 ? task_ns : 1));
    double d = g->n_workers * (1 + (per_worker > 64 ? 64 : per_worker));
    (void)e;
    return d >= slots ? slots : (uint32_t)d;
}

/* Writes the next task of job j into a free slot and publishes it.
 * Returns 1 if a task was published, 0 if the job has nothing to give,
 * -EAGAIN if the ring had no room. */
int engine_dispatch_one(struct engine *e, struct egroup *g, struct job *j)
{
    if (!ejob_has_pending(j) || g->n_free == 0)
        return 0;
    if (j->replay.n > 0 && j->exports_inflight == 0)
        return engine_dispatch_replay(e, g, j);
    struct shm *shm = e->shm;
    uint32_t idx = g->free_slots[g->n_free - 1];
    struct ring_slot *s = ring_slot(shm, idx);
    uint32_t cap = shm_header(shm)->in_cap;
    uint8_t *in = ring_slot_in(shm, idx);

    uint64_t start, avail;
    uint32_t attempt = 0;
    bool from_retry = j->retry.n > 0;
    if (from_retry) {
        start = j->retry.r[0].start;
        avail = j->retry.r[0].count;
        if (j->attempts && j->attempts[start] > 0) {
            attempt = j->attempts[start];
            avail = 1; /* a suspect runs alone */
        }
    } else {
        start = j->next_index;
        avail = j->total - j->next_index;
    }
    uint64_t want = engine_chunk(g, j);
    if (from_retry && j->retry.r[0].batch && want > j->retry.r[0].batch)
        want = j->retry.r[0].batch; /* a batch being split (engine_collect) */
    if (want > avail)
        want = avail;
    uint32_t n = 0, len = 0;
    while (n < want) {
        uint64_t i = start + n;
        /* Items that already have a result (from a task that died after
         * committing them) are not run again. */
        if (ejob_has(j, i)) {
            if (n == 0) {
                start++;
                want--;
                avail--;
                if (from_retry) {
                    j->retry.r[0].start++;
                    j->retry.r[0].count--;
                } else {
                    j->next_index++;
                }
                continue;
            }
            break;
        }
        if (!engine_slot_put_item(in, &len, cap, j->items, i))
            break;
        n++;
    }
    if (from_retry && j->retry.r[0].count == 0)
        engine_ranges_consume(&j->retry, 0);
    if (n == 0)
        return ejob_has_pending(j) ? engine_dispatch_one(e, g, j) : 0;

    s->job_key = j->key;
    s->first_index = start;
    s->n_items = n;
    s->in_len = len;
    s->attempt = attempt;
    s->item_timeout_ms = j->item_timeout_ms;
    s->kind = RING_TASK_ITEMS;
    s->target_pid = 0;
    int rc = ring_publish(shm, idx);
    if (rc != 0)
        return -EAGAIN; /* nothing consumed: the cursors move only below */
    g->n_free--;
    g->inflight[g->n_inflight++] = idx;
    if (from_retry) {
        engine_ranges_consume(&j->retry, n);
    } else {
        j->next_index += n;
    }
    j->inflight_tasks++;
    j->inflight_items += n;
    if (j->status == JOB_QUEUED) {
        j->started_ns = shm_now_real_ns();
        ejob_set_status(e, j, JOB_RUNNING);
    }
    return 1;
}

void engine_dispatch(struct engine *e)
{
    /* Draining for shutdown: what runs finishes, nothing new starts. */
    if (!e->accepting)
        return;
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        int published = 0;
        while (g->n_active > 0 && g->n_free > 0) {
            if (g->rr >= g->n_active)
                g->rr = 0;
            struct job *j = g->active[g->rr];
            if (!ejob_has_pending(j)) {
                j->active = false;
                g->active[g->rr] = g->active[--g->n_active];
                continue;
            }
            if (g->n_inflight >= engine_depth(e, g, engine_chunk(g, j)))
                break;
            int rc = engine_dispatch_one(e, g, j);
            if (rc < 0)
                break;
            published += rc;
            g->rr++; /* one task per job per turn: fairness between jobs */
        }
        if (published)
            ring_notify_workers(e->shm, gi, published);
    }
}
