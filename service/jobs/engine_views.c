/*
 * engine_views.c: what the engine shows about itself (HTTP threads): the
 * workers and models JSON (with /proc reads outside e->mu), readiness,
 * the HTTP request counters and the /metrics text.
 */

#include "service/jobs/engine_int.h"

/* The upper bounds (seconds) of batchd_http_request_duration_seconds'
 * buckets: counted by engine_count_request, printed by engine_metrics. */
static const double engine_http_bounds[ENGINE_HTTP_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                0.025,  0.05,  0.1,    0.5,   1.0 };

static const char *worker_state_name(uint32_t st)
{
    static const char *const names[] = { "starting", "starting", "idle",  "busy",
                                         "stopping", "dead",     "failed" };
    return st < sizeof names / sizeof *names ? names[st] : "dead";
}

/* Reads Rss and Pss (bytes) from /proc/PID/smaps_rollup. */
static void proc_mem(pid_t pid, json_int_t *rss, json_int_t *pss)
{
    *rss = *pss = -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        long long kb;
        if (sscanf(line, "Rss: %lld kB", &kb) == 1)
            *rss = (json_int_t)kb * 1024;
        else if (sscanf(line, "Pss: %lld kB", &kb) == 1)
            *pss = (json_int_t)kb * 1024;
    }
    fclose(f);
}

json_t *engine_workers_json(struct engine *e)
{
    json_t *arr = json_array();
    struct shm_header *h = shm_header(e->shm);
    for (uint32_t w = 0; w < h->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        pid_t pid = atomic_load_explicit(&sw->pid, memory_order_acquire);
        uint64_t job_key = atomic_load_explicit(&sw->current_job, memory_order_relaxed);
        json_t *cur = json_null();
        if (job_key) {
            pthread_mutex_lock(&e->mu);
            struct job *j = engine_find_key(e, job_key);
            if (j) {
                json_decref(cur);
                cur = json_string(j->id);
            }
            pthread_mutex_unlock(&e->mu);
        }
        json_int_t rss = -1, pss = -1;
        if (pid > 0)
            proc_mem(pid, &rss, &pss);
        /* A coprocess model's worker: its child of the model's host. */
        json_t *coproc = json_null();
        pid_t child = atomic_load_explicit(&sw->coproc_pid, memory_order_relaxed);
        if (pid > 0 && child > 0) {
            json_int_t crss = -1, cpss = -1;
            proc_mem(child, &crss, &cpss);
            json_decref(coproc);
            coproc = json_pack("{s:i, s:o, s:o}", "pid", (int)child, "rss_bytes",
                               crss >= 0 ? json_integer(crss) : json_null(), "pss_bytes",
                               cpss >= 0 ? json_integer(cpss) : json_null());
        }
        uint32_t rc_items = atomic_load_explicit(&sw->recycles_items, memory_order_relaxed);
        uint32_t rc_rss = atomic_load_explicit(&sw->recycles_rss, memory_order_relaxed);
        uint64_t gap = atomic_load_explicit(&sw->last_recycle_ns, memory_order_relaxed);
        json_t *row =
            json_pack("{s:i, s:o, s:s, s:s, s:i, s:I, s:I, s:I, s:i, s:I, s:{s:i, s:i}, s:o, s:o, "
                      "s:o, s:o, s:o}",
                      "id",
                      (int)w, "pid", pid > 0 ? json_integer(pid) : json_null(), "model",
                      shm_group(e->shm, sw->group)->name, "state",
                      worker_state_name(atomic_load(&sw->state)), "inits",
                      (int)atomic_load(&sw->inits), "tasks_done",
                      (json_int_t)atomic_load(&sw->tasks_done), "items_done",
                      (json_int_t)atomic_load(&sw->items_done), "items_failed",
                      (json_int_t)atomic_load(&sw->items_failed), "restarts",
                      (int)atomic_load(&sw->restarts), "recycles",
                      (json_int_t)rc_items + rc_rss, "recycles_by_reason", "items", (int)rc_items,
                      "rss", (int)rc_rss, "last_recycle_seconds",
                      gap ? json_real((double)gap / 1e9) : json_null(), "current_job", cur,
                      "started_at",
                      job_view_time(atomic_load(&sw->started_ns)), "rss_bytes",
                      rss >= 0 ? json_integer(rss) : json_null(), "pss_bytes",
                      pss >= 0 ? json_integer(pss) : json_null());
        json_object_set_new(row, "coprocess", coproc);
        json_array_append_new(arr, row);
    }
    return json_pack("{s:o}", "workers", arr);
}

json_t *engine_models_json(struct engine *e)
{
    json_t *arr = json_array();
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        unsigned ready = 0, inited = 0;
        double init_sum = 0;
        for (uint32_t k = 0; k < sg->n_workers; k++) {
            struct shm_worker *sw = shm_worker(e->shm, sg->first_worker + k);
            uint32_t st = atomic_load(&sw->state);
            if (st == WORKER_IDLE || st == WORKER_BUSY)
                ready++;
            uint64_t ns = atomic_load(&sw->init_ns);
            if (atomic_load(&sw->inits) > 0) {
                inited++;
                init_sum += (double)ns / 1e9;
            }
        }
        json_t *row = json_pack(
            "{s:s, s:s, s:i, s:i, s:f, s:o, s:b, s:s*, s:o, s:o}", "name", sg->name, "description",
            sg->description, /* the supervisor's copy */
            "workers", (int)sg->n_workers, "ready_workers", (int)ready, "load_seconds",
            (double)sg->load_ns / 1e9, "init_seconds",
            inited ? json_real(init_sum / inited) : json_null(), "builtin",
            sg->plugin[0] == '\0' && sg->runtime[0] == '\0', "plugin",
            sg->plugin[0] ? sg->plugin : NULL, "max_items_per_worker",
            sg->max_items ? json_integer((json_int_t)sg->max_items) : json_null(),
            "max_worker_rss_bytes",
            sg->max_rss ? json_integer((json_int_t)sg->max_rss) : json_null());
        /* A model in another language, and the process that hosts it. */
        json_object_set_new(row, "runtime", json_string(sg->runtime[0] ? sg->runtime : "c"));
        json_t *host = json_null();
        if (sg->runtime[0]) {
            pid_t hp = atomic_load_explicit(&sg->host_pid, memory_order_relaxed);
            json_int_t hrss = -1, hpss = -1;
            if (hp > 0)
                proc_mem(hp, &hrss, &hpss);
            json_decref(host);
            host = json_pack("{s:s, s:o, s:i, s:i, s:o, s:o}", "module", sg->module, "pid",
                             hp > 0 ? json_integer(hp) : json_null(), "loads",
                             (int)atomic_load(&sg->host_loads), "restarts",
                             (int)atomic_load(&sg->host_restarts), "rss_bytes",
                             hrss >= 0 ? json_integer(hrss) : json_null(), "pss_bytes",
                             hpss >= 0 ? json_integer(hpss) : json_null());
        }
        json_object_set_new(row, "host", host);
        json_array_append_new(arr, row);
    }
    return json_pack("{s:o}", "models", arr);
}

bool engine_ready(struct engine *e, char *why, size_t whylen)
{
    if (atomic_load(&shm_header(e->shm)->shutting_down)) {
        snprintf(why, whylen, "batchd is shutting down");
        return false;
    }
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        for (uint32_t k = 0; k < sg->n_workers; k++) {
            uint32_t w = sg->first_worker + k;
            uint32_t st = atomic_load(&shm_worker(e->shm, w)->state);
            if (st == WORKER_IDLE || st == WORKER_BUSY)
                continue;
            if (st == WORKER_FAILED && sg->load_error[0])
                snprintf(why, whylen, "model %s: worker %u cannot start: init failed: %s",
                         sg->name, w, sg->load_error);
            else
                snprintf(why, whylen, "model %s: worker %u is %s", sg->name, w,
                         worker_state_name(st));
            return false;
        }
    }
    why[0] = '\0';
    return true;
}

void engine_count_request(struct engine *e, const char *route, const char *method, int status,
                          double seconds)
{
    pthread_mutex_lock(&e->http_mu);
    struct http_stat *st = NULL;
    for (size_t i = 0; i < e->n_http; i++) {
        if (e->http[i].status == status && !strcmp(e->http[i].route, route) &&
            !strcmp(e->http[i].method, method)) {
            st = &e->http[i];
            break;
        }
    }
    if (!st && e->n_http < 512) {
        if (e->n_http == e->cap_http) {
            size_t nc = e->cap_http ? e->cap_http * 2 : 32;
            struct http_stat *p = realloc(e->http, nc * sizeof *p);
            if (p) {
                e->http = p;
                e->cap_http = nc;
            }
        }
        if (e->n_http < e->cap_http) {
            st = &e->http[e->n_http++];
            memset(st, 0, sizeof *st);
            snprintf(st->route, sizeof st->route, "%s", route);
            snprintf(st->method, sizeof st->method, "%s", method);
            st->status = status;
        }
    }
    if (st) {
        st->count++;
        st->sum += seconds;
        for (int b = 0; b < ENGINE_HTTP_BUCKETS; b++)
            if (seconds <= engine_http_bounds[b])
                st->buckets[b]++;
    }
    pthread_mutex_unlock(&e->http_mu);
}

int engine_metrics(struct engine *e, struct sbuf *o)
{
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    rc |= sbuf_puts(o, "# HELP batchd_jobs Jobs retained (unfinished, or finished and kept "
                       "until --retention), by status.\n"
                       "# TYPE batchd_jobs gauge\n");
    for (int s = 0; s < JOB_STATUS_COUNT; s++)
        rc |= sbuf_printf(o, "batchd_jobs{status=\"%s\"} %" PRIu64 "\n",
                          engine_status_name((enum job_status)s), e->jobs_by_status[s]);
    rc |= sbuf_printf(o,
                      "# HELP batchd_jobs_in_memory Jobs the api process holds in memory "
                      "(unfinished; finished ones are served from the store).\n"
                      "# TYPE batchd_jobs_in_memory gauge\n"
                      "batchd_jobs_in_memory %" PRIu64 "\n",
                      e->n_jobs);
    rc |= sbuf_printf(o,
                      "# HELP batchd_items_done_total Items that produced an output.\n"
                      "# TYPE batchd_items_done_total counter\n"
                      "batchd_items_done_total %" PRIu64 "\n"
                      "# HELP batchd_items_failed_total Items that produced an error result.\n"
                      "# TYPE batchd_items_failed_total counter\n"
                      "batchd_items_failed_total %" PRIu64 "\n"
                      "# HELP batchd_items_retried_total Items re-queued after their task "
                      "ended early (worker death, full output area).\n"
                      "# TYPE batchd_items_retried_total counter\n"
                      "batchd_items_retried_total %" PRIu64 "\n",
                      e->items_done_total, e->items_failed_total, e->items_retried);
    rc |= sbuf_printf(o,
                      "# HELP batchd_jobs_submitted_total Jobs accepted by this api process.\n"
                      "# TYPE batchd_jobs_submitted_total counter\n"
                      "batchd_jobs_submitted_total %" PRIu64 "\n"
                      "# HELP batchd_queued_items Items accepted and not yet finished, over all "
                      "jobs (the queue depth).\n"
                      "# TYPE batchd_queued_items gauge\n"
                      "batchd_queued_items %" PRIu64 "\n"
                      "# HELP batchd_queued_items_limit Most items accepted and not yet finished "
                      "(--max-queued-items).\n"
                      "# TYPE batchd_queued_items_limit gauge\n"
                      "batchd_queued_items_limit %zu\n",
                      e->jobs_submitted, e->pending_items, e->cfg->max_queued_items);
    rc |= sbuf_puts(o, "# HELP batchd_ring_tasks Tasks in the ring per model group.\n"
                       "# TYPE batchd_ring_tasks gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_ring_tasks{model=\"%s\"} %u\n",
                          shm_group(e->shm, g)->name, e->groups[g].n_inflight);
    rc |= sbuf_puts(o, "# HELP batchd_ring_slots Task slots per model group.\n"
                       "# TYPE batchd_ring_slots gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_ring_slots{model=\"%s\"} %u\n",
                          shm_group(e->shm, g)->name, shm_group(e->shm, g)->n_slots);
    pthread_mutex_lock(&e->http_mu);
    rc |= sbuf_puts(o, "# HELP batchd_http_requests_total HTTP requests by route, method and "
                       "status.\n# TYPE batchd_http_requests_total counter\n");
    for (size_t i = 0; i < e->n_http; i++)
        rc |= sbuf_printf(o,
                          "batchd_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} "
                          "%" PRIu64 "\n",
                          e->http[i].route, e->http[i].method, e->http[i].status,
                          e->http[i].count);
    rc |= sbuf_puts(o, "# HELP batchd_http_request_duration_seconds HTTP request latency.\n"
                       "# TYPE batchd_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < e->n_http; i++) {
        const struct http_stat *st = &e->http[i];
        for (int b = 0; b < ENGINE_HTTP_BUCKETS; b++)
            rc |= sbuf_printf(o,
                              "batchd_http_request_duration_seconds_bucket{route=\"%s\","
                              "method=\"%s\",code=\"%d\",le=\"%g\"} %" PRIu64 "\n",
                              st->route, st->method, st->status, engine_http_bounds[b], st->buckets[b]);
        rc |= sbuf_printf(o,
                          "batchd_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                          "code=\"%d\",le=\"+Inf\"} %" PRIu64 "\n"
                          "batchd_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\","
                          "code=\"%d\"} %.6f\n"
                          "batchd_http_request_duration_seconds_count{route=\"%s\",method=\"%s\","
                          "code=\"%d\"} %" PRIu64 "\n",
                          st->route, st->method, st->status, st->count, st->route, st->method,
                          st->status, st->sum, st->route, st->method, st->status, st->count);
    }
    pthread_mutex_unlock(&e->http_mu);
    pthread_mutex_unlock(&e->mu);

    /* Worker-side figures come straight from shared memory (no lock: each
     * counter has one writer and is read relaxed). */
    const uint64_t *bounds = shm_hist_bounds();
    rc |= sbuf_puts(o, "# HELP batchd_item_duration_seconds Time of one model run() per item.\n"
                       "# TYPE batchd_item_duration_seconds histogram\n");
    for (uint32_t g = 0; g < e->n_groups; g++) {
        struct shm_group *sg = shm_group(e->shm, g);
        uint64_t cum = 0, sum = 0;
        for (unsigned b = 0; b < SHM_HIST_BUCKETS; b++) {
            for (uint32_t k = 0; k < sg->n_workers; k++)
                cum += atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->hist[b],
                                            memory_order_relaxed);
            if (b + 1 < SHM_HIST_BUCKETS)
                rc |= sbuf_printf(o, "batchd_item_duration_seconds_bucket{model=\"%s\",le=\"%g\"} "
                                     "%" PRIu64 "\n",
                                  sg->name, (double)bounds[b] / 1e9, cum);
        }
        for (uint32_t k = 0; k < sg->n_workers; k++)
            sum += atomic_load_explicit(&shm_worker(e->shm, sg->first_worker + k)->hist_sum_ns,
                                        memory_order_relaxed);
        rc |= sbuf_printf(o,
                          "batchd_item_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"} %" PRIu64
                          "\n"
                          "batchd_item_duration_seconds_sum{model=\"%s\"} %.9f\n"
                          "batchd_item_duration_seconds_count{model=\"%s\"} %" PRIu64 "\n",
                          sg->name, cum, sg->name, (double)sum / 1e9, sg->name, cum);
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_restarts_total Re-forks of each worker slot after "
                       "a death (crash, kill, failed init); recycles are not counted here.\n"
                       "# TYPE batchd_worker_restarts_total counter\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_restarts_total{model=\"%s\",worker=\"%u\"} %u\n",
                          shm_group(e->shm, sw->group)->name, w, atomic_load(&sw->restarts));
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_recycles_total Planned replacements of each worker "
                       "slot's process past its max_items or max_rss limit, by reason.\n"
                       "# TYPE batchd_worker_recycles_total counter\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        const char *m = shm_group(e->shm, sw->group)->name;
        rc |= sbuf_printf(o,
                          "batchd_worker_recycles_total{model=\"%s\",worker=\"%u\",reason=\"items\"} "
                          "%u\n"
                          "batchd_worker_recycles_total{model=\"%s\",worker=\"%u\",reason=\"rss\"} "
                          "%u\n",
                          m, w, atomic_load_explicit(&sw->recycles_items, memory_order_relaxed),
                          m, w, atomic_load_explicit(&sw->recycles_rss, memory_order_relaxed));
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_recycle_seconds Time the worker slot's last recycle "
                       "took, from the old process's decision to the new one's readiness (0 = "
                       "never recycled).\n"
                       "# TYPE batchd_worker_recycle_seconds gauge\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_recycle_seconds{model=\"%s\",worker=\"%u\"} %.6f\n",
                          shm_group(e->shm, sw->group)->name, w,
                          (double)atomic_load_explicit(&sw->last_recycle_ns,
                                                       memory_order_relaxed) / 1e9);
    }
    rc |= sbuf_puts(o, "# HELP batchd_worker_init_seconds Time the worker's model init() took "
                       "(its last start).\n"
                       "# TYPE batchd_worker_init_seconds gauge\n");
    for (uint32_t w = 0; w < shm_header(e->shm)->n_workers; w++) {
        struct shm_worker *sw = shm_worker(e->shm, w);
        rc |= sbuf_printf(o, "batchd_worker_init_seconds{model=\"%s\",worker=\"%u\"} %.6f\n",
                          shm_group(e->shm, sw->group)->name, w,
                          (double)atomic_load_explicit(&sw->init_ns, memory_order_relaxed) / 1e9);
    }
    rc |= sbuf_puts(o, "# HELP batchd_model_load_seconds Time model load() took.\n"
                       "# TYPE batchd_model_load_seconds gauge\n");
    for (uint32_t g = 0; g < e->n_groups; g++)
        rc |= sbuf_printf(o, "batchd_model_load_seconds{model=\"%s\"} %.6f\n",
                          shm_group(e->shm, g)->name, (double)shm_group(e->shm, g)->load_ns / 1e9);
    return rc ? -ENOMEM : 0;
}
