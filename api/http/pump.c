#include "api/http/pump.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct api_pump {
    pthread_mutex_t mu;
    pthread_cond_t wake;             /* a waiter was added, or stop */
    struct api_waiter *head, *tail;
    bool stop;
    pthread_t thread;
};

static void list_add(struct api_pump *p, struct api_waiter *w)
{
    w->next = NULL;
    w->prev = p->tail;
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
}

static void list_del(struct api_pump *p, struct api_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->tail = w->prev;
    w->prev = w->next = NULL;
}

/* Takes w out and resumes its connection (the caller holds the lock). */
static void resume(struct api_pump *p, struct api_waiter *w)
{
    list_del(p, w);
    MHD_resume_connection(w->conn);
}

static void *pump_main(void *arg)
{
    struct api_pump *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (!p->head) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&p->wake, &p->mu, &ts);
            continue;
        }
        /* every waiter once, without waiting */
        bool resumed = false;
        struct api_waiter *w = p->head;
        while (w) {
            struct api_waiter *next = w->next;
            if (w->poll(w->ctx, 0)) {
                resume(p, w);
                resumed = true;
            }
            w = next;
        }
        if (resumed || !p->head)
            continue;
        /* nothing to do: sleep on the first waiter's own wait, unlocked so
         * that readers can add themselves meanwhile; only this thread takes
         * waiters out, so it stays in the list and its connection suspended */
        w = p->head;
        pthread_mutex_unlock(&p->mu);
        bool ready = w->poll(w->ctx, API_PUMP_WAIT_MS);
        pthread_mutex_lock(&p->mu);
        if (ready && !p->stop)
            resume(p, w);
    }
    /* stop: every connection goes back to libmicrohttpd, whose readers see
     * the service's stop flag and end their responses */
    while (p->head)
        resume(p, p->head);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct api_pump *api_pump_start(void)
{
    struct api_pump *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, pump_main, p) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

int api_pump_wait(struct api_pump *p, struct api_waiter *w)
{
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        return -ECANCELED;
    }
    /* suspended before it is listed: the pump can only resume what is
     * suspended already */
    MHD_suspend_connection(w->conn);
    list_add(p, w);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void api_pump_stop(struct api_pump *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->stop) { /* once */
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->stop = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
}

void api_pump_free(struct api_pump *p)
{
    if (!p)
        return;
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
