/*
 * job_view: what a Job object shows, and the JSON built from it.
 *
 * A job is shown from one of two places: the engine's memory while it is
 * unfinished (job_view filled under the engine's mutex), or the store's row
 * once it has finished (job_view_from_row). Both end as the same Job JSON
 * (openapi.yaml), built here without any lock: status polls must not queue
 * behind each other. The list (JobList) merges the two sources.
 *
 * Process: api. Threads: pure functions over caller-owned views; safe from
 * any thread. Ownership: json_t * returned are new references.
 */
#ifndef BATCHD_JOB_VIEW_H
#define BATCHD_JOB_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "service/jobs/engine.h"
#include "service/store/store.h"

struct job_view {
    uint64_t seq; /* the job's row in the store: the list's order */
    char id[ENGINE_JOB_ID_LEN + 1];
    char model[64]; /* the model it was submitted to, loaded or not */
    enum job_status status;
    uint64_t total, done, failed, inflight_items;
    uint64_t created_ns, started_ns, finished_ns;
    uint32_t chunk_size;
    char error[256];
    bool has_error;
    bool stateful; /* the job carries a reduced result (links.result) */
};

/* Fills v from a stored row. `stateful`: its model has a reduce. */
void job_view_from_row(struct job_view *v, const struct store_job *row, bool stateful);

/* Writes a finished job's ETag (a quoted string, ENGINE_ETAG_LEN + 1
 * bytes), whether it is still in memory or served from the store. A
 * finished job never changes again, so the tag is its seq and status
 * alone: the same in memory and from the store, in every api process, and
 * unlike any tag of the job while it ran (those start with the api epoch,
 * never with "s"). */
void job_view_final_etag(uint64_t seq, int status, char *etag);

/* A CLOCK_REALTIME time in ns as an RFC 3339 string (millisecond
 * precision, UTC), or JSON null for 0. New reference. */
json_t *job_view_time(uint64_t ns);

/* Returns the Job object (new reference), or NULL on out-of-memory. */
json_t *job_view_json(const struct job_view *v);

/*
 * Returns the JobList {"jobs":[...], "next_after": id|null} (new reference,
 * NULL on out-of-memory) of at most `limit` jobs, newest (highest seq)
 * first, from two lists each sorted newest first: `mem` (the engine's
 * in-memory jobs) and `stored` (finished rows). A job in both is shown once,
 * from `mem` (at least as fresh). next_after names the last job shown when
 * more remain in either list.
 */
json_t *job_view_list_json(const struct job_view *mem, size_t n_mem,
                           const struct job_view *stored, size_t n_stored, size_t limit);

#endif
