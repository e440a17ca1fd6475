/*
 * harness_proc.c: processes, spawning and the service under test (harness.h).
 */
#include "tests/integration/harness_int.h"


#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

extern char **environ;


/* --------------------------------------------------------------- processes */

/* Reads /proc/PID/stat: state and ppid. Returns 0 or -1. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    if (rp == NULL)
        return -1;
    char st = 0;
    int pp = 0;
    if (sscanf(rp + 1, " %c %d", &st, &pp) != 2)
        return -1;
    if (state)
        *state = st;
    if (ppid)
        *ppid = (pid_t)pp;
    return 0;
}

bool h_pid_alive(pid_t pid)
{
    char st;
    if (pid <= 0 || proc_stat(pid, &st, NULL) != 0)
        return false;
    return st != 'Z' && st != 'X';
}

pid_t h_pid_ppid(pid_t pid)
{
    pid_t pp;
    if (proc_stat(pid, NULL, &pp) != 0)
        return -1;
    return pp;
}

struct proc_ent {
    pid_t pid, ppid;
};

/* Snapshot of every live (non-zombie) process: new array, count in *n. */
static struct proc_ent *proc_snapshot(size_t *n)
{
    *n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return NULL;
    size_t cap = 256;
    struct proc_ent *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v != NULL && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        char st;
        pid_t pp;
        if (proc_stat(pid, &st, &pp) != 0 || st == 'Z' || st == 'X')
            continue;
        if (*n == cap) {
            cap *= 2;
            struct proc_ent *nv = realloc(v, cap * sizeof *v);
            if (nv == NULL) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[*n].pid = pid;
        v[*n].ppid = pp;
        (*n)++;
    }
    closedir(d);
    return v;
}

size_t h_children(pid_t parent, pid_t *out, size_t max)
{
    size_t n, found = 0;
    struct proc_ent *v = proc_snapshot(&n);
    for (size_t i = 0; v != NULL && i < n; i++) {
        if (v[i].ppid != parent)
            continue;
        if (found < max)
            out[found] = v[i].pid;
        found++;
    }
    free(v);
    return found;
}

size_t h_descendants(pid_t root, pid_t *out, size_t max)
{
    size_t n;
    struct proc_ent *v = proc_snapshot(&n);
    if (v == NULL)
        return 0;
    /* Breadth-first over the snapshot; queue holds found pids. */
    pid_t *queue = malloc((n + 1) * sizeof *queue);
    size_t qlen = 0;
    if (queue == NULL) {
        free(v);
        return 0;
    }
    queue[qlen++] = root;
    for (size_t head = 0; head < qlen && qlen <= n; head++) {
        for (size_t i = 0; i < n; i++) {
            if (v[i].ppid == queue[head] && v[i].pid != root)
                queue[qlen++] = v[i].pid;
            if (qlen > n)
                break;
        }
    }
    size_t found = qlen - 1;
    for (size_t i = 0; i < found && i < max; i++)
        out[i] = queue[i + 1];
    free(queue);
    free(v);
    return found;
}

/* --------------------------------------------------------------- spawning */

/* Builds the child's environment: ours minus BATCHD_*, plus extra.
 * New array of borrowed strings. */
static char **build_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (env == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "BATCHD_", 7) != 0)
            env[k++] = environ[i];
    for (size_t i = 0; i < m; i++)
        env[k++] = (char *)extra[i];
    env[k] = NULL;
    return env;
}

/*
 * fork + exec `argv` in a new process group, stdout to out_path and stderr
 * to err_path (both appended; err_path may equal out_path). Returns the pid
 * or -1.
 */
static pid_t spawn(char *const *argv, char *const *envp, const char *out_path,
                   const char *err_path, bool pdeathsig)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Child: async-signal-safe calls only until execve. */
        setpgid(0, 0);
        if (pdeathsig) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int err = strcmp(out_path, err_path) == 0
                      ? out
                      : open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    setpgid(pid, pid); /* also in the parent, so it holds before we signal the group */
    return pid;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Waits for pid up to timeout_ms. Returns 1 reaped (*st), 0 timeout, -1 error. */
static int wait_pid(pid_t pid, int *st, long timeout_ms)
{
    double deadline = h_now() + (double)timeout_ms / 1000.0;
    for (long i = 0; i < 1000000; i++) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (h_now() >= deadline)
            return 0;
        h_sleep_ms(i < 50 ? 10 : 25);
    }
    return 0;
}

int h_run(const char *const *argv, const char *const *env, int timeout_s, struct h_run_result *r)
{
    memset(r, 0, sizeof *r);
    static unsigned seq;
    char outp[400], errp[400];
    seq++;
    snprintf(outp, sizeof outp, "%s/run%u.out", h_tmpdir(), seq);
    snprintf(errp, sizeof errp, "%s/run%u.err", h_tmpdir(), seq);
    unlink(outp);
    unlink(errp);
    char **envp = build_env(env);
    pid_t pid = spawn((char *const *)argv, envp, outp, errp, true);
    free(envp);
    if (pid < 0) {
        printf("  harness: fork: %s\n", strerror(errno));
        return -1;
    }
    int st = 0;
    int w = wait_pid(pid, &st, (long)timeout_s * 1000);
    if (w == 0) {
        r->timed_out = true;
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        wait_pid(pid, &st, 10000);
        r->exit_code = -1;
    } else if (w < 0) {
        r->exit_code = -1;
    } else {
        r->exit_code = status_code(st);
    }
    r->out = read_file(outp, 64 * 1024, false, NULL);
    r->err = read_file(errp, 64 * 1024, false, NULL);
    if (r->out == NULL)
        r->out = strdup("");
    if (r->err == NULL)
        r->err = strdup("");
    unlink(outp);
    unlink(errp);
    return 0;
}

void h_run_result_free(struct h_run_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ----------------------------------------------------------------- service */

int h_service_read_port(const struct h_service *s)
{
    size_t len = 0;
    char *txt = read_file(s->port_file, 64, false, &len);
    if (txt == NULL)
        return -1;
    int port = -1;
    /* "decimal + newline": accept only a complete line */
    if (len > 1 && txt[len - 1] == '\n') {
        char *end;
        long v = strtol(txt, &end, 10);
        if (end == txt + len - 1 && v > 0 && v < 65536)
            port = (int)v;
    }
    free(txt);
    return port;
}

void h_service_log_tail(const struct h_service *s, int lines)
{
    size_t len = 0;
    char *txt = read_file(s->log_file, 64 * 1024, true, &len);
    if (txt == NULL) {
        fprintf(stderr, "  (no service log at %s)\n", s->log_file);
        return;
    }
    const char *p = txt + len;
    int seen = 0;
    while (p > txt) {
        p--;
        if (*p == '\n' && p != txt + len - 1 && ++seen >= lines) {
            p++;
            break;
        }
    }
    fprintf(stderr, "  ---- last lines of %s ----\n%s  ----\n", s->log_file, p);
    free(txt);
}

static int ready_timeout(const struct h_service_opts *o)
{
    if (o != NULL && o->ready_timeout_s > 0)
        return o->ready_timeout_s;
    const char *e = getenv("BATCHD_TEST_READY_TIMEOUT");
    if (e != NULL && atoi(e) > 0)
        return atoi(e);
    return 10;
}

/*
 * make test-pg: with BATCHD_TEST_PG set (a throw-away cluster's URI), each
 * data directory gets its own database on that server, named after the
 * directory and created on first use, and batchd is started with --store
 * naming it: a restart with the same directory finds its jobs again, and
 * two services never share a database (one engine per database). Writes
 * that URI into uri (empty when BATCHD_TEST_PG is unset).
 */
void h_pg_store_uri(const char *data_dir, char *uri, size_t len)
{
    uri[0] = '\0';
    const char *admin = getenv("BATCHD_TEST_PG");
    if (admin == NULL || admin[0] == '\0')
        return;
    unsigned long long h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = data_dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    char db[32];
    snprintf(db, sizeof db, "t_%016llx", h);
    const char *slash = strrchr(admin, '/');
    if (slash == NULL || slash - admin < 12)
        abort();
    snprintf(uri, len, "%.*s/%s", (int)(slash - admin), admin, db);
    PGconn *c = PQconnectdb(admin);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "BATCHD_TEST_PG: %s", PQerrorMessage(c));
        abort();
    }
    char sql[64];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    PGresult *r = PQexec(c, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && !(state && strcmp(state, "42P04") == 0)) {
        fprintf(stderr, "BATCHD_TEST_PG: %s", PQerrorMessage(c));
        abort();
    }
    PQclear(r);
    PQfinish(c);
}

/* Spawns $BATCHD_BIN for s (whose paths are set) listening on `listen`,
 * and waits for it as h_service_start describes. */
static int service_launch(struct h_service *s, const struct h_service_opts *opts,
                          const char *listen)
{
    char pg_uri[512];
    h_pg_store_uri(s->data_dir, pg_uri, sizeof pg_uri);
    const char *fixed[] = {batchd_bin, "--listen", listen, "--port-file", s->port_file,
                           "--data-dir", s->data_dir, "--store", pg_uri};
    size_t nfixed = sizeof fixed / sizeof fixed[0] - (pg_uri[0] ? 0 : 2), nextra = 0;
    while (opts != NULL && opts->args != NULL && opts->args[nextra] != NULL)
        nextra++;
    char **argv = calloc(nfixed + nextra + 1, sizeof *argv);
    if (argv == NULL)
        abort();
    for (size_t i = 0; i < nfixed; i++)
        argv[i] = (char *)fixed[i];
    for (size_t i = 0; i < nextra; i++)
        argv[nfixed + i] = (char *)opts->args[i];

    printf("  starting:");
    for (size_t i = 0; argv[i] != NULL; i++)
        printf(" %s", argv[i]);
    if (opts != NULL && opts->env != NULL)
        for (size_t i = 0; opts->env[i] != NULL; i++)
            printf(" [env %s]", opts->env[i]);
    printf("\n");

    char **envp = build_env(opts ? opts->env : NULL);
    s->pid = spawn(argv, envp, s->log_file, s->log_file, true);
    free(envp);
    free(argv);
    if (s->pid < 0) {
        s->pid = 0;
        CHECKF(false, "fork: %s", strerror(errno));
        return -1;
    }

    /* The port file, bounded; give up early if the service exited. */
    int limit = ready_timeout(opts);
    double deadline = h_now() + limit;
    for (int i = 0; i < 100000 && s->port <= 0; i++) {
        s->port = h_service_read_port(s);
        if (s->port > 0)
            break;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->reaped = true;
            s->wait_status = st;
            CHECKF(false, "batchd exited with status %d before writing the port file",
                   status_code(st));
            h_service_log_tail(s, 30);
            s->pid = 0;
            return -1;
        }
        if (h_now() > deadline) {
            CHECKF(false, "no port in %s within %d s", s->port_file, limit);
            h_service_log_tail(s, 30);
            h_service_abort(s);
            return -1;
        }
        h_sleep_ms(20);
    }
    printf("  batchd pid %d listening on 127.0.0.1:%d\n", (int)s->pid, s->port);
    if (opts != NULL && opts->no_ready_wait)
        return 0;

    long last_status = 0;
    for (int i = 0; i < 100000; i++) {
        struct h_resp r;
        struct h_req req = {.method = "GET", .path = "/readyz", .timeout_s = 5};
        if (h_request(s, &req, &r) == 0) {
            last_status = r.status;
            h_resp_free(&r);
            if (last_status == 200)
                return 0;
        } else {
            h_resp_free(&r);
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->reaped = true;
            s->wait_status = st;
            CHECKF(false, "batchd exited with status %d before /readyz said 200",
                   status_code(st));
            h_service_log_tail(s, 30);
            s->pid = 0;
            return -1;
        }
        if (h_now() > deadline)
            break;
        h_sleep_ms(50);
    }
    CHECKF(false, "GET /readyz did not answer 200 within %d s (last status %ld)", limit,
           last_status);
    h_service_log_tail(s, 30);
    h_service_abort(s);
    return -1;
}

int h_service_start(struct h_service *s, const struct h_service_opts *opts)
{
    memset(s, 0, sizeof *s);
    s->fail_mark = failures_total;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(s->tmpdir, sizeof s->tmpdir, "%s/batchd-svc.XXXXXX", base);
    if (mkdtemp(s->tmpdir) == NULL) {
        CHECKF(false, "mkdtemp %s: %s", s->tmpdir, strerror(errno));
        s->tmpdir[0] = '\0';
        return -1;
    }
    snprintf(s->port_file, sizeof s->port_file, "%s/port", s->tmpdir);
    snprintf(s->log_file, sizeof s->log_file, "%s/service.log", s->tmpdir);
    snprintf(s->data_dir, sizeof s->data_dir, "%s/data", s->tmpdir);
    return service_launch(s, opts, "127.0.0.1:0");
}

/* True when 127.0.0.1:port can be bound the way batchd binds it
 * (SO_REUSEADDR): nothing else listens there or holds it as a local port. */
static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: let batchd try */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int h_service_restart(struct h_service *s, const struct h_service_opts *opts)
{
    if (!CHECKF(s->tmpdir[0] != '\0' && s->port > 0, "restart of a service that never started"))
        return -1;
    if (!CHECKF(s->reaped || s->pid <= 0, "restart of batchd pid %d, which still runs",
                (int)s->pid))
        return -1;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    /* The port was free while no batchd ran: on a shared machine another
     * program may have taken it since (an ephemeral client port, another
     * test's listener). Then the restart takes a new port, noted. */
    for (int i = 0; i < 20 && !port_bindable(s->port); i++)
        h_sleep_ms(100);
    if (!port_bindable(s->port)) {
        h_note("port %d was taken by another program while batchd was down; restarting on "
               "a new port", s->port);
        snprintf(listen, sizeof listen, "127.0.0.1:0");
    }
    unlink(s->port_file); /* the new run writes it when it listens */
    s->pid = 0;
    s->port = 0;
    s->reaped = false;
    s->wait_status = 0;
    return service_launch(s, opts, listen);
}

int h_service_kill_group(struct h_service *s, int timeout_s)
{
    if (timeout_s <= 0)
        timeout_s = 10;
    if (!CHECKF(s->pid > 0 && !s->reaped, "no running batchd to kill"))
        return -1;
    pid_t desc[H_MAX_PIDS];
    size_t nd = h_descendants(s->pid, desc, H_MAX_PIDS);
    if (nd > H_MAX_PIDS)
        nd = H_MAX_PIDS;
    /* The group is the one spawn() made for the supervisor (pgid == its
     * pid); its children inherit it. Descendants are also signalled by
     * PID, in case one moved to a group of its own. */
    if (kill(-s->pid, SIGKILL) != 0)
        CHECKF(false, "kill(-%d, SIGKILL): %s", (int)s->pid, strerror(errno));
    for (size_t k = 0; k < nd; k++)
        if (h_pid_alive(desc[k]))
            kill(desc[k], SIGKILL);
    int code = h_service_wait_exit(s, timeout_s);
    if (!CHECKF(code == 128 + SIGKILL, "batchd (pid %d) after SIGKILL: status %d",
                (int)s->pid, code))
        return -1;
    size_t alive = nd;
    double deadline = h_now() + timeout_s;
    for (int i = 0; i < 100000 && alive > 0; i++) {
        alive = 0;
        for (size_t k = 0; k < nd; k++)
            alive += h_pid_alive(desc[k]);
        if (alive == 0 || h_now() > deadline)
            break;
        h_sleep_ms(10);
    }
    return CHECKF(alive == 0, "%zu process(es) of batchd alive %d s after SIGKILL", alive,
                  timeout_s)
               ? 0
               : -1;
}

int h_service_wait_exit(struct h_service *s, int timeout_s)
{
    if (s->reaped)
        return status_code(s->wait_status);
    if (s->pid <= 0)
        return -1;
    int st;
    int w = wait_pid(s->pid, &st, (long)timeout_s * 1000);
    if (w != 1)
        return -1;
    s->reaped = true;
    s->wait_status = st;
    return status_code(st);
}

/* SIGKILLs every still-alive pid of pids[0..n) (they are ours: descendants
 * of the service we started). Returns how many were alive. */
static size_t kill_leftovers(const pid_t *pids, size_t n)
{
    size_t alive = 0;
    for (size_t i = 0; i < n; i++) {
        if (h_pid_alive(pids[i])) {
            alive++;
            kill(pids[i], SIGKILL);
        }
    }
    return alive;
}

int h_service_stop(struct h_service *s, int timeout_s)
{
    return h_service_stop_sig(s, SIGTERM, timeout_s);
}

int h_service_stop_sig(struct h_service *s, int sig, int timeout_s)
{
    if (timeout_s <= 0)
        timeout_s = 15;
    if (s->reaped || s->pid <= 0)
        return s->reaped ? status_code(s->wait_status) : -1;
    pid_t desc[H_MAX_PIDS];
    size_t nd = h_descendants(s->pid, desc, H_MAX_PIDS);
    if (nd > H_MAX_PIDS)
        nd = H_MAX_PIDS;
    if (kill(s->pid, sig) != 0) {
        CHECKF(false, "kill(%d, %s): %s", (int)s->pid, strsignal(sig), strerror(errno));
    }
    int code = h_service_wait_exit(s, timeout_s);
    if (code < 0) {
        CHECKF(false, "batchd (pid %d) did not exit within %d s of %s; SIGKILLing its "
                      "process group", (int)s->pid, timeout_s, strsignal(sig));
        h_service_log_tail(s, 40);
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        code = h_service_wait_exit(s, 10);
        kill_leftovers(desc, nd);
        return -1;
    }
    CHECKF(code == 0, "batchd exited with status %d after %s (expected 0)", code, strsignal(sig));
    /* Children should be gone with the supervisor; allow a short grace for
     * ones that were re-parented and are dying of PDEATHSIG. */
    size_t alive = 0;
    for (int i = 0; i < 150; i++) {
        alive = 0;
        for (size_t k = 0; k < nd; k++)
            alive += h_pid_alive(desc[k]);
        if (alive == 0)
            break;
        h_sleep_ms(20);
    }
    if (alive > 0) {
        char list[512] = "";
        size_t off = 0;
        for (size_t k = 0; k < nd && off < sizeof list - 16; k++)
            if (h_pid_alive(desc[k]))
                off += (size_t)snprintf(list + off, sizeof list - off, " %d", (int)desc[k]);
        CHECKF(false, "%zu child process(es) of batchd still alive 3 s after it exited:%s",
               alive, list);
        kill_leftovers(desc, nd);
    }
    return code;
}

void h_service_abort(struct h_service *s)
{
    if (s->reaped || s->pid <= 0)
        return;
    pid_t desc[H_MAX_PIDS];
    size_t nd = h_descendants(s->pid, desc, H_MAX_PIDS);
    if (nd > H_MAX_PIDS)
        nd = H_MAX_PIDS;
    kill(s->pid, SIGTERM);
    if (h_service_wait_exit(s, 10) < 0) {
        CHECKF(false, "batchd (pid %d) ignored SIGTERM for 10 s; SIGKILLing its process group",
               (int)s->pid);
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        h_service_wait_exit(s, 10);
    }
    for (int i = 0; i < 100; i++) {
        size_t alive = 0;
        for (size_t k = 0; k < nd; k++)
            alive += h_pid_alive(desc[k]);
        if (alive == 0)
            break;
        h_sleep_ms(20);
    }
    kill_leftovers(desc, nd);
}

/* Fails a check for every sanitizer report in the service's log: a worker
 * that dies of one would otherwise look like a crash that was retried. */
static void scan_log_for_sanitizers(const struct h_service *s)
{
    size_t len = 0;
    char *txt = read_file(s->log_file, (size_t)64 << 20, true, &len);
    if (txt == NULL)
        return;
    static const char *const markers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                          "runtime error:", "WARNING: ThreadSanitizer"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++) {
        const char *hit = strstr(txt, markers[i]);
        if (hit == NULL)
            continue;
        const char *eol = strchr(hit, '\n');
        CHECKF(false, "the service log has a sanitizer report: %.*s", (int)(eol ? eol - hit : 200),
               hit);
        h_service_log_tail(s, 60);
    }
    free(txt);
}

void h_service_cleanup(struct h_service *s)
{
    if (s->pid > 0 && !s->reaped)
        h_service_abort(s);
    if (s->tmpdir[0] != '\0')
        scan_log_for_sanitizers(s);
    if (s->curl != NULL) {
        curl_easy_cleanup(s->curl);
        s->curl = NULL;
    }
    if (failures_total > s->fail_mark && s->tmpdir[0] != '\0')
        h_service_log_tail(s, 25);
    if (s->tmpdir[0] != '\0')
        remove_tree(s->tmpdir);
    s->tmpdir[0] = '\0';
}

pid_t h_service_api_pid(const struct h_service *s)
{
    static const char mark[] = "api process started, pid ";
    FILE *f = fopen(s->log_file, "r");
    char line[4096];
    pid_t pid = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, mark);
        if (p)
            pid = (pid_t)atoi(p + strlen(mark));
    }
    if (f)
        fclose(f);
    return pid;
}

long h_proc_status(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    size_t flen = strlen(field);
    long v = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    if (f)
        fclose(f);
    return v;
}
