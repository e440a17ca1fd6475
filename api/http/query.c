#include "api/http/query.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void api_query_init(struct api_query *q, const char *const *names)
{
    memset(q, 0, sizeof *q);
    q->names = names;
    while (names && names[q->n_names] && q->n_names < API_QUERY_MAX_PARAMS)
        q->n_names++;
}

static int query_find(const struct api_query *q, const char *key)
{
    for (size_t i = 0; i < q->n_names; i++)
        if (strcmp(q->names[i], key) == 0)
            return (int)i;
    return -1;
}

static int query_refuse(struct api_query *q, const char *key, int err)
{
    if (!q->bad_key) {
        q->bad_key = key;
        q->bad_err = err;
    }
    return err;
}

int api_query_add(struct api_query *q, const char *key, const char *value)
{
    if (!key || (key[0] == '\0' && (!value || value[0] == '\0')))
        return 0;
    int i = query_find(q, key);
    if (i < 0)
        return query_refuse(q, key, -ENOENT);
    /* a repeated key has no single meaning (first? last? both?): refuse it */
    if (q->values[i])
        return query_refuse(q, key, -EEXIST);
    q->values[i] = value ? value : "";
    return 0;
}

const char *api_query_get(const struct api_query *q, const char *name)
{
    int i = query_find(q, name);
    return i < 0 ? NULL : q->values[i];
}

int api_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    /* strtoull alone would accept " 12", "+12", "-12" (negated!) and "0x1f" */
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0')
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = (uint64_t)v;
    return 0;
}

int api_parse_bool(const char *s, bool *out)
{
    if (!s)
        return -EINVAL;
    if (strcmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}
