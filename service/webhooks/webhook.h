/*
 * webhook: the rules of completion webhooks that need no I/O (issue 18).
 *
 * batchd signs each delivery the Standard Webhooks way
 * (https://www.standardwebhooks.com): headers webhook-id,
 * webhook-timestamp (Unix seconds of the attempt) and webhook-signature
 * "v1,<base64 of HMAC-SHA256(key, id + "." + timestamp + "." + body)>",
 * where the key is the base64 part of the secret "whsec_<base64>"
 * (--webhook-secret / BATCHD_WEBHOOK_SECRET). A receiver verifies with any
 * Standard Webhooks library.
 *
 * Which URLs a job may name is an allowlist of HOST:PORT
 * (--webhook-hosts; empty = webhooks off): batchd makes requests on a
 * client's behalf, and an open list would let any client reach whatever
 * the service's network can (SSRF). URLs are parsed with libcurl's own
 * URL parser, the one the delivery uses, so the host checked is the host
 * connected to.
 *
 * Process: supervisor (config checks) and api. Threads: pure functions.
 * Ownership: buffers are borrowed; outputs are written into the caller's.
 */
#ifndef BATCHD_WEBHOOK_H
#define BATCHD_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Key sizes the convention allows (bytes, after base64). */
#define WEBHOOK_KEY_MIN 24
#define WEBHOOK_KEY_MAX 64
/* "v1," and the base64 of 32 bytes. */
#define WEBHOOK_SIGNATURE_LEN (3 + 44)
/* Most --webhook-hosts entries. */
#define WEBHOOK_HOSTS_MAX 64

/*
 * Decodes "whsec_<base64>" into key (at most WEBHOOK_KEY_MAX bytes), *len
 * its length. Returns 0, or -EINVAL (no prefix, not base64, or a key
 * outside WEBHOOK_KEY_MIN..WEBHOOK_KEY_MAX bytes; key is then undefined).
 */
int webhook_secret_decode(const char *secret, uint8_t *key, size_t *len);

/*
 * Writes the webhook-signature header value for message `msg_id` sent at
 * `timestamp` (Unix seconds) with body[0..len) into out (NUL-terminated).
 * Returns 0 or -ENOMEM.
 */
int webhook_sign(const uint8_t *key, size_t keylen, const char *msg_id, long long timestamp,
                 const char *body, size_t len, char out[WEBHOOK_SIGNATURE_LEN + 1]);

/*
 * Checks a --webhook-hosts value: HOST:PORT entries separated by commas
 * (HOST a name, an IPv4 address or [IPv6]; PORT 1 to 65535; at most
 * WEBHOOK_HOSTS_MAX). Returns 0, or -EINVAL with the reason in err.
 */
int webhook_hosts_check(const char *hosts, char *err, size_t errlen);

/*
 * May a job name `url`? It must be an absolute http or https URL without
 * user or password whose host and port (the scheme's default when none is
 * given) are one of `hosts`' entries (case-insensitive host). Returns 0;
 * -ENOTSUP when hosts is NULL or empty (webhooks are off); -EINVAL for a
 * URL that is not such a URL; -EPERM for a host:port not in the list. why
 * says which, in words for the client.
 */
int webhook_url_allowed(const char *hosts, const char *url, char *why, size_t whylen);

/* Back-off before attempt `attempt` + 1 after `attempt` failures (1..):
 * 1 s doubling, at most 1 h, times a jitter factor in [0.5, 1) drawn from
 * `rnd` (0..UINT32_MAX). In nanoseconds. */
uint64_t webhook_backoff_ns(unsigned attempt, uint32_t rnd);

#endif
