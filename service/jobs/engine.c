/*
 * engine.c: jobs, the dispatcher and the collector (see engine.h). This
 * file holds create and destroy, the engine thread's loop and submission;
 * the rest of the engine is split by concern (engine_int.h lists the
 * files and says which thread runs what).
 *
 * One mutex guards all job state; the engine thread holds it while it
 * collects and dispatches, and releases it while it sleeps on the ring's
 * engine futex. HTTP threads take it briefly to read or change a job and
 * wake the engine thread (ring_notify_engine) when they add work.
 */

#include "service/jobs/engine_int.h"

static bool engine_has_work(void *arg)
{
    struct engine *e = arg;
    if (atomic_load_explicit(&e->kick, memory_order_acquire) ||
        atomic_load_explicit(&e->stop, memory_order_acquire))
        return true;
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct egroup *g = &e->groups[gi];
        for (uint32_t k = 0; k < g->n_inflight; k++) {
            enum ring_code c = ring_state_code(ring_slot_state(e->shm, g->inflight[k]));
            if (c == RING_DONE || c == RING_DIED)
                return true;
        }
    }
    return false;
}

/* Waits on cv (mu held) at most ms milliseconds. */
void engine_timedwait(struct engine *e, pthread_cond_t *cv, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, &e->mu, &ts);
}

/* Tells the watch hook about every watched job that changed since it was
 * last told (mutex held). The cost is one comparison per watched job, at
 * the points where the engine already wakes its own waiters. */
void engine_fire_watches(struct engine *e)
{
    for (size_t i = 0; e->watch_fn && i < e->n_watched; i++) {
        struct job *j = e->watched[i];
        if (j->version != j->watch_version) {
            j->watch_version = j->version;
            e->watch_fn(e->watch_arg, j->id);
        }
    }
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    while (!atomic_load_explicit(&e->stop, memory_order_acquire)) {
        atomic_store_explicit(&e->kick, false, memory_order_release);
        pthread_mutex_lock(&e->mu);
        engine_collect(e);
        engine_stop_cancelled(e);
        engine_wind_stateful(e);
        engine_check_groups(e);
        engine_check_deadlines(e);
        engine_dispatch(e);
        /* a flusher between two group commits wakes on its own (5 ms):
         * signalling it on every pass would cost a wake-up per task */
        if (e->n_dirty && e->flusher_idle)
            pthread_cond_signal(&e->flush_cv);
        engine_fire_watches(e);
        pthread_cond_broadcast(&e->progress);
        pthread_mutex_unlock(&e->mu);
        engine_retention(e);
        ring_wait_engine(e->shm, engine_has_work, e, ENGINE_TICK_MS);
    }
    return NULL;
}

/* ---------------------------------------------------------------- public */

struct engine *engine_create(const struct config *cfg, struct shm *shm,
                             struct objects *objects)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = cfg;
    e->shm = shm;
    e->objects = objects;
    e->accepting = true;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->http_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->progress, &ca);
    pthread_cond_init(&e->flush_cv, &ca);
    pthread_condattr_destroy(&ca);
    struct shm_header *h = shm_header(shm);
    e->epoch = (atomic_fetch_add(&h->api_epoch, 1) + 1) & 0xffffffu;
    e->n_groups = h->n_groups;
    e->groups = calloc(e->n_groups, sizeof *e->groups);
    e->hash_cap = 1024;
    e->hash = calloc(e->hash_cap, sizeof *e->hash);
    e->khash = calloc(e->hash_cap, sizeof *e->khash);
    if (!e->groups || !e->hash || !e->khash)
        goto fail;
    /* What a previous api process left in the ring belongs to jobs that died
     * with it: READY/DONE slots are freed now, CLAIMED ones once their
     * workers finish (they are watched like our own and dropped). */
    uint32_t orphans = ring_reclaim_all(shm);
    if (orphans)
        log_info("engine: %u task(s) of a previous api process still running", orphans);
    for (uint32_t gi = 0; gi < e->n_groups; gi++) {
        struct shm_group *sg = shm_group(shm, gi);
        struct egroup *g = &e->groups[gi];
        g->n_workers = sg->n_workers;
        g->stateful = sg->flags & SHM_GROUP_STATEFUL;
        g->first_worker = sg->first_worker;
        g->first_slot = sg->first_slot;
        g->free_slots = calloc(sg->n_slots, sizeof *g->free_slots);
        g->inflight = calloc(sg->n_slots, sizeof *g->inflight);
        g->target = calloc(sg->n_slots, sizeof *g->target);
        g->mail_busy = calloc(sg->n_workers ? sg->n_workers : 1, sizeof *g->mail_busy);
        if (!g->free_slots || !g->inflight || !g->target || !g->mail_busy)
            goto fail;
        for (uint32_t k = 0; k < sg->n_slots; k++) {
            uint32_t idx = sg->first_slot + k;
            if (ring_state_code(ring_slot_state(shm, idx)) == RING_FREE)
                g->free_slots[g->n_free++] = idx;
            else
                g->inflight[g->n_inflight++] = idx;
        }
    }
    e->run_lens = malloc(sizeof *e->run_lens * (ENGINE_MAX_CHUNK + 1));
    e->done_slots = malloc(sizeof *e->done_slots * (h->n_slots ? h->n_slots : 1));
    if (!e->run_lens || !e->done_slots)
        goto fail;
    char err[512];
    e->store = store_open(cfg->store, cfg->data_dir, cfg->max_store_bytes, err, sizeof err);
    if (!e->store) {
        log_error("engine: %s", err);
        goto fail;
    }
    /* Jobs of earlier runs: unfinished ones go on where their durable
     * results stop; finished ones stay in the store (only counted). */
    int rc = store_jobs_count_finished(e->store, e->jobs_by_status, JOB_STATUS_COUNT);
    if (rc == 0)
        rc = store_jobs_each_unfinished(e->store, engine_recover_job, e);
    if (rc != 0) {
        log_error("engine: cannot recover jobs from the store: %s", strerror(-rc));
        goto fail;
    }
    if (e->n_jobs)
        log_info("engine: recovered %" PRIu64 " unfinished job(s), %" PRIu64 " item(s) to run",
                 e->n_jobs, e->pending_items);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        goto fail;
    e->thread_started = true;
    if (pthread_create(&e->flusher, NULL, engine_flusher_main, e) != 0)
        goto fail;
    e->flusher_started = true;
    return e;
fail:
    log_error("engine: cannot start (out of memory or threads)");
    engine_destroy(e);
    return NULL;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    atomic_store(&e->stop, true);
    if (e->thread_started) {
        ring_notify_engine(e->shm);
        pthread_join(e->thread, NULL);
    }
    if (e->flusher_started) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_signal(&e->flush_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->flusher, NULL);
    }
    /* what was collected is written before the process goes */
    if (e->store)
        engine_flush(e, true);
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
    for (struct job *j = e->newest, *next; j; j = next) {
        next = j->older;
        ejob_free(j);
    }
    for (uint32_t gi = 0; e->groups && gi < e->n_groups; gi++) {
        free(e->groups[gi].free_slots);
        free(e->groups[gi].inflight);
        free(e->groups[gi].active);
        free(e->groups[gi].target);
        free(e->groups[gi].mail_busy);
        free(e->groups[gi].sjobs);
    }
    free(e->groups);
    free(e->hash);
    free(e->khash);
    free(e->http);
    free(e->dirty);
    free(e->watched);
    free(e->run_lens);
    free(e->done_slots);
    sbuf_free(&e->run);
    store_close(e->store);
    pthread_cond_destroy(&e->progress);
    pthread_cond_destroy(&e->flush_cv);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->http_mu);
    free(e);
}

int engine_group_of(struct engine *e, const char *model)
{
    for (uint32_t g = 0; g < e->n_groups; g++)
        if (!strcmp(shm_group(e->shm, g)->name, model))
            return (int)g;
    return -1;
}

bool engine_model_exists(struct engine *e, const char *model)
{
    return model && engine_group_of(e, model) >= 0;
}

size_t engine_max_item_bytes(const struct engine *e)
{
    size_t slot = shm_header(e->shm)->in_cap - RING_IN_HDR;
    return e->cfg->max_item_bytes < slot ? e->cfg->max_item_bytes : slot;
}

/* What a Job object shows, copied under the mutex so that the JSON is
 * built without it (job_view.h). */
void ejob_view_fill(const struct engine *e, const struct job *j, struct job_view *v)
{
    (void)e;
    memset(v, 0, sizeof *v);
    v->seq = j->sseq;
    memcpy(v->id, j->id, sizeof v->id);
    memcpy(v->model, j->model, sizeof v->model);
    v->status = j->status;
    v->total = j->total;
    v->done = j->done;
    v->failed = j->failed;
    v->inflight_items = j->inflight_items;
    v->created_ns = j->created_ns;
    v->started_ns = j->started_ns;
    v->finished_ns = j->finished_ns;
    v->chunk_size = j->chunk_size;
    v->has_error = j->error != NULL;
    v->stateful = j->stateful;
    snprintf(v->error, sizeof v->error, "%s", j->error ? j->error : "");
}

json_t *engine_job_row_json(const struct store_job *row)
{
    struct job_view v;
    /* the event's data: a finished job, as GET shows it from the store */
    job_view_from_row(&v, row, false);
    return job_view_json(&v);
}

struct store *engine_store(struct engine *e) { return e->store; }

void engine_set_flush_hook(struct engine *e, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&e->mu);
    e->flush_fn = fn;
    e->flush_arg = arg;
    pthread_mutex_unlock(&e->mu);
}

json_t *ejob_json(struct engine *e, const struct job *j)
{
    struct job_view v;
    ejob_view_fill(e, j, &v);
    return job_view_json(&v);
}

/* A running job's tag changes with every visible change (its version);
 * a finished one's is final, the same as when it is served from the store. */
static void job_etag(struct engine *e, const struct job *j, char *etag)
{
    if (ejob_finished(j)) {
        job_view_final_etag(j->sseq, (int)j->status, etag);
        return;
    }
    snprintf(etag, ENGINE_ETAG_LEN + 1, "\"%x-%" PRIx64 "-%" PRIx64 "\"", e->epoch,
             ring_key_seq(j->key), j->version);
}

/* Adds a job to the in-memory tables (mutex held). Returns 0 or -ENOMEM. */
int engine_insert_job(struct engine *e, struct job *j)
{
    j->key = ring_key_make(e->epoch, e->n_seq + 1);
    if (engine_hash_insert(e, j) != 0)
        return -ENOMEM;
    e->n_seq++;
    j->older = e->newest;
    if (e->newest)
        e->newest->newer = j;
    e->newest = j;
    if (!e->oldest)
        e->oldest = j;
    e->n_jobs++;
    e->jobs_by_status[j->status]++;
    return ejob_make_stateful(e, j);
}

/* FNV-1a over the request: the same key with another body is a conflict. */
static uint64_t engine_request_hash(const char *model, const struct job_options *opt,
                                    const struct job_items *items)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *parts[2] = { (const unsigned char *)model,
                                      (const unsigned char *)items->data };
    size_t lens[2] = { strlen(model) + 1, items->len };
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < lens[p]; i++)
            h = (h ^ parts[p][i]) * 1099511628211ULL;
    uint32_t o[3] = { opt ? opt->chunk_size : 0, opt ? opt->item_timeout_ms : 0,
                      opt ? opt->max_attempts : 0 };
    for (size_t i = 0; i < sizeof o; i++)
        h = (h ^ ((const unsigned char *)o)[i]) * 1099511628211ULL;
    /* so does the webhook: the same key with another URL is another request */
    for (const char *u = opt && opt->webhook_url ? opt->webhook_url : ""; *u; u++)
        h = (h ^ (unsigned char)*u) * 1099511628211ULL;
    /* item boundaries count too: ["ab"] is not ["a","b"] */
    for (size_t i = 0; i <= items->n; i++)
        h = (h ^ items->off[i]) * 1099511628211ULL;
    return h;
}

bool engine_model_stateful(struct engine *e, const char *model)
{
    int g = engine_group_of(e, model);
    return g >= 0 && e->groups[g].stateful;
}

/* Fills v (and etag, if not NULL) for job `id`: from memory when it is
 * there, else from `row` when given, else from the store. Returns 0,
 * -ENOENT, -EIO. */
int engine_view(struct engine *e, const char *id, const struct store_job *row,
                       struct job_view *v, char *etag)
{
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return -ENOENT;
    pthread_mutex_lock(&e->mu);
    struct job *j = engine_find(e, id);
    if (j) {
        ejob_view_fill(e, j, v);
        if (etag)
            job_etag(e, j, etag);
    }
    pthread_mutex_unlock(&e->mu);
    if (j)
        return 0;
    struct store_job r;
    if (!row) {
        int rc = store_job_get(e->store, id, &r);
        if (rc)
            return rc;
        row = &r;
    }
    job_view_from_row(v, row, engine_model_stateful(e, row->model));
    if (etag)
        job_view_final_etag(row->seq, row->status, etag);
    return 0;
}

#define ENGINE_INSERT_WAIT_MS 1000

/*
 * Finds job `id` for a reader. In memory: returns it held (refs; the
 * caller releases it with engine_job_release under the mutex), mutex not
 * held. Otherwise returns NULL with *rc = 0 and its row in *row (a job
 * served from the store), or *rc = -ENOENT / -EIO.
 * A row that is not finished while its job is not in memory belongs to a
 * submission between its commit and its insert (engine_submit): that is
 * waited out (bounded), so that callers see it in memory.
 */
struct job *engine_hold(struct engine *e, const char *id, struct store_job *row, int *rc)
{
    *rc = -ENOENT;
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return NULL;
    for (int waited = 0;; waited++) {
        pthread_mutex_lock(&e->mu);
        struct job *j = engine_find(e, id);
        if (j)
            j->refs++;
        pthread_mutex_unlock(&e->mu);
        if (j) {
            *rc = 0;
            return j;
        }
        *rc = store_job_get(e->store, id, row);
        if (*rc || row->finished_ns || waited == ENGINE_INSERT_WAIT_MS)
            return NULL;
        usleep(1000);
    }
}

/* The answer to a request whose Idempotency-Key names the job of row
 * `old`: the same request gets that job back (ENGINE_REPLAYED, with its id
 * and Job object), another request -EEXIST. The job is shown from memory
 * if it is there, else from its row: it may have finished and left memory,
 * or be the job of a concurrent request whose row is committed but which
 * is not in memory yet (its Job is then the row as submitted). */
static int engine_replay(struct engine *e, const struct store_job *old, uint64_t request_hash,
                         char *id, json_t **job_json_out)
{
    memcpy(id, old->id, ENGINE_JOB_ID_LEN);
    id[ENGINE_JOB_ID_LEN] = '\0';
    if (old->request_hash != request_hash)
        return -EEXIST;
    if (job_json_out) {
        struct job_view v;
        engine_view(e, old->id, old, &v, NULL);
        *job_json_out = job_view_json(&v);
    }
    return ENGINE_REPLAYED;
}

int engine_submit(struct engine *e, const char *model, struct job_items *items,
                  const struct job_options *opt, char *id, json_t **job_json_out)
{
    int g = model ? engine_group_of(e, model) : -1;
    if (g < 0)
        return -ENOENT;
    if (!items || items->n == 0)
        return -EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->total = items->n;
    j->has = calloc((j->total + 7) / 8, 1);
    if (!j->has) {
        ejob_free(j);
        return -ENOMEM;
    }
    j->group = (uint32_t)g;
    snprintf(j->model, sizeof j->model, "%s", model);
    j->chunk_size = opt && opt->chunk_size ? opt->chunk_size : 0;
    if (j->chunk_size > ENGINE_MAX_CHUNK)
        j->chunk_size = ENGINE_MAX_CHUNK;
    j->item_timeout_ms = opt && opt->item_timeout_ms ? opt->item_timeout_ms
                                                     : e->cfg->item_timeout_ms;
    j->max_attempts = opt && opt->max_attempts ? opt->max_attempts : e->cfg->max_attempts;
    if (j->max_attempts == 0)
        j->max_attempts = 1;
    j->created_ns = shm_now_real_ns();
    j->status = JOB_QUEUED;
    engine_new_id(j->id);
    if (opt && opt->idempotency_key && opt->idempotency_key[0]) {
        j->idem_key = strdup(opt->idempotency_key);
        if (!j->idem_key) {
            ejob_free(j);
            return -ENOMEM;
        }
    }
    j->request_hash = engine_request_hash(model, opt, items);

    /* Admission first, with the items reserved, so that concurrent
     * submissions cannot pass the limit together. */
    pthread_mutex_lock(&e->mu);
    int refuse = !e->accepting                 ? -ESHUTDOWN
                 : j->total > e->cfg->max_queued_items ? -EFBIG
                 : e->groups[g].down           ? -EHOSTDOWN
                 : e->pending_items + j->total > e->cfg->max_queued_items ? -EBUSY
                                               : 0;
    if (!refuse)
        e->pending_items += j->total;
    pthread_mutex_unlock(&e->mu);
    if (refuse) {
        ejob_free(j);
        return refuse;
    }

    /* Durable before anything else sees it (outside the mutex: the commit
     * waits for the disk, and status polls must not). */
    struct store_job row, existing;
    ejob_row(e, j, &row);
    row.webhook_url = opt ? opt->webhook_url : NULL;
    int rc = store_job_create(e->store, &row, items, &existing);
    if (rc != 0) {
        pthread_mutex_lock(&e->mu);
        e->pending_items -= j->total;
        int out = rc;
        pthread_mutex_unlock(&e->mu);
        if (rc == -EEXIST)
            out = engine_replay(e, &existing, j->request_hash, id, job_json_out);
        ejob_free(j);
        return out;
    }
    j->sseq = row.seq;

    pthread_mutex_lock(&e->mu);
    rc = engine_insert_job(e, j);
    if (rc != 0) {
        /* Durable but not runnable now: it runs after the next restart. */
        e->pending_items -= j->total;
        pthread_mutex_unlock(&e->mu);
        log_error("job %s: out of memory after it was stored", j->id);
        ejob_free(j);
        return -ENOMEM;
    }
    j->items = items;
    ejob_pin_objects(e, j, items);
    e->jobs_submitted++;
    egroup_activate(&e->groups[g], j);
    memcpy(id, j->id, ENGINE_JOB_ID_LEN + 1);
    if (job_json_out)
        *job_json_out = ejob_json(e, j);
    pthread_mutex_unlock(&e->mu);
    atomic_store_explicit(&e->kick, true, memory_order_release);
    ring_notify_engine(e->shm);
    return 0;
}

void engine_stop_accepting(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->accepting = false;
    pthread_mutex_unlock(&e->mu);
}

bool engine_drained(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool drained = true;
    for (uint32_t gi = 0; gi < e->n_groups && drained; gi++)
        drained = e->groups[gi].n_inflight == 0;
    pthread_mutex_unlock(&e->mu);
    return drained;
}
