/*
 * harness.c: see harness.h for what this is and the rules it keeps; the
 * runner, checks and misc helpers (harness_int.h lists the other files).
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

extern char **environ;


/* ------------------------------------------------------------------ runner */

static const char *cur_test;     /* name of the running test, or NULL */
static unsigned cur_failures;    /* failed checks in the running test */
static bool cur_skipped;
static char cur_skip_reason[512];
static unsigned n_passed, n_failed, n_skipped;
unsigned failures_total; /* harness_int.h */
const char *batchd_bin; /* harness_int.h */
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

void h_run_with_service(const struct h_test *tests, size_t n, void (*start)(void),
                        const bool *up, void (*stop)(void))
{
    h_run_one("start batchd", start);
    if (*up) {
        h_run_tests(tests, n);
        if (stop != NULL)
            h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < n; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
}

/* h_run_on_service's service, for the start and stop steps (h_run_one
 * runs functions without arguments); one at a time. */
static struct {
    struct h_service *svc;
    const struct h_service_opts *opts;
    int stop_timeout_s;
    bool up;
} on_service;

static void on_service_start(void)
{
    on_service.up = h_service_start(on_service.svc, on_service.opts) == 0;
}

static void on_service_stop(void)
{
    CHECK_INT(h_service_stop(on_service.svc, on_service.stop_timeout_s), 0);
    on_service.up = false;
}

void h_run_on_service(struct h_service *svc, const struct h_service_opts *opts,
                      int stop_timeout_s, const struct h_test *tests, size_t n)
{
    on_service.svc = svc;
    on_service.opts = opts;
    on_service.stop_timeout_s = stop_timeout_s;
    on_service.up = false;
    h_run_with_service(tests, n, on_service_start, &on_service.up, on_service_stop);
    h_service_cleanup(svc);
}

int h_main_on_service(struct h_service *svc, const struct h_service_opts *opts,
                      int stop_timeout_s, const struct h_test *tests, size_t n)
{
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_on_service(svc, opts, stop_timeout_s, tests, n);
    return h_finish();
}

static int remove_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void remove_tree(const char *dir)
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
char *read_file(const char *path, size_t cap, bool keep_tail, size_t *lenp)
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
