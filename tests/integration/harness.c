/*
 * harness.c: see harness.h for what this is and the rules it keeps.
 *
 * Implementation notes:
 * - The service is started with fork + execve. Between the two the child
 *   only makes async-signal-safe calls (setpgid, prctl, sigprocmask,
 *   signal, open, dup2): argv and envp are built before fork. The child gets
 *   PR_SET_PDEATHSIG(SIGTERM) so that a test program killed by its timeout
 *   does not leave a service behind.
 * - Processes are listed from /proc/PID/stat; the command name (field 2) may
 *   hold spaces and parentheses, so fields are read after the last ')'.
 * - One CURL easy handle per service, reset between requests, so that
 *   keep-alive connections are reused (curl_easy_reset keeps them).
 */
#include "tests/integration/harness.h"

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

extern char **environ;

#define H_DEFAULT_TIMEOUT_S 30L
#define H_MAX_BODY ((size_t)512 << 20)
#define H_MAX_PIDS 4096

/* ------------------------------------------------------------------ runner */

static const char *cur_test;     /* name of the running test, or NULL */
static unsigned cur_failures;    /* failed checks in the running test */
static bool cur_skipped;
static char cur_skip_reason[512];
static unsigned n_passed, n_failed, n_skipped;
static unsigned failures_total;
static const char *batchd_bin;
static char prog_tmpdir[256];

int h_init(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        printf("harness: curl_global_init failed\n");
        return -1;
    }
    batchd_bin = getenv("BATCHD_BIN");
    if (batchd_bin == NULL || batchd_bin[0] != '/') {
        printf("harness: BATCHD_BIN must be the absolute path of the batchd binary "
               "(run through `make integration`)\n");
        return -1;
    }
    if (access(batchd_bin, X_OK) != 0) {
        printf("harness: BATCHD_BIN=%s is not executable: %s\n", batchd_bin, strerror(errno));
        return -1;
    }
    return 0;
}

static void test_begin(const char *name)
{
    cur_test = name;
    cur_failures = 0;
    cur_skipped = false;
    cur_skip_reason[0] = '\0';
    printf("# %s\n", name);
}

static void test_end(void)
{
    if (cur_failures > 0) {
        n_failed++;
        printf("FAIL - %s (%u failed check%s)\n", cur_test, cur_failures,
               cur_failures == 1 ? "" : "s");
    } else if (cur_skipped) {
        n_skipped++;
        printf("SKIP - %s: %s\n", cur_test, cur_skip_reason);
    } else {
        n_passed++;
        printf("ok - %s\n", cur_test);
    }
    cur_test = NULL;
}

void h_run_tests(const struct h_test *tests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h_run_one(tests[i].name, tests[i].fn);
}

void h_run_one(const char *name, void (*fn)(void))
{
    test_begin(name);
    fn();
    test_end();
}

void h_fail_test(const char *name, const char *why)
{
    n_failed++;
    failures_total++;
    printf("FAIL - %s (not run: %s)\n", name, why);
}

static int remove_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0] == '\0')
        return;
    if (getenv("BATCHD_KEEP_TMP") != NULL) {
        printf("# kept %s (BATCHD_KEEP_TMP)\n", dir);
        return;
    }
    nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int h_finish(void)
{
    if (prog_tmpdir[0] != '\0')
        remove_tree(prog_tmpdir);
    curl_global_cleanup();
    printf("%u passed, %u failed, %u skipped\n", n_passed, n_failed, n_skipped);
    fflush(stdout);
    return n_failed > 0 ? 1 : 0;
}

void h_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cur_skip_reason, sizeof cur_skip_reason, fmt, ap);
    va_end(ap);
    cur_skipped = true;
    printf("  SKIP: %s\n", cur_skip_reason);
}

unsigned h_failures_total(void)
{
    return failures_total;
}

void h_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("  note: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

/* ------------------------------------------------------------------ checks */

static void count_failure(void)
{
    failures_total++;
    if (cur_test != NULL)
        cur_failures++;
    else
        n_failed++; /* a check outside any test counts as a failed test of its own */
}

bool h_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (ok)
        return true;
    count_failure();
    printf("  FAIL %s:%d: %s", file, line, expr);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        fputs(" -- ", stdout);
        vprintf(fmt, ap);
        va_end(ap);
    }
    fputc('\n', stdout);
    return false;
}

bool h_check_int(long long a, long long b, const char *file, int line, const char *ea,
                 const char *eb)
{
    if (a == b)
        return true;
    count_failure();
    printf("  FAIL %s:%d: %s == %s -- got %lld, expected %lld\n", file, line, ea, eb, a, b);
    return false;
}

bool h_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
                 const char *eb)
{
    if (a != NULL && b != NULL && strcmp(a, b) == 0)
        return true;
    count_failure();
    printf("  FAIL %s:%d: %s == %s -- got \"%s\", expected \"%s\"\n", file, line, ea, eb,
           a ? a : "(null)", b ? b : "(null)");
    return false;
}

/* ------------------------------------------------------------------- misc */

double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void h_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void h_buf_add(struct h_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "harness: out of memory (%zu bytes)\n", cap);
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void h_buf_printf(struct h_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        h_buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h_buf_add(b, big, (size_t)n);
    free(big);
}

void h_buf_free(struct h_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

const char *h_tmpdir(void)
{
    if (prog_tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        if (base == NULL || base[0] == '\0')
            base = "/tmp";
        snprintf(prog_tmpdir, sizeof prog_tmpdir, "%s/batchd-itest.XXXXXX", base);
        if (mkdtemp(prog_tmpdir) == NULL) {
            fprintf(stderr, "harness: mkdtemp %s: %s\n", prog_tmpdir, strerror(errno));
            abort();
        }
    }
    return prog_tmpdir;
}

/* Reads a whole small file into a new NUL-terminated buffer (at most cap
 * bytes kept; the tail is kept when keep_tail). NULL if it cannot be read. */
static char *read_file(const char *path, size_t cap, bool keep_tail, size_t *lenp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    off_t start = 0;
    if (size > cap) {
        if (keep_tail)
            start = (off_t)(size - cap);
        size = cap;
    }
    char *buf = malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, buf + got, size - got, start + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    if (lenp)
        *lenp = got;
    return buf;
}

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

/* Spawns $BATCHD_BIN for s (whose paths are set) listening on `listen`,
 * and waits for it as h_service_start describes. */
static int service_launch(struct h_service *s, const struct h_service_opts *opts,
                          const char *listen)
{
    const char *fixed[] = {batchd_bin, "--listen", listen, "--port-file", s->port_file,
                           "--data-dir", s->data_dir};
    size_t nfixed = sizeof fixed / sizeof fixed[0], nextra = 0;
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

/* ---------------------------------------------------------------- requests */

struct body_sink {
    struct h_resp *resp;
    size_t cap;
    bool overflow;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body_sink *bs = arg;
    struct h_resp *r = bs->resp;
    size_t n = size * nmemb;
    if (r->len + n + 1 > H_MAX_BODY) {
        bs->overflow = true;
        return 0;
    }
    if (r->len + n + 1 > bs->cap) {
        size_t cap = bs->cap ? bs->cap : 16384;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (p == NULL) {
            bs->overflow = true;
            return 0;
        }
        r->body = p;
        bs->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static void free_headers(struct h_resp *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct h_resp *r = arg;
    size_t n = size * nmemb;
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        free_headers(r); /* a new response (e.g. after 100 Continue) */
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL)
        return n;
    const char *v = colon + 1;
    while (v < data + len && (*v == ' ' || *v == '\t'))
        v++;
    struct h_header *nh = realloc(r->headers, (r->n_headers + 1) * sizeof *nh);
    if (nh == NULL)
        return 0;
    r->headers = nh;
    r->headers[r->n_headers].name = strndup(data, (size_t)(colon - data));
    r->headers[r->n_headers].value = strndup(v, (size_t)(data + len - v));
    r->n_headers++;
    return n;
}

struct upload {
    const char *p;
    size_t left;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upload *u = arg;
    size_t n = size * nitems;
    if (n > u->left)
        n = u->left;
    if (n > 65536)
        n = 65536; /* several chunks for a chunked upload */
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

/* Appends one JSON line describing the response to $BATCHD_CONTRACT_LOG. */
static void contract_log(const struct h_req *req, const struct h_resp *r)
{
    const char *file = getenv("BATCHD_CONTRACT_LOG");
    if (file == NULL || file[0] == '\0')
        return;
    const char *q = strchr(req->path, '?');
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(req->method));
    json_object_set_new(o, "path", q ? json_stringn(req->path, (size_t)(q - req->path))
                                     : json_string(req->path));
    json_object_set_new(o, "query", q ? json_string(q + 1) : json_null());
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "content_type",
                        r->content_type ? json_string(r->content_type) : json_null());
    json_t *h = json_object();
    static const char *const names[] = {"Location", "ETag", "Allow", "Retry-After",
                                        "X-Request-Id"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = h_resp_header(r, names[i]);
        if (v == NULL)
            continue;
        char lower[32];
        size_t k = 0;
        for (; names[i][k] != '\0' && k < sizeof lower - 1; k++)
            lower[k] = (char)tolower((unsigned char)names[i][k]);
        lower[k] = '\0';
        json_t *js = json_string(v);
        json_object_set_new(h, lower, js ? js : json_string("(not valid UTF-8)"));
    }
    json_object_set_new(o, "headers", h);
    if (r->status == 304 || strcmp(req->method, "HEAD") == 0) {
        json_object_set_new(o, "body", json_null());
    } else if (h_resp_is(r, "application/octet-stream") || h_resp_is(r, "application/x-npy")) {
        /* bytes, not text (an object's download): the schema says binary,
         * and the test itself compares them; only the length is logged */
        json_object_set_new(o, "body", json_null());
        json_object_set_new(o, "body_length", json_integer((json_int_t)r->len));
    } else {
        json_t *b = json_stringn(r->body ? r->body : "", r->len);
        if (b == NULL) {
            json_object_set_new(o, "body", json_null());
            json_object_set_new(o, "body_error", json_string("the body is not valid UTF-8"));
        } else {
            json_object_set_new(o, "body", b);
        }
    }
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (line == NULL)
        return;
    FILE *f = fopen(file, "a");
    if (f != NULL) {
        fputs(line, f);
        fputc('\n', f);
        fclose(f);
    } else {
        printf("  harness: cannot append to %s: %s\n", file, strerror(errno));
    }
    free(line);
}

void h_contract_record(const struct h_req *req, const struct h_resp *resp)
{
    contract_log(req, resp);
}

/* Everything one transfer needs while it runs (it must not move). */
struct xfer {
    CURL *easy;
    const struct h_req *req;
    struct h_resp *resp;
    char url[2048];
    char errbuf[CURL_ERROR_SIZE];
    struct body_sink sink;
    struct upload up;
    struct curl_slist *hdrs;
    bool done;
    CURLcode rc;
};

/* Sets up x->easy (already created or reset) for x->req. */
static void xfer_setup(struct xfer *x, const struct h_service *s)
{
    const struct h_req *req = x->req;
    CURL *c = x->easy;
    memset(x->resp, 0, sizeof *x->resp);
    snprintf(x->url, sizeof x->url, "http://127.0.0.1:%d%s", s->port, req->path);
    x->errbuf[0] = '\0';
    x->sink = (struct body_sink){.resp = x->resp};
    x->up = (struct upload){.p = req->body, .left = req->body ? req->body_len : 0};
    x->hdrs = NULL;
    x->done = false;
    x->rc = CURLE_OK;
    for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
        x->hdrs = curl_slist_append(x->hdrs, req->headers[i]);
    if (req->chunked)
        x->hdrs = curl_slist_append(x->hdrs, "Transfer-Encoding: chunked");

    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* never through a proxy from the environment */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, req->timeout_s > 0 ? req->timeout_s : H_DEFAULT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x->resp);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);

    const char *m = req->method;
    if (strcmp(m, "GET") == 0 && req->body == NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(m, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
        if (req->body != NULL || strcmp(m, "POST") == 0) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            if (req->chunked) {
                curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(c, CURLOPT_READDATA, &x->up);
            } else {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t)(req->body ? req->body_len : 0));
            }
        }
    }
    if (x->hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
}

/* Fills x->resp after the transfer ended with x->rc; logs the response.
 * Returns 0 when a response was received, -1 otherwise. */
static int xfer_finish(struct xfer *x)
{
    struct h_resp *resp = x->resp;
    const struct h_req *req = x->req;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (resp->body == NULL) {
        resp->body = strdup("");
        resp->len = 0;
    }
    if (x->rc != CURLE_OK) {
        snprintf(resp->error, sizeof resp->error, "%s %.300s: %s%s%.200s (status %ld)", req->method,
                 req->path, curl_easy_strerror(x->rc), x->errbuf[0] ? ": " : "", x->errbuf, status);
        if (x->sink.overflow)
            snprintf(resp->error, sizeof resp->error, "%s %s: response body over %zu bytes",
                     req->method, req->path, H_MAX_BODY);
        resp->status = 0;
        return -1;
    }
    resp->status = status;
    char *ct = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    resp->content_type = ct ? strdup(ct) : NULL;
    contract_log(req, resp);
    return 0;
}

int h_request(struct h_service *s, const struct h_req *req, struct h_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    if (s->curl == NULL)
        s->curl = curl_easy_init();
    if (s->curl == NULL) {
        snprintf(resp->error, sizeof resp->error, "curl_easy_init failed");
        return -1;
    }
    curl_easy_reset(s->curl);
    struct xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        abort();
    x->easy = s->curl;
    x->req = req;
    x->resp = resp;
    xfer_setup(x, s);
    x->rc = curl_easy_perform(s->curl);
    int rc = xfer_finish(x);
    free(x);
    return rc;
}

/* ------------------------------------------------------ concurrent requests */

struct h_multi {
    struct h_service *svc;
    CURLM *multi;
    struct xfer *x[H_MULTI_MAX];
    size_t n;
    size_t running;
};

struct h_multi *h_multi_new(struct h_service *s)
{
    struct h_multi *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    m->svc = s;
    m->multi = curl_multi_init();
    if (m->multi == NULL)
        abort();
    return m;
}

int h_multi_add(struct h_multi *m, const struct h_req *req, struct h_resp *resp)
{
    if (m->n >= H_MULTI_MAX)
        return -1;
    struct xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        abort();
    x->easy = curl_easy_init();
    if (x->easy == NULL)
        abort();
    x->req = req;
    x->resp = resp;
    xfer_setup(x, m->svc);
    /* One connection each: the point is to be concurrent. */
    curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(x->easy, CURLOPT_FORBID_REUSE, 1L);
    curl_multi_add_handle(m->multi, x->easy);
    m->x[m->n++] = x;
    m->running++;
    return (int)(m->n - 1);
}

/* Collects finished transfers. */
static void multi_reap(struct h_multi *m)
{
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (size_t i = 0; i < m->n; i++) {
            struct xfer *x = m->x[i];
            if (x->easy == msg->easy_handle && !x->done) {
                x->done = true;
                x->rc = msg->data.result;
                curl_multi_remove_handle(m->multi, x->easy);
                xfer_finish(x);
                m->running--;
            }
        }
    }
}

static bool all_started(const struct h_multi *m)
{
    for (size_t i = 0; i < m->n; i++) {
        long code = 0;
        if (!m->x[i]->done) {
            curl_easy_getinfo(m->x[i]->easy, CURLINFO_RESPONSE_CODE, &code);
            if (code == 0)
                return false;
        }
    }
    return true;
}

size_t h_multi_run(struct h_multi *m, int timeout_s, bool until_started)
{
    double deadline = h_now() + timeout_s;
    for (long i = 0; i < 10000000 && m->running > 0; i++) {
        int still = 0;
        curl_multi_perform(m->multi, &still);
        multi_reap(m);
        if (m->running == 0 || (until_started && all_started(m)) || h_now() > deadline)
            break;
        int numfds = 0;
        curl_multi_poll(m->multi, NULL, 0, 50, &numfds);
    }
    return m->running;
}

void h_multi_free(struct h_multi *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        struct xfer *x = m->x[i];
        if (!x->done) {
            curl_multi_remove_handle(m->multi, x->easy);
            x->rc = CURLE_OPERATION_TIMEDOUT;
            xfer_finish(x);
        }
        curl_easy_cleanup(x->easy);
        free(x);
    }
    curl_multi_cleanup(m->multi);
    free(m);
}

int h_get(struct h_service *s, const char *path, struct h_resp *resp)
{
    struct h_req req = {.method = "GET", .path = path};
    return h_request(s, &req, resp);
}

int h_get_hdr(struct h_service *s, const char *path, const char *const *headers,
              struct h_resp *resp)
{
    struct h_req req = {.method = "GET", .path = path, .headers = headers};
    return h_request(s, &req, resp);
}

int h_post(struct h_service *s, const char *path, const char *content_type, const char *body,
           struct h_resp *resp)
{
    char ct[256];
    if (content_type != NULL)
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    else
        snprintf(ct, sizeof ct, "Content-Type:"); /* no Content-Type at all */
    const char *hdrs[] = {ct, NULL};
    struct h_req req = {.method = "POST", .path = path, .headers = hdrs, .body = body,
                        .body_len = body ? strlen(body) : 0};
    return h_request(s, &req, resp);
}

int h_delete(struct h_service *s, const char *path, struct h_resp *resp)
{
    struct h_req req = {.method = "DELETE", .path = path};
    return h_request(s, &req, resp);
}

void h_resp_free(struct h_resp *resp)
{
    free(resp->body);
    free(resp->content_type);
    free_headers(resp);
    json_decref(resp->json);
    memset(resp, 0, sizeof *resp);
}

const char *h_resp_header(const struct h_resp *resp, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            v = resp->headers[i].value;
    return v;
}

bool h_resp_is(const struct h_resp *resp, const char *essence)
{
    const char *ct = resp->content_type;
    if (ct == NULL)
        return false;
    size_t n = strlen(essence);
    if (strncasecmp(ct, essence, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* --------------------------------------------------------------------- JSON */

json_t *h_json_loads(const char *text, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (j == NULL)
        h_note("not JSON (%s at line %d column %d): %.200s", e.text, e.line, e.column, text);
    return j;
}

json_t *h_json(struct h_resp *resp)
{
    if (resp->json == NULL && resp->body != NULL)
        resp->json = h_json_loads(resp->body, resp->len);
    return resp->json;
}

json_t *h_jget(const json_t *root, const char *path)
{
    const json_t *cur = root;
    const char *p = path;
    for (int depth = 0; cur != NULL && *p != '\0' && depth < 64; depth++) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char key[128];
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, key);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(key, &end, 10);
            cur = (*end == '\0' && n > 0) ? json_array_get(cur, idx) : NULL;
        } else {
            return NULL;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    return (json_t *)cur;
}

bool h_jint(const json_t *root, const char *path, long long *out)
{
    json_t *v = h_jget(root, path);
    if (!json_is_integer(v))
        return false;
    if (out)
        *out = json_integer_value(v);
    return true;
}

bool h_jnum(const json_t *root, const char *path, double *out)
{
    json_t *v = h_jget(root, path);
    if (!json_is_number(v))
        return false;
    if (out)
        *out = json_number_value(v);
    return true;
}

const char *h_jstr(const json_t *root, const char *path)
{
    return json_string_value(h_jget(root, path));
}

bool h_json_keys_exactly(const json_t *obj, const char *const *keys)
{
    if (!json_is_object(obj)) {
        h_note("expected an object");
        return false;
    }
    bool ok = true;
    size_t nkeys = 0;
    for (; keys[nkeys] != NULL; nkeys++) {
        if (json_object_get(obj, keys[nkeys]) == NULL) {
            h_note("member \"%s\" is missing", keys[nkeys]);
            ok = false;
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        bool known = false;
        for (size_t i = 0; i < nkeys && !known; i++)
            known = strcmp(k, keys[i]) == 0;
        if (!known) {
            h_note("unexpected member \"%s\"", k);
            ok = false;
        }
    }
    return ok;
}

char *h_json_dump(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return s ? s : strdup("(null)");
}

bool h_check_problem_at(struct h_resp *resp, int status, const char *slug, const char *path,
                        const char *file, int line)
{
    bool ok = true;
    char want_type[128];
    snprintf(want_type, sizeof want_type, "urn:batchd:problem:%s", slug);
    char want_path[1024];
    snprintf(want_path, sizeof want_path, "%s", path);
    char *q = strchr(want_path, '?');
    if (q)
        *q = '\0';
    ok &= h_check(resp->status == status, file, line, "status", "got %ld, expected %d (body %.300s)",
                  resp->status, status, resp->body ? resp->body : "");
    ok &= h_check(h_resp_is(resp, "application/problem+json"), file, line, "problem content type",
                  "got \"%s\"", resp->content_type ? resp->content_type : "(none)");
    json_t *j = h_json(resp);
    if (!h_check(json_is_object(j), file, line, "problem body is a JSON object", "body %.300s",
                 resp->body ? resp->body : ""))
        return false;
    const char *type = h_jstr(j, "type");
    ok &= h_check(type != NULL && strcmp(type, want_type) == 0, file, line, "problem type",
                  "got \"%s\", expected \"%s\"", type ? type : "(none)", want_type);
    const char *title = h_jstr(j, "title");
    ok &= h_check(title != NULL && title[0] != '\0', file, line, "problem title", "missing or empty");
    long long st = -1;
    ok &= h_check(h_jint(j, "status", &st) && st == status, file, line, "problem status member",
                  "got %lld, expected %d", st, status);
    const char *detail = h_jstr(j, "detail");
    ok &= h_check(detail != NULL && detail[0] != '\0', file, line, "problem detail",
                  "missing or empty");
    const char *inst = h_jstr(j, "instance");
    ok &= h_check(inst != NULL && strcmp(inst, want_path) == 0, file, line, "problem instance",
                  "got \"%s\", expected \"%s\"", inst ? inst : "(none)", want_path);
    /* Extension members, when present, have the agreed types. */
    static const char *const int_members[] = {"index", "line", "column", "limit"};
    for (size_t i = 0; i < sizeof int_members / sizeof int_members[0]; i++) {
        json_t *v = json_object_get(j, int_members[i]);
        ok &= h_check(v == NULL || json_is_integer(v), file, line, "problem extension type",
                      "\"%s\" is not an integer", int_members[i]);
    }
    json_t *ptr = json_object_get(j, "pointer");
    ok &= h_check(ptr == NULL || (json_is_string(ptr) && (json_string_value(ptr)[0] == '\0' ||
                                                         json_string_value(ptr)[0] == '/')),
                  file, line, "problem pointer", "not a JSON pointer");
    if (!ok)
        h_note("problem body: %.400s", resp->body ? resp->body : "");
    return ok;
}

/* --------------------------------------------------------------- job helpers */

bool h_is_timestamp(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s == NULL || strlen(s) != sizeof pat - 1)
        return false;
    for (size_t i = 0; pat[i] != '\0'; i++) {
        if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
            return false;
    }
    return true;
}

bool h_is_job_id(const char *s)
{
    if (s == NULL || strlen(s) != 26)
        return false;
    for (size_t i = 0; i < 26; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
            return false;
    return true;
}

bool h_check_result_at(const json_t *res, long long *index, json_t **output,
                       const char **message, const char *file, int line)
{
    *index = -1;
    *output = NULL;
    *message = NULL;
    bool ok = h_check(json_is_object(res), file, line, "Result is an object", NULL);
    if (!ok)
        return false;
    ok &= h_check(h_jint(res, "index", index) && *index >= 0, file, line, "Result index",
                  "missing, not an integer or negative");
    json_t *out = json_object_get(res, "output");
    json_t *err = json_object_get(res, "error");
    ok &= h_check(json_object_size(res) == 2 && (out == NULL) != (err == NULL), file, line,
                  "Result has exactly index and one of output/error", NULL);
    if (err != NULL) {
        static const char *const ekeys[] = {"message", NULL};
        ok &= h_check(h_json_keys_exactly(err, ekeys) && json_is_string(json_object_get(err, "message")),
                      file, line, "Result error is {\"message\": string}", NULL);
        *message = json_string_value(json_object_get(err, "message"));
    }
    *output = out;
    if (!ok) {
        char *d = h_json_dump(res);
        h_note("result: %.300s", d);
        free(d);
    }
    return ok;
}

json_t *h_parse_ndjson_results(const char *body, size_t len)
{
    json_t *all = json_array();
    size_t pos = 0, lineno = 0;
    bool ok = CHECKF(len == 0 || body[len - 1] == '\n', "the stream does not end with a newline");
    while (ok && pos < len) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (body + pos)) : len - pos;
        lineno++;
        json_t *res = h_json_loads(body + pos, n);
        ok &= CHECKF(res != NULL, "stream line %zu is not JSON: %.200s", lineno, body + pos);
        if (res != NULL) {
            long long idx;
            json_t *out;
            const char *msg;
            ok &= CHECK_RESULT(res, &idx, &out, &msg);
            json_array_append_new(all, res);
        }
        pos += n + 1;
    }
    if (!ok) {
        json_decref(all);
        return NULL;
    }
    return all;
}

static bool is_terminal(const char *st)
{
    return st != NULL && (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
                          strcmp(st, "cancelled") == 0);
}

bool h_check_job_at(const json_t *job, const char *file, int line)
{
#define JC(cond, ...) (ok &= h_check((cond), file, line, #cond, __VA_ARGS__))
    bool ok = true;
    static const char *const keys[] = {"id", "model", "status", "counts", "created_at",
                                       "started_at", "finished_at", "throughput", "eta_seconds",
                                       "chunk_size", "error", "links", NULL};
    static const char *const count_keys[] = {"total", "done", "failed", "cancelled", NULL};
    static const char *const link_keys[] = {"self", "results", NULL};
    if (!h_check(json_is_object(job), file, line, "Job is an object", NULL))
        return false;
    JC(h_json_keys_exactly(job, keys), "Job members");
    const char *id = h_jstr(job, "id");
    JC(h_is_job_id(id), "id \"%s\"", id ? id : "(null)");
    JC(h_jstr(job, "model") != NULL, "model is a string");
    const char *st = h_jstr(job, "status");
    static const char *const statuses[] = {"queued", "running", "succeeded", "failed",
                                           "cancelled"};
    bool known = false;
    for (size_t i = 0; st != NULL && i < 5; i++)
        known |= strcmp(st, statuses[i]) == 0;
    JC(known, "status \"%s\"", st ? st : "(null)");
    json_t *counts = h_jget(job, "counts");
    JC(h_json_keys_exactly(counts, count_keys), "counts members");
    long long total = -1, done = -1, failed = -1, cancelled = -1;
    JC(h_jint(counts, "total", &total) && total >= 0, "counts.total %lld", total);
    JC(h_jint(counts, "done", &done) && done >= 0, "counts.done %lld", done);
    JC(h_jint(counts, "failed", &failed) && failed >= 0, "counts.failed %lld", failed);
    JC(h_jint(counts, "cancelled", &cancelled) && cancelled >= 0, "counts.cancelled %lld",
       cancelled);
    JC(done + failed + cancelled <= total, "done %lld + failed %lld + cancelled %lld > total %lld",
       done, failed, cancelled, total);
    if (st != NULL && strcmp(st, "succeeded") == 0)
        JC(done + failed == total && cancelled == 0,
           "succeeded job: done %lld + failed %lld != total %lld or cancelled %lld", done,
           failed, total, cancelled);
    JC(h_is_timestamp(h_jstr(job, "created_at")), "created_at \"%s\"",
       h_jstr(job, "created_at") ? h_jstr(job, "created_at") : "(null)");
    json_t *sa = h_jget(job, "started_at");
    JC(json_is_null(sa) || h_is_timestamp(json_string_value(sa)), "started_at");
    json_t *fa = h_jget(job, "finished_at");
    JC(json_is_null(fa) || h_is_timestamp(json_string_value(fa)), "finished_at");
    if (st != NULL) {
        /* A cancelled job's in-flight items may still be settling: its
         * finished_at comes when every item is done, failed or cancelled. */
        bool settling = strcmp(st, "cancelled") == 0 && done + failed + cancelled < total;
        if (!settling && is_terminal(st))
            JC(!json_is_null(fa), "a %s job has finished_at", st);
        else if (!settling)
            JC(json_is_null(fa), "a %s job has no finished_at", st);
        if (strcmp(st, "running") == 0)
            JC(!json_is_null(sa), "a running job has started_at");
    }
    json_t *tp = h_jget(job, "throughput");
    JC(json_is_null(tp) || (json_is_number(tp) && json_number_value(tp) >= 0), "throughput");
    json_t *eta = h_jget(job, "eta_seconds");
    JC(json_is_null(eta) || (json_is_number(eta) && json_number_value(eta) >= 0), "eta_seconds");
    if (is_terminal(st) && done + failed + cancelled == total)
        JC(json_is_null(eta), "a %s job has no eta_seconds", st);
    json_t *cs = h_jget(job, "chunk_size");
    JC(json_is_null(cs) || (json_is_integer(cs) && json_integer_value(cs) >= 1), "chunk_size");
    json_t *err = h_jget(job, "error");
    JC(json_is_null(err) || json_is_string(err), "error is null or a string");
    if (st != NULL && strcmp(st, "failed") != 0)
        JC(json_is_null(err), "error is null unless the job failed");
    json_t *links = h_jget(job, "links");
    /* links.result only for jobs of a stateful model (their reduced result) */
    static const char *const link_keys_stateful[] = {"self", "results", "result", NULL};
    JC(h_json_keys_exactly(links, h_jget(links, "result") ? link_keys_stateful : link_keys),
       "links members");
    if (id != NULL) {
        char self[64], res[80];
        snprintf(self, sizeof self, "/v1/jobs/%s", id);
        snprintf(res, sizeof res, "/v1/jobs/%s/results", id);
        const char *ls = h_jstr(links, "self"), *lr = h_jstr(links, "results");
        JC(ls != NULL && strcmp(ls, self) == 0, "links.self \"%s\"", ls ? ls : "(null)");
        JC(lr != NULL && strcmp(lr, res) == 0, "links.results \"%s\"", lr ? lr : "(null)");
        const char *l1 = h_jstr(links, "result");
        JC(l1 == NULL || (strncmp(l1, res, strlen(res) - 1) == 0 && l1[strlen(res) - 1] == '\0'),
           "links.result \"%s\"", l1 ? l1 : "(null)");
    }
    if (!ok) {
        char *d = h_json_dump(job);
        h_note("job: %.600s", d);
        free(d);
    }
    return ok;
#undef JC
}

bool h_submit(struct h_service *s, const char *path, const char *ctype, const char *body,
              size_t len, char *id, long timeout_s)
{
    char ct[256];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *hdrs[] = {ct, NULL};
    struct h_req req = {.method = "POST", .path = path, .headers = hdrs, .body = body,
                        .body_len = len, .timeout_s = timeout_s};
    struct h_resp r;
    id[0] = '\0';
    if (!CHECKF(h_request(s, &req, &r) == 0, "%s", r.error)) {
        h_resp_free(&r);
        return false;
    }
    bool ok = CHECKF(r.status == 202, "POST %s: status %ld, body %.400s", path, r.status, r.body);
    if (ok) {
        json_t *job = h_json(&r);
        ok &= CHECK_JOB(job);
        const char *jid = h_jstr(job, "id");
        const char *loc = h_resp_header(&r, "Location");
        char want[64];
        snprintf(want, sizeof want, "/v1/jobs/%s", jid ? jid : "?");
        ok &= CHECKF(loc != NULL && strcmp(loc, want) == 0, "Location \"%s\", expected \"%s\"",
                     loc ? loc : "(none)", want);
        ok &= CHECKF(h_resp_is(&r, "application/json"), "content type %s",
                     r.content_type ? r.content_type : "(none)");
        if (jid != NULL && h_is_job_id(jid))
            snprintf(id, 32, "%s", jid);
        else
            ok = false;
    }
    h_resp_free(&r);
    return ok;
}

json_t *h_poll_job(struct h_service *s, const char *id, int timeout_s,
                   bool (*pred)(const json_t *job, void *arg), void *arg)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = h_now() + timeout_s;
    long sleep_ms = 10;
    for (int i = 0; i < 1000000; i++) {
        struct h_resp r;
        if (h_get(s, path, &r) == 0 && r.status == 200) {
            json_t *job = h_json(&r);
            if (job != NULL && pred(job, arg)) {
                json_incref(job);
                h_resp_free(&r);
                return job;
            }
        } else if (r.status != 0 && r.status != 200) {
            h_note("GET %s: status %ld %.200s", path, r.status, r.body);
            h_resp_free(&r);
            return NULL;
        }
        h_resp_free(&r);
        if (h_now() > deadline)
            return NULL;
        h_sleep_ms(sleep_ms);
        if (sleep_ms < 200)
            sleep_ms *= 2;
    }
    return NULL;
}

static bool job_is_finished(const json_t *job, void *arg)
{
    (void)arg;
    const char *st = h_jstr(job, "status");
    if (!is_terminal(st))
        return false;
    /* finished_at comes once the results are durable (the store) */
    if (json_is_null(h_jget(job, "finished_at")))
        return false;
    if (strcmp(st, "cancelled") == 0) {
        long long t = 0, d = 0, f = 0, c = 0;
        h_jint(job, "counts/total", &t);
        h_jint(job, "counts/done", &d);
        h_jint(job, "counts/failed", &f);
        h_jint(job, "counts/cancelled", &c);
        /* finished_at comes when the running tasks have returned and their
         * results are durable: a moment after the counts add up */
        return d + f + c == t && !json_is_null(h_jget(job, "finished_at"));
    }
    return true;
}

json_t *h_wait_job(struct h_service *s, const char *id, int timeout_s)
{
    json_t *job = h_poll_job(s, id, timeout_s, job_is_finished, NULL);
    CHECKF(job != NULL, "job %s did not finish within %d s", id, timeout_s);
    if (job != NULL)
        CHECK_JOB(job);
    return job;
}

bool h_each_result(struct h_service *s, const char *id, size_t n, size_t limit,
                   bool (*fn)(const json_t *res, void *arg), void *arg)
{
    size_t offset = 0, seen = 0;
    size_t max_pages = n / (limit ? limit : 1) + 3;
    bool ok = true;
    for (size_t page = 0; page < max_pages && ok; page++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%zu&limit=%zu", id, offset, limit);
        struct h_resp r;
        struct h_req req = {.method = "GET", .path = path, .timeout_s = 60};
        if (!CHECKF(h_request(s, &req, &r) == 0, "%s", r.error)) {
            h_resp_free(&r);
            ok = false;
            break;
        }
        ok &= CHECKF(r.status == 200, "GET %s: %ld %.300s", path, r.status, r.body);
        ok &= CHECKF(h_resp_is(&r, "application/json"), "content type %s",
                     r.content_type ? r.content_type : "(none)");
        json_t *j = ok ? h_json(&r) : NULL;
        json_t *results = h_jget(j, "results");
        json_t *next = h_jget(j, "next_offset");
        static const char *const page_keys[] = {"results", "next_offset", NULL};
        ok &= CHECK(j != NULL && h_json_keys_exactly(j, page_keys));
        ok &= CHECK(json_is_array(results));
        if (!ok) {
            h_resp_free(&r);
            break;
        }
        size_t k;
        json_t *res;
        json_array_foreach(results, k, res) {
            long long idx = -1;
            if (!CHECKF(h_jint(res, "index", &idx) && idx == (long long)(offset + k),
                        "result at position %zu has index %lld (page offset %zu)", offset + k, idx,
                        offset)) {
                ok = false;
                break;
            }
            if (!fn(res, arg)) {
                ok = false;
                break;
            }
            seen++;
        }
        size_t got = json_array_size(results);
        ok &= CHECKF(got <= limit, "page of %zu results for limit %zu", got, limit);
        if (json_is_null(next)) {
            h_resp_free(&r);
            break;
        }
        long long no = json_is_integer(next) ? json_integer_value(next) : -1;
        ok &= CHECKF(no == (long long)(offset + got),
                     "next_offset %lld, expected %zu (offset %zu + %zu results)", no,
                     offset + got, offset, got);
        ok &= CHECKF(got > 0, "an empty page of a finished job with next_offset %lld", no);
        offset = (size_t)(no > 0 ? no : 0);
        h_resp_free(&r);
    }
    ok &= CHECKF(seen == n, "walked %zu results, expected %zu", seen, n);
    return ok;
}

static bool collect_result(const json_t *res, void *arg)
{
    json_array_append((json_t *)arg, (json_t *)res);
    return true;
}

json_t *h_fetch_results(struct h_service *s, const char *id, size_t n, size_t limit)
{
    json_t *all = json_array();
    if (!h_each_result(s, id, n, limit, collect_result, all)) {
        json_decref(all);
        return NULL;
    }
    return all;
}
