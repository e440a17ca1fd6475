/*
 * webhook_sender: delivers the completion webhooks of the outbox
 * (outbox.h), in the api process, on one thread of its own (issue 18).
 *
 * Why here: the supervisor is single-threaded and forks for its whole
 * life (a thread and libcurl's state have no place in it); the engine
 * thread must never wait for a network peer. A delivery blocks only this
 * thread, for at most the connect and total timeouts.
 *
 * The thread sleeps until the earliest due attempt, or until the engine's
 * group commit says something was written (engine_set_flush_hook: a
 * finished job's event is durable then). An attempt POSTs the event (its
 * body built once and kept in the outbox, so every retry sends the same
 * bytes), signed (webhook.h) with the timestamp of the attempt; a 2xx
 * delivers it; anything else is retried with webhook_backoff_ns until
 * --webhook-retry-for after the job finished, then it has failed.
 * Delivery is at least once: a receiver dedupes by webhook-id
 * ("evt_" + the job's id).
 *
 * What libcurl is allowed: http and https only, no redirects, no proxy
 * from the environment, a 5 s connect and 15 s total timeout, and the
 * response body is read and dropped. The URL is checked against
 * --webhook-hosts again before every attempt (the list may have changed
 * across a restart).
 *
 * Process: api. Threads: start/stop on the api's main thread; the others
 * anywhere. Ownership: borrows the config and the engine, which outlive it.
 */
#ifndef BATCHD_WEBHOOK_SENDER_H
#define BATCHD_WEBHOOK_SENDER_H

#include <jansson.h>

#include "service/config/config.h"
#include "service/jobs/engine.h"

struct webhook_sender;

/* Starts delivering (only when cfg->webhook_secret is set: NULL with
 * *err = 0 otherwise). NULL with *err < 0 on failure (logged). */
struct webhook_sender *webhook_sender_start(const struct config *cfg, struct engine *engine,
                                            int *err);

/* Stops the thread (an attempt in progress ends within its timeouts) and
 * frees everything. NULL is fine. */
void webhook_sender_stop(struct webhook_sender *w);

/* Sets a hook told the job id whenever a delivery's state changes (the
 * long-polls of that job wake). Before any delivery; NULL clears. */
void webhook_sender_set_change_hook(struct webhook_sender *w,
                                    void (*fn)(void *arg, const char *id), void *arg);

/* The "webhook" member of job `id`'s Job object (outbox_job_state), new
 * reference or NULL. *version changes with it. */
json_t *webhook_sender_job_state(struct webhook_sender *w, const char *id, uint64_t *version);

#endif
