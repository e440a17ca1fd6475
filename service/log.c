#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_proc = "batchd";
static enum log_level log_min = LOG_INFO;

void log_set_proc(const char *proc) { log_proc = proc; }
void log_set_level(enum log_level level) { log_min = level; }

void log_init_from_env(void)
{
    const char *v = getenv("BATCHD_LOG_LEVEL");
    if (!v)
        return;
    if (!strcasecmp(v, "debug"))
        log_min = LOG_DEBUG;
    else if (!strcasecmp(v, "warn"))
        log_min = LOG_WARN;
    else if (!strcasecmp(v, "error"))
        log_min = LOG_ERROR;
    else
        log_min = LOG_INFO;
}

/* Escapes into dst; returns bytes written (always leaves room for NUL). */
static size_t log_escape(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && o + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*p;
        } else if (*p == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else if (*p < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *p);
        } else {
            dst[o++] = (char)*p;
        }
    }
    dst[o] = '\0';
    return o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    if (level < log_min)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2560];
    int n = snprintf(line, sizeof line,
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                     "\"proc\":\"%s\",\"pid\":%d,\"msg\":\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), names[level], log_proc,
                     (int)getpid());
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    size_t len = (size_t)n + log_escape(line + n, sizeof line - (size_t)n - 4, msg);
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    /* one write per line: lines of concurrent processes do not interleave */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
