/*
 * Unit tests of service/log.c: one JSON object per line on stderr.
 *
 * stderr is pointed at a memfd (dup2) while the module logs, then put back
 * before anything is asserted, so a failing assertion is never written into
 * the capture. Each captured line is parsed with jansson: it must be one
 * object with exactly ts, level, proc, pid and msg, whatever the message
 * held (quotes, newlines, control bytes, UTF-8) and however long it was.
 * The last test has several processes log into one pipe at once and checks
 * that no line was torn (log.h: one write(2) per line, at most PIPE_BUF).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "service/core/log.h"

/* ---- capturing stderr ----------------------------------------------------- */

struct capture {
    int fd;    /* the memfd that stands in for stderr */
    int saved; /* the real stderr */
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->fd = memfd_create("test-log", MFD_CLOEXEC);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(c->fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Puts stderr back and returns what was written (new: caller frees). */
static char *capture_end(struct capture *c, size_t *len)
{
    assert_true(dup2(c->saved, STDERR_FILENO) == STDERR_FILENO);
    close(c->saved);
    off_t size = lseek(c->fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    ssize_t got = pread(c->fd, text, (size_t)size, 0);
    assert_int_equal(got, size);
    text[size] = '\0';
    close(c->fd);
    if (len)
        *len = (size_t)size;
    return text;
}

/* ---- checking lines ------------------------------------------------------- */

/* "2026-11-22T03:55:17.123Z" */
static void check_ts(const char *ts)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(ts) != sizeof pattern - 1)
        fail_msg("ts '%s' has the wrong length", ts);
    for (size_t i = 0; pattern[i]; i++) {
        bool ok = pattern[i] == 'd' ? ts[i] >= '0' && ts[i] <= '9' : ts[i] == pattern[i];
        if (!ok)
            fail_msg("ts '%s' does not look like %s", ts, pattern);
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end != '.')
        fail_msg("ts '%s' is not a calendar time", ts);
}

/*
 * Splits captured output into lines, checks each is one JSON object with
 * exactly the five fields of log.h (and this process's pid unless pid is
 * 0), and returns them as a JSON array (new). Fails on a torn or invalid
 * line, or on output that does not end with a newline.
 */
static json_t *parse_lines(const char *text, size_t len, pid_t pid)
{
    json_t *lines = json_array();
    assert_non_null(lines);
    if (len > 0 && text[len - 1] != '\n')
        fail_msg("output does not end with a newline: [%s]", text);
    if (memchr(text, '\0', len))
        fail_msg("output holds a NUL byte");
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = (size_t)(nl - p);
        if (n + 1 > PIPE_BUF)
            fail_msg("a line of %zu bytes is longer than PIPE_BUF", n + 1);
        json_error_t jerr;
        json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!o)
            fail_msg("not a JSON line (%s at %d): [%.*s]", jerr.text, jerr.position, (int)n, p);
        if (!json_is_object(o) || json_object_size(o) != 5)
            fail_msg("not an object of 5 fields: [%.*s]", (int)n, p);
        json_t *ts = json_object_get(o, "ts"), *level = json_object_get(o, "level"),
               *proc = json_object_get(o, "proc"), *jpid = json_object_get(o, "pid"),
               *msg = json_object_get(o, "msg");
        if (!json_is_string(ts) || !json_is_string(level) || !json_is_string(proc) ||
            !json_is_integer(jpid) || !json_is_string(msg))
            fail_msg("a field is missing or has the wrong type: [%.*s]", (int)n, p);
        check_ts(json_string_value(ts));
        if (pid && json_integer_value(jpid) != pid)
            fail_msg("pid %lld, want %d", (long long)json_integer_value(jpid), (int)pid);
        json_array_append_new(lines, o);
        p = nl + 1;
    }
    return lines;
}

static const char *field(const json_t *line, const char *key)
{
    return json_string_value(json_object_get(line, key));
}

/* Asserts that line i has this level, proc and msg. */
static void check_line(const json_t *lines, size_t i, const char *level, const char *proc,
                       const char *msg)
{
    const json_t *l = json_array_get(lines, i);
    assert_non_null(l);
    assert_string_equal(field(l, "level"), level);
    assert_string_equal(field(l, "proc"), proc);
    assert_string_equal(field(l, "msg"), msg);
}

/* Logs one message at each level; returns the lines that came out. */
static json_t *log_each_level(void)
{
    struct capture c;
    capture_begin(&c);
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    size_t len;
    char *text = capture_end(&c, &len);
    json_t *lines = parse_lines(text, len, getpid());
    free(text);
    return lines;
}

/* The levels present in lines, as a string such as "iwe". */
static void levels_of(const json_t *lines, char *out, size_t outlen)
{
    size_t i, o = 0;
    json_t *l;
    json_array_foreach(lines, i, l) {
        if (o + 1 < outlen)
            out[o++] = field(l, "level")[0];
    }
    out[o] = '\0';
}

/* ---- tests ---------------------------------------------------------------- */

/* Runs first: the defaults (proc "batchd", level info) before any setter. */
static void test_line_format_and_defaults(void **unused)
{
    (void)unused;
    struct capture c;
    capture_begin(&c);
    log_info("hello %s %d", "world", 42);
    size_t len;
    char *text = capture_end(&c, &len);
    json_t *lines = parse_lines(text, len, getpid());
    assert_int_equal(json_array_size(lines), 1);
    check_line(lines, 0, "info", "batchd", "hello world 42");
    /* The fields come in the documented order. */
    assert_true(strncmp(text, "{\"ts\":\"", 7) == 0);
    const char *lv = strstr(text, "\"level\""), *pr = strstr(text, "\"proc\""),
               *pi = strstr(text, "\"pid\""), *ms = strstr(text, "\"msg\"");
    assert_true(lv && pr && pi && ms && lv < pr && pr < pi && pi < ms);
    json_decref(lines);
    free(text);

    /* Default level: info and above. */
    lines = log_each_level();
    char got[8];
    levels_of(lines, got, sizeof got);
    assert_string_equal(got, "iwe");
    json_decref(lines);
}

static void test_proc_and_levels(void **unused)
{
    (void)unused;
    log_set_proc("worker");
    log_set_level(LOG_DEBUG);
    json_t *lines = log_each_level();
    assert_int_equal(json_array_size(lines), 4);
    check_line(lines, 0, "debug", "worker", "d");
    check_line(lines, 1, "info", "worker", "i");
    check_line(lines, 2, "warn", "worker", "w");
    check_line(lines, 3, "error", "worker", "e");
    json_decref(lines);
    log_set_proc("api");
    lines = log_each_level();
    check_line(lines, 3, "error", "api", "e");
    json_decref(lines);
    log_set_level(LOG_INFO);
}

static void test_level_filter(void **unused)
{
    (void)unused;
    static const struct {
        enum log_level level;
        const char *kept;
    } cases[] = {
        { LOG_DEBUG, "diwe" },
        { LOG_INFO, "iwe" },
        { LOG_WARN, "we" },
        { LOG_ERROR, "e" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        log_set_level(cases[i].level);
        json_t *lines = log_each_level();
        char got[8];
        levels_of(lines, got, sizeof got);
        assert_string_equal(got, cases[i].kept);
        json_decref(lines);
    }
    log_set_level(LOG_INFO);
}

static void test_level_from_env(void **unused)
{
    (void)unused;
    static const struct {
        const char *value;
        const char *kept;
    } cases[] = {
        { "debug", "diwe" }, { "warn", "we" },  { "error", "e" },   { "info", "iwe" },
        { "DEBUG", "diwe" }, { "Error", "e" },  { "WARN", "we" },
        { "loud", "iwe" }, /* not a level: back to the default */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        log_set_level(LOG_ERROR);
        assert_int_equal(setenv("BATCHD_LOG_LEVEL", cases[i].value, 1), 0);
        log_init_from_env();
        json_t *lines = log_each_level();
        char got[8];
        levels_of(lines, got, sizeof got);
        if (strcmp(got, cases[i].kept) != 0)
            fail_msg("BATCHD_LOG_LEVEL=%s kept '%s', want '%s'", cases[i].value, got,
                     cases[i].kept);
        json_decref(lines);
    }
    /* Unset: the level in force stays. */
    assert_int_equal(unsetenv("BATCHD_LOG_LEVEL"), 0);
    log_set_level(LOG_WARN);
    log_init_from_env();
    json_t *lines = log_each_level();
    char got[8];
    levels_of(lines, got, sizeof got);
    assert_string_equal(got, "we");
    json_decref(lines);
    log_set_level(LOG_INFO);
}

/* Whatever the message holds, the line is one valid object and msg reads
 * back exactly. */
static void test_escaping(void **unused)
{
    (void)unused;
    static const char *const msgs[] = {
        "say \"hi\"",
        "C:\\path\\to",
        "two\nlines\n",
        "\r\n\t",
        "\x01\x02\x1b[31mred\x1b[0m\x1f",
        "\x7f",
        "{\"msg\":\"forged\",\"level\":\"error\"}",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "",
        "%s %d %%",
    };
    log_set_proc("test");
    struct capture c;
    capture_begin(&c);
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        log_warn("%s", msgs[i]);
    size_t len;
    char *text = capture_end(&c, &len);
    json_t *lines = parse_lines(text, len, getpid());
    assert_int_equal(json_array_size(lines), sizeof msgs / sizeof msgs[0]);
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        check_line(lines, i, "warn", "test", msgs[i]);
    /* No raw control byte survives in the output but the line ends. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 && text[i] != '\n')
            fail_msg("raw control byte 0x%02x at %zu", (unsigned char)text[i], i);
    json_decref(lines);
    free(text);
}

/* Logs msg once; returns the msg field that came out (new). */
static char *log_and_read_back(const char *msg)
{
    struct capture c;
    capture_begin(&c);
    log_error("%s", msg);
    size_t len;
    char *text = capture_end(&c, &len);
    json_t *lines = parse_lines(text, len, getpid());
    assert_int_equal(json_array_size(lines), 1);
    char *got = strdup(field(json_array_get(lines, 0), "msg"));
    assert_non_null(got);
    json_decref(lines);
    free(text);
    return got;
}

/* Asserts that got is a prefix of want of at least min bytes. */
static void assert_prefix(const char *got, const char *want, size_t min)
{
    size_t n = strlen(got);
    if (n < min || n > strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("msg of %zu bytes is not a prefix of at least %zu bytes of the message", n, min);
}

/* Messages too long for one line are cut, and the line stays one valid
 * object of at most PIPE_BUF bytes, whatever the escaping multiplies. */
static void test_long_messages(void **unused)
{
    (void)unused;
    static const char fills[] = { 'x', '"', '\\', '\n', '\x01' };
    char *big = malloc(20001);
    assert_non_null(big);
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(big, fills[f], 20000);
        big[20000] = '\0';
        char *got = log_and_read_back(big);
        /* At least a few hundred bytes of it made it through. */
        assert_prefix(got, big, 256);
        free(got);
    }
    /* Mixed: escapes running out of line room part-way. */
    for (size_t i = 0; i < 20000; i++)
        big[i] = "ab\"c\\\n\x02"[i % 7];
    char *got = log_and_read_back(big);
    assert_prefix(got, big, 256);
    free(got);
    free(big);
}

/*
 * A long UTF-8 message is cut on a character boundary: a cut through a
 * multi-byte character would leave invalid UTF-8, which is not JSON (and
 * jansson, like most log shippers, rejects the whole line). Each filler is
 * tried at every offset, so the cut lands on every byte of a character,
 * both where the message is cut before escaping (no lead) and where the
 * escaped text runs out of line room (a lead of control bytes, which
 * escape to six bytes each). Every case is tried and freed before the
 * verdict, so a failure names how many cases broke and leaks nothing.
 */
static void test_long_utf8_messages(void **unused)
{
    (void)unused;
    static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
    static const size_t lead_bytes[] = { 0, 300 };
    char *big = malloc(20001);
    assert_non_null(big);
    int cases = 0, bad = 0;
    char first_bad[320] = "";
    for (size_t c = 0; c < sizeof chars / sizeof chars[0]; c++) {
        for (size_t lead = 0; lead < sizeof lead_bytes / sizeof lead_bytes[0]; lead++) {
            size_t clen = strlen(chars[c]);
            for (size_t shift = 0; shift < clen; shift++) {
                /* [shift ASCII bytes][lead control bytes][the character repeated] */
                size_t o = 0;
                for (size_t i = 0; i < shift; i++)
                    big[o++] = 'a';
                for (size_t i = 0; i < lead_bytes[lead]; i++)
                    big[o++] = '\x01';
                while (o + clen < 20000) {
                    memcpy(big + o, chars[c], clen);
                    o += clen;
                }
                big[o] = '\0';

                struct capture cap;
                capture_begin(&cap);
                log_error("%s", big);
                size_t len;
                char *text = capture_end(&cap, &len);
                json_error_t jerr;
                json_t *line = len > 0 ? json_loadb(text, len - 1, 0, &jerr) : NULL;
                const char *msg = json_string_value(json_object_get(line, "msg"));
                bool ok = msg && strlen(msg) >= 256 && strncmp(msg, big, strlen(msg)) == 0;
                cases++;
                if (!ok && bad++ == 0)
                    snprintf(first_bad, sizeof first_bad,
                             "%zu-byte character, %zu control bytes first, shift %zu: %s",
                             clen, lead_bytes[lead], shift, line ? "msg not a prefix" : jerr.text);
                json_decref(line);
                free(text);
            }
        }
    }
    free(big);
    if (bad)
        fail_msg("%d of %d long UTF-8 messages gave a line that is not valid JSON "
                 "(first: %s)", bad, cases, first_bad);
}

/* ---- several processes, one pipe ------------------------------------------ */

#define PROCS 4
#define LINES_PER_PROC 150
#define MSG_BYTES 1000 /* under log.c's 1024-byte message buffer */

static void test_processes_do_not_interleave(void **unused)
{
    (void)unused;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL); /* nothing buffered may be written twice */
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
    pid_t pids[PROCS];
    for (int k = 0; k < PROCS; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            /* Bounded even if the parent stops reading. */
            signal(SIGALRM, SIG_DFL);
            alarm(30);
            close(p[0]);
            log_set_proc("child");
            char msg[MSG_BYTES + 1];
            memset(msg, 'A' + k, MSG_BYTES);
            msg[MSG_BYTES] = '\0';
            for (int i = 0; i < LINES_PER_PROC; i++)
                log_info("%s", msg);
            _exit(0);
        }
    }
    /* Stderr back before anything can fail; the children hold the only
     * write ends left, so EOF means they are all gone. */
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    for (int k = 0; k < PROCS; k++)
        assert_true(pids[k] > 0);

    size_t cap = (size_t)PROCS * LINES_PER_PROC * 2048, len = 0;
    char *text = malloc(cap + 1);
    assert_non_null(text);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 60)
            fail_msg("the children did not finish logging within 60 s");
        struct pollfd pfd = { p[0], POLLIN, 0 };
        int pr = poll(&pfd, 1, 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        assert_true(pr >= 0);
        if (pr == 0)
            continue;
        assert_true(len < cap);
        ssize_t n = read(p[0], text + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(p[0]);
    text[len] = '\0';
    for (int k = 0; k < PROCS; k++) {
        int status;
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    json_t *lines = parse_lines(text, len, 0);
    assert_int_equal(json_array_size(lines), PROCS * LINES_PER_PROC);
    int per[PROCS] = { 0 };
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) {
        const char *msg = field(l, "msg");
        assert_int_equal(strlen(msg), MSG_BYTES);
        int k = msg[0] - 'A';
        assert_true(k >= 0 && k < PROCS);
        assert_int_equal(strspn(msg, (char[]){ msg[0], 0 }), MSG_BYTES);
        assert_int_equal(json_integer_value(json_object_get(l, "pid")), pids[k]);
        per[k]++;
    }
    for (int k = 0; k < PROCS; k++)
        assert_int_equal(per[k], LINES_PER_PROC);
    json_decref(lines);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format_and_defaults), /* first: the defaults */
        cmocka_unit_test(test_proc_and_levels),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_from_env),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_long_messages),
        cmocka_unit_test(test_processes_do_not_interleave),
        cmocka_unit_test(test_long_utf8_messages),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
