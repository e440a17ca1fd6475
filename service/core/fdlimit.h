/*
 * fdlimit: the open-file limit, raised at start-up and checked against the
 * connection ceiling.
 *
 * Every HTTP connection is a descriptor of the api process, which inherits
 * the supervisor's limit. The soft RLIMIT_NOFILE is often 1024 while the
 * hard one is far higher; batchd raises the soft limit to the hard one
 * before anything forks, then checks that --max-connections fits:
 * libmicrohttpd's own limit (a little above the ceiling,
 * fdlimit_library_limit) plus descriptors for everything else
 * (FDLIMIT_RESERVE and two per HTTP thread: its epoll and its wake-up
 * descriptors). A ceiling the user set that does not fit is a start-up
 * error that says what to change; the default ceiling is lowered to fit,
 * with a log line.
 *
 * Process and threads: the supervisor's main thread, before the first
 * fork. Ownership: nothing is allocated.
 */
#ifndef BATCHD_FDLIMIT_H
#define BATCHD_FDLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Descriptors batchd's api process needs besides its connections: the
 * standard streams, the listening socket, the store (SQLite's database,
 * journal and shared-memory files), the shared-memory region, signal and
 * timer descriptors, and room for models' own files. */
#define FDLIMIT_RESERVE 64u

/* libmicrohttpd's own connection limit for a ceiling (api/http/conns.h): the
 * api's table closes connections past the ceiling, and libmicrohttpd
 * accepts a little more, so that a newcomer is accepted while the
 * connection evicted for it is being closed. */
unsigned fdlimit_library_limit(unsigned ceiling);

/* Descriptors needed for `ceiling` connections served by `threads`. */
uint64_t fdlimit_needed(unsigned ceiling, unsigned threads);

/*
 * Raises the soft RLIMIT_NOFILE to the hard one (capped at the kernel's
 * fs.nr_open when the hard one is unlimited). Returns 0 with *soft set to
 * the soft limit now in force, or a negative errno (the limit is then
 * unchanged, and *soft holds it when it could be read, else 0).
 */
int fdlimit_raise(uint64_t *soft);

/*
 * Checks *ceiling against `soft` descriptors. Returns 0 when it fits; 1
 * when it did not but was the default (`explicit_` false): *ceiling is then
 * lowered to the most that fits; -EMFILE when it does not fit and was set
 * by the user, or when not even 16 connections fit, with a one-line
 * message in err saying what to change.
 */
int fdlimit_fit(unsigned *ceiling, bool explicit_, unsigned threads, uint64_t soft, char *err,
                size_t errlen);

#endif
