/*
 * process.c: child set-up and wait-status descriptions (process.h).
 */
#include "service/core/process.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

void proc_child_setup(const char *name, pid_t parent)
{
    prctl(PR_SET_NAME, name, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(PROC_EXIT_FATAL);
}

void proc_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(buf, len, "signal %d (SIG%s)", WTERMSIG(status), abbrev ? abbrev : "?");
    } else {
        snprintf(buf, len, "status 0x%x", (unsigned)status);
    }
}
