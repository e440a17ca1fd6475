/*
 * process: what batchd's three kinds of process agree on about their lives:
 * the exit codes each one returns to the supervisor, the shutdown timeline,
 * how a child process is set up after fork, and how a wait status is told
 * in words.
 *
 * The processes: the supervisor (single-threaded, forks for its whole
 * life), one api process (HTTP, the engine thread), N workers (models).
 * The supervisor reaps every child and classifies its exit by the codes
 * below (nginx's rule: 2 means "fatal, do not respawn", anything else
 * unexpected is respawned with back-off).
 *
 * Process: any; the functions are async-signal-unsafe but need no lock.
 * Ownership: nothing allocated; buffers are the caller's.
 */
#ifndef BATCHD_PROCESS_H
#define BATCHD_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- exit codes ------------------------------------------------------ */

/* Every process: 2 is "fatal: the same start would fail again". */
#define PROC_EXIT_FATAL 2

/* batchd itself (the supervisor's exit status, main's return). */
#define SUP_EXIT_OK 0
#define SUP_EXIT_FATAL PROC_EXIT_FATAL /* bad configuration, data dir, model load, or listen */

/* The api process (api_run's return, the supervisor's classification). */
#define API_EXIT_OK 0               /* stopped by SIGTERM/SIGINT */
#define API_EXIT_FAILED 1           /* the engine could not start, or the tokens file cannot be
                                       read: worth a respawn with back-off */
#define API_EXIT_FATAL PROC_EXIT_FATAL /* cannot listen (bad address, port in use) or write the
                                          port file: it would fail again, do not respawn */

/* A worker (worker_main's _exit). 0 is an orderly stop after SIGTERM;
 * anything not listed (a signal, another code) is a crash: its task is
 * reclaimed and the worker respawned. */
#define WORKER_EXIT_FATAL PROC_EXIT_FATAL /* unusable setup (do not respawn) */
#define WORKER_EXIT_INIT 3                /* init() failed (respawn with back-off) */
#define WORKER_EXIT_RECYCLE 4             /* past its recycling limits (items, RSS): an
                                             orderly exit, replaced at once */
#define WORKER_EXIT_COPROC 5              /* its model process (a coprocess: a Python
                                             model's child) died or broke the protocol:
                                             a crash, the task is reclaimed */

/* ---- the shutdown timeline ------------------------------------------- */

/*
 * From the stop signal (SIGTERM/SIGINT to the supervisor), within --grace
 * (G ms):
 *
 *   0                 the supervisor sends the api process SIGTERM; the api
 *                     process refuses new jobs (503) and lets the tasks in
 *                     the ring finish while it still answers polls;
 *   drain budget      the api process stops draining and exits (it leaves
 *                     the workers a margin to finish the task in hand);
 *   api deadline      the supervisor stops waiting for the api process and
 *                     sends every worker SIGTERM (each finishes its task);
 *   kill time         whatever still runs gets SIGKILL;
 *   kill time + 5 s   the supervisor gives up waiting for the kernel.
 *
 * The offsets, each a function of G alone so that the two processes,
 * which never talk about it, keep the same order: drain budget < api
 * deadline < kill time <= G.
 */
#define SHUTDOWN_DRAIN_MARGIN_MS 1500u /* drain budget: G - 1.5 s */
#define SHUTDOWN_API_MARGIN_MS 1000u   /* api deadline: G - 1 s */
#define SHUTDOWN_KILL_MARGIN_MS 200u   /* kill time:    G - 0.2 s */
#define SHUTDOWN_REAP_WAIT_MS 5000u    /* after SIGKILL */

/* How long the api process drains (ms after its SIGTERM): G - 1.5 s, or
 * G / 2 for a grace too short for that. */
static inline uint64_t shutdown_drain_budget_ms(uint64_t grace_ms)
{
    return grace_ms > SHUTDOWN_DRAIN_MARGIN_MS ? grace_ms - SHUTDOWN_DRAIN_MARGIN_MS
                                               : grace_ms / 2;
}

/* When the supervisor stops waiting for the api process: G - 1 s, or G / 2;
 * never before the api process's drain budget is spent (a grace between 1
 * and 2 s once cut the drain short by the supervisor's second SIGTERM). */
static inline uint64_t shutdown_api_deadline_ms(uint64_t grace_ms)
{
    uint64_t api = grace_ms > SHUTDOWN_API_MARGIN_MS ? grace_ms - SHUTDOWN_API_MARGIN_MS
                                                     : grace_ms / 2;
    uint64_t drain = shutdown_drain_budget_ms(grace_ms);
    return api > drain ? api : drain;
}

/* When the supervisor sends SIGKILL: G - 0.2 s, or G; never before the api
 * deadline (a grace between 0.2 and 0.4 s once put the SIGKILL first, and
 * the workers got no moment at all). */
static inline uint64_t shutdown_kill_ms(uint64_t grace_ms)
{
    uint64_t kill = grace_ms > SHUTDOWN_KILL_MARGIN_MS ? grace_ms - SHUTDOWN_KILL_MARGIN_MS
                                                       : grace_ms;
    uint64_t api = shutdown_api_deadline_ms(grace_ms);
    return kill > api ? kill : api;
}

/* ---- children -------------------------------------------------------- */

/*
 * The first thing a forked child does: names itself `name` (ps, top; at
 * most 15 characters), asks the kernel for SIGKILL when its parent dies,
 * and exits PROC_EXIT_FATAL at once if the parent is already not `parent`
 * (it died before the request: the race the check after the prctl closes).
 * Returns only in a child whose parent is alive.
 */
void proc_child_setup(const char *name, pid_t parent);

/*
 * Writes how a child ended, from its wait status, into buf (len bytes,
 * always NUL-terminated): "exit code 3", "signal 11 (SIGSEGV)", or
 * "status 0x…" for anything else. Never fails; truncates to len.
 */
void proc_describe_status(int status, char *buf, size_t len);

#endif
