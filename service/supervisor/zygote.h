/*
 * zygote: the host process of a coprocess model (a model in Python or
 * another language; docs/coprocess.md), as the supervisor sees it.
 *
 * For each such model the supervisor forks and execs the language's host
 * program (workers/python/batchd_host.py, workers/node/batchd_host.js;
 * zygote_find_host says where they are looked for) with
 *   fd 3  the host's end of a control socketpair (this module keeps the other),
 *   fd 4  the object store's memfd (mapped read-only by the host), or closed,
 *   argv  INTERPRETER HOST_SCRIPT CONFIG_JSON,
 *   env   OPENBLAS/OMP/MKL thread counts 1 unless the user set them,
 * and no other fd. The host imports the module, calls load() once and
 * answers LOADED (or ERROR, then exits 2). Then, for each worker the
 * supervisor forks, zygote_fork_child() passes the child's end of a new
 * socketpair in a FORK frame; the host forks a child that serves that
 * worker (the zygote pattern: the model is loaded once and shared
 * copy-on-write) and answers FORKED with the child's pid.
 *
 * The supervisor starts a host again when it dies (load() runs again);
 * its children die with it (PR_SET_PDEATHSIG) and their workers with them.
 *
 * Process: supervisor only; single-threaded. Ownership: struct zygote
 * borrows its config_model; it owns the control socket (zygote_close).
 */
#ifndef BATCHD_ZYGOTE_H
#define BATCHD_ZYGOTE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "service/config/config.h"
#include "workers/coproc/coproc.h"

enum zygote_state {
    ZYGOTE_DOWN = 0, /* no process (not started, or dead and waiting to restart) */
    ZYGOTE_LOADING,  /* started, load() running */
    ZYGOTE_READY,    /* loaded: forks children on request */
};

struct zygote {
    const struct config_model *m; /* borrowed */
    enum zygote_state state;
    pid_t pid;
    int ctl;                      /* the supervisor's end of the control socket, -1 if none */
    struct coproc_reader rd;
    uint64_t started_ns;          /* monotonic: when the current process started */
    uint64_t load_ns;             /* how long its load() took */
    char description[256];        /* from LOADED: the module's docstring's first line */
    bool stateful;                /* from LOADED: the module keeps per-job state */
    char accept[108];             /* from LOADED: a host that cannot receive fds listens
                                     here; "" = FORK passes the fd (docs/coprocess.md) */
};

/*
 * Finds the host program of `runtime` ("python" or "node"): in
 * $BATCHD_HOSTS_DIR if set, else in hosts/ next to the batchd executable,
 * else in ../share/batchd/hosts/ from it. Writes its path into buf.
 * Returns 0, -EINVAL for an unknown runtime, -ENOENT (err says where it
 * looked).
 */
int zygote_find_host(const char *runtime, char *buf, size_t len, char *err, size_t errlen);

/*
 * Forks and execs the host of z->m (state DOWN -> LOADING). objects_fd is
 * the object store's memfd (-1: none) of objects_size bytes; orig_mask is
 * the signal mask the host runs with. Returns 0, or a negative errno with
 * err (no host program, socketpair or fork failed; state unchanged).
 */
int zygote_start(struct zygote *z, int objects_fd, uint64_t objects_size,
                 const sigset_t *orig_mask, char *err, size_t errlen);

/*
 * Waits up to timeout_ms (-1: for ever, 0: not at all) for the host's
 * answer to load(). Returns 0 when it is loaded (LOADING -> READY),
 * -EAGAIN if it is still loading, -EIO if load() failed (err holds the
 * host's message: the host exits 2), -EPIPE if the host is gone without a
 * word, -EPROTO for a bad frame.
 */
int zygote_wait_loaded(struct zygote *z, int timeout_ms, char *err, size_t errlen);

/*
 * Asks a READY host for the child of worker w: *worker_fd (new, CLOEXEC)
 * is the worker's end of the child's socket, *child its pid. The socket is
 * a socketpair whose other end goes with FORK, or, for a host that said
 * "accept" in LOADED, a connection to that path made just before FORK. Waits at most
 * timeout_ms for the answer. Returns 0, -ENOTCONN if the host is not
 * READY, or a negative errno with err (the host is then best restarted).
 */
int zygote_fork_child(struct zygote *z, uint32_t w, int timeout_ms, int *worker_fd, pid_t *child,
                      char *err, size_t errlen);

/* Closes the control socket (a host reads EOF as "stop when your children
 * have"); state -> DOWN. The process is the caller's to reap. */
void zygote_close(struct zygote *z);

#endif
