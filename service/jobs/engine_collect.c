/*
 * engine_collect.c: results into jobs (see engine_int.h). Collects DONE
 * and DIED slots, records each item's one result, queues retries, pins
 * and unpins the objects a job names, finishes or fails a job; and the
 * engine thread's checks of deadlines and of groups that keep failing.
 * All with e->mu held; the passes run on the engine thread.
 *
 * Exactly one result per item: a result is recorded only for an index that
 * has none (res_len[i] == 0), however many times a task carrying that index
 * was retried. Re-queued items are exactly those without a result.
 */

#include "service/jobs/engine_int.h"

/* --------------------------------------------------------------- results */

static void engine_mark_dirty(struct engine *e, struct job *j)
{
    j->dirty_gen = ++e->gen;
    if (j->dirty)
        return;
    if (e->n_dirty == e->cap_dirty) {
        size_t nc = e->cap_dirty ? e->cap_dirty * 2 : 32;
        struct job **p = realloc(e->dirty, nc * sizeof *p);
        if (!p)
            abort(); /* a pointer per job; see the OOM policy */
        e->dirty = p;
        e->cap_dirty = nc;
    }
    e->dirty[e->n_dirty++] = j;
    j->dirty = true;
}

/* The job's row, as the store keeps it. */
void ejob_row(const struct engine *e, const struct job *j, struct store_job *r)
{
    memset(r, 0, sizeof *r);
    r->seq = j->sseq;
    snprintf(r->id, sizeof r->id, "%s", j->id);
    (void)e;
    snprintf(r->model, sizeof r->model, "%s", j->model);
    r->status = (int)j->status;
    r->total = j->total;
    r->done = j->done;
    r->failed = j->failed;
    r->created_ns = j->created_ns;
    r->started_ns = j->started_ns;
    r->finished_ns = j->finished_ns;
    r->chunk_size = j->chunk_size;
    r->item_timeout_ms = j->item_timeout_ms;
    r->max_attempts = j->max_attempts;
    snprintf(r->error, sizeof r->error, "%s", j->error ? j->error : "");
    snprintf(r->idem_key, sizeof r->idem_key, "%s", j->idem_key ? j->idem_key : "");
    r->request_hash = j->request_hash;
}

/* Hands j's row to the store's buffer, with the run collected so far
 * (consecutive items from run_first) if that run is j's. Written by the
 * next flush. */
static void engine_end_run(struct engine *e, struct job *j)
{
    /* The open run may be another job's: a slot of j that made no result
     * (its worker died before its first commit) follows, in one collect
     * pass, slots of a job with a lower key. That run goes out under its
     * own job first; under j's seq it would land in j's results (or be
     * dropped by INSERT OR IGNORE on (job, first)) while its items' bits
     * say they have a result, so they would never run again. */
    if (e->run_n && e->run_job != j)
        engine_end_run(e, e->run_job);
    struct store_job row;
    ejob_row(e, j, &row);
    if (e->run_n) {
        if (store_put_results(e->store, j->sseq, e->run_first, e->run_n, e->run.data,
                              e->run_lens, &row) != 0)
            log_error("out of memory buffering results of job %s", j->id);
        e->run_n = 0;
        sbuf_reset(&e->run);
    } else {
        store_job_update(e->store, &row);
    }
    engine_mark_dirty(e, j);
}

/* Records item i's result unless it has one. Results of one run must be
 * consecutive (they are: a task's items are). Returns true if recorded. */
static bool job_put_result(struct engine *e, struct job *j, uint64_t i, bool ok,
                           const char *data, size_t len)
{
    if (i >= j->total || ejob_has(j, i))
        return false;
    if (e->run_n &&
        (e->run_job != j || e->run_first + e->run_n != i || e->run_n == ENGINE_MAX_CHUNK))
        engine_end_run(e, e->run_job);
    e->run_job = j;
    size_t mark = e->run.len;
    int rc;
    if (ok) {
        rc = sbuf_printf(&e->run, "{\"index\":%" PRIu64 ",\"output\":", i);
        if (!rc)
            rc = sbuf_append(&e->run, data, len);
        if (!rc)
            rc = sbuf_append(&e->run, "}", 1);
    } else {
        /* the message is text, not JSON: escape it */
        char *msg = strndup(data, len);
        rc = msg ? sbuf_printf(&e->run, "{\"index\":%" PRIu64 ",\"error\":{\"message\":", i)
                 : -ENOMEM;
        if (!rc)
            rc = sbuf_json_string(&e->run, msg);
        if (!rc)
            rc = sbuf_append(&e->run, "}}", 2);
        free(msg);
    }
    if (rc) {
        e->run.len = mark;
        log_error("out of memory recording a result of job %s", j->id);
        return false;
    }
    if (e->run_n == 0)
        e->run_first = i;
    e->run_lens[e->run_n++] = (uint32_t)(e->run.len - mark);
    ejob_set_has(j, i);
    e->pending_items--;
    if (ok) {
        j->done++;
        e->items_done_total++;
    } else {
        j->failed++;
        e->items_failed_total++;
    }
    j->version++;
    return true;
}

/* Appends [start, start+count) to the list, merged with the last range when
 * they touch. Returns 0 or -ENOMEM. */
static int engine_ranges_add_batch(struct ranges *l, uint64_t start, uint64_t count,
                                   uint64_t batch)
{
    if (count == 0)
        return 0;
    if (l->n > 0 && l->r[l->n - 1].start + l->r[l->n - 1].count == start &&
        l->r[l->n - 1].batch == batch) {
        l->r[l->n - 1].count += count;
        return 0;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct range *r = realloc(l->r, nc * sizeof *r);
        if (!r)
            return -ENOMEM;
        l->r = r;
        l->cap = nc;
    }
    l->r[l->n++] = (struct range){ start, count, batch };
    return 0;
}

int engine_ranges_add(struct ranges *l, uint64_t start, uint64_t count)
{
    return engine_ranges_add_batch(l, start, count, 0);
}

/* Removes the first `count` items of the list's first range. */
void engine_ranges_consume(struct ranges *l, uint64_t count)
{
    l->r[0].start += count;
    l->r[0].count -= count;
    if (l->r[0].count == 0) {
        memmove(l->r, l->r + 1, (l->n - 1) * sizeof *l->r);
        l->n--;
    }
}

int ejob_add_retry(struct job *j, uint64_t start, uint64_t count)
{
    return engine_ranges_add(&j->retry, start, count);
}

int ejob_add_retry_batch(struct job *j, uint64_t start, uint64_t count, uint64_t batch)
{
    return engine_ranges_add_batch(&j->retry, start, count, batch);
}

void egroup_activate(struct egroup *g, struct job *j)
{
    if (j->active)
        return;
    if (g->n_active == g->cap_active) {
        size_t nc = g->cap_active ? g->cap_active * 2 : 16;
        struct job **a = realloc(g->active, nc * sizeof *a);
        if (!a)
            abort(); /* a few pointers per job; see the OOM policy */
        g->active = a;
        g->cap_active = nc;
    }
    g->active[g->n_active++] = j;
    j->active = true;
}

bool ejob_has_pending(const struct job *j)
{
    /* Replays wait for the job's exports in flight: a worker's export then
     * holds exactly the items the engine recorded for it, never items of a
     * replay it ran after the export (which the engine could collect
     * first, and clear with the export) */
    return !j->cancel_requested && (j->retry.n > 0 || j->next_index < j->total ||
                                     (j->replay.n > 0 && j->exports_inflight == 0));
}

/* Items of a job that will never get a result stop counting against
 * admission control once the job has ended. */
void ejob_persist(struct engine *e, struct job *j)
{
    struct store_job row;
    ejob_row(e, j, &row);
    store_job_update(e->store, &row);
    engine_mark_dirty(e, j);
}

/* Calls fn(arg, id) for every object reference {"$object": "ID"} in v. */
static void json_each_object_ref(const json_t *v, void (*fn)(void *, const char *), void *arg)
{
    if (json_is_object(v)) {
        const json_t *id = json_object_get(v, "$object");
        if (json_is_string(id)) { /* a reference (maybe with more members,
                                     as a partial's "entries") */
            fn(arg, json_string_value(id));
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
            json_each_object_ref(x, fn, arg);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
            json_each_object_ref(x, fn, arg);
    }
}

struct pin_ctx {
    struct engine *e;
    struct job *j;
};

/* Pins an object an item names, once per job; an unknown id is left to
 * the model, which answers that item with "object 'ID' not found". */
static void job_pin_one(void *arg, const char *id)
{
    struct pin_ctx *c = arg;
    struct job *j = c->j;
    if (!c->e->objects || strlen(id) != MODEL_OBJECT_ID_LEN)
        return;
    for (size_t i = 0; i < j->n_pins; i++)
        if (strcmp(j->pins[i], id) == 0)
            return;
    if (objects_pin(c->e->objects, id) != 0)
        return;
    void *p = realloc(j->pins, (j->n_pins + 1) * sizeof *j->pins);
    if (!p) {
        objects_unpin(c->e->objects, id);
        return;
    }
    j->pins = p;
    memcpy(j->pins[j->n_pins++], id, MODEL_OBJECT_ID_LEN + 1);
}

/* Pins every object the job's items name. Only items whose text mentions
 * "$object" are parsed: the common job names none and pays one memmem. */
void ejob_pin_objects(struct engine *e, struct job *j, const struct job_items *items)
{
    static const char needle[] = "\"$object\"";
    struct pin_ctx c = { e, j };
    for (size_t i = 0; i < items->n; i++) {
        size_t len;
        const char *t = job_items_get(items, i, &len);
        if (!memmem(t, len, needle, sizeof needle - 1))
            continue;
        json_t *v = json_loadb(t, len, JSON_DECODE_ANY, NULL);
        json_each_object_ref(v, job_pin_one, &c);
        json_decref(v);
    }
}

static void job_unpin_objects(struct engine *e, struct job *j)
{
    for (size_t i = 0; i < j->n_pins; i++)
        objects_unpin(e->objects, j->pins[i]);
    free(j->pins);
    j->pins = NULL;
    j->n_pins = 0;
}

static void delete_object(void *arg, const char *id)
{
    struct engine *e = arg;
    if (e->objects)
        objects_delete(e->objects, id);
}

/* The partial states exported for a reduce live in objects made by the
 * workers: once the reduce ran (or the job ended), they go. */
void ejob_drop_partials(struct engine *e, struct job *j)
{
    if (!j->partials)
        return;
    json_each_object_ref(j->partials, delete_object, e);
    json_array_clear(j->partials);
}

static void job_mark_finished(struct engine *e, struct job *j)
{
    job_unpin_objects(e, j);
    ejob_drop_partials(e, j);
    j->finished_ns = shm_now_real_ns();
    e->pending_items -= j->total - j->done - j->failed;
    /* its inputs are in the store; nothing will be dispatched again */
    job_items_free(j->items);
    j->items = NULL;
    j->version++;
    ejob_persist(e, j);
}

/* A job ends only once its results are durable: a client that sees
 * "succeeded" can read every result, even after a crash. */
void ejob_check_finished(struct engine *e, struct job *j)
{
    if (j->finished_ns)
        return;
    bool durable = j->flushed == j->done + j->failed;
    if (j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        if (j->inflight_tasks == 0 && durable)
            job_mark_finished(e, j);
        return;
    }
    if (j->done + j->failed == j->total && durable && (!j->stateful || j->reduced)) {
        ejob_set_status(e, j, JOB_SUCCEEDED);
        job_mark_finished(e, j);
    }
}

/* Ends a job that cannot run: what is queued never runs, what runs now is
 * asked to stop; the job is failed with `why`. */
/* Stops a job's tasks in the ring (mutex held): the ones no worker has
 * claimed are taken back at once (their items are never run: a model
 * that cannot start would never claim them), the running ones are asked
 * to stop after their current item. */
static void job_stop_tasks(struct engine *e, struct job *j)
{
    struct egroup *g = &e->groups[j->group];
    for (uint32_t k = 0; k < g->n_inflight;) {
        uint32_t idx = g->inflight[k];
        struct ring_slot *s = ring_slot(e->shm, idx);
        /* targeted tasks (exports) finish on their own: the worker's
         * state must be handed over or dropped either way */
        if (s->job_key != j->key || s->target_pid) {
            k++;
            continue;
        }
        if (ring_retract(e->shm, idx)) {
            if (s->kind == RING_TASK_REDUCE)
                j->reduce_inflight = false;
            g->inflight[k] = g->inflight[--g->n_inflight];
            g->free_slots[g->n_free++] = idx;
            j->inflight_tasks--;
            j->inflight_items -= s->n_items;
            j->version++;
            continue;
        }
        atomic_store_explicit(&s->cancel, 1, memory_order_relaxed);
        k++;
    }
}

void ejob_fail(struct engine *e, struct job *j, const char *why)
{
    if (j->finished_ns || j->status == JOB_CANCELLED || j->status == JOB_FAILED)
        return;
    free(j->error);
    j->error = strdup(why);
    j->cancel_requested = true;
    j->retry.n = 0;
    j->next_index = j->total;
    ejob_set_status(e, j, JOB_FAILED);
    job_stop_tasks(e, j);
    ejob_check_finished(e, j);
    log_warn("job %s failed: %s", j->id, why);
}

/* "worker died: signal 11 (SIGSEGV) on attempt 3/3" */
void engine_describe_death(int status, unsigned attempt, unsigned max, char *buf, size_t len)
{
    char how[64];
    if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_COPROC)
        /* the model's own process (a Python model's child) died under it */
        snprintf(how, sizeof how, "its model process (coprocess) died");
    else
        proc_describe_status(status, how, sizeof how);
    snprintf(buf, len, "worker died: %s on attempt %u/%u", how, attempt, max);
}

/*
 * An item output that went through an object (RING_OUT_OBJECT, worker.h:
 * worker_put_output): points *data and *len at the object's bytes, which
 * stay valid until engine_object_output_done() deletes it. Returns false
 * when the record names no READY object (its worker died before the task
 * committed it; the supervisor frees such objects).
 */
static bool engine_object_output(struct engine *e, char id[MODEL_OBJECT_ID_LEN + 1],
                                 const uint8_t **data, uint32_t *len)
{
    struct objects_info info;
    if (*len != MODEL_OBJECT_ID_LEN || !e->objects)
        return false;
    memcpy(id, *data, *len);
    id[*len] = '\0';
    if (objects_find(e->objects, id, &info) != 0 || info.obj.bytes > UINT32_MAX)
        return false;
    *data = info.obj.data;
    *len = (uint32_t)info.obj.bytes;
    return true;
}

/* Deletes the output objects of a slot whose job is gone. */
static void engine_drop_object_outputs(struct engine *e, uint32_t idx)
{
    struct ring_slot *s = ring_slot(e->shm, idx);
    uint32_t count = atomic_load_explicit(&s->out_count, memory_order_acquire);
    uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
    uint32_t pos = 0, kind, len, k = 0;
    const uint8_t *data;
    char id[MODEL_OBJECT_ID_LEN + 1];
    while (k++ < count && ring_next_output(e->shm, idx, limit, &pos, &kind, &data, &len))
        if (kind == RING_OUT_OBJECT && engine_object_output(e, id, &data, &len))
            objects_delete(e->objects, id);
}

/* Takes the outputs of a DONE or DIED slot into its job, re-queues what has
 * no result, and frees the slot. */
static void engine_collect_slot(struct engine *e, struct egroup *g, uint32_t idx, uint64_t st)
{
    struct shm *shm = e->shm;
    struct ring_slot *s = ring_slot(shm, idx);
    if (s->kind != RING_TASK_ITEMS && s->kind != RING_TASK_REPLAY) {
        engine_collect_control(e, g, idx, st);
        ring_release(shm, idx);
        g->free_slots[g->n_free++] = idx;
        return;
    }
    struct job *j = engine_find_key(e, s->job_key);
    if (j) {
        bool replay = s->kind == RING_TASK_REPLAY;
        struct job_acc *a = j->stateful ? ejob_acc_of(e, g, j, s, st) : NULL;
        /* Acquire: pairs with the worker's release per committed record. */
        uint32_t count = atomic_load_explicit(&s->out_count, memory_order_acquire);
        uint32_t limit = atomic_load_explicit(&s->out_len, memory_order_acquire);
        uint32_t pos = 0, kind, len, k = 0;
        const uint8_t *data;
        char oid[MODEL_OBJECT_ID_LEN + 1];
        while (k < count && k < s->n_items &&
               ring_next_output(shm, idx, limit, &pos, &kind, &data, &len)) {
            if (kind == RING_OUT_OBJECT && !engine_object_output(e, oid, &data, &len)) {
                /* Its object is gone: the worker died before the task
                 * committed it (host.h). No result: it runs again. */
                if (!replay && !j->cancel_requested)
                    ejob_add_retry(j, s->first_index + k, 1);
                k++;
                continue;
            }
            if (!replay)
                job_put_result(e, j, s->first_index + k, kind != RING_OUT_ERROR,
                               (const char *)data, len);
            if (kind == RING_OUT_OBJECT)
                objects_delete(e->objects, oid); /* its bytes are in the results now */
            /* A success went into the state of the process that ran it:
             * held there, or run again if that process is gone. */
            if (j->stateful && kind != RING_OUT_ERROR)
                engine_ranges_add(a ? &a->held : &j->replay, s->first_index + k, 1);
            k++;
        }
        if (replay) {
            /* what did not run goes back; a replay never makes results */
            engine_ranges_add(&j->replay, s->first_index + k, s->n_items - k);
            j->inflight_tasks--;
            j->inflight_items -= s->n_items;
            if (ejob_has_pending(j))
                egroup_activate(g, j);
            ring_release(shm, idx);
            g->free_slots[g->n_free++] = idx;
            return;
        }
        uint64_t run_ns = atomic_load_explicit(&s->run_ns, memory_order_relaxed);
        if (k > 0 && run_ns > 0 && !j->chunk_size) {
            double per = (double)run_ns / k;
            g->ns_per_item = g->ns_per_item > 0 ? 0.7 * g->ns_per_item + 0.3 * per : per;
        }
        uint64_t rest_start = s->first_index + k, rest = s->n_items - k;
        if (rest > 0 && !j->cancel_requested) {
            uint32_t timeout_item = atomic_load_explicit(&s->timeout_item, memory_order_relaxed);
            uint32_t batch_n = atomic_load_explicit(&s->batch_n, memory_order_relaxed);
            if (batch_n > rest)
                batch_n = (uint32_t)rest;
            if (ring_state_code(st) == RING_DIED && batch_n > 1) {
                /* Died (or killed for its deadline) inside run_batch: no
                 * item can be blamed, so none counts an attempt. The
                 * batch runs again in halves (model.h, "Batches"): a
                 * poison item ends alone after log2(batch) deaths, where
                 * the rules for one item take over. */
                uint64_t half = (batch_n + 1) / 2;
                log_info("job %s: a batch of %u items from item %" PRIu64 " %s: its items run "
                         "again in batches of at most %" PRIu64,
                         j->id, batch_n, rest_start,
                         timeout_item == k + 1 ? "passed its deadline" : "killed its worker",
                         half);
                ejob_add_retry_batch(j, rest_start, batch_n, half);
                ejob_add_retry(j, rest_start + batch_n, rest - batch_n);
                e->tasks_retried++;
            } else if (ring_state_code(st) == RING_DIED && timeout_item == k + 1) {
                /* Killed for its deadline: that is the item's result; the
                 * items after it did not run and go back to the queue. */
                char msg[96];
                snprintf(msg, sizeof msg, "timed out after %.3f s", j->item_timeout_ms / 1000.0);
                job_put_result(e, j, rest_start, false, msg, strlen(msg));
                ejob_add_retry(j, rest_start + 1, rest - 1);
            } else if (ring_state_code(st) == RING_DIED) {
                int status = atomic_load_explicit(&s->died_status, memory_order_relaxed);
                if (!j->attempts)
                    j->attempts = calloc(j->total, 1);
                unsigned tries = j->attempts ? ++j->attempts[rest_start] : j->max_attempts;
                if (tries >= j->max_attempts) {
                    /* A poison item: it killed its worker every time. */
                    char msg[160];
                    engine_describe_death(status, tries, j->max_attempts, msg, sizeof msg);
                    job_put_result(e, j, rest_start, false, msg, strlen(msg));
                    log_warn("job %s item %" PRIu64 ": %s", j->id, rest_start, msg);
                } else {
                    /* Alone, so that a second death names the item exactly. */
                    ejob_add_retry(j, rest_start, 1);
                }
                ejob_add_retry(j, rest_start + 1, rest - 1);
                e->tasks_retried++;
            } else {
                ejob_add_retry(j, rest_start, rest);
            }
            e->items_retried += rest;
            if (ejob_has_pending(j))
                egroup_activate(g, j);
        }
        j->inflight_tasks--;
        j->inflight_items -= s->n_items;
        j->version++;
        /* an open run of this job carries its row when it ends (at the end
         * of this collect pass at the latest) */
        if (!(e->run_n && e->run_job == j))
            engine_end_run(e, j);
        ejob_check_finished(e, j);
    } else {
        engine_drop_object_outputs(e, idx);
    }
    ring_release(shm, idx);
    g->free_slots[g->n_free++] = idx;
}

/* Stops the tasks of jobs cancelled since the last pass (engine thread,
 * mutex held): engine_cancel runs on HTTP threads and only marks the job. */
void engine_stop_cancelled(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        /* job_stop_tasks reorders the list: after each job, look again (it
         * ends: a stopped job's slots are gone or flagged) */
        bool again = true;
        while (again) {
            again = false;
            for (uint32_t k = 0; k < g->n_inflight; k++) {
                struct ring_slot *s = ring_slot(e->shm, g->inflight[k]);
                struct job *j = engine_find_key(e, s->job_key);
                if (j && j->cancel_requested && j->status == JOB_CANCELLED &&
                    !atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
                    job_stop_tasks(e, j);
                    ejob_check_finished(e, j);
                    again = true;
                    break;
                }
            }
        }
    }
}

/* Orders finished slots by job, then first item: consecutive small tasks
 * then add to one run of results (one store block). */
static int engine_slot_order(const void *a, const void *b, void *shm)
{
    const struct ring_slot *x = ring_slot(shm, *(const uint32_t *)a);
    const struct ring_slot *y = ring_slot(shm, *(const uint32_t *)b);
    if (x->job_key != y->job_key)
        return x->job_key < y->job_key ? -1 : 1;
    return x->first_index < y->first_index ? -1 : x->first_index > y->first_index;
}

void engine_collect(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        uint32_t n = 0;
        for (uint32_t k = 0; k < g->n_inflight;) {
            uint32_t idx = g->inflight[k];
            enum ring_code c = ring_state_code(ring_slot_state(e->shm, idx));
            if (c == RING_DONE || c == RING_DIED) {
                g->inflight[k] = g->inflight[--g->n_inflight];
                e->done_slots[n++] = idx;
            } else {
                k++;
            }
        }
        qsort_r(e->done_slots, n, sizeof *e->done_slots, engine_slot_order, e->shm);
        for (uint32_t k = 0; k < n; k++) {
            /* DONE/DIED slots stay so until released: read it again (acquire) */
            uint64_t st = ring_slot_state(e->shm, e->done_slots[k]);
            engine_collect_slot(e, g, e->done_slots[k], st);
        }
    }
    if (e->run_n)
        engine_end_run(e, e->run_job);
}

/* Kills the worker of any item running past its deadline. The death comes
 * back as a DIED slot that says which item timed out (see ring.h). */
void engine_check_deadlines(struct engine *e)
{
    uint64_t now = shm_now_mono_ns();
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        for (uint32_t k = 0; k < g->n_inflight; k++) {
            uint32_t idx = g->inflight[k];
            struct ring_slot *s = ring_slot(e->shm, idx);
            uint64_t st = ring_slot_state(e->shm, idx);
            if (ring_state_code(st) != RING_CLAIMED || !s->item_timeout_ms ||
                atomic_load_explicit(&s->timeout_item, memory_order_relaxed))
                continue;
            uint64_t started = atomic_load_explicit(&s->item_started_ns, memory_order_relaxed);
            if (!started || now < started ||
                now - started <= (uint64_t)s->item_timeout_ms * 1000000ULL)
                continue;
            uint32_t w = ring_state_worker(st);
            pid_t pid = atomic_load_explicit(&shm_worker(e->shm, w)->pid, memory_order_acquire);
            if (pid <= 0)
                continue;
            uint32_t done = atomic_load_explicit(&s->out_count, memory_order_acquire);
            atomic_store_explicit(&s->timeout_item, done + 1, memory_order_relaxed);
            log_warn("item %" PRIu64 " ran past its %u ms deadline: killing worker %u (pid %d)",
                     s->first_index + done, s->item_timeout_ms, w, (int)pid);
            kill(pid, SIGKILL);
        }
    }
}

/* A group whose workers keep failing init() is down: its jobs fail with
 * the reason instead of waiting forever. It is up again as soon as one of
 * its workers gets through init(). */
#define ENGINE_DOWN_AFTER_FAILURES 3

void engine_check_groups(struct engine *e)
{
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct shm_group *sg = shm_group(e->shm, gi);
        struct egroup *g = &e->groups[gi];
        bool any_ready = false;
        for (uint32_t k = 0; k < sg->n_workers && !any_ready; k++) {
            uint32_t st = atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->state,
                                               memory_order_relaxed);
            any_ready = st == WORKER_IDLE || st == WORKER_BUSY;
        }
        bool down = !any_ready && atomic_load_explicit(&sg->init_failures, memory_order_relaxed) >=
                                      ENGINE_DOWN_AFTER_FAILURES;
        if (down != g->down)
            log_warn("model %s is %s", sg->name, down ? "down: its workers cannot start" : "up");
        g->down = down;
        if (!down)
            continue;
        char why[SHM_ERR_LEN + SHM_NAME_LEN + 64];
        snprintf(why, sizeof why, "model %s cannot start: init failed: %s", sg->name,
                 sg->load_error);
        for (struct job *j = e->newest; j; j = j->older)
            if (j->group == gi && !j->finished_ns)
                ejob_fail(e, j, why);
    }
}
