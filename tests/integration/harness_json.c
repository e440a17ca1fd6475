/*
 * harness_json.c: JSON helpers and the job helpers built on them (harness.h).
 */
#include "tests/integration/harness_int.h"


#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

extern char **environ;


/* --------------------------------------------------------------------- JSON */

json_t *h_json_loads(const char *text, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (j == NULL)
        h_note("not JSON (%s at line %d column %d): %.200s", e.text, e.line, e.column, text);
    return j;
}

json_t *h_json(struct h_resp *resp)
{
    if (resp->json == NULL && resp->body != NULL)
        resp->json = h_json_loads(resp->body, resp->len);
    return resp->json;
}

json_t *h_jget(const json_t *root, const char *path)
{
    const json_t *cur = root;
    const char *p = path;
    for (int depth = 0; cur != NULL && *p != '\0' && depth < 64; depth++) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char key[128];
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, key);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(key, &end, 10);
            cur = (*end == '\0' && n > 0) ? json_array_get(cur, idx) : NULL;
        } else {
            return NULL;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    return (json_t *)cur;
}

bool h_jint(const json_t *root, const char *path, long long *out)
{
    json_t *v = h_jget(root, path);
    if (!json_is_integer(v))
        return false;
    if (out)
        *out = json_integer_value(v);
    return true;
}

bool h_jnum(const json_t *root, const char *path, double *out)
{
    json_t *v = h_jget(root, path);
    if (!json_is_number(v))
        return false;
    if (out)
        *out = json_number_value(v);
    return true;
}

const char *h_jstr(const json_t *root, const char *path)
{
    return json_string_value(h_jget(root, path));
}

bool h_json_keys_exactly(const json_t *obj, const char *const *keys)
{
    if (!json_is_object(obj)) {
        h_note("expected an object");
        return false;
    }
    bool ok = true;
    size_t nkeys = 0;
    for (; keys[nkeys] != NULL; nkeys++) {
        if (json_object_get(obj, keys[nkeys]) == NULL) {
            h_note("member \"%s\" is missing", keys[nkeys]);
            ok = false;
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        bool known = false;
        for (size_t i = 0; i < nkeys && !known; i++)
            known = strcmp(k, keys[i]) == 0;
        if (!known) {
            h_note("unexpected member \"%s\"", k);
            ok = false;
        }
    }
    return ok;
}

char *h_json_dump(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return s ? s : strdup("(null)");
}

bool h_check_problem_at(struct h_resp *resp, int status, const char *slug, const char *path,
                        const char *file, int line)
{
    bool ok = true;
    char want_type[128];
    snprintf(want_type, sizeof want_type, "urn:batchd:problem:%s", slug);
    char want_path[1024];
    snprintf(want_path, sizeof want_path, "%s", path);
    char *q = strchr(want_path, '?');
    if (q)
        *q = '\0';
    ok &= h_check(resp->status == status, file, line, "status", "got %ld, expected %d (body %.300s)",
                  resp->status, status, resp->body ? resp->body : "");
    ok &= h_check(h_resp_is(resp, "application/problem+json"), file, line, "problem content type",
                  "got \"%s\"", resp->content_type ? resp->content_type : "(none)");
    json_t *j = h_json(resp);
    if (!h_check(json_is_object(j), file, line, "problem body is a JSON object", "body %.300s",
                 resp->body ? resp->body : ""))
        return false;
    const char *type = h_jstr(j, "type");
    ok &= h_check(type != NULL && strcmp(type, want_type) == 0, file, line, "problem type",
                  "got \"%s\", expected \"%s\"", type ? type : "(none)", want_type);
    const char *title = h_jstr(j, "title");
    ok &= h_check(title != NULL && title[0] != '\0', file, line, "problem title", "missing or empty");
    long long st = -1;
    ok &= h_check(h_jint(j, "status", &st) && st == status, file, line, "problem status member",
                  "got %lld, expected %d", st, status);
    const char *detail = h_jstr(j, "detail");
    ok &= h_check(detail != NULL && detail[0] != '\0', file, line, "problem detail",
                  "missing or empty");
    const char *inst = h_jstr(j, "instance");
    ok &= h_check(inst != NULL && strcmp(inst, want_path) == 0, file, line, "problem instance",
                  "got \"%s\", expected \"%s\"", inst ? inst : "(none)", want_path);
    /* Extension members, when present, have the agreed types. */
    static const char *const int_members[] = {"index", "line", "column", "limit"};
    for (size_t i = 0; i < sizeof int_members / sizeof int_members[0]; i++) {
        json_t *v = json_object_get(j, int_members[i]);
        ok &= h_check(v == NULL || json_is_integer(v), file, line, "problem extension type",
                      "\"%s\" is not an integer", int_members[i]);
    }
    json_t *ptr = json_object_get(j, "pointer");
    ok &= h_check(ptr == NULL || (json_is_string(ptr) && (json_string_value(ptr)[0] == '\0' ||
                                                         json_string_value(ptr)[0] == '/')),
                  file, line, "problem pointer", "not a JSON pointer");
    if (!ok)
        h_note("problem body: %.400s", resp->body ? resp->body : "");
    return ok;
}

/* --------------------------------------------------------------- job helpers */

bool h_is_timestamp(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s == NULL || strlen(s) != sizeof pat - 1)
        return false;
    for (size_t i = 0; pat[i] != '\0'; i++) {
        if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
            return false;
    }
    return true;
}

bool h_is_job_id(const char *s)
{
    if (s == NULL || strlen(s) != 26)
        return false;
    for (size_t i = 0; i < 26; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
            return false;
    return true;
}

bool h_check_result_at(const json_t *res, long long *index, json_t **output,
                       const char **message, const char *file, int line)
{
    *index = -1;
    *output = NULL;
    *message = NULL;
    bool ok = h_check(json_is_object(res), file, line, "Result is an object", NULL);
    if (!ok)
        return false;
    ok &= h_check(h_jint(res, "index", index) && *index >= 0, file, line, "Result index",
                  "missing, not an integer or negative");
    json_t *out = json_object_get(res, "output");
    json_t *err = json_object_get(res, "error");
    ok &= h_check(json_object_size(res) == 2 && (out == NULL) != (err == NULL), file, line,
                  "Result has exactly index and one of output/error", NULL);
    if (err != NULL) {
        static const char *const ekeys[] = {"message", NULL};
        ok &= h_check(h_json_keys_exactly(err, ekeys) && json_is_string(json_object_get(err, "message")),
                      file, line, "Result error is {\"message\": string}", NULL);
        *message = json_string_value(json_object_get(err, "message"));
    }
    *output = out;
    if (!ok) {
        char *d = h_json_dump(res);
        h_note("result: %.300s", d);
        free(d);
    }
    return ok;
}

json_t *h_parse_ndjson_results(const char *body, size_t len)
{
    json_t *all = json_array();
    size_t pos = 0, lineno = 0;
    bool ok = CHECKF(len == 0 || body[len - 1] == '\n', "the stream does not end with a newline");
    while (ok && pos < len) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (body + pos)) : len - pos;
        lineno++;
        json_t *res = h_json_loads(body + pos, n);
        ok &= CHECKF(res != NULL, "stream line %zu is not JSON: %.200s", lineno, body + pos);
        if (res != NULL) {
            long long idx;
            json_t *out;
            const char *msg;
            ok &= CHECK_RESULT(res, &idx, &out, &msg);
            json_array_append_new(all, res);
        }
        pos += n + 1;
    }
    if (!ok) {
        json_decref(all);
        return NULL;
    }
    return all;
}

static bool is_terminal(const char *st)
{
    return st != NULL && (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
                          strcmp(st, "cancelled") == 0);
}

bool h_check_job_at(const json_t *job, const char *file, int line)
{
#define JC(cond, ...) (ok &= h_check((cond), file, line, #cond, __VA_ARGS__))
    bool ok = true;
    static const char *const keys[] = {"id", "model", "status", "counts", "created_at",
                                       "started_at", "finished_at", "throughput", "eta_seconds",
                                       "chunk_size", "error", "links", NULL};
    static const char *const count_keys[] = {"total", "done", "failed", "cancelled", NULL};
    static const char *const link_keys[] = {"self", "results", NULL};
    if (!h_check(json_is_object(job), file, line, "Job is an object", NULL))
        return false;
    /* "webhook" is there only for a job that has one (openapi.yaml) */
    json_t *bare = json_deep_copy(job);
    json_object_del(bare, "webhook");
    JC(h_json_keys_exactly(bare, keys), "Job members");
    json_decref(bare);
    const char *id = h_jstr(job, "id");
    JC(h_is_job_id(id), "id \"%s\"", id ? id : "(null)");
    JC(h_jstr(job, "model") != NULL, "model is a string");
    const char *st = h_jstr(job, "status");
    static const char *const statuses[] = {"queued", "running", "succeeded", "failed",
                                           "cancelled"};
    bool known = false;
    for (size_t i = 0; st != NULL && i < 5; i++)
        known |= strcmp(st, statuses[i]) == 0;
    JC(known, "status \"%s\"", st ? st : "(null)");
    json_t *counts = h_jget(job, "counts");
    JC(h_json_keys_exactly(counts, count_keys), "counts members");
    long long total = -1, done = -1, failed = -1, cancelled = -1;
    JC(h_jint(counts, "total", &total) && total >= 0, "counts.total %lld", total);
    JC(h_jint(counts, "done", &done) && done >= 0, "counts.done %lld", done);
    JC(h_jint(counts, "failed", &failed) && failed >= 0, "counts.failed %lld", failed);
    JC(h_jint(counts, "cancelled", &cancelled) && cancelled >= 0, "counts.cancelled %lld",
       cancelled);
    JC(done + failed + cancelled <= total, "done %lld + failed %lld + cancelled %lld > total %lld",
       done, failed, cancelled, total);
    if (st != NULL && strcmp(st, "succeeded") == 0)
        JC(done + failed == total && cancelled == 0,
           "succeeded job: done %lld + failed %lld != total %lld or cancelled %lld", done,
           failed, total, cancelled);
    JC(h_is_timestamp(h_jstr(job, "created_at")), "created_at \"%s\"",
       h_jstr(job, "created_at") ? h_jstr(job, "created_at") : "(null)");
    json_t *sa = h_jget(job, "started_at");
    JC(json_is_null(sa) || h_is_timestamp(json_string_value(sa)), "started_at");
    json_t *fa = h_jget(job, "finished_at");
    JC(json_is_null(fa) || h_is_timestamp(json_string_value(fa)), "finished_at");
    if (st != NULL) {
        /* A cancelled job's in-flight items may still be settling: its
         * finished_at comes when every item is done, failed or cancelled. */
        bool settling = strcmp(st, "cancelled") == 0 && done + failed + cancelled < total;
        if (!settling && is_terminal(st))
            JC(!json_is_null(fa), "a %s job has finished_at", st);
        else if (!settling)
            JC(json_is_null(fa), "a %s job has no finished_at", st);
        if (strcmp(st, "running") == 0)
            JC(!json_is_null(sa), "a running job has started_at");
    }
    json_t *tp = h_jget(job, "throughput");
    JC(json_is_null(tp) || (json_is_number(tp) && json_number_value(tp) >= 0), "throughput");
    json_t *eta = h_jget(job, "eta_seconds");
    JC(json_is_null(eta) || (json_is_number(eta) && json_number_value(eta) >= 0), "eta_seconds");
    if (is_terminal(st) && done + failed + cancelled == total)
        JC(json_is_null(eta), "a %s job has no eta_seconds", st);
    json_t *cs = h_jget(job, "chunk_size");
    JC(json_is_null(cs) || (json_is_integer(cs) && json_integer_value(cs) >= 1), "chunk_size");
    json_t *err = h_jget(job, "error");
    JC(json_is_null(err) || json_is_string(err), "error is null or a string");
    if (st != NULL && strcmp(st, "failed") != 0)
        JC(json_is_null(err), "error is null unless the job failed");
    json_t *links = h_jget(job, "links");
    /* links.result only for jobs of a stateful model (their reduced result) */
    static const char *const link_keys_stateful[] = {"self", "results", "result", NULL};
    JC(h_json_keys_exactly(links, h_jget(links, "result") ? link_keys_stateful : link_keys),
       "links members");
    if (id != NULL) {
        char self[64], res[80];
        snprintf(self, sizeof self, "/v1/jobs/%s", id);
        snprintf(res, sizeof res, "/v1/jobs/%s/results", id);
        const char *ls = h_jstr(links, "self"), *lr = h_jstr(links, "results");
        JC(ls != NULL && strcmp(ls, self) == 0, "links.self \"%s\"", ls ? ls : "(null)");
        JC(lr != NULL && strcmp(lr, res) == 0, "links.results \"%s\"", lr ? lr : "(null)");
        const char *l1 = h_jstr(links, "result");
        JC(l1 == NULL || (strncmp(l1, res, strlen(res) - 1) == 0 && l1[strlen(res) - 1] == '\0'),
           "links.result \"%s\"", l1 ? l1 : "(null)");
    }
    if (!ok) {
        char *d = h_json_dump(job);
        h_note("job: %.600s", d);
        free(d);
    }
    return ok;
#undef JC
}

bool h_submit(struct h_service *s, const char *path, const char *ctype, const char *body,
              size_t len, char *id, long timeout_s)
{
    char ct[256];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *hdrs[] = {ct, NULL};
    struct h_req req = {.method = "POST", .path = path, .headers = hdrs, .body = body,
                        .body_len = len, .timeout_s = timeout_s};
    struct h_resp r;
    id[0] = '\0';
    if (!CHECKF(h_request(s, &req, &r) == 0, "%s", r.error)) {
        h_resp_free(&r);
        return false;
    }
    bool ok = CHECKF(r.status == 202, "POST %s: status %ld, body %.400s", path, r.status, r.body);
    if (ok) {
        json_t *job = h_json(&r);
        ok &= CHECK_JOB(job);
        const char *jid = h_jstr(job, "id");
        const char *loc = h_resp_header(&r, "Location");
        char want[64];
        snprintf(want, sizeof want, "/v1/jobs/%s", jid ? jid : "?");
        ok &= CHECKF(loc != NULL && strcmp(loc, want) == 0, "Location \"%s\", expected \"%s\"",
                     loc ? loc : "(none)", want);
        ok &= CHECKF(h_resp_is(&r, "application/json"), "content type %s",
                     r.content_type ? r.content_type : "(none)");
        if (jid != NULL && h_is_job_id(jid))
            snprintf(id, 32, "%s", jid);
        else
            ok = false;
    }
    h_resp_free(&r);
    return ok;
}

json_t *h_poll_job(struct h_service *s, const char *id, int timeout_s,
                   bool (*pred)(const json_t *job, void *arg), void *arg)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = h_now() + timeout_s;
    long sleep_ms = 10;
    for (int i = 0; i < 1000000; i++) {
        struct h_resp r;
        if (h_get(s, path, &r) == 0 && r.status == 200) {
            json_t *job = h_json(&r);
            if (job != NULL && pred(job, arg)) {
                json_incref(job);
                h_resp_free(&r);
                return job;
            }
        } else if (r.status != 0 && r.status != 200) {
            h_note("GET %s: status %ld %.200s", path, r.status, r.body);
            h_resp_free(&r);
            return NULL;
        }
        h_resp_free(&r);
        if (h_now() > deadline)
            return NULL;
        h_sleep_ms(sleep_ms);
        if (sleep_ms < 200)
            sleep_ms *= 2;
    }
    return NULL;
}

bool h_job_started(const json_t *job, void *arg)
{
    (void)arg;
    const char *st = h_jstr(job, "status");
    return st != NULL && strcmp(st, "queued") != 0;
}

static bool job_is_finished(const json_t *job, void *arg)
{
    (void)arg;
    const char *st = h_jstr(job, "status");
    if (!is_terminal(st))
        return false;
    /* finished_at comes once the results are durable (the store) */
    if (json_is_null(h_jget(job, "finished_at")))
        return false;
    if (strcmp(st, "cancelled") == 0) {
        long long t = 0, d = 0, f = 0, c = 0;
        h_jint(job, "counts/total", &t);
        h_jint(job, "counts/done", &d);
        h_jint(job, "counts/failed", &f);
        h_jint(job, "counts/cancelled", &c);
        /* finished_at comes when the running tasks have returned and their
         * results are durable: a moment after the counts add up */
        return d + f + c == t && !json_is_null(h_jget(job, "finished_at"));
    }
    return true;
}

json_t *h_wait_job(struct h_service *s, const char *id, int timeout_s)
{
    json_t *job = h_poll_job(s, id, timeout_s, job_is_finished, NULL);
    CHECKF(job != NULL, "job %s did not finish within %d s", id, timeout_s);
    if (job != NULL)
        CHECK_JOB(job);
    return job;
}

bool h_each_result(struct h_service *s, const char *id, size_t n, size_t limit,
                   bool (*fn)(const json_t *res, void *arg), void *arg)
{
    size_t offset = 0, seen = 0;
    size_t max_pages = n / (limit ? limit : 1) + 3;
    bool ok = true;
    for (size_t page = 0; page < max_pages && ok; page++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%zu&limit=%zu", id, offset, limit);
        struct h_resp r;
        struct h_req req = {.method = "GET", .path = path, .timeout_s = 60};
        if (!CHECKF(h_request(s, &req, &r) == 0, "%s", r.error)) {
            h_resp_free(&r);
            ok = false;
            break;
        }
        ok &= CHECKF(r.status == 200, "GET %s: %ld %.300s", path, r.status, r.body);
        ok &= CHECKF(h_resp_is(&r, "application/json"), "content type %s",
                     r.content_type ? r.content_type : "(none)");
        json_t *j = ok ? h_json(&r) : NULL;
        json_t *results = h_jget(j, "results");
        json_t *next = h_jget(j, "next_offset");
        static const char *const page_keys[] = {"results", "next_offset", NULL};
        ok &= CHECK(j != NULL && h_json_keys_exactly(j, page_keys));
        ok &= CHECK(json_is_array(results));
        if (!ok) {
            h_resp_free(&r);
            break;
        }
        size_t k;
        json_t *res;
        json_array_foreach(results, k, res) {
            long long idx = -1;
            if (!CHECKF(h_jint(res, "index", &idx) && idx == (long long)(offset + k),
                        "result at position %zu has index %lld (page offset %zu)", offset + k, idx,
                        offset)) {
                ok = false;
                break;
            }
            if (!fn(res, arg)) {
                ok = false;
                break;
            }
            seen++;
        }
        size_t got = json_array_size(results);
        ok &= CHECKF(got <= limit, "page of %zu results for limit %zu", got, limit);
        if (json_is_null(next)) {
            h_resp_free(&r);
            break;
        }
        long long no = json_is_integer(next) ? json_integer_value(next) : -1;
        ok &= CHECKF(no == (long long)(offset + got),
                     "next_offset %lld, expected %zu (offset %zu + %zu results)", no,
                     offset + got, offset, got);
        ok &= CHECKF(got > 0, "an empty page of a finished job with next_offset %lld", no);
        offset = (size_t)(no > 0 ? no : 0);
        h_resp_free(&r);
    }
    ok &= CHECKF(seen == n, "walked %zu results, expected %zu", seen, n);
    return ok;
}

static bool collect_result(const json_t *res, void *arg)
{
    json_array_append((json_t *)arg, (json_t *)res);
    return true;
}

json_t *h_fetch_results(struct h_service *s, const char *id, size_t n, size_t limit)
{
    json_t *all = json_array();
    if (!h_each_result(s, id, n, limit, collect_result, all)) {
        json_decref(all);
        return NULL;
    }
    return all;
}
