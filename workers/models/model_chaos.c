/*
 * model_chaos.c: the `chaos` fault-injection model (see model_chaos.h for
 * the item language).
 *
 * An item is validated completely before anything is done with it, so a
 * mistyped item is an item error and never half a crash. The crashes are
 * made certain rather than left to whatever handlers the process has: the
 * signal's disposition is reset to the default and the signal unblocked
 * first, so that a handler installed by a library, a sanitizer or a test
 * framework cannot turn "dies by SIGSEGV" into something else, and what the
 * supervisor sees is exactly what a real fault of that kind would show.
 */
#include "workers/models/model_chaos.h"
#include "workers/models/model_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

/* What an item asks for; the index of its key in chaos_keys. */
enum chaos_action {
    CHAOS_ECHO = -1,
    CHAOS_CRASH,
    CHAOS_HANG,
    CHAOS_FAIL,
    CHAOS_SLEEP,
    CHAOS_LEAK,
    CHAOS_N_ACTIONS
};

static const char *const chaos_keys[CHAOS_N_ACTIONS] = {
    [CHAOS_CRASH] = "crash",
    [CHAOS_HANG] = "hang_ms",
    [CHAOS_FAIL] = "fail",
    [CHAOS_SLEEP] = "sleep_ms",
    [CHAOS_LEAK] = "leak_kb",
};

static enum chaos_action chaos_action_of(const char *key)
{
    for (int a = 0; a < CHAOS_N_ACTIONS; a++)
        if (strcmp(key, chaos_keys[a]) == 0)
            return (enum chaos_action)a;
    return CHAOS_ECHO;
}

/*
 * Sets sig's disposition to the default and unblocks it in this thread, so
 * that raising it ends the process. Failures are ignored: the callers
 * follow with a fallback that does not depend on this.
 */
static void chaos_default_signal(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

__attribute__((noreturn)) static void chaos_segv(void)
{
    chaos_default_signal(SIGSEGV);
    /* A real invalid write, so the kernel delivers a genuine fault (with
     * its si_code and a core dump where enabled), into a page mapped with
     * no access rather than through NULL: a null store is undefined
     * behaviour, which the compiler may turn into a trap instruction
     * (SIGILL) and UBSan reports and exits on (status 1), neither of which
     * is the SIGSEGV this item promises. */
    void *page = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) {
        volatile int *p = page;
        *p = 1;
    }
    /* Without the page (out of address space), the same signal by hand:
     * raise() with the default action unblocked does not return; _exit(1)
     * keeps the promise of a crash regardless. */
    raise(SIGSEGV);
    _exit(1);
}

__attribute__((noreturn)) static void chaos_abort(void)
{
    /* glibc's abort() already ends the process if a handler returns, but a
     * handler that longjmps (a test framework's does) would escape it. */
    chaos_default_signal(SIGABRT);
    abort();
}

/*
 * Ends the process as `kind` says: "segv", "abort" or "exit" (_exit(1): a
 * status that worker.h classifies as a crash, not as WORKER_EXIT_FATAL or
 * WORKER_EXIT_INIT). Returns -EINVAL with a message for any other kind.
 */
static int chaos_crash(const json_t *kind, char *err, size_t errlen)
{
    const char *s = json_string_value(kind);
    if (s && strcmp(s, "segv") == 0)
        chaos_segv();
    if (s && strcmp(s, "abort") == 0)
        chaos_abort();
    if (s && strcmp(s, "exit") == 0)
        _exit(1);
    if (s)
        model_err(err, errlen,
                  "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got \"%.*s\"",
                  model_utf8_prefix(s, 64), s);
    else
        model_err(err, errlen,
                  "chaos: \"crash\" must be \"segv\", \"abort\" or \"exit\", got %s",
                  model_json_kind(kind));
    return -EINVAL;
}

/* Reads the N of hang_ms / sleep_ms. Returns 0 with *ms set, or -EINVAL. */
static int chaos_millis(const char *key, const json_t *v, long *ms, char *err, size_t errlen)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n >= 0 && n <= MODEL_CHAOS_MAX_MS) {
            *ms = (long)n;
            return 0;
        }
        model_err(err, errlen,
                  "chaos: \"%s\" must be an integer from 0 to %ld, got %" JSON_INTEGER_FORMAT, key,
                  MODEL_CHAOS_MAX_MS, n);
    } else if (json_is_real(v)) {
        model_err(err, errlen, "chaos: \"%s\" must be an integer from 0 to %ld, got %.17g", key,
                  MODEL_CHAOS_MAX_MS, json_real_value(v));
    } else {
        model_err(err, errlen, "chaos: \"%s\" must be an integer from 0 to %ld, got %s", key,
                  MODEL_CHAOS_MAX_MS, model_json_kind(v));
    }
    return -EINVAL;
}

/*
 * Blocks for ms milliseconds. The wait is to an absolute CLOCK_MONOTONIC
 * deadline, so a caught signal (EINTR) just resumes it: re-sleeping a
 * relative remainder would drift by a rounding each time, and an item under
 * a steady stream of signals could never finish. A signal whose default
 * action ends the process still ends it.
 */
static void chaos_sleep(long ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    /* clock_nanosleep returns the error number rather than setting errno. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
        ;
}

/*
 * The leaked blocks of leak_kb, chained through their first word from a
 * static head: never freed (that is the point), yet still reachable, so
 * LeakSanitizer at the worker's exit does not report what the item asked
 * for. One process, one thread (the worker): no lock.
 */
static void *chaos_leaked;

/* Allocates kb KiB, writes every page (so they count as resident, as a real
 * leak's do) and keeps them for the life of the process. Returns 0 or
 * -ENOMEM. */
static int chaos_leak(long kb)
{
    size_t n = (size_t)kb * 1024;
    if (n < sizeof(void *))
        n = sizeof(void *);
    void **block = malloc(n);
    if (!block)
        return -ENOMEM;
    memset(block, 0xa5, n);
    *block = chaos_leaked;
    chaos_leaked = block;
    return 0;
}

/* What load() builds from the parameters; every worker inherits it over
 * fork (read-only). */
struct chaos_shared {
    char *init_fail; /* init() fails with this message; never NULL here */
};

/* Frees what chaos_load() built; NULL is fine (no parameters). */
static void chaos_unload(void *shared)
{
    struct chaos_shared *cs = shared;
    if (!cs)
        return;
    free(cs->init_fail);
    free(cs);
}

/*
 * Reads the parameters; the only one is init_fail=MESSAGE. Every key is
 * checked before anything is allocated, so a refused parameter list leaves
 * nothing behind. Returns 0 with *shared NULL (no parameters) or a new
 * struct chaos_shared that chaos_unload() frees; -EINVAL with a message
 * for an unknown key, a repeated one or an empty message; -ENOMEM.
 */
static int chaos_load(const struct model_params *params, const struct model_host *host, void **shared, char *err, size_t errlen)
{
    (void)host;
    if (shared)
        *shared = NULL;
    const char *init_fail = NULL;
    for (size_t i = 0; params && i < params->n; i++) {
        const char *key = params->keys[i], *value = params->values[i];
        if (strcmp(key, "init_fail") != 0) {
            model_err(err, errlen,
                      "model chaos has no parameter '%.64s' (its only one is init_fail=MESSAGE)",
                      key);
            return -EINVAL;
        }
        if (init_fail) {
            model_err(err, errlen, "model chaos: 'init_fail' given twice");
            return -EINVAL;
        }
        if (!value || !*value) {
            model_err(err, errlen, "model chaos: init_fail needs a non-empty message");
            return -EINVAL;
        }
        init_fail = value;
    }
    if (!init_fail)
        return 0;
    /* params is borrowed during load() only: keep a copy. */
    struct chaos_shared *cs = calloc(1, sizeof *cs);
    if (cs)
        cs->init_fail = strdup(init_fail);
    if (!cs || !cs->init_fail) {
        free(cs);
        model_err(err, errlen, "chaos: out of memory");
        return -ENOMEM;
    }
    if (shared)
        *shared = cs;
    else
        chaos_unload(cs);
    return 0;
}

/*
 * Fails with the init_fail message when load() was given one (every call,
 * in every worker: a model whose workers can never start); otherwise
 * succeeds. There is no per-worker state (*state is set to NULL).
 */
static int chaos_init(const void *shared, const struct model_host *host, void **state, char *err, size_t errlen)
{
    (void)host;
    const struct chaos_shared *cs = shared;
    if (state)
        *state = NULL;
    if (cs && cs->init_fail) {
        model_err(err, errlen, "%s", cs->init_fail);
        return -EIO;
    }
    return 0;
}

static int chaos_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    (void)state;
    enum chaos_action action = CHAOS_ECHO;
    const char *key;
    json_t *v;

    if (json_is_object(item)) {
        json_object_foreach((json_t *)item, key, v) {
            enum chaos_action a = chaos_action_of(key);
            if (a == CHAOS_ECHO)
                continue;
            if (action != CHAOS_ECHO) {
                model_err(err, errlen, "chaos: \"%s\" and \"%s\" cannot be combined",
                          chaos_keys[action], key);
                return -EINVAL;
            }
            action = a;
        }
    }
    if (action == CHAOS_ECHO) {
        /* jansson's reference count is the only mutable part of a json_t,
         * so handing the borrowed item back as a new reference is sound. */
        *output = json_incref((json_t *)item);
        return 0;
    }
    /* A control key makes the object an instruction: anything else in it is
     * most likely a typo, and acting on the rest would do something other
     * than what the tester meant. */
    json_object_foreach((json_t *)item, key, v) {
        if (chaos_action_of(key) == action)
            continue;
        if ((action == CHAOS_SLEEP || action == CHAOS_LEAK) && strcmp(key, "value") == 0)
            continue;
        model_err(err, errlen, "chaos: unexpected key \"%.*s\" beside \"%s\"",
                  model_utf8_prefix(key, 64), key, chaos_keys[action]);
        return -EINVAL;
    }

    v = json_object_get(item, chaos_keys[action]);
    json_t *out = NULL;
    long ms;
    switch (action) {
    case CHAOS_CRASH:
        return chaos_crash(v, err, errlen);
    case CHAOS_FAIL:
        if (!json_is_string(v) || json_string_length(v) == 0) {
            model_err(err, errlen, "chaos: \"fail\" must be a non-empty string, got %s",
                      json_is_string(v) ? "\"\"" : model_json_kind(v));
            return -EINVAL;
        }
        model_err(err, errlen, "%s", json_string_value(v));
        return -EIO;
    case CHAOS_HANG:
        if (chaos_millis("hang_ms", v, &ms, err, errlen) < 0)
            return -EINVAL;
        chaos_sleep(ms);
        out = json_pack("{s:I}", "hung_ms", (json_int_t)ms);
        break;
    case CHAOS_SLEEP: {
        if (chaos_millis("sleep_ms", v, &ms, err, errlen) < 0)
            return -EINVAL;
        json_t *value = json_object_get(item, "value");
        chaos_sleep(ms);
        out = value ? json_incref(value) : json_null();
        break;
    }
    case CHAOS_LEAK: {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > MODEL_CHAOS_MAX_LEAK_KB) {
            model_err(err, errlen, "chaos: \"leak_kb\" must be an integer from 0 to %ld, got %s",
                      MODEL_CHAOS_MAX_LEAK_KB,
                      json_is_integer(v) ? "one outside that range" : model_json_kind(v));
            return -EINVAL;
        }
        if (chaos_leak((long)json_integer_value(v)) != 0) {
            model_err(err, errlen, "chaos: out of memory leaking %" JSON_INTEGER_FORMAT " KiB",
                      json_integer_value(v));
            return -ENOMEM;
        }
        json_t *value = json_object_get(item, "value");
        out = value ? json_incref(value) : json_null();
        break;
    }
    case CHAOS_ECHO:
    case CHAOS_N_ACTIONS:
        break;
    }
    if (!out) {
        model_err(err, errlen, "chaos: out of memory");
        return -ENOMEM;
    }
    *output = out;
    return 0;
}

const struct model_ops model_chaos = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = MODEL_FLAG_NOT_DEFAULT,
    .name = "chaos",
    .description = "Fault injection for testing a deployment, never loaded unless named: "
                   "{\"crash\": \"segv\"|\"abort\"|\"exit\"} kills the worker, "
                   "{\"hang_ms\": N} blocks, {\"fail\": \"message\"} is an item error, "
                   "{\"sleep_ms\": N, \"value\": V} returns V after N ms; "
                   "{\"leak_kb\": N, \"value\": V} leaks N KiB for the life of the worker "
                   "and returns V; "
                   "anything else is echoed. "
                   "Parameter init_fail=MESSAGE: every worker's init fails with MESSAGE.",
    .load = chaos_load,
    .init = chaos_init,
    .run = chaos_run,
    .unload = chaos_unload,
};
