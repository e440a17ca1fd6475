/*
 * pump: wakes the responses that wait for data, so that waiting costs no
 * thread.
 *
 * The api serves HTTP on a few libmicrohttpd threads, each with many
 * connections (epoll; server.h). A response whose data is not there yet
 * (the NDJSON results stream of a running job, which may wait minutes for
 * its next result) must not block its thread: its content reader suspends
 * the connection (MHD_suspend_connection) and hands a waiter to the pump,
 * then returns 0. The pump's one thread asks each waiter, in turn, whether
 * its connection has something to do now (data, the end, a client that
 * left, the service stopping); when it does, the pump resumes the
 * connection (MHD_resume_connection) and libmicrohttpd calls the reader
 * again. Between sweeps the pump sleeps on one waiter's own wait (the
 * engine wakes it at any progress), at most API_PUMP_WAIT_MS.
 *
 * Process and threads: api process. api_pump_wait() runs on libmicrohttpd
 * threads (in a content reader, the one place libmicrohttpd allows a
 * suspend), the waiters' poll functions on the pump's thread only while
 * their connection is suspended, so a waiter's data has one user at a
 * time; one mutex guards the list. Lock order: the pump's mutex, then
 * libmicrohttpd's (suspend and resume take it).
 * Ownership: waiters are the callers', borrowed while in the list (a
 * suspended connection cannot end, so its waiter outlives its stay).
 */
#ifndef BATCHD_API_PUMP_H
#define BATCHD_API_PUMP_H

#include <stdbool.h>

#include <microhttpd.h>

/* The longest sleep between two looks at the waiters. */
#define API_PUMP_WAIT_MS 200

struct api_waiter {
    struct api_waiter *prev, *next; /* the pump's list */
    struct MHD_Connection *conn;    /* the suspended connection (borrowed) */
    /* True when the connection should be resumed; may wait up to
     * timeout_ms (0: not at all) for that. Runs on the pump's thread. */
    bool (*poll)(void *ctx, int timeout_ms);
    void *ctx;
};

struct api_pump;

/* Returns a new pump with its thread running, or NULL (out of memory, or
 * no thread). */
struct api_pump *api_pump_start(void);

/*
 * Suspends w->conn and adds w to the pump. Call only from the content
 * reader of w->conn, and return 0 from it after a 0 here.
 * Returns 0; -ECANCELED when the pump is stopping (nothing was suspended:
 * end the response).
 */
int api_pump_wait(struct api_pump *p, struct api_waiter *w);

/* Resumes every waiting connection and stops the thread; api_pump_wait()
 * refuses from then on. Call before MHD_stop_daemon (a suspended
 * connection would never end), after setting the flag the waiters' poll
 * reads to see the stop. A second call does nothing. NULL is fine. */
void api_pump_stop(struct api_pump *p);

/* Frees a stopped pump, once no reader can call api_pump_wait() any more
 * (after MHD_stop_daemon). NULL is fine. */
void api_pump_free(struct api_pump *p);

#endif
