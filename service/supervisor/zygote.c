/*
 * zygote.c: start and talk to a coprocess model's host (zygote.h says what
 * it is for; docs/coprocess.md is the protocol).
 */
#include "service/supervisor/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "service/ring/shm.h"

#define ZYGOTE_HOST_FD 3
#define ZYGOTE_OBJECTS_FD 4

static const struct {
    const char *runtime, *file, *interpreter;
} zygote_runtimes[] = {
    { "python", "batchd_host.py", "python3" },
    { "node", "batchd_host.js", "node" },
};

static int zygote_runtime(const char *runtime)
{
    for (size_t i = 0; i < sizeof zygote_runtimes / sizeof *zygote_runtimes; i++)
        if (strcmp(zygote_runtimes[i].runtime, runtime) == 0)
            return (int)i;
    return -1;
}

int zygote_find_host(const char *runtime, char *buf, size_t len, char *err, size_t errlen)
{
    int r = zygote_runtime(runtime);
    if (r < 0) {
        snprintf(err, errlen, "no host for the runtime '%s' (python, node)", runtime);
        return -EINVAL;
    }
    const char *file = zygote_runtimes[r].file;
    const char *env = getenv("BATCHD_HOSTS_DIR");
    if (env && *env) {
        snprintf(buf, len, "%s/%s", env, file);
        if (access(buf, R_OK) == 0)
            return 0;
        snprintf(err, errlen, "%s: not found (BATCHD_HOSTS_DIR=%s)", file, env);
        return -ENOENT;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(err, errlen, "cannot find batchd's own path to look for %s", file);
        return -ENOENT;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(buf, len, "%s/hosts/%s", exe, file);
    if (access(buf, R_OK) == 0)
        return 0;
    snprintf(buf, len, "%s/../share/batchd/hosts/%s", exe, file);
    if (access(buf, R_OK) == 0)
        return 0;
    snprintf(err, errlen,
             "%s not found in %s/hosts/ nor %s/../share/batchd/hosts/ (set BATCHD_HOSTS_DIR)",
             file, exe, exe);
    return -ENOENT;
}

/* The host's one argument: everything it needs, as JSON. New string. */
static char *zygote_config_json(const struct config_model *m, uint64_t objects_size)
{
    json_t *params = json_object();
    for (size_t i = 0; i < m->n_params; i++)
        json_object_set_new(params, m->keys[i], json_string(m->values[i]));
    json_t *cfg = json_pack("{s:s, s:s, s:o, s:i, s:i, s:I, s:i}", "name", m->name, "module",
                            m->module, "params", params, "control_fd", ZYGOTE_HOST_FD,
                            "objects_fd", objects_size ? ZYGOTE_OBJECTS_FD : -1,
                            "objects_size", (json_int_t)objects_size, "workers",
                            (int)m->workers);
    char *s = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    return s;
}

/* In the forked child: never returns. Only async-signal-safe calls and
 * the exec (the supervisor has one thread, so the rest is safe too, but
 * nothing here allocates). */
__attribute__((noreturn)) static void zygote_exec(const char *interp, char *const argv[],
                                                  int host_fd, int objects_fd,
                                                  const sigset_t *orig_mask, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(2);
    prctl(PR_SET_NAME, "batchd-host", 0, 0, 0);
    /* Move the two fds out of the way, then to 3 and 4. */
    int h = fcntl(host_fd, F_DUPFD, 10);
    int o = objects_fd >= 0 ? fcntl(objects_fd, F_DUPFD, 10) : -1;
    if (h < 0 || dup2(h, ZYGOTE_HOST_FD) < 0)
        _exit(2);
    if (o >= 0 && dup2(o, ZYGOTE_OBJECTS_FD) < 0)
        _exit(2);
    if (o < 0)
        close(ZYGOTE_OBJECTS_FD);
    /* dup2 clears FD_CLOEXEC on 3 and 4; everything else goes. */
    close_range(ZYGOTE_OBJECTS_FD + 1, ~0u, 0);
    /* BLAS libraries start thread pools at import: one thread each, unless
     * the user chose otherwise, so that the host can fork. */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    setenv("OMP_NUM_THREADS", "1", 0);
    setenv("MKL_NUM_THREADS", "1", 0);
    setenv("PYTHONUNBUFFERED", "1", 0);
    sigprocmask(SIG_SETMASK, orig_mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(interp, argv);
    /* Say why on the control socket: the supervisor reads it as ERROR. */
    char msg[300];
    int n = snprintf(msg, sizeof msg, "cannot run the interpreter '%s': %s", interp,
                     strerror(errno));
    if (n > 0 && (size_t)n < sizeof msg)
        coproc_send(ZYGOTE_HOST_FD, COPROC_ERROR, msg, (uint32_t)n, -1);
    _exit(2);
}

int zygote_start(struct zygote *z, int objects_fd, uint64_t objects_size,
                 const sigset_t *orig_mask, char *err, size_t errlen)
{
    const struct config_model *m = z->m;
    char script[PATH_MAX];
    int rc = zygote_find_host(m->runtime, script, sizeof script, err, errlen);
    if (rc)
        return rc;
    const char *interp = m->interpreter ? m->interpreter
                                        : zygote_runtimes[zygote_runtime(m->runtime)].interpreter;
    char *cfg = zygote_config_json(m, objects_fd >= 0 ? objects_size : 0);
    if (!cfg) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = -errno;
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        free(cfg);
        return rc;
    }
    char *argv[] = { (char *)interp, script, cfg, NULL };
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        free(cfg);
        return rc;
    }
    if (pid == 0)
        zygote_exec(interp, argv, sv[1], objects_fd, orig_mask, parent);
    close(sv[1]);
    free(cfg);
    z->pid = pid;
    z->ctl = sv[0];
    coproc_reader_init(&z->rd, z->ctl, 1u << 20);
    z->state = ZYGOTE_LOADING;
    z->started_ns = shm_now_mono_ns();
    z->description[0] = '\0';
    return 0;
}

/* Copies an ERROR frame's message into err, NUL-free. */
static void zygote_message(const struct coproc_frame *f, char *err, size_t errlen)
{
    size_t n = f->len < errlen ? f->len : errlen - 1;
    memcpy(err, f->data, n);
    err[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (err[i] == '\0')
            err[i] = ' ';
}

int zygote_wait_loaded(struct zygote *z, int timeout_ms, char *err, size_t errlen)
{
    if (z->state != ZYGOTE_LOADING || z->ctl < 0) {
        snprintf(err, errlen, "the host is not loading");
        return -EPIPE;
    }
    struct coproc_frame f;
    int rc = coproc_read(&z->rd, &f, timeout_ms);
    if (rc == -ETIMEDOUT)
        return -EAGAIN;
    if (rc == -EPIPE) {
        snprintf(err, errlen, "the host exited before load() finished");
        return -EPIPE;
    }
    if (rc) {
        snprintf(err, errlen, "reading the host's answer: %s", strerror(-rc));
        return -EPROTO;
    }
    if (f.type == COPROC_ERROR) {
        zygote_message(&f, err, errlen);
        return -EIO;
    }
    if (f.type != COPROC_LOADED) {
        snprintf(err, errlen, "the host answered a frame of type %u instead of LOADED", f.type);
        return -EPROTO;
    }
    json_t *info = json_loadb((const char *)f.data, f.len, 0, NULL);
    const char *desc = json_string_value(json_object_get(info, "description"));
    snprintf(z->description, sizeof z->description, "%s", desc ? desc : "");
    const char *acc = json_string_value(json_object_get(info, "accept"));
    z->accept[0] = '\0';
    if (acc && strlen(acc) < sizeof z->accept && acc[0] == '/')
        snprintf(z->accept, sizeof z->accept, "%s", acc);
    /* a stateful module (acc_run, acc_export, reduce): the engine drives
     * its jobs with exports and a reduce (docs/coprocess.md) */
    z->stateful = json_is_true(json_object_get(info, "stateful"));
    json_decref(info);
    z->load_ns = shm_now_mono_ns() - z->started_ns;
    z->state = ZYGOTE_READY;
    return 0;
}

int zygote_fork_child(struct zygote *z, uint32_t w, int timeout_ms, int *worker_fd, pid_t *child,
                      char *err, size_t errlen)
{
    if (z->state != ZYGOTE_READY) {
        snprintf(err, errlen, "the host is not ready");
        return -ENOTCONN;
    }
    int sv[2];
    if (z->accept[0]) {
        /* A host that cannot receive an fd (Node.js) listens: this
         * connection is the child's socket; the host takes it on FORK. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", z->accept);
        sv[0] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&sa, sizeof sa) != 0) {
            int rc = -errno;
            snprintf(err, errlen, "cannot connect to the host's socket %s: %s", z->accept,
                     strerror(errno));
            if (sv[0] >= 0)
                close(sv[0]);
            return rc;
        }
        sv[1] = -1;
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        int rc = -errno;
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return rc;
    }
    uint8_t payload[4];
    coproc_le32_put(payload, w);
    int rc = coproc_send(z->ctl, COPROC_FORK, payload, sizeof payload, sv[1]);
    if (sv[1] >= 0)
        close(sv[1]); /* the host has its own copy now */
    if (rc) {
        snprintf(err, errlen, "cannot send FORK to the host: %s", strerror(-rc));
        close(sv[0]);
        return rc;
    }
    struct coproc_frame f;
    rc = coproc_read(&z->rd, &f, timeout_ms);
    uint32_t who = 0, pid = 0;
    if (rc == 0 && (f.type != COPROC_FORKED || coproc_u32x2_parse(&f, &who, &pid) != 0 ||
                    who != w || pid == 0 || pid > INT_MAX))
        rc = -EPROTO;
    if (rc) {
        snprintf(err, errlen, "no FORKED answer from the host: %s", strerror(-rc));
        close(sv[0]);
        return rc;
    }
    *worker_fd = sv[0];
    *child = (pid_t)pid;
    return 0;
}

void zygote_close(struct zygote *z)
{
    if (z->ctl >= 0)
        close(z->ctl);
    z->ctl = -1;
    coproc_reader_free(&z->rd);
    z->state = ZYGOTE_DOWN;
}
