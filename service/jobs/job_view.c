/*
 * job_view.c: Job and JobList JSON (see job_view.h).
 */
#include "service/jobs/job_view.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "service/ring/shm.h"

void job_view_from_row(struct job_view *v, const struct store_job *row, bool stateful)
{
    memset(v, 0, sizeof *v);
    v->seq = row->seq;
    /* an id is ENGINE_JOB_ID_LEN characters; the row's buffer is larger */
    snprintf(v->id, sizeof v->id, "%.*s", ENGINE_JOB_ID_LEN, row->id);
    snprintf(v->model, sizeof v->model, "%s", row->model);
    v->status = row->status >= 0 && row->status < JOB_STATUS_COUNT ? (enum job_status)row->status
                                                                   : JOB_FAILED;
    v->total = row->total;
    v->done = row->done;
    v->failed = row->failed;
    v->created_ns = row->created_ns;
    v->started_ns = row->started_ns;
    v->finished_ns = row->finished_ns;
    v->chunk_size = row->chunk_size;
    v->has_error = row->error[0] != '\0';
    snprintf(v->error, sizeof v->error, "%s", row->error);
    v->stateful = stateful;
}

void job_view_final_etag(uint64_t seq, int status, char *etag)
{
    snprintf(etag, ENGINE_ETAG_LEN + 1, "\"s%" PRIx64 "-%x\"", seq, (unsigned)status);
}

static void fmt_time(char *buf, size_t len, uint64_t ns)
{
    time_t sec = (time_t)(ns / 1000000000ULL);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%.20s.%03uZ", day, (unsigned)((ns / 1000000ULL) % 1000));
}

json_t *job_view_time(uint64_t ns)
{
    if (!ns)
        return json_null();
    char buf[40];
    fmt_time(buf, sizeof buf, ns);
    return json_string(buf);
}

json_t *job_view_json(const struct job_view *j)
{
    uint64_t now = shm_now_real_ns();
    uint64_t cancelled = 0;
    if (j->status == JOB_CANCELLED || j->status == JOB_FAILED)
        cancelled = j->total - j->done - j->failed - j->inflight_items;
    json_t *throughput = json_null(), *eta = json_null();
    if (j->started_ns) {
        uint64_t end = j->finished_ns ? j->finished_ns : now;
        double secs = (double)(end - j->started_ns) / 1e9;
        double rate = secs > 0 ? (double)(j->done + j->failed) / secs : 0;
        json_decref(throughput);
        throughput = json_real(rate);
        if (j->status == JOB_RUNNING && rate > 0) {
            json_decref(eta);
            eta = json_real((double)(j->total - j->done - j->failed) / rate);
        }
    }
    char self[64], results[80];
    snprintf(self, sizeof self, "/v1/jobs/%s", j->id);
    snprintf(results, sizeof results, "/v1/jobs/%s/results", j->id);
    json_t *out = json_pack("{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:o, s:o, s:o, s:o, "
                     "s:o, s:{s:s, s:s}}",
                     "id", j->id, "model", j->model, "status", engine_status_name(j->status),
                     "counts", "total", (json_int_t)j->total, "done", (json_int_t)j->done,
                     "failed", (json_int_t)j->failed, "cancelled", (json_int_t)cancelled,
                     "created_at", job_view_time(j->created_ns), "started_at",
                     job_view_time(j->started_ns), "finished_at", job_view_time(j->finished_ns),
                     "throughput", throughput, "eta_seconds", eta, "chunk_size",
                     j->chunk_size ? json_integer(j->chunk_size) : json_null(), "error",
                     j->has_error ? json_string(j->error) : json_null(), "links", "self", self,
                     "results", results);
    if (out && j->stateful) {
        char result[80];
        snprintf(result, sizeof result, "/v1/jobs/%s/result", j->id);
        json_object_set_new(json_object_get(out, "links"), "result", json_string(result));
    }
    return out;
}

json_t *job_view_list_json(const struct job_view *mem, size_t n_mem,
                           const struct job_view *stored, size_t n_stored, size_t limit)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    size_t a = 0, b = 0;
    const struct job_view *last = NULL;
    bool more = false;
    for (;;) {
        /* the same job in both lists: memory's copy, once */
        while (a < n_mem && b < n_stored && stored[b].seq == mem[a].seq)
            b++;
        const struct job_view *next = NULL;
        if (a < n_mem && (b >= n_stored || mem[a].seq > stored[b].seq))
            next = &mem[a++];
        else if (b < n_stored)
            next = &stored[b++];
        if (!next)
            break;
        if (json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_t *o = job_view_json(next);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
        last = next;
    }
    return json_pack("{s:o, s:o}", "jobs", arr, "next_after",
                     more && last ? json_string(last->id) : json_null());
}
