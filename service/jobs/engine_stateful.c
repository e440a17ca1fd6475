/*
 * engine_stateful.c: stateful jobs (see engine_int.h and
 * docs/architecture.md): which worker holds which job's state, targeted
 * (mailbox) tasks, export of partials, replay of lost state, the final
 * reduce, and orphaned targeted tasks. Engine thread, e->mu held, but
 * for ejob_make_stateful (submit and recovery).
 */

#include "service/jobs/engine_int.h"

/* ------------------------------------------------------- stateful jobs */

/* Worker deaths that took a job's state with them before the job gives up
 * (a model whose replays keep killing workers would otherwise never end). */
#define ENGINE_MAX_STATE_LOSSES 64u

/* Is `pid` still the live process of worker w? The new process writes its
 * pid before it takes any task (and the supervisor after fork), the
 * supervisor 0 once it reaped it: a task's worker_pid that is not the
 * slot's pid belongs to a dead process. */
static bool engine_worker_alive(const struct engine *e, uint32_t w, int32_t pid)
{
    return pid > 0 &&
           atomic_load_explicit(&shm_worker(e->shm, w)->pid, memory_order_acquire) == pid;
}

/* The process that held a's state is gone: what it held runs again. */
static void job_state_lost(struct engine *e, struct job *j, struct job_acc *a)
{
    if (a->held.n > 0 || a->dirty) {
        for (size_t k = 0; k < a->held.n; k++)
            if (engine_ranges_add(&j->replay, a->held.r[k].start, a->held.r[k].count) != 0)
                ejob_fail(e, j, "out of memory rebuilding a worker's state");
        j->state_losses++;
        log_info("job %s: a worker died with its state; %zu range(s) of items run again", j->id,
                 a->held.n);
    }
    a->held.n = 0;
    a->pid = 0;
    a->dirty = false;
    if (j->state_losses > ENGINE_MAX_STATE_LOSSES) {
        char why[128];
        snprintf(why, sizeof why, "workers died with this job's state %u times: giving up",
                 j->state_losses);
        ejob_fail(e, j, why);
    }
}

/*
 * The accumulator record of the process that ran items task `s` (DONE or
 * DIED in state st), or NULL when that process is dead: then its
 * successes must run again. A live process that is not the one recorded
 * for its worker slot means the recorded one died.
 */
struct job_acc *ejob_acc_of(struct engine *e, struct egroup *g, struct job *j,
                                  struct ring_slot *s, uint64_t st)
{
    uint32_t w = ring_state_worker(st);
    int32_t pid = atomic_load_explicit(&s->worker_pid, memory_order_relaxed);
    if (w < g->first_worker || w - g->first_worker >= j->n_accs)
        return NULL;
    struct job_acc *a = &j->accs[w - g->first_worker];
    if (ring_state_code(st) == RING_DIED || !engine_worker_alive(e, w, pid)) {
        if (pid && a->pid == pid)
            job_state_lost(e, j, a);
        return NULL;
    }
    if (a->pid != pid) {
        if (a->pid)
            job_state_lost(e, j, a);
        a->pid = pid;
    }
    a->dirty = true;
    return a;
}

/* Publishes a targeted task (EXPORT or DROP of job j's state) for worker
 * wl of group g. Returns 0, or -EAGAIN without a free slot. */
static int engine_post_targeted(struct engine *e, struct egroup *g, uint32_t gi, struct job *j,
                                uint32_t wl, enum ring_kind kind)
{
    if (g->n_free == 0)
        return -EAGAIN;
    uint32_t idx = g->free_slots[--g->n_free];
    struct ring_slot *s = ring_slot(e->shm, idx);
    s->job_key = kind == RING_TASK_EXPORT ? j->key : 0; /* a drop is no task of
                                                           the job's: it may
                                                           outlive it */
    s->first_index = 0;
    s->state_key = j->key; /* whose state */
    s->n_items = 0;
    s->in_len = 0;
    s->attempt = 0;
    s->item_timeout_ms = 0;
    s->kind = kind;
    s->target_pid = j->accs[wl].pid;
    (void)gi;
    ring_publish_to(e->shm, idx, g->first_worker + wl);
    g->inflight[g->n_inflight++] = idx;
    g->target[idx - g->first_slot] = wl + 1;
    g->mail_busy[wl] = true;
    if (kind == RING_TASK_EXPORT) {
        j->inflight_tasks++;
        j->exports_inflight++;
        j->accs[wl].exporting = true;
    }
    return 0;
}

/* Publishes the job's REDUCE task: one input record, the partials. */
static int engine_post_reduce(struct engine *e, struct egroup *g, uint32_t gi, struct job *j)
{
    if (g->n_free == 0)
        return -EAGAIN;
    char *text = jsonfmt_dumps(j->partials, JSON_COMPACT);
    if (!text) {
        ejob_fail(e, j, "out of memory gathering the partial results");
        return 0;
    }
    size_t len = strlen(text);
    uint32_t cap = shm_header(e->shm)->in_cap;
    if (len + RING_IN_HDR > cap) {
        char why[160];
        snprintf(why, sizeof why,
                 "the workers' partial results take %zu bytes; a task holds %u (--max-item-bytes)",
                 len, cap - RING_IN_HDR);
        free(text);
        ejob_fail(e, j, why);
        return 0;
    }
    uint32_t idx = g->free_slots[--g->n_free];
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t used = 0;
    ring_put_input(ring_slot_in(e->shm, idx), &used, cap, text, len); /* fits: checked above */
    free(text);
    s->job_key = j->key;
    s->first_index = 0;
    s->n_items = 1;
    s->in_len = used;
    s->attempt = j->reduce_tries;
    s->item_timeout_ms = 0;
    s->kind = RING_TASK_REDUCE;
    s->target_pid = 0;
    if (ring_publish(e->shm, idx) != 0) {
        g->free_slots[g->n_free++] = idx;
        return -EAGAIN;
    }
    g->inflight[g->n_inflight++] = idx;
    j->inflight_tasks++;
    j->reduce_inflight = true;
    ring_notify_workers(e->shm, gi, 1);
    return 0;
}

/* The first output record of a finished control task, if it has one. */
static bool engine_first_output(struct engine *e, uint32_t idx, uint32_t *kind,
                                const uint8_t **data, uint32_t *len)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t count = atomic_load_explicit(&s->out_count, memory_order_acquire);
    uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
    uint32_t pos = 0;
    return count >= 1 && ring_next_output(e->shm, idx, limit, &pos, kind, data, len);
}

/* Stores a REDUCE task's output as the job's result: the JSON itself, or
 * (RING_OUT_OBJECT) the bytes of the object it names, which then goes. */
static int engine_store_result(struct engine *e, struct job *j, uint32_t kind,
                               const uint8_t *data, uint32_t len)
{
    if (kind == RING_OUT_OK)
        return store_put_job_result(e->store, j->sseq, (const char *)data, len);
    char id[MODEL_OBJECT_ID_LEN + 1];
    struct objects_info info;
    if (len != MODEL_OBJECT_ID_LEN || !e->objects)
        return -EIO;
    memcpy(id, data, len);
    id[len] = '\0';
    if (objects_find(e->objects, id, &info) != 0)
        return -EIO;
    int rc = store_put_job_result(e->store, j->sseq, info.obj.data, info.obj.bytes);
    objects_delete(e->objects, id);
    return rc;
}

/* Collects an EXPORT, DROP or REDUCE task (DONE or DIED). */
void engine_collect_control(struct engine *e, struct egroup *g, uint32_t idx, uint64_t st)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t wl1 = g->target[idx - g->first_slot];
    g->target[idx - g->first_slot] = 0;
    if (wl1)
        g->mail_busy[wl1 - 1] = false;
    struct job *j = s->kind == RING_TASK_DROP ? NULL : engine_find_key(e, s->job_key);
    if (!j)
        return;
    j->inflight_tasks--;
    j->version++;
    uint32_t kind = RING_OUT_ERROR, len = 0;
    const uint8_t *data = NULL;
    bool done = ring_state_code(st) == RING_DONE &&
                engine_first_output(e, idx, &kind, &data, &len);
    char msg[600];
    if (s->kind == RING_TASK_EXPORT && wl1) {
        struct job_acc *a = &j->accs[wl1 - 1];
        a->exporting = false;
        j->exports_inflight--;
        if (!done) {
            job_state_lost(e, j, a);
        } else if (kind == RING_OUT_OK) {
            /* the worker dropped its state with the export */
            json_t *p = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);
            if (p && !json_is_null(p))
                json_array_append(j->partials, p);
            json_decref(p);
            a->held.n = 0;
            a->dirty = false;
        } else {
            snprintf(msg, sizeof msg, "exporting worker %u's state failed: %.*s",
                     g->first_worker + wl1 - 1, (int)(len < 400 ? len : 400), data);
            a->held.n = 0;
            a->dirty = false;
            ejob_fail(e, j, msg);
        }
    } else if (s->kind == RING_TASK_REDUCE) {
        j->reduce_inflight = false;
        if (j->cancel_requested) {
            /* cancelled meanwhile: no result */
        } else if (done && (kind == RING_OUT_OK || kind == RING_OUT_OBJECT)) {
            int rc = engine_store_result(e, j, kind, data, len);
            if (rc != 0) {
                snprintf(msg, sizeof msg, "the job's result cannot be stored: %s",
                         strerror(-rc));
                ejob_fail(e, j, msg);
            } else {
                j->reduced = true;
            }
            ejob_drop_partials(e, j);
        } else if (done) {
            snprintf(msg, sizeof msg, "reduce failed: %.*s", (int)(len < 400 ? len : 400),
                     data);
            ejob_fail(e, j, msg);
        } else if (++j->reduce_tries >= j->max_attempts) {
            char death[160];
            engine_describe_death(atomic_load_explicit(&s->died_status, memory_order_relaxed),
                           j->reduce_tries, j->max_attempts, death, sizeof death);
            snprintf(msg, sizeof msg, "reduce: %s", death);
            ejob_fail(e, j, msg);
        }
    }
    ejob_check_finished(e, j);
}

/* Targeted tasks whose process died before taking them are taken back
 * (the worker that replaces it will not take them: they name the dead
 * process). */
static void engine_retract_orphans(struct engine *e, struct egroup *g)
{
    for (uint32_t k = 0; k < g->n_inflight;) {
        uint32_t idx = g->inflight[k];
        struct ring_slot *s = ring_slot(e->shm, idx);
        uint32_t wl1 = g->target[idx - g->first_slot];
        if (!wl1 || engine_worker_alive(e, g->first_worker + wl1 - 1, s->target_pid) ||
            !ring_retract(e->shm, idx)) {
            k++;
            continue;
        }
        g->inflight[k] = g->inflight[--g->n_inflight];
        /* as if it died: an export's state is lost, a drop has nothing
         * left to drop */
        engine_collect_control(e, g, idx, ring_state(0, 0, RING_DIED));
        g->free_slots[g->n_free++] = idx;
    }
}

/*
 * Moves a stateful job on once its items are done (engine thread, mutex
 * held): states of dead processes are replayed, every process holding
 * state exports it, then one worker reduces the partials. A cancelled or
 * failed job's states are dropped. Returns true when the job needs
 * nothing more from this loop.
 */
static bool job_wind(struct engine *e, struct egroup *g, uint32_t gi, struct job *j)
{
    bool ended = j->status == JOB_CANCELLED || j->status == JOB_FAILED;
    if (ended) {
        if (j->inflight_tasks > 0)
            return false;
        bool left = false;
        for (uint32_t wl = 0; wl < j->n_accs; wl++) {
            struct job_acc *a = &j->accs[wl];
            if (!a->pid)
                continue;
            if (!engine_worker_alive(e, g->first_worker + wl, a->pid) ||
                (!g->mail_busy[wl] && engine_post_targeted(e, g, gi, j, wl, RING_TASK_DROP) == 0))
                a->pid = 0;
            else
                left = true;
        }
        return !left;
    }
    if (j->reduced)
        return true;
    /* states lost (a dead worker, a failed export): run their items again
     * once no export of the job is in flight */
    if (j->replay.n > 0 && j->exports_inflight == 0 && !j->cancel_requested)
        egroup_activate(g, j);
    if (j->done + j->failed < j->total || j->inflight_tasks > j->exports_inflight ||
        j->replay.n > 0 || j->retry.n > 0)
        return false;
    bool waiting = false;
    for (uint32_t wl = 0; wl < j->n_accs && !j->cancel_requested; wl++) {
        struct job_acc *a = &j->accs[wl];
        if (!a->pid || a->exporting) {
            waiting |= a->exporting;
            continue;
        }
        if (!engine_worker_alive(e, g->first_worker + wl, a->pid)) {
            job_state_lost(e, j, a);
            continue;
        }
        if (!a->dirty)
            continue;
        waiting = true;
        if (!g->mail_busy[wl])
            engine_post_targeted(e, g, gi, j, wl, RING_TASK_EXPORT);
    }
    if (j->cancel_requested)
        return false; /* failed while winding: the next pass drops */
    if (j->replay.n > 0)
        return false; /* activated above once the exports are back */
    if (!waiting && !j->reduce_inflight)
        engine_post_reduce(e, g, gi, j);
    return false;
}

void engine_wind_stateful(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        if (!g->stateful)
            continue;
        engine_retract_orphans(e, g);
        for (size_t k = 0; k < g->n_sjobs;) {
            struct job *j = g->sjobs[k];
            if (job_wind(e, g, gi, j)) {
                j->on_stateful_list = false;
                g->sjobs[k] = g->sjobs[--g->n_sjobs];
                engine_evict(e, j);
            } else {
                k++;
            }
        }
    }
}

/* Appends item i's input record to a slot's input area (len bytes used of
 * cap). Returns false, writing nothing, when it does not fit. */
bool engine_slot_put_item(uint8_t *in, uint32_t *len, uint32_t cap, const struct job_items *items,
                          uint64_t i)
{
    size_t ilen;
    const char *text = job_items_get(items, (size_t)i, &ilen);
    return ring_put_input(in, len, cap, text, ilen) == 0;
}

/* Replays part of j->replay: items that already have their result, run
 * again only for the state (mutex held). Same returns as
 * engine_dispatch_one. */
int engine_dispatch_replay(struct engine *e, struct egroup *g, struct job *j)
{
    struct shm *shm = e->shm;
    uint32_t idx = g->free_slots[g->n_free - 1];
    struct ring_slot *s = ring_slot(shm, idx);
    uint32_t cap = shm_header(shm)->in_cap;
    uint8_t *in = ring_slot_in(shm, idx);
    uint64_t start = j->replay.r[0].start, want = engine_chunk(g, j);
    if (want > j->replay.r[0].count)
        want = j->replay.r[0].count;
    uint32_t n = 0, len = 0;
    while (n < want) {
        uint64_t i = start + n;
        if (!engine_slot_put_item(in, &len, cap, j->items, i))
            break;
        n++;
    }
    s->job_key = j->key;
    s->first_index = start;
    s->n_items = n;
    s->in_len = len;
    s->attempt = 0;
    s->item_timeout_ms = j->item_timeout_ms;
    s->kind = RING_TASK_REPLAY;
    s->target_pid = 0;
    if (ring_publish(shm, idx) != 0)
        return -EAGAIN;
    g->n_free--;
    g->inflight[g->n_inflight++] = idx;
    engine_ranges_consume(&j->replay, n);
    j->inflight_tasks++;
    j->inflight_items += n;
    return 1;
}

/* Makes j a stateful job if its group's model is one (mutex held). */
int ejob_make_stateful(struct engine *e, struct job *j)
{
    struct egroup *g = &e->groups[j->group];
    if (!g->stateful || j->finished_ns)
        return 0;
    j->stateful = true;
    j->n_accs = g->n_workers;
    j->accs = calloc(j->n_accs ? j->n_accs : 1, sizeof *j->accs);
    j->partials = json_array();
    if (g->n_sjobs == g->cap_sjobs) {
        size_t nc = g->cap_sjobs ? g->cap_sjobs * 2 : 16;
        struct job **a = realloc(g->sjobs, nc * sizeof *a);
        if (a) {
            g->sjobs = a;
            g->cap_sjobs = nc;
        }
    }
    if (!j->accs || !j->partials || g->n_sjobs == g->cap_sjobs)
        return -ENOMEM;
    g->sjobs[g->n_sjobs++] = j;
    j->on_stateful_list = true;
    return 0;
}
