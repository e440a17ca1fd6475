#include "service/webhooks/webhook.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int webhook_secret_decode(const char *secret, uint8_t *key, size_t *len)
{
    static const char prefix[] = "whsec_";
    if (!secret || strncmp(secret, prefix, sizeof prefix - 1) != 0)
        return -EINVAL;
    const char *b64 = secret + sizeof prefix - 1;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0 || n > 4 * ((WEBHOOK_KEY_MAX + 2) / 3))
        return -EINVAL;
    uint8_t buf[4 * ((WEBHOOK_KEY_MAX + 2) / 3)];
    /* EVP_DecodeBlock refuses what is not base64, and counts the padding
     * as zero bytes: they are taken off below */
    int got = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
    if (got < 0)
        return -EINVAL;
    size_t pad = b64[n - 1] == '=' ? (b64[n - 2] == '=' ? 2 : 1) : 0;
    size_t klen = (size_t)got - pad;
    if (klen < WEBHOOK_KEY_MIN || klen > WEBHOOK_KEY_MAX)
        return -EINVAL;
    memcpy(key, buf, klen);
    *len = klen;
    return 0;
}

int webhook_sign(const uint8_t *key, size_t keylen, const char *msg_id, long long timestamp,
                 const char *body, size_t len, char out[WEBHOOK_SIGNATURE_LEN + 1])
{
    char head[160];
    int hn = snprintf(head, sizeof head, "%s.%lld.", msg_id, timestamp);
    if (hn < 0 || (size_t)hn >= sizeof head)
        return -EINVAL;
    size_t total = (size_t)hn + len;
    unsigned char *content = malloc(total ? total : 1);
    if (!content)
        return -ENOMEM;
    memcpy(content, head, (size_t)hn);
    if (len)
        memcpy(content + hn, body, len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char *ok = HMAC(EVP_sha256(), key, (int)keylen, content, total, mac, &maclen);
    free(content);
    if (!ok || maclen != 32)
        return -ENOMEM;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
    out[WEBHOOK_SIGNATURE_LEN] = '\0';
    return 0;
}

/* Splits "HOST:PORT" (HOST may be [IPv6]) of entry[0..n). Returns false
 * for a malformed entry. */
static bool split_entry(const char *e, size_t n, size_t *hostlen, unsigned *port)
{
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (e[i - 1] == ':') {
            colon = e + i - 1;
            break;
        }
    if (!colon || colon == e)
        return false;
    size_t h = (size_t)(colon - e);
    const char *p = colon + 1;
    size_t pl = n - h - 1;
    if (pl == 0 || pl > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    if (e[0] == '[') {
        if (h < 3 || e[h - 1] != ']')
            return false;
        for (size_t i = 1; i + 1 < h; i++)
            if (!isxdigit((unsigned char)e[i]) && e[i] != ':' && e[i] != '.')
                return false;
    } else {
        for (size_t i = 0; i < h; i++)
            if (!isalnum((unsigned char)e[i]) && e[i] != '-' && e[i] != '.')
                return false;
    }
    *hostlen = h;
    *port = v;
    return true;
}

int webhook_hosts_check(const char *hosts, char *err, size_t errlen)
{
    size_t count = 0;
    for (const char *p = hosts; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        size_t hl;
        unsigned port;
        if (!split_entry(p, n, &hl, &port)) {
            snprintf(err, errlen,
                     "entry '%.*s' is not HOST:PORT (a name, an IPv4 address or [IPv6], and a "
                     "port from 1 to 65535)",
                     (int)(n > 100 ? 100 : n), p);
            return -EINVAL;
        }
        if (++count > WEBHOOK_HOSTS_MAX) {
            snprintf(err, errlen, "at most %d entries", WEBHOOK_HOSTS_MAX);
            return -EINVAL;
        }
        p += n;
        if (*p == ',' && *++p == '\0') {
            snprintf(err, errlen, "an empty entry after the last comma");
            return -EINVAL;
        }
    }
    if (count == 0) {
        snprintf(err, errlen, "no HOST:PORT entry");
        return -EINVAL;
    }
    return 0;
}

int webhook_url_allowed(const char *hosts, const char *url, char *why, size_t whylen)
{
    if (!hosts || !hosts[0]) {
        snprintf(why, whylen,
                 "webhooks are off: the service allows no webhook host (--webhook-hosts)");
        return -ENOTSUP;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *password = NULL;
    int rc = -EINVAL;
    /* no guessing of a scheme, nothing but http and https */
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        snprintf(why, whylen, "\"webhook.url\" must be an absolute http or https URL");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        snprintf(why, whylen, "\"webhook.url\" must not carry a user or password");
        goto out;
    }
    rc = -EPERM;
    size_t want_h = strlen(host);
    unsigned want_p = (unsigned)strtoul(port, NULL, 10);
    for (const char *p = hosts; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        size_t hl;
        unsigned pv;
        if (split_entry(p, n, &hl, &pv) && pv == want_p && hl == want_h &&
            strncasecmp(p, host, hl) == 0) {
            rc = 0;
            break;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (rc)
        snprintf(why, whylen,
                 "\"webhook.url\" names %.200s:%u, which is not one of the hosts this service "
                 "may call (--webhook-hosts)",
                 host, want_p);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
    return rc;
}

uint64_t webhook_backoff_ns(unsigned attempt, uint32_t rnd)
{
    uint64_t base = 1000000000ull; /* 1 s */
    uint64_t cap = 3600ull * 1000000000ull;
    uint64_t d = base;
    for (unsigned i = 1; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* full jitter between half and all of it: receivers that came back are
     * not hit by every sender at the same instant */
    return d / 2 + (uint64_t)((double)(d / 2) * ((double)rnd / 4294967296.0));
}
