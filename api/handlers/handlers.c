#include "api/handlers/handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/http/cors.h"
#include "service/core/log.h"
#include "api/handlers/object_ops.h"
#include "api/handlers/request.h"
#include "api/ui/ui.h"
#include "service/webhooks/webhook.h"
#include "service/webhooks/webhook_sender.h"

/* Largest response bodies assembled in memory: a results page (its size is
 * chosen by the client through `limit`) and the metrics text. */
#define RESULTS_PAGE_MAX_BYTES ((size_t)256 << 20)
#define METRICS_MAX_BYTES ((size_t)64 << 20)

/* Bytes libmicrohttpd asks the stream for at a time. */
#define STREAM_BLOCK_BYTES (64 * 1024)

/* Limits of the query parameters (openapi.yaml). */
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define RESULTS_LIMIT_DEFAULT 1000
#define RESULTS_LIMIT_MAX 10000

/* ------------------------------------------------------------ helpers */

static enum MHD_Result not_found_job(struct api_req *r, const char *id)
{
    return api_send_problemf(r, API_PROBLEM_NOT_FOUND, "no job %s", id);
}

static enum MHD_Result bad_param(struct api_req *r, const char *name, const char *value,
                                 const char *want)
{
    return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                             "query parameter %s=%s: %s", name, value, want);
}

/*
 * Reads an optional integer query parameter into *out (left as the default
 * when absent). Returns true when it is absent or valid; otherwise it has
 * answered 400 and returns false (with *ret set to the answer).
 */
static bool query_u64(struct api_req *r, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, enum MHD_Result *ret)
{
    const char *v = api_query_get(&r->query, name);
    if (!v)
        return true;
    uint64_t n;
    if (api_parse_u64(v, min, max, &n) == 0) {
        *out = n;
        return true;
    }
    char want[96];
    snprintf(want, sizeof want, "must be a decimal integer from %llu to %llu",
             (unsigned long long)min, (unsigned long long)max);
    *ret = bad_param(r, name, v, want);
    return false;
}

/* Writes the engine's model names, ", "-separated, to `out` (best effort:
 * a detail without the list is still a correct answer). */
static void model_names(struct engine *e, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *models = engine_models_json(e);
    json_t *list = json_object_get(models, "models");
    size_t used = 0, i;
    json_t *m;
    json_array_foreach(list, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!name)
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", name);
        if (n < 0 || (size_t)n >= outlen - used) {
            out[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
    json_decref(models);
}

static enum MHD_Result unknown_model(struct api_req *r, const char *model)
{
    char names[512];
    model_names(r->engine, names, sizeof names);
    return api_send_problemf(r, API_PROBLEM_UNKNOWN_MODEL,
                             "model \"%s\" is not loaded; loaded models: %s", model,
                             names[0] ? names : "(none)");
}

/* ------------------------------------------------------------ createJob */

static const char *const create_job_query[] = { "model", "chunk_size", NULL };

/* A failure of the job store: while a PostgreSQL store cannot be reached
 * (-ENOTCONN) a 503 with Retry-After (the store reconnects by itself and
 * nothing accepted is lost), otherwise a 500 saying what failed. */
static enum MHD_Result store_failure(struct api_req *r, int rc, const char *what)
{
    if (rc == -ENOTCONN)
        return api_send_problemf(r, API_PROBLEM_NOT_READY,
                                 "%s: the job store (PostgreSQL) cannot be reached right now; "
                                 "retry shortly",
                                 what);
    return api_send_problemf(r, API_PROBLEM_INTERNAL, "%s failed: %s", what, strerror(-rc));
}

/* operationId createJob, step 1: everything that can be refused before the
 * body is read, so that a client is not made to upload for nothing. */
static enum MHD_Result create_job_begin(struct api_req *r)
{
    const char *cl = api_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t length;
    if (cl && api_parse_u64(cl, 0, UINT64_MAX, &length) == 0 &&
        length > r->cfg->max_body_bytes) {
        struct api_problem p;
        api_problem_set(&p, API_PROBLEM_TOO_LARGE,
                        "the body is %llu bytes; at most %zu are accepted",
                        (unsigned long long)length, r->cfg->max_body_bytes);
        api_problem_set_limit(&p, r->cfg->max_body_bytes);
        return api_send_problem(r, &p);
    }
    const char *ct = api_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    int rc = api_content_type_parse(ct, &r->body_type);
    if (rc == -ENOENT)
        return api_send_problemf(r, API_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                 "a Content-Type is required: application/json or "
                                 "application/x-ndjson");
    if (rc)
        return api_send_problemf(r, API_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                 "Content-Type %s is not accepted: use application/json or "
                                 "application/x-ndjson (charset utf-8 only)",
                                 ct);
    const char *model = api_query_get(&r->query, "model");
    const char *chunk = api_query_get(&r->query, "chunk_size");
    if (r->body_type == API_BODY_JSON) {
        /* one place for each setting: a JSON body carries them itself */
        if (model || chunk)
            return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                     "query parameter %s applies to NDJSON bodies only; a JSON "
                                     "body names \"model\" and \"options\" itself",
                                     model ? "model" : "chunk_size");
    } else {
        if (!model)
            return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                     "query parameter model is required with an NDJSON body");
        enum MHD_Result ret;
        uint64_t cs = 0;
        if (!query_u64(r, "chunk_size", 0, UINT32_MAX, &cs, &ret))
            return ret;
        if (!engine_model_exists(r->engine, model))
            return unknown_model(r, model);
    }
    const char *key = api_req_header(r, "Idempotency-Key");
    if (key && !api_idempotency_key_valid(key))
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "header Idempotency-Key must be 1 to %d visible ASCII "
                                 "characters (no spaces)",
                                 API_IDEMPOTENCY_KEY_MAX);
    if (atomic_load_explicit(r->stopping, memory_order_relaxed))
        return api_send_problemf(r, API_PROBLEM_SHUTTING_DOWN,
                                 "the service is shutting down and takes no new jobs");
    r->wants_body = true;
    return MHD_YES;
}

/* Submits parsed items; takes `items` in every case. */
static enum MHD_Result create_job_submit(struct api_req *r, const char *model,
                                         struct job_items *items,
                                         const struct job_options *given)
{
    char id[ENGINE_JOB_ID_LEN + 1];
    json_t *job = NULL;
    size_t n_items = job_items_count(items);
    struct job_options opt = *given;
    opt.idempotency_key = api_req_header(r, "Idempotency-Key");
    int rc = engine_submit(r->engine, model, items, &opt, id, &job);
    if (rc == ENGINE_REPLAYED) {
        /* The same request again: the job it made, not a new one. */
        job_items_free(items);
        char location[sizeof "/v1/jobs/" + ENGINE_JOB_ID_LEN];
        snprintf(location, sizeof location, "/v1/jobs/%s", id);
        struct MHD_Response *resp = job ? api_response_json(job) : NULL;
        json_decref(job);
        if (!resp)
            return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory");
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES) {
            MHD_destroy_response(resp);
            return MHD_NO;
        }
        log_info("job %s returned again for its Idempotency-Key, request %s", id, r->request_id);
        return api_send(r, MHD_HTTP_OK, resp);
    }
    if (rc) {
        job_items_free(items);
        json_decref(job);
        switch (rc) {
        case -EEXIST:
            return api_send_problemf(r, API_PROBLEM_CONFLICT,
                                     "Idempotency-Key %s was used for another request (job %s)",
                                     opt.idempotency_key, id);
        case -ENOSPC:
            return api_send_problemf(r, API_PROBLEM_INSUFFICIENT_STORAGE,
                                     "the job store is full; nothing was accepted");
        case -EIO:
            return api_send_problemf(r, API_PROBLEM_INTERNAL,
                                     "the job could not be stored; nothing was accepted");
        case -ENOTCONN:
            return store_failure(r, rc, "submitting the job (nothing was accepted)");
        case -ENOENT:
            return unknown_model(r, model);
        case -EINVAL:
            return api_send_problemf(r, API_PROBLEM_INVALID_JOB, "the job holds no item");
        case -ESHUTDOWN:
            return api_send_problemf(r, API_PROBLEM_SHUTTING_DOWN,
                                     "the service is shutting down and takes no new jobs");
        case -EFBIG: {
            /* It could never fit: "retry later" would be a lie. */
            struct api_problem p;
            api_problem_set(&p, API_PROBLEM_TOO_LARGE,
                            "the job has %zu items; the service holds at most %zu unfinished "
                            "items (--max-queued-items)",
                            n_items, r->cfg->max_queued_items);
            api_problem_set_limit(&p, r->cfg->max_queued_items);
            return api_send_problem(r, &p);
        }
        /* Admission control: refused whole, never partly accepted. */
        case -EBUSY:
            return api_send_problemf(r, API_PROBLEM_OVERLOADED,
                                     "the service holds as many unfinished items as it accepts "
                                     "(--max-queued-items); retry when jobs have finished");
        case -EHOSTDOWN:
            return api_send_problemf(r, API_PROBLEM_MODEL_UNAVAILABLE,
                                     "the workers of model \"%s\" cannot start; see /readyz",
                                     model);
        case -ENOMEM:
            return api_send_problemf(r, API_PROBLEM_TOO_LARGE,
                                     "the service has no memory for a job this large right now");
        default:
            return api_send_problemf(r, API_PROBLEM_INTERNAL, "submitting the job failed: %s",
                                     strerror(-rc));
        }
    }
    if (!job)
        job = engine_job_json(r->engine, id, NULL);
    struct MHD_Response *resp = job ? api_response_json(job) : NULL;
    json_decref(job);
    char location[sizeof "/v1/jobs/" + ENGINE_JOB_ID_LEN];
    snprintf(location, sizeof location, "/v1/jobs/%s", id);
    if (!resp) {
        /* The job exists and runs. A 500 now would invite the client to
         * submit it again, so it still gets its 202 and Location, without
         * the body that could not be built. */
        log_warn("request %s: job %s accepted, but no memory for its body", r->request_id, id);
        resp = api_response_take(NULL, 0, NULL);
    }
    if (resp && MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    log_info("job %s submitted: model %s, request %s", id, model, r->request_id);
    return api_send(r, MHD_HTTP_ACCEPTED, resp);
}

/* operationId createJob, step 2: the body is in. */
static enum MHD_Result create_job_finish(struct api_req *r)
{
    struct api_request_limits lim = {
        .max_items = r->cfg->max_items,
        .max_item_bytes = engine_max_item_bytes(r->engine),
        .max_item_timeout_ms = r->cfg->max_item_timeout_ms,
        .max_depth = r->cfg->max_json_depth,
    };
    if (r->cfg->max_item_bytes && r->cfg->max_item_bytes < lim.max_item_bytes)
        lim.max_item_bytes = r->cfg->max_item_bytes;
    /* an empty body has a NULL buffer; the parsers want a pointer */
    const char *body = r->body.data ? r->body.data : "";
    struct api_problem p;

    if (r->body_type == API_BODY_NDJSON) {
        struct job_items *items = NULL;
        if (api_request_parse_ndjson(body, r->body.len, &lim, &items, &p) != 0)
            return api_send_problem(r, &p);
        /* the items hold what the body said: free it before the job is made */
        sbuf_free(&r->body);
        struct job_options opt = { 0 };
        uint64_t cs = 0;
        const char *v = api_query_get(&r->query, "chunk_size");
        if (v && api_parse_u64(v, 0, UINT32_MAX, &cs) == 0)
            opt.chunk_size = (uint32_t)cs;
        return create_job_submit(r, api_query_get(&r->query, "model"), items, &opt);
    }

    struct api_job_request jr;
    if (api_request_parse_json(body, r->body.len, &lim, &jr, &p) != 0)
        return api_send_problem(r, &p);
    sbuf_free(&r->body);
    enum MHD_Result ret;
    char why[512];
    if (!engine_model_exists(r->engine, jr.model)) {
        ret = unknown_model(r, jr.model);
    } else if (jr.webhook_url &&
               webhook_url_allowed(r->cfg->webhook_hosts, jr.webhook_url, why, sizeof why) != 0) {
        /* SSRF: only the hosts the operator allowed (webhook.h) */
        api_problem_set(&p, API_PROBLEM_INVALID_JOB, "%s", why);
        api_problem_set_pointer(&p, "/webhook/url");
        ret = api_send_problem(r, &p);
    } else {
        struct job_items *items = jr.items;
        jr.items = NULL;
        jr.opt.webhook_url = jr.webhook_url;
        ret = create_job_submit(r, jr.model, items, &jr.opt);
    }
    api_job_request_clear(&jr);
    return ret;
}

/* ------------------------------------------------------------ listJobs */

static const char *const list_jobs_query[] = { "status", "limit", "after", NULL };

/* operationId listJobs */
static enum MHD_Result list_jobs(struct api_req *r)
{
    int status = -1;
    const char *sv = api_query_get(&r->query, "status");
    if (sv) {
        status = engine_status_parse(sv);
        if (status < 0)
            return bad_param(r, "status", sv,
                             "must be one of queued, running, succeeded, failed, cancelled");
    }
    uint64_t limit = LIST_LIMIT_DEFAULT;
    enum MHD_Result ret;
    if (!query_u64(r, "limit", 1, LIST_LIMIT_MAX, &limit, &ret))
        return ret;
    const char *after = api_query_get(&r->query, "after");
    if (after && !api_job_id_valid(after, strlen(after)))
        return bad_param(r, "after", after, "must be a job id (26 characters of [a-z2-7])");
    int err = 0;
    json_t *list = engine_jobs_json(r->engine, status, (size_t)limit, after, &err);
    if (!list) {
        if (err == -ENOENT)
            return api_send_problemf(r, API_PROBLEM_NOT_FOUND,
                                     "no job %s (query parameter after)", after);
        return store_failure(r, err ? err : -ENOMEM, "listing jobs");
    }
    /* conditional: the dashboard polls the list every second */
    ret = api_send_json_etag(r, list);
    json_decref(list);
    return ret;
}

/* ------------------------------------------------------------ getJob */

static const char *const get_job_query[] = { "wait", NULL };

/* Longest long-poll (openapi.yaml: getJob's wait). */
#define WAIT_MAX_MS 60000u

/* Parses wait=S: seconds, more than 0 and at most 60, with up to 3
 * decimals, into milliseconds. Returns 0 or -EINVAL. */
static int parse_wait(const char *v, uint64_t *ms)
{
    uint64_t whole = 0, frac = 0;
    unsigned digits = 0, decimals = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
        whole = whole * 10 + (uint64_t)(*p - '0');
    if (digits == 0)
        return -EINVAL;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9' && decimals < 3; p++, decimals++)
            frac = frac * 10 + (uint64_t)(*p - '0');
        if (decimals == 0)
            return -EINVAL;
        for (unsigned d = decimals; d < 3; d++)
            frac *= 10;
    }
    if (*p)
        return -EINVAL;
    uint64_t total = whole * 1000 + frac;
    if (total == 0 || total > WAIT_MAX_MS)
        return -EINVAL;
    *ms = total;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Ends a long-poll's watch (before its answer). */
static void wait_end(struct api_req *r)
{
    api_longpoll_unwatch(r->longpoll, &r->lp_wait);
    engine_unwatch(r->engine, r->watch);
    r->watch = NULL;
}

/* Adds the job's "webhook" member (its delivery state) when it has one,
 * and makes the ETag change with it. */
static void add_webhook_state(struct api_req *r, json_t *job, char *etag, size_t etaglen)
{
    if (!r->webhooks)
        return;
    uint64_t version = 0;
    json_t *hook = webhook_sender_job_state(r->webhooks, r->match.id, &version);
    if (!hook)
        return;
    json_object_set_new(job, "webhook", hook);
    size_t n = strlen(etag);
    if (n >= 2 && etag[n - 1] == '"')
        snprintf(etag + n - 1, etaglen - (n - 1), "-w%" PRIx64 "\"", version);
}

/* Sends the Job (200) or 304, with its ETag. Takes `job`. */
static enum MHD_Result send_job(struct api_req *r, json_t *job, const char *etag,
                                bool not_modified)
{
    struct MHD_Response *resp;
    unsigned status;
    if (not_modified) {
        resp = api_response_take(NULL, 0, NULL);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = api_response_json(job);
        status = MHD_HTTP_OK;
    }
    json_decref(job);
    if (!resp)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    if (etag[0] && MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag) != MHD_YES) {
        MHD_destroy_response(resp);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    }
    return api_send(r, status, resp);
}

/*
 * operationId getJob. With wait=S it is a long-poll (longpoll.h): it
 * answers when the job has finished (or, with If-None-Match, when its ETag
 * differs from the one given), or after S seconds with the job as it is
 * then (304 for If-None-Match). Meanwhile the connection is suspended; this
 * step runs again each time it is resumed.
 */
static enum MHD_Result get_job(struct api_req *r)
{
    const char *inm = api_req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!r->wait_deadline_ns) {
        const char *wv = api_query_get(&r->query, "wait");
        uint64_t ms = 0;
        if (wv && parse_wait(wv, &ms) != 0)
            return bad_param(r, "wait", wv,
                             "must be a number of seconds, more than 0 and at most 60 (up "
                             "to 3 decimals)");
        if (wv && r->longpoll) {
            /* watched before the first look, so no change is missed */
            if (api_longpoll_watch(r->longpoll, &r->lp_wait, r->match.id) != 0)
                return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory");
            r->watch = engine_watch(r->engine, r->match.id);
            r->wait_deadline_ns = mono_ns() + ms * 1000000ull;
        }
    }
    for (;;) {
        uint64_t mark = r->lp_wait.entry ? api_longpoll_mark(r->longpoll, &r->lp_wait) : 0;
        char etag[ENGINE_ETAG_LEN + 24] = "";
        int jrc = 0;
        json_t *job = engine_job_lookup(r->engine, r->match.id, etag, &jrc);
        if (!job) {
            wait_end(r);
            return jrc == -ENOENT ? not_found_job(r, r->match.id)
                                  : store_failure(r, jrc, "reading the job");
        }
        add_webhook_state(r, job, etag, sizeof etag);
        bool match = etag[0] && api_etag_matches(inm, etag);
        if (r->lp_wait.entry) {
            bool settled = inm ? !match : !json_is_null(json_object_get(job, "finished_at"));
            bool due = mono_ns() >= r->wait_deadline_ns ||
                       atomic_load_explicit(r->stopping, memory_order_relaxed);
            if (!settled && !due) {
                int rc = api_longpoll_suspend(r->longpoll, &r->lp_wait, mark, r->conn,
                                              r->wait_deadline_ns);
                if (rc == 0) {
                    json_decref(job);
                    return MHD_YES; /* called again when resumed */
                }
                if (rc == -EAGAIN) {
                    json_decref(job);
                    continue; /* it changed while we looked */
                }
                /* -ESHUTDOWN: the job as it is */
            }
            wait_end(r);
        }
        return send_job(r, job, etag, match);
    }
}

/* ------------------------------------------------------------ cancelJob */

static const char *const cancel_job_query[] = { "purge", NULL };

/* operationId cancelJob, with purge=true: delete a finished job now. */
static enum MHD_Result purge_job(struct api_req *r)
{
    int rc = engine_purge(r->engine, r->match.id);
    if (rc == 0) {
        log_info("job %s purged, request %s", r->match.id, r->request_id);
        return api_send(r, MHD_HTTP_NO_CONTENT, api_response_take(NULL, 0, NULL));
    }
    if (rc == -ENOENT)
        return not_found_job(r, r->match.id);
    if (rc == -EBUSY)
        return api_send_problemf(r, API_PROBLEM_CONFLICT,
                                 "job %s has not finished: cancel it first, then purge it",
                                 r->match.id);
    return store_failure(r, rc, "purging the job");
}

/* operationId cancelJob */
static enum MHD_Result cancel_job(struct api_req *r)
{
    const char *purge = api_query_get(&r->query, "purge");
    bool do_purge = false;
    if (purge && api_parse_bool(purge, &do_purge) != 0)
        return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                 "query parameter purge must be true or false");
    if (do_purge)
        return purge_job(r);
    json_t *job = NULL;
    int rc = engine_cancel(r->engine, r->match.id, &job);
    enum MHD_Result ret;
    if (rc == 0) {
        log_info("job %s cancelled, request %s", r->match.id, r->request_id);
        ret = api_send_json(r, MHD_HTTP_OK, job);
    } else if (rc == -ENOENT) {
        ret = not_found_job(r, r->match.id);
    } else if (rc == -EALREADY) {
        const char *st = json_string_value(json_object_get(job, "status"));
        ret = api_send_problemf(r, API_PROBLEM_CONFLICT, "job %s already finished (status %s)",
                                r->match.id, st ? st : "final");
    } else {
        ret = store_failure(r, rc, "cancelling the job");
    }
    json_decref(job);
    return ret;
}

/* ------------------------------------------------------------ getJobResults */

static const char *const results_query[] = { "offset", "limit", "stream", "order", "filter",
                                              NULL };

struct results_stream {
    struct engine_stream *s;
    const atomic_bool *stopping;
    struct api_pump *pump;
    struct api_waiter waiter;
    int fd; /* the client's socket, to notice it leaving; -1 if unknown */
    /* What the pump read while the connection was suspended, handed to the
     * reader when it resumes (one user at a time: pump.h). */
    char *pending;
    size_t pending_len, pending_off;
    ssize_t end;    /* engine_stream_read's -1 or -2 once seen; 0 before */
    bool gone;      /* the client left */
};

/* True when the client closed its side or the socket failed. A suspended
 * connection is not watched by libmicrohttpd, so the pump asks this. */
static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };
    if (poll(&pfd, 1, 0) <= 0)
        return false;
    return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* The pump's question (pump.h): has this stream something to do now? */
static bool results_stream_poll(void *ctx, int timeout_ms)
{
    struct results_stream *rs = ctx;
    if (atomic_load_explicit(rs->stopping, memory_order_relaxed) || rs->end || rs->gone ||
        rs->pending_off < rs->pending_len)
        return true;
    if (!rs->pending) {
        rs->pending = malloc(STREAM_BLOCK_BYTES);
        if (!rs->pending) {
            rs->end = -2; /* no memory: cut, the client sees it was not complete */
            return true;
        }
    }
    ssize_t n = engine_stream_read(rs->s, rs->pending, STREAM_BLOCK_BYTES, timeout_ms);
    if (n > 0) {
        rs->pending_len = (size_t)n;
        rs->pending_off = 0;
        return true;
    }
    if (n < 0) {
        rs->end = n;
        return true;
    }
    rs->gone = client_gone(rs->fd);
    return rs->gone;
}

/* The end of a stream, as libmicrohttpd's reader result. */
static ssize_t results_stream_end(const struct results_stream *rs, ssize_t n)
{
    /* a stream cut by shutdown must not look finished: END_WITH_ERROR
     * drops the connection without the final empty chunk */
    if (n == -2 || atomic_load_explicit(rs->stopping, memory_order_relaxed))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/*
 * libmicrohttpd's content reader for the NDJSON stream. It never blocks
 * (its thread serves other connections): with nothing to send it suspends
 * the connection and hands it to the pump (pump.h), which resumes it when
 * a result arrives, the job ends, the client leaves or the service stops;
 * libmicrohttpd then calls this again.
 */
static ssize_t results_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct results_stream *rs = cls;
    if (rs->pending_off < rs->pending_len) {
        size_t n = rs->pending_len - rs->pending_off;
        if (n > max)
            n = max;
        memcpy(buf, rs->pending + rs->pending_off, n);
        rs->pending_off += n;
        return (ssize_t)n;
    }
    if (atomic_load_explicit(rs->stopping, memory_order_relaxed) || rs->gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (rs->end)
        return results_stream_end(rs, rs->end);
    ssize_t n = engine_stream_read(rs->s, buf, max, 0);
    if (n > 0)
        return n;
    if (n < 0)
        return results_stream_end(rs, n);
    if (client_gone(rs->fd) || api_pump_wait(rs->pump, &rs->waiter) != 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return 0;
}

static void results_stream_free(void *cls)
{
    struct results_stream *rs = cls;
    engine_stream_close(rs->s);
    free(rs->pending);
    free(rs);
}

static enum MHD_Result results_stream_start(struct api_req *r,
                                           const struct engine_stream_opts *opts)
{
    struct results_stream *rs = calloc(1, sizeof *rs);
    if (!rs)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory opening the stream");
    rs->s = engine_stream_open_opts(r->engine, r->match.id, opts);
    if (!rs->s) {
        free(rs);
        /* NULL means no such job or no memory; tell them apart */
        json_t *job = engine_job_json(r->engine, r->match.id, NULL);
        if (!job)
            return not_found_job(r, r->match.id);
        json_decref(job);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory opening the stream");
    }
    rs->stopping = r->stopping;
    rs->pump = r->pump;
    rs->waiter.conn = r->conn;
    rs->waiter.poll = results_stream_poll;
    rs->waiter.ctx = rs;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    rs->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, STREAM_BLOCK_BYTES, results_stream_read, rs, results_stream_free);
    if (!resp) {
        results_stream_free(rs);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory opening the stream");
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, API_CT_NDJSON) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(resp);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory opening the stream");
    }
    /* a quiet job may send nothing for longer than --idle-timeout; the
     * stream ends with the job, the client or the service instead */
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    return api_send(r, MHD_HTTP_OK, resp);
}

/* operationId getJobResults */
static enum MHD_Result get_job_results(struct api_req *r)
{
    uint64_t offset = 0, limit = RESULTS_LIMIT_DEFAULT;
    enum MHD_Result ret;
    if (!query_u64(r, "offset", 0, SIZE_MAX, &offset, &ret) ||
        !query_u64(r, "limit", 1, RESULTS_LIMIT_MAX, &limit, &ret))
        return ret;
    bool stream;
    const char *sv = api_query_get(&r->query, "stream");
    if (sv) {
        if (api_parse_bool(sv, &stream) != 0)
            return bad_param(r, "stream", sv, "must be true or false");
    } else {
        stream = api_accept_wants_ndjson(api_req_header(r, MHD_HTTP_HEADER_ACCEPT));
    }
    /* order: input (index order) or completion; a stream's default is
     * completion (what it always was), a page is always in input order */
    const char *ov = api_query_get(&r->query, "order");
    struct engine_stream_opts opts = { 0 };
    if (ov) {
        if (strcmp(ov, "input") == 0)
            opts.input_order = true;
        else if (strcmp(ov, "completion") != 0)
            return bad_param(r, "order", ov, "must be input or completion");
        else if (!stream)
            return bad_param(r, "order", ov,
                             "a page is always in input order; completion order is for "
                             "stream=true");
    }
    const char *fv = api_query_get(&r->query, "filter");
    if (fv) {
        if (strcmp(fv, "errors") == 0)
            opts.errors_only = true;
        else if (strcmp(fv, "all") != 0)
            return bad_param(r, "filter", fv, "must be errors or all");
    }
    if (stream)
        return results_stream_start(r, &opts);

    struct sbuf page = SBUF_INIT;
    sbuf_set_limit(&page, RESULTS_PAGE_MAX_BYTES);
    int rc = opts.errors_only ? engine_results_errors_page(r->engine, r->match.id,
                                                           (size_t)offset, (size_t)limit, &page)
                              : engine_results_page(r->engine, r->match.id, (size_t)offset,
                                                    (size_t)limit, &page);
    if (rc) {
        sbuf_free(&page);
        if (rc == -ENOENT)
            return not_found_job(r, r->match.id);
        if (rc == -E2BIG)
            return api_send_problemf(r, API_PROBLEM_INVALID_PARAMETER,
                                     "query parameter limit=%llu: the page would pass %zu "
                                     "bytes; ask for fewer results",
                                     (unsigned long long)limit, RESULTS_PAGE_MAX_BYTES);
        return store_failure(r, rc, "reading results");
    }
    size_t len = page.len;
    return api_send(r, MHD_HTTP_OK, api_response_take(sbuf_steal(&page), len, API_CT_JSON));
}

/* operationId getJobResult */
static enum MHD_Result get_job_result(struct api_req *r)
{
    struct sbuf body = SBUF_INIT;
    int rc = engine_job_result(r->engine, r->match.id, &body);
    if (rc == 0) {
        size_t len = body.len;
        return api_send(r, MHD_HTTP_OK, api_response_take(sbuf_steal(&body), len, API_CT_JSON));
    }
    sbuf_free(&body);
    switch (rc) {
    case -ENOENT:
        return not_found_job(r, r->match.id);
    case -ENODATA:
        return api_send_problemf(r, API_PROBLEM_NOT_FOUND,
                                 "job %s has no job-level result: its model has no reduce "
                                 "(its results are per item, at /v1/jobs/%s/results)",
                                 r->match.id, r->match.id);
    case -EAGAIN:
        return api_send_problemf(r, API_PROBLEM_CONFLICT,
                                 "job %s has no result yet: it is reduced once every item "
                                 "has run (poll GET /v1/jobs/%s)",
                                 r->match.id, r->match.id);
    case -ECANCELED:
        return api_send_problemf(r, API_PROBLEM_CONFLICT,
                                 "job %s failed or was cancelled: it has no result",
                                 r->match.id);
    default:
        return store_failure(r, rc, "reading the result");
    }
}

/* ------------------------------------------------------------ service */

/* operationId listModels */
static enum MHD_Result list_models(struct api_req *r)
{
    json_t *models = engine_models_json(r->engine);
    enum MHD_Result ret = api_send_json(r, MHD_HTTP_OK, models);
    json_decref(models);
    return ret;
}

/* operationId listWorkers */
static enum MHD_Result list_workers(struct api_req *r)
{
    json_t *workers = engine_workers_json(r->engine);
    enum MHD_Result ret = api_send_json(r, MHD_HTTP_OK, workers);
    json_decref(workers);
    return ret;
}

/* ------------------------------------------------------------ health */

static enum MHD_Result send_status(struct api_req *r, const char *body)
{
    return api_send(r, MHD_HTTP_OK, api_response_static(body, API_CT_JSON));
}

/* operationId getHealth */
static enum MHD_Result get_health(struct api_req *r) { return send_status(r, "{\"status\":\"ok\"}"); }

/* operationId getReady */
static enum MHD_Result get_ready(struct api_req *r)
{
    char why[512] = "";
    if (engine_ready(r->engine, why, sizeof why))
        return send_status(r, "{\"status\":\"ready\"}");
    return api_send_problemf(r, API_PROBLEM_NOT_READY, "%s",
                             why[0] ? why : "the workers are not ready yet");
}

/* operationId getMetrics */
static enum MHD_Result get_metrics(struct api_req *r)
{
    struct sbuf text = SBUF_INIT;
    sbuf_set_limit(&text, METRICS_MAX_BYTES);
    int rc = engine_metrics(r->engine, &text);
    if (rc == 0)
        rc = api_objects_metrics(r->objects, &text);
    if (rc == 0 && r->longpoll)
        rc = sbuf_printf(&text,
                         "# HELP batchd_longpoll_waiting Requests waiting in GET /v1/jobs/{id}?wait=S.\n"
                         "# TYPE batchd_longpoll_waiting gauge\n"
                         "batchd_longpoll_waiting %u\n",
                         api_longpoll_waiting(r->longpoll));
    if (rc) {
        sbuf_free(&text);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "collecting metrics failed: %s",
                                 strerror(-rc));
    }
    size_t len = text.len;
    return api_send(r, MHD_HTTP_OK, api_response_take(sbuf_steal(&text), len, API_CT_METRICS));
}

/* ------------------------------------------------------------ the table */

static const struct api_op ops[] = {
    { "createJob", API_ROUTE_JOBS, API_METHOD_POST, create_job_query, create_job_begin,
      create_job_finish },
    { "listJobs", API_ROUTE_JOBS, API_METHOD_GET, list_jobs_query, list_jobs, NULL },
    { "getJob", API_ROUTE_JOB, API_METHOD_GET, get_job_query, get_job, NULL },
    { "cancelJob", API_ROUTE_JOB, API_METHOD_DELETE, cancel_job_query, cancel_job, NULL },
    { "getJobResults", API_ROUTE_JOB_RESULTS, API_METHOD_GET, results_query, get_job_results,
      NULL },
    { "getJobResult", API_ROUTE_JOB_RESULT, API_METHOD_GET, NULL, get_job_result, NULL },
    { "listModels", API_ROUTE_MODELS, API_METHOD_GET, NULL, list_models, NULL },
    { "listWorkers", API_ROUTE_WORKERS, API_METHOD_GET, NULL, list_workers, NULL },
    { "getHealth", API_ROUTE_HEALTHZ, API_METHOD_GET, NULL, get_health, NULL },
    { "getReady", API_ROUTE_READYZ, API_METHOD_GET, NULL, get_ready, NULL },
    { "getMetrics", API_ROUTE_METRICS, API_METHOD_GET, NULL, get_metrics, NULL },
    /* the object store (object_ops.h) */
    { "createObject", API_ROUTE_OBJECTS, API_METHOD_POST, api_create_object_query,
      api_create_object_begin, api_create_object_finish },
    { "listObjects", API_ROUTE_OBJECTS, API_METHOD_GET, api_list_objects_query, api_list_objects,
      NULL },
    { "getObject", API_ROUTE_OBJECT, API_METHOD_GET, api_get_object_query, api_get_object, NULL },
    { "deleteObject", API_ROUTE_OBJECT, API_METHOD_DELETE, NULL, api_delete_object, NULL },
    /* CORS preflights of the /v1 routes (cors.h) */
    { "preflightJobs", API_ROUTE_JOBS, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    { "preflightJob", API_ROUTE_JOB, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    { "preflightJobResults", API_ROUTE_JOB_RESULTS, API_METHOD_OPTIONS, NULL, api_cors_preflight,
      NULL },
    { "preflightJobResult", API_ROUTE_JOB_RESULT, API_METHOD_OPTIONS, NULL, api_cors_preflight,
      NULL },
    { "preflightModels", API_ROUTE_MODELS, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    { "preflightWorkers", API_ROUTE_WORKERS, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    { "preflightObjects", API_ROUTE_OBJECTS, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    { "preflightObject", API_ROUTE_OBJECT, API_METHOD_OPTIONS, NULL, api_cors_preflight, NULL },
    /* the dashboard (ui.h) */
    { "getDashboard", API_ROUTE_DASHBOARD, API_METHOD_GET, NULL, api_ui_get_dashboard, NULL },
    { "getUiAsset", API_ROUTE_UI_ASSET, API_METHOD_GET, NULL, api_ui_get_asset, NULL },
};

const struct api_op *api_op_find(enum api_route route, enum api_method method)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i].route == route && ops[i].method == method)
            return &ops[i];
    return NULL;
}
