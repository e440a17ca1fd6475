#include "api/http/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct api_auth {
    const struct config *cfg;
    bool enabled;
    pthread_rwlock_t lock;  /* guards file_tokens / n_file */
    char **file_tokens;     /* new, from the tokens file; NULL when none */
    size_t n_file;
};

struct api_auth *api_auth_create(const struct config *cfg, char *err, size_t errlen)
{
    struct api_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->cfg = cfg;
    a->enabled = cfg->n_api_tokens > 0 || cfg->tokens_file != NULL;
    if (pthread_rwlock_init(&a->lock, NULL) != 0) {
        snprintf(err, errlen, "cannot create a lock");
        free(a);
        return NULL;
    }
    if (cfg->tokens_file &&
        config_read_tokens_file(cfg->tokens_file, &a->file_tokens, &a->n_file, err, errlen) < 0) {
        pthread_rwlock_destroy(&a->lock);
        free(a);
        return NULL;
    }
    return a;
}

void api_auth_destroy(struct api_auth *a)
{
    if (!a)
        return;
    config_tokens_free(a->file_tokens, a->n_file);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

bool api_auth_enabled(const struct api_auth *a) { return a->enabled; }

size_t api_auth_count(struct api_auth *a)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->cfg->n_api_tokens + a->n_file;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

int api_auth_reload(struct api_auth *a, char *err, size_t errlen)
{
    if (!a->cfg->tokens_file)
        return 0;
    char **tokens = NULL;
    size_t n = 0;
    /* read outside the lock: requests go on with the old set meanwhile */
    int rc = config_read_tokens_file(a->cfg->tokens_file, &tokens, &n, err, errlen);
    if (rc < 0)
        return rc;
    pthread_rwlock_wrlock(&a->lock);
    char **old = a->file_tokens;
    size_t n_old = a->n_file;
    a->file_tokens = tokens;
    a->n_file = n;
    pthread_rwlock_unlock(&a->lock);
    config_tokens_free(old, n_old);
    return 0;
}

bool api_auth_protects(const struct config *cfg, enum api_route route, enum api_method method)
{
    if (method == API_METHOD_OPTIONS)
        return false;
    switch (route) {
    case API_ROUTE_JOBS:
    case API_ROUTE_JOB:
    case API_ROUTE_JOB_RESULTS:
    case API_ROUTE_JOB_RESULT:
    case API_ROUTE_MODELS:
    case API_ROUTE_WORKERS:
    case API_ROUTE_OBJECTS:
    case API_ROUTE_OBJECT:
        return true;
    case API_ROUTE_METRICS:
        return cfg->auth_metrics;
    default:
        return false;
    }
}

bool api_auth_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Walk the presented token (its length is the caller's to know) and
     * compare each byte with the configured one at the same position,
     * wrapping around a shorter configured token; a length mismatch is one
     * more bit of difference. volatile keeps the compiler from turning
     * the loop into an early-exit memcmp. */
    volatile unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i % blen]);
    return diff == 0;
}

enum api_auth_result api_auth_check(struct api_auth *a, const char *authorization)
{
    if (!a->enabled)
        return API_AUTH_OK;
    if (!authorization || strncasecmp(authorization, "Bearer", 6) != 0 ||
        (authorization[6] != ' ' && authorization[6] != '\t'))
        return API_AUTH_MISSING;
    const char *tok = authorization + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    if (len == 0)
        return API_AUTH_MISSING;
    if (len > CONFIG_MAX_TOKEN_LEN)
        return API_AUTH_INVALID;
    bool ok = false;
    /* every token is compared: no early exit that would tell which matched */
    for (size_t i = 0; i < a->cfg->n_api_tokens; i++) {
        const char *t = a->cfg->api_tokens[i];
        ok |= api_auth_equal(tok, len, t, strlen(t));
    }
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n_file; i++) {
        const char *t = a->file_tokens[i];
        ok |= api_auth_equal(tok, len, t, strlen(t));
    }
    pthread_rwlock_unlock(&a->lock);
    return ok ? API_AUTH_OK : API_AUTH_INVALID;
}
