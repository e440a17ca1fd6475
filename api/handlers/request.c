#include "api/handlers/request.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers/scan.h"
#include "service/core/jsonfmt.h"

/* How items are stored: compact, any value at the top, and reals with all
 * 17 significant digits a double needs to come back bit-identical; then
 * jsonfmt_shorten spells each real with the fewest of those digits that
 * still read back to the same double. */
#define ITEM_DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

/* A reusable buffer for one item's compact text. It only ever grows to the
 * largest item accepted, which is at most max_item_bytes. */
struct item_buf {
    char *data;
    size_t cap;
};

static void item_buf_free(struct item_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

static void set_oom(struct api_problem *prob)
{
    api_problem_set(prob, API_PROBLEM_TOO_LARGE,
                    "the service has no memory for a request this large right now");
}

/*
 * Serializes `item` and appends it to `items`. `pointer_fmt` with `index`
 * names the item in a too-large problem. Returns 0, -E2BIG (the item is
 * over the limit: problem set), -ENOMEM (problem set).
 */
static int append_item(struct job_items *items, struct item_buf *buf, const json_t *item,
                       const struct api_request_limits *lim, size_t index, bool ndjson,
                       struct api_problem *prob)
{
    size_t need = json_dumpb(item, buf->data, buf->cap, ITEM_DUMP_FLAGS);
    if (need == 0) {
        /* a value always has at least one byte: 0 is jansson failing */
        set_oom(prob);
        return -ENOMEM;
    }
    if (need > lim->max_item_bytes) {
        api_problem_set(prob, API_PROBLEM_TOO_LARGE,
                        "item %zu is %zu bytes of compact JSON; an item may have at most %zu",
                        index, need, lim->max_item_bytes);
        api_problem_set_index(prob, index);
        if (ndjson)
            api_problem_set_pointer(prob, "/%zu", index);
        else
            api_problem_set_pointer(prob, "/inputs/%zu", index);
        api_problem_set_limit(prob, lim->max_item_bytes);
        return -E2BIG;
    }
    if (need > buf->cap) {
        char *p = realloc(buf->data, need);
        if (!p) {
            set_oom(prob);
            return -ENOMEM;
        }
        buf->data = p;
        buf->cap = need;
        if (json_dumpb(item, buf->data, buf->cap, ITEM_DUMP_FLAGS) != need) {
            set_oom(prob);
            return -ENOMEM;
        }
    }
    int rc = job_items_append(items, buf->data, jsonfmt_shorten(buf->data, need));
    if (rc == -E2BIG) {
        api_problem_set(prob, API_PROBLEM_TOO_LARGE,
                        "the items of one job may not pass 4 GiB of JSON text");
        return -E2BIG;
    }
    if (rc) {
        set_oom(prob);
        return -ENOMEM;
    }
    return 0;
}

static int too_many_items(struct api_problem *prob, const struct api_request_limits *lim,
                          const char *pointer)
{
    api_problem_set(prob, API_PROBLEM_TOO_LARGE, "a job may have at most %zu items",
                    lim->max_items);
    api_problem_set_limit(prob, lim->max_items);
    if (pointer)
        api_problem_set_pointer(prob, "%s", pointer);
    return -E2BIG;
}

/* Turns a jansson decoding error into a problem. Returns -EINVAL, or
 * -ENOMEM when jansson ran out of memory (not the client's fault). */
static int decode_error(const json_error_t *err, size_t ndjson_line, struct api_problem *prob)
{
    if (json_error_code(err) == json_error_out_of_memory) {
        set_oom(prob);
        return -ENOMEM;
    }
    if (ndjson_line) {
        api_problem_set(prob, API_PROBLEM_INVALID_JSON, "NDJSON line %zu, column %d: %s",
                        ndjson_line, err->column, err->text);
        /* each line is parsed alone, so jansson's column is the line's */
        api_problem_set_position(prob, ndjson_line, err->column > 0 ? (uint64_t)err->column : 0);
        return -EINVAL;
    }
    api_problem_set(prob, API_PROBLEM_INVALID_JSON, "JSON syntax error at line %d, column %d: %s",
                    err->line, err->column, err->text);
    if (err->line > 0)
        api_problem_set_position(prob, (uint64_t)err->line,
                                 err->column > 0 ? (uint64_t)err->column : 0);
    return -EINVAL;
}

static int invalid_job(struct api_problem *prob, const char *pointer, const char *detail)
{
    api_problem_set(prob, API_PROBLEM_INVALID_JOB, "%s", detail);
    api_problem_set_pointer(prob, "%s", pointer);
    return -EINVAL;
}

/* Validates "options" (chunk_size, item_timeout_s, max_attempts) into *opt. */
static int parse_options(const json_t *options, const struct api_request_limits *lim,
                         struct job_options *opt, struct api_problem *prob)
{
    if (!json_is_object(options))
        return invalid_job(prob, "/options", "\"options\" must be an object");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)options, key, val) {
        if (!strcmp(key, "item_timeout_s")) {
            unsigned max_ms = lim->max_item_timeout_ms ? lim->max_item_timeout_ms
                                                       : API_REQUEST_DEFAULT_MAX_TIMEOUT_MS;
            double v = json_number_value(val);
            if (!json_is_number(val) || !(v >= 0.001) || v * 1000.0 > (double)max_ms) {
                api_problem_set(prob, API_PROBLEM_INVALID_JOB,
                                "\"item_timeout_s\" must be a number of seconds from 0.001 to "
                                "%.3f (--max-item-timeout)",
                                max_ms / 1000.0);
                api_problem_set_pointer(prob, "/options/item_timeout_s");
                return -EINVAL;
            }
            opt->item_timeout_ms = (uint32_t)(v * 1000.0 + 0.5);
            continue;
        }
        if (!strcmp(key, "max_attempts")) {
            if (!json_is_integer(val) || json_integer_value(val) < 1 ||
                json_integer_value(val) > (json_int_t)API_REQUEST_MAX_ATTEMPTS)
                return invalid_job(prob, "/options/max_attempts",
                                   "\"max_attempts\" must be an integer from 1 to 100");
            opt->max_attempts = (uint32_t)json_integer_value(val);
            continue;
        }
        if (strcmp(key, "chunk_size") != 0) {
            api_problem_set(prob, API_PROBLEM_INVALID_JOB,
                            "unknown member \"%s\" in \"options\" (known: chunk_size, "
                            "item_timeout_s, max_attempts)",
                            key);
            api_problem_set_pointer_key(prob, "/options", key);
            return -EINVAL;
        }
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            (uint64_t)json_integer_value(val) > UINT32_MAX)
            return invalid_job(prob, "/options/chunk_size",
                               "\"chunk_size\" must be an integer from 0 (adaptive) to 4294967295");
        opt->chunk_size = (uint32_t)json_integer_value(val);
    }
    return 0;
}

/* Checks the top-level shape. Borrowed results in *model, *inputs. With
 * `scanned` (the fast path, scan.h) root holds every member but "inputs",
 * whose items the scan has already checked, and *inputs is left alone. */
static int check_shape(const json_t *root, const struct api_request_limits *lim,
                       const char **model, const json_t **inputs, struct job_options *opt,
                       bool scanned, struct api_problem *prob)
{
    if (!json_is_object(root))
        return invalid_job(prob, "",
                           "the body must be a JSON object with \"model\" and \"inputs\"");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "model") != 0 && strcmp(key, "inputs") != 0 &&
            strcmp(key, "options") != 0 && strcmp(key, "webhook") != 0) {
            api_problem_set(prob, API_PROBLEM_INVALID_JOB,
                            "unknown member \"%s\" (known: model, inputs, options, webhook)",
                            key);
            api_problem_set_pointer_key(prob, "", key);
            return -EINVAL;
        }
    }
    const json_t *m = json_object_get(root, "model");
    if (!m)
        return invalid_job(prob, "/model", "missing member \"model\"");
    if (!json_is_string(m))
        return invalid_job(prob, "/model", "\"model\" must be a string");
    if (json_string_length(m) == 0 || strlen(json_string_value(m)) != json_string_length(m))
        return invalid_job(prob, "/model", "\"model\" must be a model's name");
    const json_t *in = json_object_get(root, "inputs");
    if (!scanned) {
        if (!in)
            return invalid_job(prob, "/inputs", "missing member \"inputs\"");
        if (!json_is_array(in))
            return invalid_job(prob, "/inputs", "\"inputs\" must be an array of items");
        if (json_array_size(in) == 0)
            return invalid_job(prob, "/inputs", "\"inputs\" must hold at least one item");
    }
    const json_t *options = json_object_get(root, "options");
    if (options) {
        int rc = parse_options(options, lim, opt, prob);
        if (rc)
            return rc;
    }
    const json_t *hook = json_object_get(root, "webhook");
    if (hook) {
        if (!json_is_object(hook))
            return invalid_job(prob, "/webhook", "\"webhook\" must be an object {\"url\": ...}");
        json_object_foreach((json_t *)hook, key, val) {
            if (strcmp(key, "url") != 0) {
                api_problem_set(prob, API_PROBLEM_INVALID_JOB,
                                "unknown member \"%s\" in \"webhook\" (known: url)", key);
                api_problem_set_pointer_key(prob, "/webhook", key);
                return -EINVAL;
            }
        }
        const json_t *url = json_object_get(hook, "url");
        if (!json_is_string(url) || json_string_length(url) == 0 ||
            json_string_length(url) > API_REQUEST_WEBHOOK_URL_MAX ||
            strlen(json_string_value(url)) != json_string_length(url))
            return invalid_job(prob, "/webhook/url",
                               "\"webhook.url\" must be an http or https URL of at most 2048 "
                               "characters");
    }
    *model = json_string_value(m);
    if (!scanned)
        *inputs = in;
    return 0;
}

/* Appends "/token" (RFC 6901: ~ and / escaped) to ptr[0..*len). Returns
 * false when it does not fit (the pointer then names an ancestor). */
static bool pointer_push(char *ptr, size_t cap, size_t *len, const char *token)
{
    size_t o = *len;
    if (o + 1 >= cap)
        return false;
    ptr[o++] = '/';
    for (const char *t = token; *t; t++) {
        const char *esc = *t == '~' ? "~0" : *t == '/' ? "~1" : NULL;
        size_t n = esc ? 2 : 1;
        if (o + n >= cap)
            return false;
        memcpy(ptr + o, esc ? esc : t, n);
        o += n;
    }
    ptr[o] = '\0';
    *len = o;
    return true;
}

/* True when v nests deeper than max (v itself at `depth`); then ptr holds
 * the JSON pointer of the first container past the limit. Recursion is
 * bounded by jansson's own parsing depth limit. */
static bool too_deep(const json_t *v, unsigned depth, unsigned max, char *ptr, size_t cap,
                     size_t len)
{
    if (!json_is_object(v) && !json_is_array(v))
        return false;
    if (depth > max)
        return true;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            size_t l = len;
            bool pushed = pointer_push(ptr, cap, &l, idx);
            if (too_deep(json_array_get(v, i), depth + 1, max, ptr, cap, pushed ? l : len))
                return true;
            ptr[len] = '\0';
        }
        return false;
    }
    const char *key;
    json_t *child;
    json_object_foreach((json_t *)v, key, child) {
        size_t l = len;
        bool pushed = pointer_push(ptr, cap, &l, key);
        if (too_deep(child, depth + 1, max, ptr, cap, pushed ? l : len))
            return true;
        ptr[len] = '\0';
    }
    return false;
}

/* Refuses a document nested deeper than the limit: 400, with where. */
static int check_depth(const json_t *root, const struct api_request_limits *lim,
                       const char *prefix, size_t ndjson_line, struct api_problem *prob)
{
    unsigned max = lim->max_depth ? lim->max_depth : API_REQUEST_DEFAULT_MAX_DEPTH;
    char ptr[API_PROBLEM_POINTER_MAX];
    snprintf(ptr, sizeof ptr, "%s", prefix);
    if (!too_deep(root, 1, max, ptr, sizeof ptr, strlen(ptr)))
        return 0;
    if (ndjson_line) {
        api_problem_set(prob, API_PROBLEM_INVALID_JSON,
                        "NDJSON line %zu nests arrays and objects deeper than %u levels at %s",
                        ndjson_line, max, ptr[0] ? ptr : "/");
        prob->line = ndjson_line;
        prob->has |= API_PROBLEM_HAS_LINE;
    } else {
        api_problem_set(prob, API_PROBLEM_INVALID_JSON,
                        "the body nests arrays and objects deeper than %u levels at %s", max,
                        ptr[0] ? ptr : "/");
    }
    api_problem_set_pointer(prob, "%s", ptr);
    api_problem_set_limit(prob, max);
    return -EINVAL;
}

/* The scan's limits are the request's. */
static struct scan_limits scan_limits_of(const struct api_request_limits *lim)
{
    return (struct scan_limits){ .max_items = lim->max_items,
                                 .max_item_bytes = lim->max_item_bytes,
                                 .max_depth = lim->max_depth };
}

/* Fills out->model, ->opt, ->webhook_url from the members that are not
 * "inputs". Returns 0, -ENOMEM, or -EAGAIN when anything is wrong with
 * them (the jansson path then says what). */
static int scanned_rest(const json_t *rest, const struct api_request_limits *lim,
                        struct api_job_request *out)
{
    struct api_problem ignored;
    const char *model = NULL;
    if (check_depth(rest, lim, "", 0, &ignored) != 0 ||
        check_shape(rest, lim, &model, NULL, &out->opt, true, &ignored) != 0)
        return -EAGAIN;
    out->model = strdup(model);
    const char *hook_url =
        json_string_value(json_object_get(json_object_get(rest, "webhook"), "url"));
    if (hook_url)
        out->webhook_url = strdup(hook_url);
    if (!out->model || (hook_url && !out->webhook_url))
        return -ENOMEM;
    return 0;
}

int api_request_parse_json(const char *body, size_t len, const struct api_request_limits *lim,
                           struct api_job_request *out, struct api_problem *prob)
{
    memset(out, 0, sizeof *out);
    /* the fast path first (scan.h); anything it does not accept, errors
     * included, is parsed again by jansson below, whose answer is the
     * reference */
    struct scan_limits sl = scan_limits_of(lim);
    struct job_items *items = NULL;
    json_t *rest = NULL;
    int rc = scan_json_body(body, len, &sl, &items, &rest);
    if (rc == 0) {
        out->items = items;
        rc = scanned_rest(rest, lim, out);
        json_decref(rest);
        if (rc == 0)
            return 0;
        api_job_request_clear(out);
    }
    if (rc == -ENOMEM) {
        set_oom(prob);
        return -ENOMEM;
    }
    return api_request_parse_json_jansson(body, len, lim, out, prob);
}

int api_request_parse_json_jansson(const char *body, size_t len,
                                   const struct api_request_limits *lim,
                                   struct api_job_request *out, struct api_problem *prob)
{
    memset(out, 0, sizeof *out);
    json_error_t err;
    /* DECODE_ANY: "42" is well-formed JSON of the wrong shape (422), not 400 */
    /* ALLOW_NUL: "a\u0000b" is valid JSON, and an item may hold it (a
     * model name may not: check_shape refuses it). */
    json_t *root =
        json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root)
        return decode_error(&err, 0, prob);
    int depth_rc = check_depth(root, lim, "", 0, prob);
    if (depth_rc) {
        json_decref(root);
        return depth_rc;
    }

    struct item_buf buf = { NULL, 0 };
    const char *model = NULL;
    const json_t *inputs = NULL;
    int rc = check_shape(root, lim, &model, &inputs, &out->opt, false, prob);
    if (rc)
        goto fail;
    size_t n = json_array_size(inputs);
    if (n > lim->max_items) {
        rc = too_many_items(prob, lim, "/inputs");
        goto fail;
    }
    out->items = job_items_new();
    out->model = strdup(model);
    const char *hook_url = json_string_value(json_object_get(json_object_get(root, "webhook"), "url"));
    if (hook_url)
        out->webhook_url = strdup(hook_url);
    if (!out->items || !out->model || (hook_url && !out->webhook_url)) {
        set_oom(prob);
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        rc = append_item(out->items, &buf, json_array_get(inputs, i), lim, i, false, prob);
        if (rc)
            goto fail;
    }
    item_buf_free(&buf);
    json_decref(root);
    return 0;

fail:
    item_buf_free(&buf);
    api_job_request_clear(out);
    json_decref(root);
    return rc;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

int api_request_parse_ndjson(const char *body, size_t len, const struct api_request_limits *lim,
                             struct job_items **items, struct api_problem *prob)
{
    struct scan_limits sl = scan_limits_of(lim);
    int rc = scan_ndjson_body(body, len, &sl, items);
    if (rc == 0)
        return 0;
    if (rc == -ENOMEM) {
        set_oom(prob);
        return -ENOMEM;
    }
    return api_request_parse_ndjson_jansson(body, len, lim, items, prob);
}

int api_request_parse_ndjson_jansson(const char *body, size_t len,
                                     const struct api_request_limits *lim,
                                     struct job_items **items, struct api_problem *prob)
{
    *items = NULL;
    struct job_items *list = job_items_new();
    if (!list) {
        set_oom(prob);
        return -ENOMEM;
    }
    struct item_buf buf = { NULL, 0 };
    size_t count = 0;
    size_t lineno = 0;
    const char *p = body;
    const char *end = body + len;
    int rc = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        lineno++;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (!is_blank(p, n)) {
            if (count == lim->max_items) {
                rc = too_many_items(prob, lim, NULL);
                goto fail;
            }
            json_error_t err;
            json_t *item = json_loadb(
                p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
            if (!item) {
                rc = decode_error(&err, lineno, prob);
                goto fail;
            }
            char prefix[32];
            snprintf(prefix, sizeof prefix, "/%zu", count);
            rc = check_depth(item, lim, prefix, lineno, prob);
            if (rc) {
                json_decref(item);
                goto fail;
            }
            rc = append_item(list, &buf, item, lim, count, true, prob);
            json_decref(item);
            if (rc) {
                /* NDJSON users find a line faster than an index */
                if (rc == -E2BIG && (prob->has & API_PROBLEM_HAS_INDEX)) {
                    prob->line = lineno;
                    prob->has |= API_PROBLEM_HAS_LINE;
                }
                goto fail;
            }
            count++;
        }
        p = nl ? nl + 1 : end;
    }
    if (count == 0) {
        rc = invalid_job(prob, "", "the NDJSON body holds no item (one JSON value per line)");
        goto fail;
    }
    item_buf_free(&buf);
    *items = list;
    return 0;

fail:
    item_buf_free(&buf);
    job_items_free(list);
    return rc;
}

void api_job_request_clear(struct api_job_request *r)
{
    free(r->model);
    free(r->webhook_url);
    job_items_free(r->items);
    memset(r, 0, sizeof *r);
}
