/*
 * outbox: the webhook events waiting in the store (issue 18), read and
 * updated by the delivery thread (webhook_sender.h) and by GET
 * /v1/jobs/{id} (the job's "webhook" member).
 *
 * The rows are written by the store itself: a job's URL with the job
 * (store_job_create), its event by a trigger in the transaction that
 * finishes it (store.c's schema), so an event is durable exactly when its
 * job is finished. This module only reads events and records attempts,
 * through its own SQLite connection to DATA_DIR/batchd.db (WAL lets it
 * run beside the engine's writer; its writes are one small row each).
 *
 * Event states: pending (0) -> delivered (1) after a 2xx, or failed (2)
 * when --webhook-retry-for has passed (or the URL is no longer allowed).
 * Times are CLOCK_REALTIME nanoseconds (they survive restarts).
 *
 * Process: api. Threads: every function is safe from any thread (one
 * connection, under a mutex). Ownership: strings passed in are borrowed;
 * outbox_event.body is new (free()).
 */
#ifndef BATCHD_OUTBOX_H
#define BATCHD_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "service/store/store.h"

enum outbox_state { OUTBOX_PENDING = 0, OUTBOX_DELIVERED = 1, OUTBOX_FAILED = 2 };

struct outbox;

struct outbox_event {
    int64_t id;
    char url[2049];
    char type[24];           /* job.succeeded, job.failed, job.cancelled */
    struct store_job row;    /* the job as it finished */
    unsigned attempts;
    char *body;              /* the body sent at the first attempt, or NULL */
};

/* Opens DIR/batchd.db (the store made it). NULL with a reason in err. */
struct outbox *outbox_open(const char *dir, char *err, size_t errlen);
void outbox_close(struct outbox *o);

/* The earliest next attempt of a pending event: 0 with *any = false when
 * there is none. Returns 0 or -EIO. */
int outbox_next_due(struct outbox *o, uint64_t *next_ns, bool *any);

/* Reads at most max pending events due at `now`, earliest first, into ev;
 * *n how many. Returns 0, -EIO, -ENOMEM. */
int outbox_take_due(struct outbox *o, uint64_t now, struct outbox_event *ev, size_t max,
                    size_t *n);

/* Frees what outbox_take_due put in ev (the body). */
void outbox_event_clear(struct outbox_event *ev);

/* Keeps the body of event id (sent again unchanged at every retry). */
int outbox_save_body(struct outbox *o, int64_t id, const char *body);

/* Records an attempt's outcome. last_error NULL = none. Returns 0/-EIO. */
int outbox_record(struct outbox *o, int64_t id, enum outbox_state state, unsigned attempts,
                  uint64_t next_ns, int last_status, const char *last_error,
                  uint64_t delivered_ns);

/*
 * The "webhook" member of job `job_id`'s Job object (new reference): its
 * url and delivery state ("waiting" until the job finishes, then
 * "pending", "delivered" or "failed"), attempts, last_status,
 * last_error, next_attempt_at and delivered_at. NULL when the job has no
 * webhook (or the store cannot be read). *version (if not NULL) changes
 * whenever what it shows changes (for the ETag).
 */
json_t *outbox_job_state(struct outbox *o, const char *job_id, uint64_t *version);

#endif
