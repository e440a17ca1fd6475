/*
 * config_values.c: the values of settings, as text: numbers with size
 * suffixes, seconds, addresses, names, the list-valued settings (bearer
 * tokens, CORS origins), the files settings name (the tokens file, TLS
 * certificate and key), and the one error formatter of the module. Part of
 * the config module (config.h); config_int.h says which file holds what.
 */
#include "service/config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


int config_vfail(char *err, size_t errlen, int rc, const char *fmt, va_list ap)
{
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    return rc;
}

int config_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = config_vfail(err, errlen, rc, fmt, ap);
    va_end(ap);
    return rc;
}

int config_out_of_memory(char *err, size_t errlen)
{
    return config_fail(err, errlen, -ENOMEM, "out of memory while reading the configuration");
}

/* Formats a byte count with the largest suffix that divides it exactly. */
void config_format_size(char *buf, size_t len, unsigned long long v)
{
    if (v && v % GIB == 0)
        snprintf(buf, len, "%lluG", v / GIB);
    else if (v && v % MIB == 0)
        snprintf(buf, len, "%lluM", v / MIB);
    else if (v && v % KIB == 0)
        snprintf(buf, len, "%lluK", v / KIB);
    else
        snprintf(buf, len, "%llu", v);
}

/* Formats milliseconds as seconds with only the decimals needed: 2500 ->
 * "2.5", 1 -> "0.001", 3600000 -> "3600". */
void config_format_seconds(char *buf, size_t len, unsigned long long ms)
{
    unsigned long long frac = ms % 1000;
    if (frac == 0) {
        snprintf(buf, len, "%llu", ms / 1000);
        return;
    }
    int digits = 3;
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(buf, len, "%llu.%0*llu", ms / 1000, digits, frac);
}

/*
 * Parses a decimal integer that must use the whole string, with an optional
 * K/M/G (or KiB/MiB/GiB) suffix when `suffix`. strtoull alone would accept
 * leading blanks, a sign (and negate!) and trailing junk, so the first
 * character must be a digit and the end must be the end.
 * Returns 0 with *out set, or -EINVAL (bad text or outside [min, max]).
 */
int config_parse_number(const char *s, bool suffix, unsigned long long min, unsigned long long max,
                        unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    if (suffix && *end) {
        unsigned shift;
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -EINVAL;
        }
        end++;
        if ((end[0] == 'i' || end[0] == 'I') && (end[1] == 'b' || end[1] == 'B'))
            end += 2;
        if (v > (~0ull >> shift))
            return -EINVAL;
        v <<= shift;
    }
    if (*end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/*
 * Seconds as "S" or "S.f" with 1 to 3 decimals, to whole milliseconds: a
 * finer value would be silently rounded, so it is refused instead.
 * Returns 0 with *ms set, or -EINVAL (bad text or outside [min, max] ms).
 */
int config_parse_millis(const char *s, unsigned long long min, unsigned long long max,
                        unsigned long long *ms)
{
    char whole[24];
    const char *dot = strchr(s, '.');
    size_t wlen = dot ? (size_t)(dot - s) : strlen(s);
    unsigned long long secs, frac = 0;

    if (wlen == 0 || wlen >= sizeof whole)
        return -EINVAL;
    memcpy(whole, s, wlen);
    whole[wlen] = '\0';
    if (config_parse_number(whole, false, 0, ~0ull / 1000 - 1, &secs) < 0)
        return -EINVAL;
    if (dot) {
        size_t flen = strlen(dot + 1);
        if (flen < 1 || flen > 3)
            return -EINVAL;
        for (size_t i = 0; i < 3; i++) {
            char ch = i < flen ? dot[1 + i] : '0';
            if (ch < '0' || ch > '9')
                return -EINVAL;
            frac = frac * 10 + (unsigned)(ch - '0');
        }
    }
    unsigned long long v = secs * 1000 + frac;
    if (v < min || v > max)
        return -EINVAL;
    *ms = v;
    return 0;
}

/* Replaces *field with a copy of s. Returns 0 or -ENOMEM (field unchanged). */
int config_set_string(char **field, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/*
 * HOST:PORT. Only IPv4 literals and "localhost" are accepted, and
 * "localhost" is stored as 127.0.0.1, so the api process can hand
 * listen_host to inet_pton() without a resolver (getaddrinfo after the
 * engine's threads exist, or a name that maps to ::1, is what we avoid).
 */
int config_parse_listen(struct config *c, const char *src, const char *text, char *err,
                        size_t errlen)
{
    const char *colon = strrchr(text, ':');
    unsigned long long port;
    char host[INET_ADDRSTRLEN + 16];
    struct in_addr addr;
    size_t hlen = colon ? (size_t)(colon - text) : 0;

    if (!colon || hlen == 0 || hlen >= sizeof host ||
        config_parse_number(colon + 1, false, 0, 65535, &port) < 0)
        goto bad;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    else if (inet_pton(AF_INET, host, &addr) != 1)
        goto bad;
    if (config_set_string(&c->listen_host, host) < 0)
        return config_out_of_memory(err, errlen);
    c->listen_port = (uint16_t)port;
    return 0;
bad:
    return config_fail(err, errlen, -EINVAL,
                "%s: expected HOST:PORT (an IPv4 address or localhost, and a port from 0 to "
                "65535), got '%s'", src, text);
}

bool config_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > CONFIG_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

/* Frees a string array and its strings, overwriting them first when they
 * may be secrets (a token must not linger in freed memory that a later
 * allocation, a core dump or a forked model could read). */
void config_strv_free(char **v, size_t n, bool wipe)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        if (wipe && v[i])
            explicit_bzero(v[i], strlen(v[i]));
        free(v[i]);
    }
    free(v);
}

void config_tokens_free(char **tokens, size_t n) { config_strv_free(tokens, n, true); }

/* RFC 6750's b64token (token68): what may follow "Bearer " unquoted. */
bool config_token_valid(const char *s, size_t len)
{
    if (len == 0 || len > CONFIG_MAX_TOKEN_LEN)
        return false;
    size_t i = 0;
    for (; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/'))
            break;
    }
    if (i == 0)
        return false;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

/* An origin as browsers serialise it: http or https, "://", a host of
 * letters, digits, '.', '-' (or a bracketed IPv6 literal), an optional
 * port, and nothing else (no path, not even "/"). */
static bool config_origin_valid(const char *s, size_t len)
{
    size_t i;
    if (len > 7 && strncasecmp(s, "http://", 7) == 0)
        i = 7;
    else if (len > 8 && strncasecmp(s, "https://", 8) == 0)
        i = 8;
    else
        return false;
    size_t host = i;
    if (s[i] == '[') {
        while (i < len && s[i] != ']') {
            char ch = s[i];
            if (i > host && !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                              (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.'))
                return false;
            i++;
        }
        if (i == len || i == host + 1)
            return false;
        i++;
    } else {
        while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                           (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
            i++;
        if (i == host)
            return false;
    }
    if (i < len && s[i] == ':') {
        size_t digits = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (digits == 0 || digits > 5)
            return false;
    }
    return i == len;
}

/*
 * Splits a comma-separated list (blanks around entries trimmed, empty
 * entries skipped) into a new string array, each entry checked by `valid`.
 * Returns 0 with *out and *n set; -EINVAL (err names the bad entry, or says the
 * list holds none) or -ENOMEM, with nothing allocated.
 */
int config_split_list(const char *src, const char *text, const char *what, size_t max,
                      bool (*valid)(const char *, size_t), bool secret, char ***out, size_t *n,
                      char *err, size_t errlen)
{
    char **v = calloc(max, sizeof *v);
    size_t count = 0;
    int rc = 0;
    if (!v)
        return config_out_of_memory(err, errlen);
    for (const char *p = text; *p && rc == 0;) {
        size_t len = strcspn(p, ",");
        const char *start = p, *end = p + len;
        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t elen = (size_t)(end - start);
        if (elen > 0) {
            if (count == max) {
                rc = config_fail(err, errlen, -EINVAL, "%s: at most %zu %ss, got more", src, max, what);
            } else if (!valid(start, elen)) {
                /* a secret is never quoted back, not even a malformed one */
                if (secret)
                    rc = config_fail(err, errlen, -EINVAL,
                              "%s: %s %zu is not a valid bearer token (1 to %d characters of "
                              "letters, digits, - . _ ~ + / and a trailing =)",
                              src, what, count + 1, CONFIG_MAX_TOKEN_LEN);
                else
                    rc = config_fail(err, errlen, -EINVAL,
                              "%s: expected * or origins such as https://host[:port], got "
                              "'%.*s'", src, (int)(elen < 200 ? elen : 200), start);
            } else if (!(v[count++] = strndup(start, elen))) {
                rc = config_out_of_memory(err, errlen);
            }
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (rc == 0 && count == 0)
        rc = config_fail(err, errlen, -EINVAL, "%s: expected at least one %s, got none", src, what);
    if (rc < 0) {
        config_strv_free(v, count, secret);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}

bool config_origin_entry_valid(const char *s, size_t len)
{
    return (len == 1 && s[0] == '*') || config_origin_valid(s, len);
}

/*
 * Reads a whole file of at most CONFIG_MAX_FILE_BYTES into a new
 * NUL-terminated buffer. Returns 0 with *out (and *len) set, -errno, or
 * -EFBIG past the cap.
 */
int config_read_small_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* a directory, a FIFO or a device is not a settings file */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    size_t cap = CONFIG_MAX_FILE_BYTES;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t used = 0;
    for (;;) {
        ssize_t r = read(fd, buf + used, cap + 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > cap) {
            explicit_bzero(buf, used);
            free(buf);
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    buf[used] = '\0';
    *out = buf;
    if (len)
        *len = used;
    return 0;
}

int config_file_error(const char *what, const char *path, int rc, char *err, size_t errlen)
{
    if (rc == -ENOMEM)
        return config_out_of_memory(err, errlen);
    if (rc == -EFBIG)
        return config_fail(err, errlen, -EINVAL, "%s: %s is larger than %u bytes", what, path,
                    CONFIG_MAX_FILE_BYTES);
    return config_fail(err, errlen, -EINVAL, "%s: cannot read %s: %s", what, path, strerror(-rc));
}

int config_read_tokens_file(const char *path, char ***tokens, size_t *n, char *err,
                            size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = config_read_small_file(path, &text, &len);
    if (rc < 0)
        return rc == -ENOMEM ? config_out_of_memory(err, errlen)
                             : (config_file_error("tokens file", path, rc, err, errlen), rc);
    char **v = calloc(CONFIG_MAX_TOKENS, sizeof *v);
    size_t count = 0;
    unsigned line = 0;
    if (!v) {
        rc = config_out_of_memory(err, errlen);
        goto out;
    }
    for (char *p = text; *p && rc == 0; line++) {
        size_t llen = strcspn(p, "\n");
        char *start = p, *end = p + llen;
        p += llen + (p[llen] == '\n');
        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            end--;
        if (start == end || *start == '#')
            continue;
        if (!config_token_valid(start, (size_t)(end - start)))
            rc = config_fail(err, errlen, -EINVAL,
                      "tokens file %s, line %u: not a valid bearer token (1 to %d characters of "
                      "letters, digits, - . _ ~ + / and a trailing =)",
                      path, line + 1, CONFIG_MAX_TOKEN_LEN);
        else if (count == CONFIG_MAX_TOKENS)
            rc = config_fail(err, errlen, -EINVAL, "tokens file %s: more than %d tokens", path,
                      CONFIG_MAX_TOKENS);
        else if (!(v[count++] = strndup(start, (size_t)(end - start))))
            rc = config_out_of_memory(err, errlen);
    }
out:
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        config_strv_free(v, count, true);
        return rc;
    }
    if (count == 0) {
        free(v);
        v = NULL;
    }
    *tokens = v;
    *n = count;
    return 0;
}
