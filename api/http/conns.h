/*
 * conns: the api's table of open HTTP connections, with the deadlines that
 * libmicrohttpd's idle timeout cannot give, and the connection ceiling.
 *
 * libmicrohttpd's --idle-timeout is reset by every byte, so a client that
 * trickles its request head one byte a second holds its connection for
 * ever, and a few hundred such clients used to fill --max-connections
 * (issue 13, item 4). This table follows each connection through its phases
 * and closes the ones that overstay, whatever they send:
 *
 *   HEAD    from the accept, or from the end of the previous request on a
 *           kept-alive connection, until the request's head is in: at most
 *           --header-timeout seconds (so an idle kept-alive connection lasts
 *           at most the smaller of --idle-timeout and --header-timeout);
 *   BODY    the body, at an average of at least --min-body-rate bytes a
 *           second once --header-timeout seconds of grace have passed
 *           (0 turns the rate off);
 *   ANSWER  the handler answers; the answer's own pace is the client's
 *           (libmicrohttpd's idle timeout, and streams' own checks).
 *
 * The ceiling (--max-connections): when a new connection makes the count
 * pass it, the oldest connection still in HEAD (one that has not finished
 * a request head, an idle kept-alive connection included) is closed to
 * make room, as nginx reuses idle connections. If none is in HEAD, nothing
 * is closed and libmicrohttpd's own limit (a little above the ceiling,
 * fdlimit_library_limit in service/core/fdlimit.h) refuses further connections at accept.
 *
 * "Closed" here is shutdown(SHUT_RDWR) of the socket: libmicrohttpd's
 * event loop then sees the end of the stream and frees the connection on
 * its own thread, the only one allowed to. shutdown() never frees the
 * descriptor, and libmicrohttpd reports a connection closed
 * (api_conn_closed) before it closes its descriptor, so the table never
 * shuts down a descriptor number that was reused.
 *
 * Process and threads: api process. api_conn_opened/closed and the phase
 * calls run on libmicrohttpd's threads, the sweep on the table's own thread
 * (api_conns_start); one mutex guards the table.
 * Ownership: the table owns its entries; an entry is valid from
 * api_conn_opened() until api_conn_closed().
 */
#ifndef BATCHD_API_CONNS_H
#define BATCHD_API_CONNS_H

#include <stdbool.h>
#include <stdint.h>

struct api_conns;
struct api_conn;

enum api_conn_phase {
    API_CONN_HEAD = 0,
    API_CONN_BODY,
    API_CONN_ANSWER,
};

/* Why the sweep (or the ceiling) closes a connection. */
enum api_conn_verdict {
    API_CONN_KEEP = 0,
    API_CONN_HEAD_LATE,  /* the head took longer than the header timeout */
    API_CONN_BODY_SLOW,  /* the body comes slower than the minimum rate */
};

struct api_conns_limits {
    unsigned ceiling;          /* --max-connections */
    unsigned header_timeout_ms; /* --header-timeout */
    uint64_t min_body_rate;    /* --min-body-rate, bytes per second; 0 = off */
};

/* What the table has done since it started (for the log and the tests). */
struct api_conns_stats {
    unsigned open;             /* connections open now */
    unsigned peak;             /* most open at once */
    uint64_t head_late;        /* closed past the header deadline */
    uint64_t body_slow;        /* closed below the body rate */
    uint64_t evicted;          /* closed to make room at the ceiling */
};

/*
 * The verdict on a connection in `phase` since `since_ms`, having received
 * `body_bytes` of body, at `now_ms` (one clock). Pure.
 */
enum api_conn_verdict api_conn_judge(const struct api_conns_limits *lim,
                                     enum api_conn_phase phase, uint64_t since_ms,
                                     uint64_t body_bytes, uint64_t now_ms);

/* Returns a new, empty table (no thread yet), or NULL when out of memory. */
struct api_conns *api_conns_create(const struct api_conns_limits *lim);

/* Starts the sweep thread (every 200 ms). Returns 0 or a negative errno. */
int api_conns_start(struct api_conns *t);

/* Stops the sweep thread (if started) and frees the table. The caller has
 * stopped libmicrohttpd first (no connection is left). NULL is fine. */
void api_conns_destroy(struct api_conns *t);

/*
 * A connection was accepted on socket fd: returns its new entry (in HEAD),
 * or NULL when out of memory (the connection is then not followed, and
 * the caller should close it). When the count passes the ceiling, closes
 * the oldest connection in HEAD.
 */
struct api_conn *api_conn_opened(struct api_conns *t, int fd);

/* The connection is gone: frees its entry. NULL is fine. */
void api_conn_closed(struct api_conns *t, struct api_conn *c);

/* The connection enters `phase` now (a new request's head is in: BODY or
 * ANSWER; its request completed: HEAD again). NULL is fine. */
void api_conn_phase(struct api_conns *t, struct api_conn *c, enum api_conn_phase phase);

/* `n` more bytes of body arrived. NULL is fine. */
void api_conn_body(struct api_conns *t, struct api_conn *c, uint64_t n);

/* One sweep at now_ms: closes what api_conn_judge() says to close. Returns
 * how many it closed. (The sweep thread calls it; tests may too.) */
unsigned api_conns_sweep(struct api_conns *t, uint64_t now_ms);

/* The table's counters. */
void api_conns_stats(struct api_conns *t, struct api_conns_stats *out);

/* Milliseconds of CLOCK_MONOTONIC: the clock the table uses. */
uint64_t api_conns_now_ms(void);

#endif
