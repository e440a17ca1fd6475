/*
 * log: one JSON object per line on stderr.
 *
 * {"ts":"2026-11-22T03:55:17.123Z","level":"info","proc":"supervisor",
 *  "pid":123,"msg":"..."}
 *
 * Every process (supervisor, worker, api) logs through this module; the
 * process role is set once after fork with log_set_proc(). A line is
 * formatted into a stack buffer and written with a single write(2), so lines
 * from different processes and threads never interleave (writes of up to
 * PIPE_BUF bytes to a pipe are atomic; longer messages are truncated).
 *
 * Safe across threads. Not async-signal-safe: never call it from a signal
 * handler (handlers only set flags; see supervisor.h).
 */
#ifndef BATCHD_LOG_H
#define BATCHD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Names the process role written in each line ("supervisor", "worker",
 * "api"). `proc` is borrowed and must stay valid (use a literal). */
void log_set_proc(const char *proc);

/* Lines below `level` are dropped. Default LOG_INFO; BATCHD_LOG_LEVEL
 * (debug, info, warn, error) is read by log_init_from_env(). */
void log_set_level(enum log_level level);
void log_init_from_env(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Like log_msg, with more members after "msg": `fields` is a JSON object's
 * members without braces, starting with a comma (",\"status\":200"), built
 * by the caller with log_json_escape() for every string taken from
 * outside. The line is cut (fields dropped, never torn) when it would not
 * fit the line buffer.
 */
void log_msg_fields(enum log_level level, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when lines at `level` are written (to skip building fields). */
bool log_enabled(enum log_level level);

/*
 * Escapes `src` for a JSON string (quotes, backslashes, control bytes) into
 * dst, writing at most cap - 1 bytes and a NUL; stops early rather than
 * split an escape. Returns the bytes written. Bytes >= 0x80 are copied as
 * they are: callers pass text that is UTF-8 or checked to be ASCII.
 */
size_t log_json_escape(char *dst, size_t cap, const char *src);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
