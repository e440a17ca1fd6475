/*
 * bench_http: what make bench's HTTP clients (bench_e2e.c, e2e_objects.c)
 * share around libcurl: the response buffer (the write callback appends to
 * a growing, NUL-terminated buffer, refusing past a cap, so a runaway
 * response fails the transfer instead of eating the machine's memory), and
 * the end of every request (bounded timeouts, perform, the status).
 *
 * Header-only. Ownership: the buffer (*p) belongs to the caller's
 * response struct, which frees it.
 */
#ifndef BATCHD_BENCH_HTTP_H
#define BATCHD_BENCH_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Appends n bytes of data to *p (length *len, capacity *cap), doubling the
 * capacity as needed. Returns n, or 0 (which makes curl fail the transfer)
 * when the total would pass `limit` (*too_big is set) or memory runs out.
 */
static inline size_t bench_http_append(char **p, size_t *len, size_t *cap, bool *too_big,
                                       size_t limit, const char *data, size_t n)
{
    if (*len + n + 1 > limit) {
        *too_big = true;
        return 0;
    }
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 65536;
        while (c < *len + n + 1)
            c *= 2;
        char *q = realloc(*p, c);
        if (!q)
            return 0;
        *p = q;
        *cap = c;
    }
    memcpy(*p + *len, data, n);
    *len += n;
    (*p)[*len] = '\0';
    return n;
}

/*
 * Performs the request set up on h with the headers hdrs (freed here),
 * within timeout_s (10 s to connect; no signals: the clients are single
 * threaded but curl must not longjmp out of them). Returns the HTTP
 * status, or -1 on a transport error, printed as "WHO: METHOD PATH: why"
 * (*too_big, the response buffer's flag, says if the cap was the cause).
 */
static inline long bench_http_perform(CURL *h, struct curl_slist *hdrs, long timeout_s,
                                      const char *who, const char *method, const char *path,
                                      const bool *too_big)
{
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        fprintf(stderr, "%s: %s %s: %s%s\n", who, method, path, curl_easy_strerror(rc),
                *too_big ? " (response over the cap)" : "");
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

#endif
