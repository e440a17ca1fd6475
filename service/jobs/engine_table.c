/*
 * engine_table.c: the engine's job table (see engine_int.h): jobs by id
 * and by ring key (two hashes), the age list, status counts, and a job's
 * release, forget and eviction. Everything here runs with e->mu held,
 * on whichever thread holds it.
 */

#include "service/jobs/engine_int.h"

static const char *const status_names[JOB_STATUS_COUNT] = { "queued", "running", "succeeded",
                                                            "failed", "cancelled" };

const char *engine_status_name(enum job_status s)
{
    return (unsigned)s < JOB_STATUS_COUNT ? status_names[s] : "unknown";
}

int engine_status_parse(const char *name)
{
    for (int i = 0; i < JOB_STATUS_COUNT; i++)
        if (!strcmp(name, status_names[i]))
            return i;
    return -1;
}

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

struct job *engine_find(struct engine *e, const char *id)
{
    if (!id || strlen(id) != ENGINE_JOB_ID_LEN)
        return NULL;
    for (struct job *j = e->hash[hash_id(id) & (e->hash_cap - 1)]; j; j = j->hnext)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

static size_t hash_key(uint64_t key) { return (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20); }

struct job *engine_find_key(struct engine *e, uint64_t key)
{
    if (ring_key_epoch(key) != e->epoch)
        return NULL;
    for (struct job *j = e->khash[hash_key(key) & (e->hash_cap - 1)]; j; j = j->knext)
        if (j->key == key)
            return j;
    return NULL;
}

/* Moves every job of both tables into tables of nc buckets. */
static int engine_rehash(struct engine *e, size_t nc)
{
    struct job **nh = calloc(nc, sizeof *nh), **nk = calloc(nc, sizeof *nk);
    if (!nh || !nk) {
        free(nh);
        free(nk);
        return -ENOMEM;
    }
    for (size_t i = 0; i < e->hash_cap; i++) {
        for (struct job *p = e->hash[i], *next; p; p = next) {
            next = p->hnext;
            size_t b = hash_id(p->id) & (nc - 1);
            p->hnext = nh[b];
            nh[b] = p;
        }
        for (struct job *p = e->khash[i], *next; p; p = next) {
            next = p->knext;
            size_t b = hash_key(p->key) & (nc - 1);
            p->knext = nk[b];
            nk[b] = p;
        }
    }
    free(e->hash);
    free(e->khash);
    e->hash = nh;
    e->khash = nk;
    e->hash_cap = nc;
    return 0;
}

/* Adds j (its id and key set) to both tables. Returns 0 or -ENOMEM. */
int engine_hash_insert(struct engine *e, struct job *j)
{
    if ((e->n_jobs + 1) * 2 > e->hash_cap && engine_rehash(e, e->hash_cap * 2) != 0)
        return -ENOMEM;
    size_t b = hash_id(j->id) & (e->hash_cap - 1);
    j->hnext = e->hash[b];
    e->hash[b] = j;
    b = hash_key(j->key) & (e->hash_cap - 1);
    j->knext = e->khash[b];
    e->khash[b] = j;
    return 0;
}

void ejob_set_status(struct engine *e, struct job *j, enum job_status st)
{
    if (j->status == st)
        return;
    e->jobs_by_status[j->status]--;
    e->jobs_by_status[st]++;
    j->status = st;
    j->version++;
    ejob_persist(e, j);
}

void ejob_free(struct job *j)
{
    for (uint32_t k = 0; k < j->n_accs; k++)
        free(j->accs[k].held.r);
    free(j->accs);
    free(j->replay.r);
    json_decref(j->partials);
    free(j->pins);
    job_items_free(j->items);
    free(j->retry.r);
    free(j->attempts);
    free(j->has);
    free(j->idem_key);
    free(j->error);
    free(j);
}

/* Drops a stream's or reader's hold on a job (mutex held); a purged job is
 * freed when the last hold goes, a finished one may leave memory. */
void engine_job_release(struct engine *e, struct job *j)
{
    if (j->refs > 0)
        j->refs--;
    if (j->deleted && j->refs == 0)
        ejob_free(j);
    else
        engine_evict(e, j);
}

/* Removes j from an unordered list of jobs, if it is there. */
void engine_jobs_remove(struct job **a, size_t *n, const struct job *j)
{
    for (size_t i = 0; i < *n; i++) {
        if (a[i] == j) {
            a[i] = a[--*n];
            return;
        }
    }
}

/* Takes a job out of every in-memory table and list (mutex held). */
static void engine_unlink_job(struct engine *e, struct job *j)
{
    struct job **pp = &e->hash[hash_id(j->id) & (e->hash_cap - 1)];
    while (*pp && *pp != j)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = j->hnext;
    pp = &e->khash[hash_key(j->key) & (e->hash_cap - 1)];
    while (*pp && *pp != j)
        pp = &(*pp)->knext;
    if (*pp)
        *pp = j->knext;
    if (j->newer)
        j->newer->older = j->older;
    else
        e->newest = j->older;
    if (j->older)
        j->older->newer = j->newer;
    else
        e->oldest = j->newer;
    struct egroup *g = &e->groups[j->group];
    engine_jobs_remove(e->dirty, &e->n_dirty, j);
    if (j->active)
        engine_jobs_remove(g->active, &g->n_active, j);
    j->active = false;
    /* purged before its workers' states were dropped: they stay until those
     * workers end (rare: a purge right after a cancel) */
    if (j->on_stateful_list)
        engine_jobs_remove(g->sjobs, &g->n_sjobs, j);
    j->on_stateful_list = false;
    e->n_jobs--;
}

/* Deletes a finished job from memory (mutex held; purge, retention): it is
 * freed now or when the last stream lets go (which then sees it purged).
 * jobs_by_status is the caller's: it counts the job until its rows are
 * deleted (engine_delete_stored). */
void engine_forget_job(struct engine *e, struct job *j)
{
    engine_unlink_job(e, j);
    j->deleted = true;
    j->version++;
    if (j->refs == 0)
        ejob_free(j);
}

/* Drops a finished job from memory once the store has all of it: its last
 * row is flushed, no reader holds it, its workers hold no state of it.
 * From then on it is served from the store (mutex held). */
void engine_evict(struct engine *e, struct job *j)
{
    if (!ejob_finished(j) || j->dirty || j->refs > 0 || j->deleted || j->on_stateful_list)
        return;
    if (e->run_n && e->run_job == j)
        return;
    engine_unlink_job(e, j);
    ejob_free(j);
}

/* 128 random bits as 26 characters of lowercase base32 (service/core/id.h). */
void engine_new_id(char *out) { id_new(out); }
