/*
 * model_chaos: the `chaos` built-in model, fault injection for testing a
 * deployment (crash recovery, item timeouts, shutdown grace, error paths).
 *
 * Each item says what the worker should do with it:
 *
 *   {"crash": "segv"}              the worker dies by SIGSEGV
 *   {"crash": "abort"}             the worker dies by SIGABRT (abort())
 *   {"crash": "exit"}              the worker exits with status 1 (_exit)
 *   {"hang_ms": N}                 blocks N ms, then returns {"hung_ms": N}
 *   {"fail": "message"}            returns an item error with that message
 *   {"sleep_ms": N, "value": V}    sleeps N ms, then returns V (null when
 *                                  "value" is absent)
 *   {"leak_kb": N, "value": V}     allocates N KiB, writes every page and
 *                                  keeps them until the worker exits (a
 *                                  leaky model, for --max-worker-rss), then
 *                                  returns V (null when absent); N is an
 *                                  integer from 0 to MODEL_CHAOS_MAX_LEAK_KB
 *   anything else                  returned unchanged, like echo
 *
 * N is an integer from 0 to MODEL_CHAOS_MAX_MS. An object that holds one of
 * the five control keys holds nothing else (but "value" beside "sleep_ms"
 * or "leak_kb"):
 * a second key is refused as an item error rather than guessed at, and so
 * is a bad crash kind, a bad N or a "fail" that is not a non-empty string.
 * An object without any control key is echoed.
 *
 * hang_ms and sleep_ms behave the same inside the worker (both wait on
 * CLOCK_MONOTONIC to an absolute deadline, so a signal that is caught and
 * returns does not cut the wait short); they differ in intent and output:
 * hang_ms stands for a stuck item that --item-timeout or --grace should
 * end, sleep_ms for slow work that should finish.
 *
 * The table entry has MODEL_FLAG_NOT_DEFAULT: a service never runs chaos
 * unless `--model chaos` names it.
 *
 * One parameter, for what the items cannot reach (a worker that never
 * starts):
 *
 *   init_fail=MESSAGE    (`--model chaos:init_fail=boom`) every init()
 *                        fails with MESSAGE, in every worker, every time:
 *                        the model's workers can never start, and a
 *                        deployment sees what batchd does about that
 *                        (respawn back-off, /readyz, jobs of the model).
 *                        MESSAGE cannot hold ',' (it separates parameters)
 *                        nor, in BATCHD_MODELS, blanks or ';'.
 *
 * load() refuses any other key, a repeated one and an empty MESSAGE
 * (-EINVAL, naming the key). Without parameters there is no shared state
 * (load sets *shared to NULL) and init() succeeds; with init_fail, *shared
 * holds a copy of MESSAGE that unload() frees. There is never per-worker
 * state (init sets *state to NULL).
 *
 * Process: load() and unload() run in the supervisor, init() and run() in
 * a worker; the crash kinds end that process,
 * which is their purpose, so never call run() on a crash item in a process
 * that must survive (the tests fork first). Threads: run() is reentrant;
 * a crash ends every thread of the process.
 * Ownership: as model.h says (item borrowed, *output new).
 */
#ifndef BATCHD_MODEL_CHAOS_H
#define BATCHD_MODEL_CHAOS_H

#include <batchd/model.h>

/* The largest hang_ms / sleep_ms: one hour. */
#define MODEL_CHAOS_MAX_MS 3600000L
/* The largest leak_kb of one item: 1 GiB. The leaked blocks stay reachable
 * from a static list, so LeakSanitizer does not report them at exit. */
#define MODEL_CHAOS_MAX_LEAK_KB 1048576L

/* The chaos model's table, registered in models_builtin.c. Static, borrowed. */
extern const struct model_ops model_chaos;

#endif
