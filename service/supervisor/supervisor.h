/*
 * supervisor: batchd's first process (the postmaster).
 *
 * It reads nothing from the network and runs no model code after start-up.
 * In order, before any thread exists anywhere:
 *   1. opens and locks the data directory (one batchd per directory);
 *   2. calls each model's load() once (read-only state shared by workers),
 *      after dlopen()ing a plugin model's shared object (workers/plugin.h);
 *   3. creates the shared-memory region (shm.h, ring.h);
 *   4. forks every worker (worker.h), then the api process (api.h).
 * Then it waits for signals in sigtimedwait() with all of them blocked, so
 * no handler ever runs: SIGCHLD means reap (every exit is classified and
 * logged, a dead worker's task is handed back to the ring, and the slot is
 * re-forked, with back-off when init() keeps failing); SIGTERM/SIGINT mean
 * shut down (children get SIGTERM, then SIGKILL after a deadline; exit 0).
 *
 * Why single-threaded: the supervisor forks for the whole life of the
 * service (respawns hours later), and fork() is only safe in a process with
 * one thread. Nothing here may start a thread, including model load() and
 * a plugin's constructors.
 *
 * Ownership: sup_run() owns everything it creates and frees it on return.
 */
#ifndef BATCHD_SUPERVISOR_H
#define BATCHD_SUPERVISOR_H

#include "service/config/config.h"

/* The supervisor's states; sup_set_state() logs every transition. */
enum sup_state {
    SUP_STARTING = 0, /* loading models, forking children */
    SUP_RUNNING,      /* serving */
    SUP_STOPPING,     /* SIGTERM/SIGINT received: children told to stop */
    SUP_STOPPED,      /* every child reaped */
};

/* Exit codes of batchd. */
#define SUP_EXIT_OK 0
#define SUP_EXIT_FATAL 2 /* bad configuration, data dir, model load, or listen */

/* Runs the service until it is told to stop. Returns the process exit
 * code: SUP_EXIT_OK after an orderly shutdown, SUP_EXIT_FATAL when start-up
 * failed or the api process cannot listen. */
int sup_run(const struct config *cfg);

#endif
