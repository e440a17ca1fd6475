#include "api/http/conns.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "service/core/log.h"

/* How often the sweep looks at the table. A deadline is kept to within
 * this much; the sweep walks every connection, so not much more often. */
#define SWEEP_MS 200

struct api_conn {
    struct api_conn *prev, *next; /* the table's list, oldest accept first */
    int fd;
    enum api_conn_phase phase;
    uint64_t since_ms;            /* when the current phase began */
    uint64_t body_bytes;          /* body bytes of the current request */
    bool closing;                 /* shut down already: judged once */
};

struct api_conns {
    pthread_mutex_t mu;
    pthread_cond_t wake;          /* the sweep's sleep; signalled at stop */
    struct api_conns_limits lim;
    struct api_conn *head, *tail; /* accept order */
    struct api_conns_stats st;
    unsigned closing;             /* entries shut down, not yet freed */
    bool started, stop;
    pthread_t thread;
};

uint64_t api_conns_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

enum api_conn_verdict api_conn_judge(const struct api_conns_limits *lim,
                                     enum api_conn_phase phase, uint64_t since_ms,
                                     uint64_t body_bytes, uint64_t now_ms)
{
    uint64_t elapsed = now_ms > since_ms ? now_ms - since_ms : 0;
    switch (phase) {
    case API_CONN_HEAD:
        return elapsed > lim->header_timeout_ms ? API_CONN_HEAD_LATE : API_CONN_KEEP;
    case API_CONN_BODY: {
        /* the grace lets a body start (a client may wait for 100 Continue,
         * or a TCP window open); after it the average must keep up */
        uint64_t grace = lim->header_timeout_ms;
        if (lim->min_body_rate == 0 || elapsed <= grace)
            return API_CONN_KEEP;
        uint64_t secs_ms = elapsed - grace;
        /* bytes owed = rate * seconds; rates are small, products fit */
        uint64_t owed = lim->min_body_rate * secs_ms / 1000u;
        return body_bytes < owed ? API_CONN_BODY_SLOW : API_CONN_KEEP;
    }
    case API_CONN_ANSWER:
    default:
        return API_CONN_KEEP;
    }
}

struct api_conns *api_conns_create(const struct api_conns_limits *lim)
{
    struct api_conns *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->lim = *lim;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    return t;
}

/* Closes c (the caller holds the lock). */
static void shut(struct api_conns *t, struct api_conn *c)
{
    c->closing = true;
    t->closing++;
    /* The descriptor is still libmicrohttpd's: it reports the connection
     * closed (api_conn_closed, under the same lock) before closing it. */
    (void)shutdown(c->fd, SHUT_RDWR);
}

unsigned api_conns_sweep(struct api_conns *t, uint64_t now_ms)
{
    unsigned closed = 0, late = 0, slow = 0;
    pthread_mutex_lock(&t->mu);
    for (struct api_conn *c = t->head; c; c = c->next) {
        if (c->closing)
            continue;
        enum api_conn_verdict v = api_conn_judge(&t->lim, c->phase, c->since_ms, c->body_bytes,
                                                 now_ms);
        if (v == API_CONN_KEEP)
            continue;
        shut(t, c);
        closed++;
        if (v == API_CONN_HEAD_LATE)
            late++;
        else
            slow++;
    }
    t->st.head_late += late;
    t->st.body_slow += slow;
    pthread_mutex_unlock(&t->mu);
    /* one line per sweep, not per connection: an attack must not flood the log */
    if (late)
        log_info("closed %u connection(s) whose request head took over %u ms", late,
                 t->lim.header_timeout_ms);
    if (slow)
        log_info("closed %u connection(s) whose body came slower than %llu bytes/s", slow,
                 (unsigned long long)t->lim.min_body_rate);
    return closed;
}

static void *sweep_main(void *arg)
{
    struct api_conns *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&t->wake, &t->mu, &ts);
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->mu);
        api_conns_sweep(t, api_conns_now_ms());
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int api_conns_start(struct api_conns *t)
{
    int rc = pthread_create(&t->thread, NULL, sweep_main, t);
    if (rc != 0)
        return -rc;
    t->started = true;
    return 0;
}

void api_conns_destroy(struct api_conns *t)
{
    if (!t)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->wake);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    struct api_conn *c = t->head;
    while (c) {
        struct api_conn *next = c->next;
        free(c);
        c = next;
    }
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

struct api_conn *api_conn_opened(struct api_conns *t, int fd)
{
    struct api_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->phase = API_CONN_HEAD;
    c->since_ms = api_conns_now_ms();
    bool evicted = false;
    pthread_mutex_lock(&t->mu);
    c->prev = t->tail;
    if (t->tail)
        t->tail->next = c;
    else
        t->head = c;
    t->tail = c;
    t->st.open++;
    if (t->st.open > t->st.peak)
        t->st.peak = t->st.open;
    /* Past the ceiling, the oldest connection that has not delivered a
     * request head makes room (connections being shut down still count
     * until libmicrohttpd frees them, so count only the live ones). */
    if (t->st.open - t->closing > t->lim.ceiling) {
        for (struct api_conn *p = t->head; p && p != c; p = p->next) {
            if (!p->closing && p->phase == API_CONN_HEAD) {
                shut(t, p);
                t->st.evicted++;
                evicted = true;
                break;
            }
        }
    }
    uint64_t total = t->st.evicted;
    pthread_mutex_unlock(&t->mu);
    /* the first eviction, then every 1000th: a sign of an attack or of a
     * ceiling set too low, without a line per connection */
    if (evicted && (total == 1 || total % 1000 == 0))
        log_warn("at the connection ceiling (%u): closed the oldest connection still sending "
                 "its request head (%llu so far)",
                 t->lim.ceiling, (unsigned long long)total);
    return c;
}

void api_conn_closed(struct api_conns *t, struct api_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        t->tail = c->prev;
    t->st.open--;
    if (c->closing)
        t->closing--;
    pthread_mutex_unlock(&t->mu);
    free(c);
}

void api_conn_phase(struct api_conns *t, struct api_conn *c, enum api_conn_phase phase)
{
    if (!c)
        return;
    uint64_t now = api_conns_now_ms();
    pthread_mutex_lock(&t->mu);
    /* HEAD always restarts its clock: the next request's head is due
     * --header-timeout after the previous request ended */
    if (c->phase != phase || phase == API_CONN_HEAD) {
        c->phase = phase;
        c->since_ms = now;
        c->body_bytes = 0;
    }
    pthread_mutex_unlock(&t->mu);
}

void api_conn_body(struct api_conns *t, struct api_conn *c, uint64_t n)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->mu);
    c->body_bytes += n;
    pthread_mutex_unlock(&t->mu);
}

void api_conns_stats(struct api_conns *t, struct api_conns_stats *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    pthread_mutex_unlock(&t->mu);
}
