/*
 * respawn.c: exit classes and back-off (respawn.h).
 */
#include "service/supervisor/respawn.h"

#include <sys/wait.h>

#include "service/core/process.h"

enum sup_exit_class sup_classify(enum sup_child_kind kind, int status)
{
    if (!WIFEXITED(status))
        return SUP_EXITED_CRASH;
    int code = WEXITSTATUS(status);
    if (code == 0)
        return SUP_EXITED_ORDERLY;
    if (code == PROC_EXIT_FATAL)
        return SUP_EXITED_FATAL;
    if (kind == SUP_CHILD_WORKER && code == WORKER_EXIT_INIT)
        return SUP_EXITED_INIT;
    if (kind == SUP_CHILD_WORKER && code == WORKER_EXIT_RECYCLE)
        return SUP_EXITED_RECYCLED;
    return SUP_EXITED_CRASH;
}

const char *sup_exit_class_name(enum sup_exit_class c)
{
    static const char *const names[] = { "orderly", "fatal", "init failed", "crash", "recycled" };
    return (unsigned)c < sizeof names / sizeof names[0] ? names[c] : "?";
}

void sup_count_failure(struct sup_child *c, bool failed, uint64_t now_ms)
{
    if (!failed || now_ms - c->started_ms > SUP_STABLE_MS)
        c->failures = failed ? 1 : 0;
    else
        c->failures++;
}

uint64_t sup_backoff(const struct sup_child *c)
{
    uint64_t ms = SUP_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < c->failures && ms < SUP_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < SUP_BACKOFF_MAX_MS ? ms : SUP_BACKOFF_MAX_MS;
}
