/*
 * fuzz_query: api_query_add() sequences, api_query_get(), api_parse_u64()
 * and api_parse_bool(), the query string's values.
 *
 * Input: the first byte picks one operation's parameter list and the
 * bounds used for the integers; the rest is split at '&' into pairs, each
 * "key=value" or a bare "key" (value NULL), fed in order, as the server
 * does after libmicrohttpd has split and unescaped the query. A reference
 * model of the rules runs alongside and must agree:
 *   - an unknown key is -ENOENT, a repeated one -EEXIST, and the first
 *     refusal is the one remembered (bad_key, bad_err), never overwritten;
 *   - an empty key without a value is ignored;
 *   - api_query_get() returns the pointer given (or "" for a bare key);
 *   - api_parse_u64() accepts exactly the strings of ASCII digits whose
 *     value is in [min, max] (computed here with overflow detection), and
 *     leaves *out alone on failure; api_parse_bool() exactly
 *     "true"/"false".
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "api/http/query.h"

static const char *const op_create[] = {"model", "chunk_size", NULL};
static const char *const op_list[] = {"status", "limit", "after", NULL};
static const char *const op_results[] = {"offset", "limit", "stream", NULL};
static const char *const op_many[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", NULL};
static const char *const *const ops[] = {op_create, op_list, op_results, op_many, NULL};

/* Reference of api_parse_u64: 0, -EINVAL or -ERANGE. */
static int u64_ref(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t acc = 0;
    bool over = false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (acc > (UINT64_MAX - d) / 10)
            over = true;
        else
            acc = acc * 10 + d;
    }
    if (over || acc < min || acc > max)
        return -ERANGE;
    *v = acc;
    return 0;
}

static void check_value(const char *v, uint64_t min, uint64_t max)
{
    uint64_t got = 0x5A5A5A5A5A5A5A5Aull, want = 0;
    int rc = api_parse_u64(v, min, max, &got);
    int rr = u64_ref(v, min, max, &want);
    FUZZ_ASSERT(rc == rr, "api_parse_u64(\"%s\", %llu, %llu) = %d, expected %d", v,
                (unsigned long long)min, (unsigned long long)max, rc, rr);
    if (rc == 0)
        FUZZ_ASSERT(got == want, "value %llu, expected %llu", (unsigned long long)got,
                    (unsigned long long)want);
    else
        FUZZ_ASSERT(got == 0x5A5A5A5A5A5A5A5Aull, "*out changed on failure");
    bool b = true;
    rc = api_parse_bool(v, &b);
    if (strcmp(v, "true") == 0)
        FUZZ_ASSERT(rc == 0 && b, "true");
    else if (strcmp(v, "false") == 0)
        FUZZ_ASSERT(rc == 0 && !b, "false");
    else
        FUZZ_ASSERT(rc == -EINVAL && b, "bool \"%s\" accepted or out changed", v);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nops = 0;
    while (ops[nops])
        nops++;
    const char *const *names = ops[data[0] % nops];
    static const uint64_t bounds[][2] = {
        {0, UINT64_MAX}, {1, 1000}, {0, 4294967295ull}, {1, 10000}, {18446744073709551615ull, UINT64_MAX},
    };
    const uint64_t *bd = bounds[(data[0] / nops) % (sizeof bounds / sizeof bounds[0])];
    char *in = fuzz_cstr(data + 1, size - 1);

    struct api_query q;
    api_query_init(&q, names);
    size_t n_names = 0;
    while (names[n_names] && n_names < API_QUERY_MAX_PARAMS)
        n_names++;
    const char *seen[API_QUERY_MAX_PARAMS] = {0};
    const char *first_bad = NULL;
    int first_err = 0;

    /* At most 64 pairs: a query is bounded by libmicrohttpd's memory too. */
    char *save = in;
    for (int pairs = 0; save && pairs < 64; pairs++) {
        char *pair = strsep(&save, "&");
        char *eq = strchr(pair, '=');
        const char *key = pair, *value = NULL;
        if (eq) {
            *eq = '\0';
            value = eq + 1;
        }
        int want = 0;
        if (key[0] == '\0' && (!value || value[0] == '\0')) {
            want = 0;
        } else {
            int idx = -1;
            for (size_t i = 0; i < n_names; i++)
                if (strcmp(names[i], key) == 0)
                    idx = (int)i;
            if (idx < 0)
                want = -ENOENT;
            else if (seen[idx])
                want = -EEXIST;
            else
                seen[idx] = value ? value : "";
        }
        if (want && !first_bad) {
            first_bad = key;
            first_err = want;
        }
        int rc = api_query_add(&q, key, value);
        FUZZ_ASSERT(rc == want, "api_query_add(\"%s\") = %d, expected %d", key, rc, want);
        FUZZ_ASSERT(q.bad_key == first_bad && q.bad_err == first_err, "first refusal lost");
    }
    for (size_t i = 0; i < n_names; i++) {
        const char *got = api_query_get(&q, names[i]);
        if (seen[i] && seen[i][0] == '\0')
            FUZZ_ASSERT(got && got[0] == '\0', "bare key %s", names[i]);
        else
            FUZZ_ASSERT(got == seen[i], "value of %s", names[i]);
        if (got)
            check_value(got, bd[0], bd[1]);
    }
    FUZZ_ASSERT(api_query_get(&q, "no-such-parameter") == NULL, "unknown name has a value");
    /* the whole remaining input as one value as well */
    check_value(in, bd[0], bd[1]);
    free(in);
    return 0;
}
