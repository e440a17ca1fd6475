/*
 * engine_query.c: the read and change entry points of engine.h that work
 * on one job or the list (HTTP threads): listing, result pages and the
 * result file, purge, cancel, and result streams.
 */

#include <errno.h>

#include "service/jobs/engine_int.h"

json_t *engine_job_json(struct engine *e, const char *id, char *etag)
{
    int rc;
    return engine_job_lookup(e, id, etag, &rc);
}

json_t *engine_job_lookup(struct engine *e, const char *id, char *etag, int *rc)
{
    struct job_view v;
    if ((*rc = engine_view(e, id, NULL, &v, etag)) != 0)
        return NULL;
    json_t *job = job_view_json(&v);
    if (!job)
        *rc = -ENOMEM;
    return job;
}

static int job_seq_desc(const void *a, const void *b)
{
    uint64_t x = (*(struct job *const *)a)->sseq, y = (*(struct job *const *)b)->sseq;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The in-memory part of a list page (mutex held): views of at most `max`
 * jobs with `status` (< 0: any) and seq < before (0: any), newest first,
 * in a new array (*out, caller frees). *finished counts those finished (a
 * finished job may be in the store's part too). Returns the count, or -1
 * on out-of-memory. */
static ssize_t engine_list_memory(struct engine *e, int status, uint64_t before, size_t max,
                                  struct job_view **out, size_t *finished)
{
    *out = NULL;
    *finished = 0;
    struct job **js = malloc((e->n_jobs ? e->n_jobs : 1) * sizeof *js);
    if (!js)
        return -1;
    size_t n = 0;
    for (struct job *j = e->newest; j && n < e->n_jobs; j = j->older)
        if ((status < 0 || (int)j->status == status) && (!before || j->sseq < before))
            js[n++] = j;
    qsort(js, n, sizeof *js, job_seq_desc);
    for (size_t i = 0; i < n; i++)
        *finished += ejob_finished(js[i]);
    if (n > max)
        n = max;
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!*out) {
        free(js);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        ejob_view_fill(e, js[i], &(*out)[i]);
    free(js);
    return (ssize_t)n;
}

struct stored_page {
    struct engine *e;
    struct job_view *v;
    size_t n, cap;
};

static int stored_page_add(void *arg, const struct store_job *row)
{
    struct stored_page *p = arg;
    if (p->n < p->cap)
        job_view_from_row(&p->v[p->n++], row, engine_model_stateful(p->e, row->model));
    return 0;
}

json_t *engine_jobs_json(struct engine *e, int status, size_t limit, const char *after, int *err)
{
    *err = 0;
    uint64_t before = 0;
    if (after) {
        struct job_view av;
        if ((*err = engine_view(e, after, NULL, &av, NULL)) != 0)
            return NULL;
        before = av.seq;
    }
    /* Unfinished jobs from memory, finished ones from the store's index:
     * one page of each is enough to merge one page of the list. */
    struct job_view *mem;
    size_t dups;
    pthread_mutex_lock(&e->mu);
    ssize_t n_mem = engine_list_memory(e, status, before, limit + 1, &mem, &dups);
    pthread_mutex_unlock(&e->mu);
    if (n_mem < 0) {
        *err = -ENOMEM;
        return NULL;
    }
    struct stored_page sp = { .e = e, .cap = limit + 1 + dups };
    sp.v = malloc(sp.cap * sizeof *sp.v);
    json_t *r = NULL;
    if (!sp.v)
        *err = -ENOMEM;
    else if ((*err = store_jobs_finished_page(e->store, status, before, sp.cap, stored_page_add,
                                              &sp)) == 0 &&
             !(r = job_view_list_json(mem, (size_t)n_mem, sp.v, sp.n, limit)))
        *err = -ENOMEM;
    free(sp.v);
    free(mem);
    return r;
}

int engine_results_page(struct engine *e, const char *id, size_t offset, size_t limit,
                        struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j && rc)
        return rc;
    uint64_t sseq = j ? j->sseq : row.seq, total = j ? j->total : row.total;

    /* Results are read from the store: only durable ones are shown, and a
     * job's results need not fit in memory. */
    uint64_t next = offset;
    rc = sbuf_puts(out, "{\"results\":[");
    if (!rc && offset < total)
        rc = store_results_page(e->store, sseq, offset,
                                limit < total - offset ? limit : total - offset, out, &next);

    /* A cancelled or failed job's never-run items have no result: past
     * the last result of a finished job the page is complete too. */
    bool at_end = next >= total;
    if (j) {
        pthread_mutex_lock(&e->mu);
        if (!at_end && ejob_finished(j)) {
            uint64_t k = next;
            while (k < total && !ejob_has(j, k))
                k++;
            at_end = k >= total;
        }
        engine_job_release(e, j);
        pthread_mutex_unlock(&e->mu);
    } else if (!rc && !at_end && row.finished_ns) {
        bool any = true;
        rc = store_results_from(e->store, sseq, next, &any);
        at_end = !any;
    }
    if (!rc) {
        if (at_end)
            rc = sbuf_puts(out, "],\"next_offset\":null}");
        else
            rc = sbuf_printf(out, "],\"next_offset\":%" PRIu64 "}", next);
    }
    return rc;
}

int engine_results_errors_page(struct engine *e, const char *id, size_t offset, size_t limit,
                               struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j && rc)
        return rc;
    uint64_t sseq = j ? j->sseq : row.seq, total = j ? j->total : row.total;
    /* read before the store: what was durable by the end is in the scan */
    bool ended = true;
    if (j) {
        pthread_mutex_lock(&e->mu);
        ended = ejob_finished(j);
        pthread_mutex_unlock(&e->mu);
    }

    struct store_scan sc = { .next = offset, .end = total, .skip_gaps = ended,
                             .errors_only = true, .max_bytes = SIZE_MAX,
                             .max_results = limit };
    rc = sbuf_puts(out, "{\"results\":[");
    /* a page of errors may need many blocks: scan until it is full, the
     * job's end, or (running job) its first item without a result */
    while (!rc && sc.written < limit) {
        rc = store_results_scan(e->store, sseq, &sc, out);
        if (sc.blocked || sc.exhausted)
            break;
    }
    if (j) {
        pthread_mutex_lock(&e->mu);
        engine_job_release(e, j);
        pthread_mutex_unlock(&e->mu);
    }
    bool at_end = ended && (sc.exhausted || sc.next >= total);
    if (!rc) {
        if (at_end)
            rc = sbuf_puts(out, "],\"next_offset\":null}");
        else
            rc = sbuf_printf(out, "],\"next_offset\":%" PRIu64 "}", sc.next);
    }
    return rc;
}

/* engine_job_result for a job served from the store. */
static int engine_stored_result(struct engine *e, const struct store_job *row, struct sbuf *out)
{
    int g = engine_group_of(e, row->model);
    if (g >= 0 && !e->groups[g].stateful)
        return -ENODATA;
    if (row->status == JOB_CANCELLED || row->status == JOB_FAILED)
        return -ECANCELED;
    int rc = store_job_result(e->store, row->seq, out);
    if (rc == -ENOENT) /* a model not loaded now: stateful or not, it has none */
        return g >= 0 && !row->finished_ns ? -EAGAIN : -ENODATA;
    return rc;
}

int engine_job_result(struct engine *e, const char *id, struct sbuf *out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j)
        return rc ? rc : engine_stored_result(e, &row, out);
    pthread_mutex_lock(&e->mu);
    if (!e->groups[j->group].stateful)
        rc = -ENODATA;
    else if (j->status == JOB_CANCELLED || j->status == JOB_FAILED)
        rc = -ECANCELED;
    else if (!j->reduced)
        rc = -EAGAIN;
    uint64_t sseq = j->sseq;
    pthread_mutex_unlock(&e->mu);
    if (!rc) {
        rc = store_job_result(e->store, sseq, out);
        if (rc == -ENOENT)
            rc = -EAGAIN;
    }
    pthread_mutex_lock(&e->mu);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Deletes a finished job's rows, and counts it gone if they were there. */
int engine_delete_stored(struct engine *e, uint64_t seq, int status)
{
    int rc = store_job_delete(e->store, seq);
    if (rc == 0 && status >= 0 && status < JOB_STATUS_COUNT) {
        pthread_mutex_lock(&e->mu);
        e->jobs_by_status[status]--;
        pthread_mutex_unlock(&e->mu);
    }
    return rc == -ENOENT ? 0 : rc;
}

int engine_purge(struct engine *e, const char *id)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j) {
        if (rc)
            return rc;
        return row.finished_ns ? engine_delete_stored(e, row.seq, row.status) : -EBUSY;
    }
    pthread_mutex_lock(&e->mu);
    bool finished = ejob_finished(j);
    uint64_t sseq = j->sseq; /* before: forgetting may free the job */
    int status = (int)j->status;
    if (finished)
        engine_forget_job(e, j);
    engine_fire_watches(e); /* its waiters answer 404 now */
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    return finished ? engine_delete_stored(e, sseq, status) : -EBUSY;
}

int engine_cancel(struct engine *e, const char *id, json_t **job_json_out)
{
    struct store_job row;
    int rc;
    struct job *j = engine_hold(e, id, &row, &rc);
    if (!j) {
        if (rc)
            return rc;
        if (job_json_out) {
            struct job_view v;
            job_view_from_row(&v, &row, engine_model_stateful(e, row.model));
            *job_json_out = job_view_json(&v);
        }
        return -EALREADY; /* finished: served from the store */
    }
    pthread_mutex_lock(&e->mu);
    if (ejob_finished(j) || j->status == JOB_CANCELLED || j->status == JOB_FAILED) {
        rc = -EALREADY;
    } else {
        j->cancel_requested = true;
        j->retry.n = 0;
        j->next_index = j->total;
        if (!j->started_ns)
            j->started_ns = shm_now_real_ns();
        ejob_set_status(e, j, JOB_CANCELLED);
        /* Its tasks in the ring are stopped by the engine thread (the only
         * one that touches the in-flight lists): see engine_stop_cancelled. */
        ejob_check_finished(e, j);
        engine_fire_watches(e);
        pthread_cond_broadcast(&e->progress);
    }
    if (job_json_out)
        *job_json_out = ejob_json(e, j);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
    atomic_store_explicit(&e->kick, true, memory_order_release);
    ring_notify_engine(e->shm);
    return rc;
}

/* A stream of a job in memory holds it (refs); a stream of a job served
 * from the store holds only its seq, and asks the store whether the job
 * is still there when it runs dry (a purge cuts the stream). */
struct engine_stream {
    struct engine *e;
    struct job *job;  /* NULL: served from the store */
    uint64_t sseq;
    uint64_t cursor;  /* the store's block cursor (store_results_stream) */
    struct sbuf buf;  /* lines read from the store, not yet sent */
    size_t sent;      /* bytes of buf already sent */
    struct engine_stream_opts opts;
    uint64_t next;    /* input order: the first index not yet sent */
    uint64_t total;   /* input order: the job's items */
};

struct engine_stream *engine_stream_open(struct engine *e, const char *id)
{
    return engine_stream_open_opts(e, id, NULL);
}

struct engine_stream *engine_stream_open_opts(struct engine *e, const char *id,
                                              const struct engine_stream_opts *opts)
{
    struct engine_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (opts)
        s->opts = *opts;
    struct store_job row;
    int rc;
    s->job = engine_hold(e, id, &row, &rc);
    if (!s->job && rc) {
        free(s);
        return NULL;
    }
    s->sseq = s->job ? s->job->sseq : row.seq;
    s->total = s->job ? s->job->total : row.total;
    s->e = e;
    return s;
}

/* Whether the stream's job has ended, and whether it was purged. */
static void engine_stream_state(struct engine_stream *s, bool *ended, bool *purged)
{
    struct engine *e = s->e;
    if (s->job) {
        pthread_mutex_lock(&e->mu);
        *ended = ejob_finished(s->job);
        *purged = s->job->deleted;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    struct store_job row;
    int rc = store_job_get_seq(e->store, s->sseq, &row);
    *purged = rc != 0;
    /* not finished only in the moment between a submission's commit and
     * its job in memory (engine_hold waited that out) */
    *ended = true;
}

ssize_t engine_stream_read(struct engine_stream *s, char *buf, size_t max, int timeout_ms)
{
    struct engine *e = s->e;
    if (s->sent == s->buf.len) {
        sbuf_reset(&s->buf);
        s->sent = 0;
        /* Whether the job had ended is read before the store: whatever was
         * durable by then is in what the store returns now. */
        bool ended, purged;
        engine_stream_state(s, &ended, &purged);
        /* A purged job's results are gone: the stream is cut, not ended. */
        if (purged)
            return -2;
        bool more = false; /* input order: blocks left to scan right now */
        if (s->opts.input_order) {
            /* Index order: a running job's completed prefix, then, once it
             * ended, every result (never-run items of a cancelled job have
             * none and are passed over). */
            struct store_scan sc = { .next = s->next, .end = s->total, .skip_gaps = ended,
                                     .errors_only = s->opts.errors_only, .ndjson = true,
                                     .max_bytes = 256 * 1024 };
            if (store_results_scan(e->store, s->sseq, &sc, &s->buf) != 0)
                return -2;
            s->next = sc.next;
            more = !sc.blocked && !sc.exhausted;
        } else {
            if (store_results_stream(e->store, s->sseq, &s->cursor, 256 * 1024, &s->buf) != 0)
                return -2;
            if (s->opts.errors_only && s->buf.len) {
                more = true; /* blocks were read: look again before ending */
                s->buf.len = result_text_keep_errors(s->buf.data, s->buf.len);
            }
        }
        if (s->buf.len == 0 && more)
            return 0; /* scanned past outputs only: the caller asks again */
        if (s->buf.len == 0) {
            if (atomic_load(&e->stop))
                return -2;
            if (ended && !s->job) {
                /* purged while we read? then what we sent is not all */
                engine_stream_state(s, &ended, &purged);
                if (purged)
                    return -2;
            }
            if (ended)
                return -1;
            if (timeout_ms > 0) {
                pthread_mutex_lock(&e->mu);
                engine_timedwait(e, &e->progress, timeout_ms);
                pthread_mutex_unlock(&e->mu);
            }
            return 0;
        }
    }
    size_t n = s->buf.len - s->sent;
    if (n > max)
        n = max;
    memcpy(buf, s->buf.data + s->sent, n);
    s->sent += n;
    return (ssize_t)n;
}

void engine_stream_close(struct engine_stream *s)
{
    if (!s)
        return;
    if (s->job) {
        pthread_mutex_lock(&s->e->mu);
        engine_job_release(s->e, s->job);
        pthread_mutex_unlock(&s->e->mu);
    }
    sbuf_free(&s->buf);
    free(s);
}

void engine_set_watch_hook(struct engine *e, void (*fn)(void *arg, const char *id), void *arg)
{
    pthread_mutex_lock(&e->mu);
    e->watch_fn = fn;
    e->watch_arg = arg;
    pthread_mutex_unlock(&e->mu);
}

struct engine_watch *engine_watch(struct engine *e, const char *id)
{
    pthread_mutex_lock(&e->mu);
    struct job *j = engine_find(e, id);
    if (j && j->watchers == 0) {
        if (e->n_watched == e->cap_watched) {
            size_t nc = e->cap_watched ? e->cap_watched * 2 : 16;
            struct job **p = realloc(e->watched, nc * sizeof *p);
            if (!p) {
                pthread_mutex_unlock(&e->mu);
                return NULL;
            }
            e->watched = p;
            e->cap_watched = nc;
        }
        e->watched[e->n_watched++] = j;
        j->watch_version = j->version;
    }
    if (j) {
        j->watchers++;
        j->refs++; /* a purge frees it only after the last watch ends */
    }
    pthread_mutex_unlock(&e->mu);
    /* the job itself is the handle: it lives while refs holds it */
    return (struct engine_watch *)j;
}

void engine_unwatch(struct engine *e, struct engine_watch *w)
{
    if (!w)
        return;
    struct job *j = (struct job *)w;
    pthread_mutex_lock(&e->mu);
    if (j->watchers > 0 && --j->watchers == 0)
        engine_jobs_remove(e->watched, &e->n_watched, j);
    engine_job_release(e, j);
    pthread_mutex_unlock(&e->mu);
}
