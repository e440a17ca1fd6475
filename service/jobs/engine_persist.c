/*
 * engine_persist.c: the engine's store side (see engine_int.h): the
 * flusher thread's group commit of dirty jobs and collected results,
 * retention of finished jobs, and the recovery of unfinished jobs at
 * engine_create. A store call never runs with e->mu held.
 */

#include "service/jobs/engine_int.h"

#define ENGINE_FLUSH_NS 20000000ULL     /* group commit: a flush per 20 ms at most */
#define ENGINE_FLUSH_BYTES (8u << 20)   /* or when this much waits */
#define ENGINE_RETENTION_EVERY_NS 10000000000ULL

/* Group commit: writes what the dirty jobs accumulated in one transaction,
 * then lets the jobs whose results are now all durable finish. The commit
 * waits for the disk outside the mutex, so status polls never wait for it. */
void engine_flush(struct engine *e, bool force)
{
    pthread_mutex_lock(&e->mu);
    uint64_t now = shm_now_mono_ns();
    bool due = force || now - e->last_flush_ns >= ENGINE_FLUSH_NS ||
               store_pending_bytes(e->store) > ENGINE_FLUSH_BYTES;
    /* a failing store (a full disk) is retried with back-off, not hammered */
    if (!force && e->store_error && now - e->last_flush_ns < e->flush_retry_ns)
        due = false;
    for (size_t i = 0; !due && !e->store_error && i < e->n_dirty; i++) {
        const struct job *j = e->dirty[i];
        due = j->done + j->failed == j->total && j->flushed < j->total;
    }
    if (e->n_dirty == 0 || !due) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    uint64_t gen = e->gen;
    for (size_t i = 0; i < e->n_dirty; i++) {
        e->dirty[i]->flush_target = e->dirty[i]->done + e->dirty[i]->failed;
        e->dirty[i]->in_flush = true;
    }
    pthread_mutex_unlock(&e->mu);

    int rc = store_flush(e->store);

    pthread_mutex_lock(&e->mu);
    e->last_flush_ns = now;
    if (rc != 0) {
        if (rc != e->store_error)
            log_error("engine: results cannot be written (%s); retrying", strerror(-rc));
        e->store_error = rc;
        e->flush_retry_ns = e->flush_retry_ns ? e->flush_retry_ns * 2 : 10000000ULL;
        if (e->flush_retry_ns > 1000000000ULL)
            e->flush_retry_ns = 1000000000ULL;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (e->store_error)
        log_info("engine: results are written again");
    e->store_error = 0;
    e->flush_retry_ns = 0;
    /* Jobs marked in_flush were in the transaction; those changed since
     * (a later generation) stay dirty for the next one. */
    struct job **done = malloc((e->n_dirty ? e->n_dirty : 1) * sizeof *done);
    size_t n_done = 0;
    for (size_t i = 0; i < e->n_dirty;) {
        struct job *j = e->dirty[i];
        if (j->in_flush) {
            j->in_flush = false;
            j->flushed = j->flush_target;
            if (j->dirty_gen <= gen) {
                j->dirty = false;
                e->dirty[i] = e->dirty[--e->n_dirty];
                if (done)
                    done[n_done++] = j;
                continue;
            }
        }
        i++;
    }
    for (size_t i = 0; i < n_done; i++) {
        ejob_check_finished(e, done[i]);
        /* finished and now wholly in the store: served from there */
        engine_evict(e, done[i]);
    }
    free(done);
    engine_fire_watches(e);
    if (e->flush_fn)
        e->flush_fn(e->flush_arg);
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
}

struct expired {
    uint64_t seq[128];
    int status[128];
    char id[128][ENGINE_JOB_ID_LEN + 1];
    size_t n;
};

static int expired_add(void *arg, const struct store_job *row)
{
    struct expired *x = arg;
    if (x->n < 128) {
        x->seq[x->n] = row->seq;
        x->status[x->n] = row->status;
        memcpy(x->id[x->n], row->id, ENGINE_JOB_ID_LEN);
        x->id[x->n][ENGINE_JOB_ID_LEN] = '\0';
        x->n++;
    }
    return 0;
}

/* Deletes jobs that finished longer ago than --retention, a few at a time,
 * found through the store's index on finished_ns. A job still in memory
 * (a stream reads it) is forgotten there too; one whose last row is not
 * flushed yet waits for the next round. */
void engine_retention(struct engine *e)
{
    uint64_t now = shm_now_mono_ns();
    if (now - e->last_retention_ns < ENGINE_RETENTION_EVERY_NS)
        return;
    e->last_retention_ns = now;
    uint64_t cutoff = shm_now_real_ns() - (uint64_t)e->cfg->retention_s * 1000000000ULL;
    struct expired *x = calloc(1, sizeof *x);
    if (!x)
        return;
    store_jobs_finished_before(e->store, cutoff, 128, expired_add, x);
    size_t deleted = 0;
    for (size_t i = 0; i < x->n; i++) {
        pthread_mutex_lock(&e->mu);
        struct job *j = engine_find(e, x->id[i]);
        bool wait = j && j->dirty;
        if (j && !wait)
            engine_forget_job(e, j);
        pthread_mutex_unlock(&e->mu);
        if (!wait && engine_delete_stored(e, x->seq[i], x->status[i]) == 0)
            deleted++;
    }
    free(x);
    if (deleted)
        log_info("retention: deleted %zu job(s) finished more than %u s ago", deleted,
                 e->cfg->retention_s);
    /* deleted data frees disk space over time, not in one long stall */
    store_reclaim_space(e->store);
    /* Memory freed by requests and by jobs that left memory sits in holes
     * of the heap that malloc keeps (only the top of an arena goes back
     * by itself): a few MB after a busy spell, with nothing in use. Whole
     * free pages go back to the system here, so the process's RSS follows
     * what it holds (docs/architecture.md, "What is in memory"). */
    malloc_trim(0);
}

/* The flusher thread: commits what the engine collected, so that the
 * engine thread keeps dispatching while a commit waits for the disk. */
void *engine_flusher_main(void *arg)
{
    struct engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!atomic_load_explicit(&e->stop, memory_order_acquire)) {
        if (e->n_dirty == 0) {
            e->flusher_idle = true;
            engine_timedwait(e, &e->flush_cv, ENGINE_TICK_MS);
            e->flusher_idle = false;
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        engine_flush(e, false);
        pthread_mutex_lock(&e->mu);
        /* not due yet, or just written: look again in a few ms */
        engine_timedwait(e, &e->flush_cv, 5);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ----------------------------------------------------------- recovery */

static int recover_range(void *arg, uint64_t first, uint32_t n)
{
    struct job *j = arg;
    for (uint64_t i = first; i < first + n && i < j->total; i++)
        ejob_set_has(j, i);
    return 0;
}

/* Rebuilds one unfinished job from its row at start-up: it goes on from
 * where its durable results stop. (Finished jobs stay in the store, and are
 * served from there.) */
int engine_recover_job(void *arg, const struct store_job *row)
{
    struct engine *e = arg;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->total = row->total;
    j->has = calloc((j->total + 7) / 8 + 1, 1);
    if (!j->has) {
        free(j);
        return -ENOMEM;
    }
    memcpy(j->id, row->id, ENGINE_JOB_ID_LEN);
    j->id[ENGINE_JOB_ID_LEN] = '\0';
    snprintf(j->model, sizeof j->model, "%s", row->model);
    j->sseq = row->seq;
    j->status = row->status >= 0 && row->status < JOB_STATUS_COUNT ? (enum job_status)row->status
                                                                   : JOB_FAILED;
    j->done = row->done;
    j->failed = row->failed;
    j->flushed = row->done + row->failed;
    j->created_ns = row->created_ns;
    j->started_ns = row->started_ns;
    j->finished_ns = row->finished_ns;
    j->chunk_size = row->chunk_size;
    j->item_timeout_ms = row->item_timeout_ms;
    j->max_attempts = row->max_attempts ? row->max_attempts : e->cfg->max_attempts;
    j->error = row->error[0] ? strdup(row->error) : NULL;
    j->idem_key = row->idem_key[0] ? strdup(row->idem_key) : NULL;
    j->request_hash = row->request_hash;
    int g = engine_group_of(e, row->model);
    j->group = g >= 0 ? (uint32_t)g : 0;
    int rc = engine_insert_job(e, j);
    if (rc) {
        ejob_free(j);
        return rc;
    }
    e->pending_items += j->total - j->done - j->failed;
    rc = store_result_ranges(e->store, j->sseq, recover_range, j);
    if (rc == 0 && g >= 0 && j->status != JOB_CANCELLED && j->status != JOB_FAILED)
        rc = store_inputs_read(e->store, j->sseq, j->total, &j->items);
    if (rc != 0 || g < 0) {
        char why[160];
        if (g < 0)
            snprintf(why, sizeof why, "model %s is not loaded by this batchd", row->model);
        else
            snprintf(why, sizeof why, "its stored data cannot be read (%s)", strerror(-rc));
        ejob_fail(e, j, why);
        return 0;
    }
    if (j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        j->cancel_requested = true;
        j->next_index = j->total;
        ejob_check_finished(e, j);
        return 0;
    }
    /* Everything without a durable result runs (again). */
    j->next_index = j->total;
    for (uint64_t i = 0; i < j->total;) {
        if (ejob_has(j, i)) {
            i++;
            continue;
        }
        uint64_t start = i;
        while (i < j->total && !ejob_has(j, i))
            i++;
        if (ejob_add_retry(j, start, i - start) != 0)
            return -ENOMEM;
    }
    ejob_pin_objects(e, j, j->items);
    if (j->stateful) {
        /* The workers' states were keyed to the old api process's jobs (they
         * drop them): every item that has a result runs again for its
         * state, unless the result was reduced before the restart. */
        struct sbuf b = SBUF_INIT;
        if (store_job_result(e->store, j->sseq, &b) == 0) {
            j->reduced = true;
        } else {
            for (uint64_t i = 0; i < j->total;) {
                uint64_t start = i;
                while (i < j->total && ejob_has(j, i))
                    i++;
                if (engine_ranges_add(&j->replay, start, i - start) != 0) {
                    sbuf_free(&b);
                    return -ENOMEM;
                }
                while (i < j->total && !ejob_has(j, i))
                    i++;
            }
        }
        sbuf_free(&b);
    }
    if (ejob_has_pending(j))
        egroup_activate(&e->groups[j->group], j);
    else
        ejob_check_finished(e, j);
    return 0;
}
