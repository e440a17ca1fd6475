#include "service/core/log.h"

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

bool log_enabled(enum log_level level) { return level >= log_min; }

/* The length of s[0..len) without a multi-byte UTF-8 character that a
 * cut left incomplete at its end (a complete one, or bytes that are not
 * UTF-8 at all, are kept as they are). */
static size_t log_utf8_whole(const char *s, size_t len)
{
    size_t i = len, cont = 0;
    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return want > cont + 1 ? i - 1 : len;
}

size_t log_json_escape(char *dst, size_t cap, const char *src)
{
    if (cap == 0)
        return 0;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)src;
    for (; *p && o + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*p;
        } else if (*p == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *p);
        } else {
            dst[o++] = (char)*p;
        }
    }
    /* Stopped for room: never inside a character (that would not be JSON). */
    if (*p)
        o = log_utf8_whole(dst, o);
    dst[o] = '\0';
    return o;
}

static void log_vmsg(enum log_level level, const char *fields, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, NULL, fmt, ap);
    va_end(ap);
}

void log_msg_fields(enum log_level level, const char *fields, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fields, fmt, ap);
    va_end(ap);
}

static void log_vmsg(enum log_level level, const char *fields, const char *fmt, va_list ap)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    char msg[1024];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    /* vsnprintf cuts at a byte count: never leave half a character. */
    if (m >= (int)sizeof msg)
        msg[log_utf8_whole(msg, sizeof msg - 1)] = '\0';

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
    size_t len = (size_t)n + log_json_escape(line + n, sizeof line - (size_t)n - 4, msg);
    line[len++] = '"';
    size_t flen = fields ? strlen(fields) : 0;
    /* whole or not at all: half a member would make the line invalid JSON */
    if (flen > 0 && len + flen + 2 < sizeof line) {
        memcpy(line + len, fields, flen);
        len += flen;
    }
    memcpy(line + len, "}\n", 2);
    len += 2;
    /* one write per line: lines of concurrent processes do not interleave */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
