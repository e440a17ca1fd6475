/*
 * longpoll: requests that wait for a job to change without a thread each
 * (GET /v1/jobs/{id}?wait=S, operationId getJob; issue 18).
 *
 * A waiting request's libmicrohttpd connection is suspended
 * (MHD_suspend_connection: it leaves the event loop and costs its socket
 * and a few hundred bytes, no thread); it is resumed when the engine says
 * the job changed (engine_set_watch_hook -> api_longpoll_notify), when its
 * deadline passes (one timer thread for every waiter, asleep until the
 * nearest deadline), or at shutdown. libmicrohttpd then calls the access
 * handler again, which looks at the job and answers or waits again.
 *
 * No wake-up is lost: a request takes a "mark" of its job's change count
 * before it reads the job, and api_longpoll_suspend() suspends only if no
 * change was notified since the mark (under the same lock as the
 * notification), otherwise it returns -EAGAIN and the handler reads again.
 * A connection is resumed at most once per suspension, always after it
 * was taken off every list (so a request is never resumed twice, nor
 * after it was freed).
 *
 * Process: api. Threads: every function is safe from any thread;
 * api_longpoll_notify runs on engine threads under the engine's mutex
 * (lock order: engine, then this module's lock; this module never calls
 * the engine). Ownership: the module owns its entries; a request owns its
 * struct api_longpoll_wait (embedded), which the module links while the
 * request is suspended.
 */
#ifndef BATCHD_API_LONGPOLL_H
#define BATCHD_API_LONGPOLL_H

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

struct api_longpoll;
struct api_longpoll_entry;

/* One request's wait (embedded in struct api_req; zeroed = not waiting). */
struct api_longpoll_wait {
    struct api_longpoll_entry *entry;   /* the job's entry, while watched */
    struct MHD_Connection *conn;        /* while suspended */
    uint64_t deadline_ns;               /* CLOCK_MONOTONIC */
    bool linked;                        /* on the entry's and the timer's lists */
    struct api_longpoll_wait *next, *prev;         /* the entry's waiters */
    struct api_longpoll_wait *tnext, *tprev;       /* the timer's, by deadline */
};

/*
 * Starts the timer thread. `suspend`: the daemon can suspend connections
 * (an event loop: epoll or poll with MHD_ALLOW_SUSPEND_RESUME). Without it
 * (thread per connection, where libmicrohttpd 0.9.75 can miss a resume)
 * api_longpoll_suspend blocks the request's own thread instead, with the
 * same wake-ups. Returns NULL (logged) on failure.
 */
struct api_longpoll *api_longpoll_create(bool suspend);

/*
 * Resumes every suspended request and makes later api_longpoll_suspend()
 * calls answer -ESHUTDOWN: libmicrohttpd must have no suspended connection
 * when it stops. Call before MHD_stop_daemon.
 */
void api_longpoll_shutdown(struct api_longpoll *lp);

/* Stops the timer thread and frees the module (after the daemon stopped:
 * no request holds an entry any more). NULL is fine. */
void api_longpoll_destroy(struct api_longpoll *lp);

/* The engine's watch hook (engine.h): job `id` changed; resumes its
 * waiters. `arg` is the struct api_longpoll. */
void api_longpoll_notify(void *arg, const char *id);

/*
 * Begins watching job `id` for request wait `w` (not yet watching):
 * finds or creates the job's entry. Returns 0 or -ENOMEM.
 */
int api_longpoll_watch(struct api_longpoll *lp, struct api_longpoll_wait *w, const char *id);

/* The job's change count now: take it before reading the job. */
uint64_t api_longpoll_mark(struct api_longpoll *lp, const struct api_longpoll_wait *w);

/*
 * Suspends `conn` until the job changes (after `mark`), deadline_ns
 * (CLOCK_MONOTONIC) passes, or shutdown. Call from the access handler
 * only. Returns 0 (suspended: return MHD_YES and wait for the next call),
 * -EAGAIN (the job changed since the mark, or, in blocking mode, the wait
 * is over: read it again), -ESHUTDOWN (answer now).
 */
int api_longpoll_suspend(struct api_longpoll *lp, struct api_longpoll_wait *w, uint64_t mark,
                         struct MHD_Connection *conn, uint64_t deadline_ns);

/* Ends the watch of `w` (unlinks it if it is still suspended, which only
 * happens when a request is freed abnormally). Safe on a wait that never
 * watched. */
void api_longpoll_unwatch(struct api_longpoll *lp, struct api_longpoll_wait *w);

/* Number of requests suspended now (/metrics, tests). */
unsigned api_longpoll_waiting(struct api_longpoll *lp);

#endif
