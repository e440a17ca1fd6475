#include "service/webhooks/webhook_sender.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "service/core/jsonfmt.h"
#include "service/core/log.h"
#include "service/webhooks/outbox.h"
#include "service/webhooks/webhook.h"

#define SENDER_BATCH 16
#define SENDER_CONNECT_TIMEOUT_MS 5000L
#define SENDER_TOTAL_TIMEOUT_MS 15000L
/* Longest sleep with nothing due: a safety net, not a poll (new events
 * come with a wake-up from the engine). */
#define SENDER_IDLE_S 60

struct webhook_sender {
    const struct config *cfg;
    struct engine *engine;
    struct outbox *outbox;
    uint8_t key[WEBHOOK_KEY_MAX];
    size_t keylen;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    void (*change_fn)(void *arg, const char *id);
    void *change_arg;
};

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void kick(void *arg)
{
    struct webhook_sender *w = arg;
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* The event's body: {"type","timestamp","data": the Job}. New string. */
static char *event_body(const struct outbox_event *ev)
{
    json_t *job = engine_job_row_json(&ev->row);
    time_t sec = (time_t)(ev->row.finished_ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[32], ts[48];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts, sizeof ts, "%.20s.%03uZ", day,
             (unsigned)((ev->row.finished_ns / 1000000ull) % 1000));
    json_t *body = job ? json_pack("{s:s, s:s, s:o}", "type", ev->type, "timestamp", ts, "data",
                                   job)
                       : NULL;
    char *text = body ? jsonfmt_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

/* One POST. Returns the HTTP status (0 when none came) and the reason of
 * a failure in err. */
static long post_event(struct webhook_sender *w, const struct outbox_event *ev, const char *body,
                       char *err, size_t errlen)
{
    char msg_id[64], sig[WEBHOOK_SIGNATURE_LEN + 1];
    snprintf(msg_id, sizeof msg_id, "evt_%s", ev->row.id);
    long long ts = (long long)time(NULL);
    if (webhook_sign(w->key, w->keylen, msg_id, ts, body, strlen(body), sig) != 0) {
        snprintf(err, errlen, "out of memory signing");
        return 0;
    }
    char h_id[96], h_ts[64], h_sig[96];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", msg_id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    struct curl_slist *hs = NULL;
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, h_id);
    hs = curl_slist_append(hs, h_ts);
    hs = curl_slist_append(hs, h_sig);
    hs = curl_slist_append(hs, "Expect:"); /* no 100-continue round trip */
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, ev->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never a proxy from the environment */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, SENDER_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, SENDER_TOTAL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "batchd-webhooks");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299)
            snprintf(err, errlen, "the receiver answered %ld", status);
    } else {
        snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return status;
}

/* One attempt at one event, and its outcome recorded. */
static void deliver(struct webhook_sender *w, struct outbox_event *ev)
{
    char err[CURL_ERROR_SIZE + 600] = "";
    long status = 0;
    char why[512];
    bool allowed = webhook_url_allowed(w->cfg->webhook_hosts, ev->url, why, sizeof why) == 0;
    if (!ev->body) {
        ev->body = event_body(ev);
        if (!ev->body || outbox_save_body(w->outbox, ev->id, ev->body) != 0)
            return; /* tried again at the next wake-up */
    }
    if (allowed)
        status = post_event(w, ev, ev->body, err, sizeof err);
    else
        snprintf(err, sizeof err, "not sent: %s", why);
    uint64_t now = real_ns();
    unsigned attempts = ev->attempts + 1;
    if (status >= 200 && status <= 299) {
        outbox_record(w->outbox, ev->id, OUTBOX_DELIVERED, attempts, 0, (int)status, NULL, now);
        log_info("webhook of job %s delivered (%s, attempt %u, status %ld)", ev->row.id,
                 ev->type, attempts, status);
    } else {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            rnd = (uint32_t)now;
        uint64_t next = now + webhook_backoff_ns(attempts, rnd);
        uint64_t give_up = ev->row.finished_ns + (uint64_t)w->cfg->webhook_retry_for_s * 1000000000ull;
        bool failed = !allowed || next > give_up;
        outbox_record(w->outbox, ev->id, failed ? OUTBOX_FAILED : OUTBOX_PENDING, attempts,
                      failed ? 0 : next, (int)status, err, 0);
        if (failed)
            log_warn("webhook of job %s failed for good after %u attempt(s): %s", ev->row.id,
                     attempts, err);
        else
            log_info("webhook of job %s: attempt %u failed (%s); next in %.1f s", ev->row.id,
                     attempts, err, (double)(next - now) / 1e9);
    }
    pthread_mutex_lock(&w->mu);
    void (*fn)(void *, const char *) = w->change_fn;
    void *arg = w->change_arg;
    pthread_mutex_unlock(&w->mu);
    if (fn)
        fn(arg, ev->row.id);
}

static void *sender_main(void *arg)
{
    struct webhook_sender *w = arg;
    struct outbox_event ev[SENDER_BATCH];
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        w->kicked = false;
        pthread_mutex_unlock(&w->mu);
        size_t n = 0;
        outbox_take_due(w->outbox, real_ns(), ev, SENDER_BATCH, &n);
        for (size_t i = 0; i < n; i++) {
            if (!w->stop)
                deliver(w, &ev[i]);
            outbox_event_clear(&ev[i]);
        }
        uint64_t next = 0;
        bool any = false;
        if (n < SENDER_BATCH)
            outbox_next_due(w->outbox, &next, &any);
        pthread_mutex_lock(&w->mu);
        if (n == SENDER_BATCH || w->kicked || w->stop)
            continue;
        uint64_t now = real_ns();
        uint64_t wait_ns = (uint64_t)SENDER_IDLE_S * 1000000000ull;
        if (any)
            wait_ns = next > now ? (next - now < wait_ns ? next - now : wait_ns) : 0;
        if (wait_ns == 0)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + wait_ns;
        ts.tv_sec = (time_t)(at / 1000000000ull);
        ts.tv_nsec = (long)(at % 1000000000ull);
        while (!w->kicked && !w->stop &&
               pthread_cond_timedwait(&w->cv, &w->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct webhook_sender *webhook_sender_start(const struct config *cfg, struct engine *engine,
                                            int *err)
{
    *err = 0;
    if (!cfg->webhook_secret)
        return NULL;
    struct webhook_sender *w = calloc(1, sizeof *w);
    if (!w) {
        *err = -ENOMEM;
        return NULL;
    }
    w->cfg = cfg;
    w->engine = engine;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    char why[512];
    /* checked at start by config_parse: this cannot fail here */
    if (webhook_secret_decode(cfg->webhook_secret, w->key, &w->keylen) != 0) {
        log_error("webhooks: the secret cannot be decoded");
        *err = -EINVAL;
        goto fail;
    }
    /* before any thread of ours uses libcurl (libcurl's rule) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("webhooks: libcurl cannot start");
        *err = -EIO;
        goto fail;
    }
    w->outbox = outbox_open(cfg->data_dir, why, sizeof why);
    if (!w->outbox) {
        log_error("webhooks: %s", why);
        *err = -EIO;
        goto fail;
    }
    if (pthread_create(&w->thread, NULL, sender_main, w) != 0) {
        *err = -EAGAIN;
        goto fail;
    }
    w->started = true;
    engine_set_flush_hook(engine, kick, w);
    log_info("webhooks: on, to %s; retried for %u s", cfg->webhook_hosts ? cfg->webhook_hosts
                                                                         : "(no host allowed)",
             cfg->webhook_retry_for_s);
    return w;
fail:
    webhook_sender_stop(w);
    return NULL;
}

void webhook_sender_stop(struct webhook_sender *w)
{
    if (!w)
        return;
    if (w->started) {
        engine_set_flush_hook(w->engine, NULL, NULL);
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    outbox_close(w->outbox);
    if (w->started)
        curl_global_cleanup();
    explicit_bzero(w->key, sizeof w->key);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void webhook_sender_set_change_hook(struct webhook_sender *w,
                                    void (*fn)(void *arg, const char *id), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->change_fn = fn;
    w->change_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

json_t *webhook_sender_job_state(struct webhook_sender *w, const char *id, uint64_t *version)
{
    return outbox_job_state(w->outbox, id, version);
}
