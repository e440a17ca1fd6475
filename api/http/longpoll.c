#include "api/http/longpoll.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "service/jobs/engine.h"
#include "service/core/log.h"

/* A watched job: its change count and its suspended requests. */
struct api_longpoll_entry {
    char id[ENGINE_JOB_ID_LEN + 1];
    uint64_t seq;                    /* notifications so far */
    unsigned refs;                   /* requests watching it */
    struct api_longpoll_wait *head;  /* suspended requests */
    struct api_longpoll_entry *hnext;
};

#define LONGPOLL_BUCKETS 1024u /* a power of two; chains stay short for
                                  the jobs watched at once */

struct api_longpoll {
    pthread_mutex_t mu;
    pthread_cond_t cv;               /* wakes the timer thread */
    pthread_t timer;
    bool timer_started;
    bool stop;                       /* destroy: the timer thread ends */
    bool shutting_down;              /* no new suspension */
    bool suspend;                    /* false: blocking mode (see the header) */
    pthread_cond_t block_cv;         /* blocking mode: a change, or shutdown */
    unsigned waiting;
    struct api_longpoll_entry *buckets[LONGPOLL_BUCKETS];
    struct api_longpoll_wait *thead, *ttail; /* by deadline, earliest first */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h & (LONGPOLL_BUCKETS - 1);
}

/* Takes w (linked) off its job's list and the deadline list, and counts
 * it as no longer waiting (mu held). */
static void unlink_locked(struct api_longpoll *lp, struct api_longpoll_wait *w)
{
    struct api_longpoll_entry *en = w->entry;
    if (w->prev)
        w->prev->next = w->next;
    else
        en->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (w->tprev)
        w->tprev->tnext = w->tnext;
    else
        lp->thead = w->tnext;
    if (w->tnext)
        w->tnext->tprev = w->tprev;
    else
        lp->ttail = w->tprev;
    w->next = w->prev = w->tnext = w->tprev = NULL;
    w->linked = false;
    lp->waiting--;
}

/* Takes w off both lists and resumes its connection (mu held). The request
 * may run on another thread as soon as the lock is released. */
static void resume_locked(struct api_longpoll *lp, struct api_longpoll_wait *w)
{
    unlink_locked(lp, w);
    struct MHD_Connection *conn = w->conn;
    w->conn = NULL;
    MHD_resume_connection(conn);
}

static void *timer_main(void *arg)
{
    struct api_longpoll *lp = arg;
    pthread_mutex_lock(&lp->mu);
    while (!lp->stop) {
        if (!lp->thead) {
            pthread_cond_wait(&lp->cv, &lp->mu);
            continue;
        }
        uint64_t now = now_ns();
        while (lp->thead && lp->thead->deadline_ns <= now)
            resume_locked(lp, lp->thead);
        if (!lp->thead)
            continue;
        /* asleep until the nearest deadline, or a nearer one is added */
        uint64_t d = lp->thead->deadline_ns;
        struct timespec ts = { .tv_sec = (time_t)(d / 1000000000ull),
                               .tv_nsec = (long)(d % 1000000000ull) };
        pthread_cond_timedwait(&lp->cv, &lp->mu, &ts);
    }
    pthread_mutex_unlock(&lp->mu);
    return NULL;
}

struct api_longpoll *api_longpoll_create(bool suspend)
{
    struct api_longpoll *lp = calloc(1, sizeof *lp);
    if (!lp)
        return NULL;
    lp->suspend = suspend;
    pthread_mutex_init(&lp->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lp->cv, &ca);
    pthread_cond_init(&lp->block_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&lp->timer, NULL, timer_main, lp) != 0) {
        log_error("long-poll: cannot start the timer thread");
        api_longpoll_destroy(lp);
        return NULL;
    }
    lp->timer_started = true;
    return lp;
}

void api_longpoll_shutdown(struct api_longpoll *lp)
{
    if (!lp)
        return;
    pthread_mutex_lock(&lp->mu);
    lp->shutting_down = true;
    while (lp->thead)
        resume_locked(lp, lp->thead);
    pthread_cond_broadcast(&lp->block_cv);
    pthread_mutex_unlock(&lp->mu);
}

void api_longpoll_destroy(struct api_longpoll *lp)
{
    if (!lp)
        return;
    pthread_mutex_lock(&lp->mu);
    lp->stop = true;
    pthread_cond_signal(&lp->cv);
    pthread_mutex_unlock(&lp->mu);
    if (lp->timer_started)
        pthread_join(lp->timer, NULL);
    /* entries left by requests that were never freed (none after the
     * daemon stopped, but a leak is not the way to say so) */
    for (unsigned b = 0; b < LONGPOLL_BUCKETS; b++) {
        for (struct api_longpoll_entry *en = lp->buckets[b], *next; en; en = next) {
            next = en->hnext;
            free(en);
        }
    }
    pthread_cond_destroy(&lp->cv);
    pthread_cond_destroy(&lp->block_cv);
    pthread_mutex_destroy(&lp->mu);
    free(lp);
}

void api_longpoll_notify(void *arg, const char *id)
{
    struct api_longpoll *lp = arg;
    pthread_mutex_lock(&lp->mu);
    for (struct api_longpoll_entry *en = lp->buckets[bucket_of(id)]; en; en = en->hnext) {
        if (strcmp(en->id, id) != 0)
            continue;
        en->seq++;
        while (en->head)
            resume_locked(lp, en->head);
        if (!lp->suspend)
            pthread_cond_broadcast(&lp->block_cv);
        break;
    }
    pthread_mutex_unlock(&lp->mu);
}

int api_longpoll_watch(struct api_longpoll *lp, struct api_longpoll_wait *w, const char *id)
{
    unsigned b = bucket_of(id);
    pthread_mutex_lock(&lp->mu);
    struct api_longpoll_entry *en = lp->buckets[b];
    while (en && strcmp(en->id, id) != 0)
        en = en->hnext;
    if (!en) {
        en = calloc(1, sizeof *en);
        if (!en) {
            pthread_mutex_unlock(&lp->mu);
            return -ENOMEM;
        }
        snprintf(en->id, sizeof en->id, "%s", id);
        en->hnext = lp->buckets[b];
        lp->buckets[b] = en;
    }
    en->refs++;
    w->entry = en;
    pthread_mutex_unlock(&lp->mu);
    return 0;
}

uint64_t api_longpoll_mark(struct api_longpoll *lp, const struct api_longpoll_wait *w)
{
    pthread_mutex_lock(&lp->mu);
    uint64_t seq = w->entry->seq;
    pthread_mutex_unlock(&lp->mu);
    return seq;
}

int api_longpoll_suspend(struct api_longpoll *lp, struct api_longpoll_wait *w, uint64_t mark,
                         struct MHD_Connection *conn, uint64_t deadline_ns)
{
    pthread_mutex_lock(&lp->mu);
    if (lp->shutting_down) {
        pthread_mutex_unlock(&lp->mu);
        return -ESHUTDOWN;
    }
    struct api_longpoll_entry *en = w->entry;
    if (en->seq != mark) {
        pthread_mutex_unlock(&lp->mu);
        return -EAGAIN;
    }
    if (!lp->suspend) {
        /* blocking mode: this thread waits (see the header) */
        struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
                               .tv_nsec = (long)(deadline_ns % 1000000000ull) };
        lp->waiting++;
        while (en->seq == mark && !lp->shutting_down &&
               pthread_cond_timedwait(&lp->block_cv, &lp->mu, &ts) != ETIMEDOUT)
            ;
        lp->waiting--;
        pthread_mutex_unlock(&lp->mu);
        return -EAGAIN;
    }
    w->conn = conn;
    w->deadline_ns = deadline_ns;
    w->linked = true;
    w->prev = NULL;
    w->next = en->head;
    if (en->head)
        en->head->prev = w;
    en->head = w;
    /* by deadline: from the tail, where a new wait of the usual length goes */
    struct api_longpoll_wait *after = lp->ttail;
    while (after && after->deadline_ns > deadline_ns)
        after = after->tprev;
    w->tprev = after;
    w->tnext = after ? after->tnext : lp->thead;
    if (w->tnext)
        w->tnext->tprev = w;
    else
        lp->ttail = w;
    if (after)
        after->tnext = w;
    else
        lp->thead = w;
    lp->waiting++;
    /* Suspended under the lock: a notification cannot resume the
     * connection before it is suspended. */
    MHD_suspend_connection(conn);
    if (lp->thead == w)
        pthread_cond_signal(&lp->cv); /* a nearer deadline than the timer's */
    pthread_mutex_unlock(&lp->mu);
    return 0;
}

void api_longpoll_unwatch(struct api_longpoll *lp, struct api_longpoll_wait *w)
{
    if (!lp || !w->entry)
        return;
    pthread_mutex_lock(&lp->mu);
    struct api_longpoll_entry *en = w->entry;
    if (w->linked) /* freed while suspended: off the lists without a resume */
        unlink_locked(lp, w);
    if (--en->refs == 0) {
        struct api_longpoll_entry **pp = &lp->buckets[bucket_of(en->id)];
        while (*pp != en)
            pp = &(*pp)->hnext;
        *pp = en->hnext;
        free(en);
    }
    w->entry = NULL;
    pthread_mutex_unlock(&lp->mu);
}

unsigned api_longpoll_waiting(struct api_longpoll *lp)
{
    pthread_mutex_lock(&lp->mu);
    unsigned n = lp->waiting;
    pthread_mutex_unlock(&lp->mu);
    return n;
}
