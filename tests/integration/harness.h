/*
 * harness: the small libcurl test harness of batchd's integration tests.
 *
 * Each tests/integration/test_*.c is its own program: it starts the real
 * service ($BATCHD_BIN, an absolute path given by the Makefile) on a free
 * port of 127.0.0.1 with a temporary data dir, talks to it over HTTP, and
 * ends with one line "N passed, N failed" (exit status 1 on any failure).
 *
 * What it offers:
 *   - a test runner (a table of named test functions) and checks that
 *     print file:line and the values involved, count failures per test,
 *     and return whether they held so a test can stop early;
 *   - h_service_*: start the service as a child in its own process group,
 *     wait (bounded) for the port file and GET /readyz == 200; stop it by its
 *     PID with SIGTERM (bounded wait; SIGKILL of its process group only as a
 *     last resort, which fails the test) and check that it exited 0 and left
 *     no child process behind; crash it whole (SIGKILL to the process group
 *     the harness made for it); start it again on the same data dir and
 *     port; remove the temp dir;
 *   - h_request and shorthands: one HTTP request (method, path, headers,
 *     body) with a timeout, returning status, headers and body;
 *   - JSON helpers (jansson) for bodies;
 *   - process listing through /proc (children and descendants of a PID).
 *
 * Every response received is appended as one JSON line to the file named by
 * $BATCHD_CONTRACT_LOG (when set): {"method","path","query","status",
 * "content_type","headers":{...},"body"}. tests/contract/validate.mjs
 * checks them against openapi.yaml.
 *
 * Rules kept here (they are the house rules for tests): every request has a
 * timeout, every wait loop is bounded in count and time, nothing asserts
 * on durations, servers listen on 127.0.0.1 only, and the harness only ever
 * signals processes it started (by PID, or the process group it created
 * for one) or their descendants.
 *
 * Threads: none; the harness is single-threaded, like the test programs.
 * Ownership: strings passed in are borrowed; struct h_resp owns what it
 * holds until h_resp_free(); JSON returned by h_json() is borrowed from the
 * response; JSON returned by h_json_loads() is new (caller json_decref()s).
 */
#ifndef BATCHD_TEST_HARNESS_H
#define BATCHD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* ------------------------------------------------------------------ runner */

struct h_test {
    const char *name;
    void (*fn)(void);
};

/*
 * Initialises the harness (curl, SIGPIPE ignored, $BATCHD_BIN checked).
 * Call once at the start of main(). Returns 0, or -1 when the environment
 * is unusable (the reason is printed).
 */
int h_init(void);

/*
 * Runs tests[0..n) in order, printing "ok - NAME", "FAIL - NAME" or
 * "SKIP - NAME: reason" for each. Does not print the summary.
 */
void h_run_tests(const struct h_test *tests, size_t n);

/*
 * Records a named check outside of h_run_tests (e.g. the service's start
 * and stop in main()): runs fn like a test.
 */
void h_run_one(const char *name, void (*fn)(void));

/* Counts `name` as a failed test without running it (e.g. the service
 * did not start). */
void h_fail_test(const char *name, const char *why);

/*
 * The body of most main()s: runs start as "start batchd"; when it set
 * *up, runs tests[0..n) and then stop (when not NULL) as "stop batchd
 * (SIGTERM, exit 0, no child left)"; otherwise counts each test as failed
 * because batchd did not start.
 */
void h_run_with_service(const struct h_test *tests, size_t n, void (*start)(void),
                        const bool *up, void (*stop)(void));

struct h_service;
struct h_service_opts;

/*
 * h_run_with_service for the common case, a batchd started with *opts:
 * "start batchd" is h_service_start(svc, opts), the stop is
 * h_service_stop(svc, stop_timeout_s) and must exit 0; then
 * h_service_cleanup(svc). The tests reach the service through svc.
 */
void h_run_on_service(struct h_service *svc, const struct h_service_opts *opts,
                      int stop_timeout_s, const struct h_test *tests, size_t n);

/*
 * The whole main() of a program whose tests share one such batchd: h_init
 * (a failure counts and ends it), h_run_on_service, and h_finish()'s exit
 * status, returned.
 */
int h_main_on_service(struct h_service *svc, const struct h_service_opts *opts,
                      int stop_timeout_s, const struct h_test *tests, size_t n);

/*
 * Prints the final line "N passed, N failed, K skipped" (tests/run_integration.sh
 * adds these up),
 * cleans up curl, and returns the process exit status: 0 when nothing
 * failed, 1 otherwise.
 */
int h_finish(void);

/* Marks the running test as skipped, loudly, with a reason. A skipped test
 * that also had a failing check still counts as failed. */
void h_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Number of failed checks in the whole program so far. */
unsigned h_failures_total(void);

/* Prints a note (indented, to stdout) for the running test. */
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ checks */

/*
 * The checks: each returns true when it held; on failure it prints
 * "  FAIL file:line: expression [message]" and counts a failure for the
 * running test.
 */
bool h_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool h_check_int(long long a, long long b, const char *file, int line, const char *ea,
                 const char *eb);
bool h_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
                 const char *eb);

#define CHECK(cond) h_check((cond), __FILE__, __LINE__, #cond, NULL)
#define CHECKF(cond, ...) h_check((cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
#define CHECK_INT(a, b) h_check_int((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_STR(a, b) h_check_str((a), (b), __FILE__, __LINE__, #a, #b)

/* ----------------------------------------------------------------- service */

struct h_service {
    pid_t pid;          /* the supervisor (our child), 0 when not running */
    int port;           /* the port the api process listens on */
    bool reaped;        /* the supervisor was waited for (it exited) */
    int wait_status;    /* its waitpid status, when reaped */
    char tmpdir[256];   /* the temp dir holding data/, port, service.log */
    char port_file[300];
    char log_file[300];
    char data_dir[300]; /* TMP/data, the --data-dir given */
    void *curl;         /* a reused CURL easy handle (keeps connections) */
    unsigned fail_mark; /* failed checks before it started (its log is shown
                           at cleanup when more failed since) */
};

/*
 * With $BATCHD_TEST_PG set (a PostgreSQL URI: make test-pg, test_pg), every
 * service is started with --store naming a database of its own on that
 * server, named after its data dir and created on first use (a restart
 * finds its jobs again). Writes that URI to uri ("" without
 * BATCHD_TEST_PG).
 */
void h_pg_store_uri(const char *data_dir, char *uri, size_t len);

struct h_service_opts {
    const char *const *args; /* extra command-line arguments, NULL-terminated, or NULL */
    const char *const *env;  /* extra environment "NAME=value", NULL-terminated, or NULL */
    int ready_timeout_s;     /* bound on waiting for the port and /readyz; 0 = 10 s
                                (or $BATCHD_TEST_READY_TIMEOUT) */
    bool no_ready_wait;      /* only wait for the port file, not for /readyz == 200 */
};

/*
 * Starts $BATCHD_BIN --listen 127.0.0.1:0 --port-file TMP/port --data-dir
 * TMP/data [opts->args...] in its own process group, stdout and stderr to
 * TMP/service.log, with the environment of the test minus BATCHD_*
 * variables, plus opts->env. Waits (bounded) for the port file and for
 * GET /readyz == 200. Returns 0 when ready; on failure counts a failed check,
 * prints the reason and the log's tail, stops whatever was started and
 * returns -1 (*s is then not running; h_service_cleanup is still fine).
 */
int h_service_start(struct h_service *s, const struct h_service_opts *opts);

/*
 * Starts the service again after it exited (stopped or killed): the same
 * temp dir, so the same --data-dir, the same log file (appended to), and
 * --listen 127.0.0.1:PORT on the port of the previous run (if another
 * program took that port meanwhile, a new one, with a note). The caller
 * passes the options again (they need not be the same). Waits and returns
 * as h_service_start; on failure *s is not running (cleanup still fine).
 */
int h_service_restart(struct h_service *s, const struct h_service_opts *opts);

/*
 * Crashes the whole service at once: SIGKILL to its process group (the one
 * h_service_start created: supervisor, api process, workers) and to each
 * descendant recorded just before, by PID. Reaps the supervisor and waits
 * (bounded by timeout_s; 0 = 10 s) until every recorded descendant is gone.
 * Returns 0, or -1 with a failed check.
 */
int h_service_kill_group(struct h_service *s, int timeout_s);

/*
 * Stops the service: records its descendants, sends SIGTERM to the
 * supervisor's PID, waits up to timeout_s (0 = 15 s) for it to exit, and
 * checks that it exited with status 0 and that every recorded descendant
 * is gone (bounded grace of 3 s). If it does not exit in time its process
 * group is SIGKILLed (last resort) and the check fails. Returns the exit
 * status (0..255), 128+signal for a death by signal, or -1 on timeout.
 * Removes nothing (see h_service_cleanup). Safe on a service that is not
 * running (returns its recorded status).
 */
int h_service_stop(struct h_service *s, int timeout_s);

/* h_service_stop with another signal (SIGINT, ...). */
int h_service_stop_sig(struct h_service *s, int sig, int timeout_s);

/*
 * Like h_service_stop but does not check anything: used on error paths.
 * Never fails a test unless SIGKILL was needed.
 */
void h_service_abort(struct h_service *s);

/* Fails a check for each sanitizer report (ASan, LSan, UBSan, TSan) in the
 * service's log, frees the curl handle and removes the temp dir (unless
 * $BATCHD_KEEP_TMP is set). Prints the service log's tail first if any
 * check failed since the service started. */
void h_service_cleanup(struct h_service *s);

/* Waits (bounded, timeout_s) for the supervisor to exit, without sending
 * anything. Returns as h_service_stop, -1 on timeout. */
int h_service_wait_exit(struct h_service *s, int timeout_s);

/* The api process's pid: the last "api process started, pid N" of the
 * service's log (the supervisor's line), or 0 if there is none yet. */
pid_t h_service_api_pid(const struct h_service *s);

/* The number after "FIELD:" in /proc/PID/status ("VmRSS" in KiB,
 * "Threads", ...), or 0 if the process or the field is not there. */
long h_proc_status(pid_t pid, const char *field);

/* Re-reads the port file. Returns the port, or -1 if it cannot be read. */
int h_service_read_port(const struct h_service *s);

/* Prints the last `lines` lines of the service's log to stderr. */
void h_service_log_tail(const struct h_service *s, int lines);

/*
 * Runs `argv` (argv[0] a path; NULL-terminated) with the test's environment
 * minus BATCHD_* plus `env` (may be NULL), stdin from /dev/null, in its own
 * process group, capturing stdout and stderr (each up to 64 KiB, NUL-
 * terminated, new: free()). Waits up to timeout_s; on timeout SIGKILLs the
 * group and sets timed_out. Returns 0 when it ran, -1 when it could not.
 */
struct h_run_result {
    int exit_code;      /* 0..255, or 128+signal */
    bool timed_out;
    char *out;
    char *err;
};
int h_run(const char *const *argv, const char *const *env, int timeout_s, struct h_run_result *r);
void h_run_result_free(struct h_run_result *r);

/* A temp dir path for the test program (created on first use, removed by
 * h_finish). Borrowed. */
const char *h_tmpdir(void);

/* ---------------------------------------------------------------- requests */

struct h_header {
    char *name;
    char *value;
};

struct h_resp {
    long status;          /* HTTP status, 0 when no response was received */
    char *body;           /* NUL-terminated (len excludes the NUL); never NULL after a response */
    size_t len;
    char *content_type;   /* NULL when absent */
    struct h_header *headers; /* of the final response (after any 100 Continue) */
    size_t n_headers;
    json_t *json;         /* parsed lazily by h_json() */
    char error[768];      /* curl's error when status == 0 */
};

struct h_req {
    const char *method;           /* "GET", "POST", ... */
    const char *path;             /* with the query, e.g. "/v1/jobs?limit=2" */
    const char *const *headers;   /* "Name: value" lines, NULL-terminated, or NULL */
    const char *body;             /* NULL = no body */
    size_t body_len;              /* bytes of body (strlen is not applied) */
    bool chunked;                 /* send the body with Transfer-Encoding: chunked */
    long timeout_s;               /* whole-request timeout; 0 = 30 s */
};

/*
 * Performs one request against the service. Fills *resp (zeroed first) and
 * returns 0 when a response was received (any status), or -1 with
 * resp->error set when not (connection refused, timeout, body over 512 MiB).
 * The response is appended to $BATCHD_CONTRACT_LOG. Free with h_resp_free.
 */
int h_request(struct h_service *s, const struct h_req *req, struct h_resp *resp);

/*
 * Concurrent requests, each on its own connection (curl multi).
 * h_multi_add() registers a request (req and everything it points to, and
 * resp, are borrowed until h_multi_free) and returns its slot, or -1 past
 * H_MULTI_MAX. h_multi_run() drives the transfers until all are done, or
 * (until_started) until each has received its status line, or timeout_s
 * passed; it returns how many are still running. A finished transfer's
 * resp is filled like h_request's (status 0 and resp->error when no
 * response came) and logged. h_multi_free() ends what still runs (its resp
 * gets status 0) and frees the set.
 */
#define H_MULTI_MAX 256
struct h_multi;
struct h_multi *h_multi_new(struct h_service *s);
int h_multi_add(struct h_multi *m, const struct h_req *req, struct h_resp *resp);
size_t h_multi_run(struct h_multi *m, int timeout_s, bool until_started);
void h_multi_free(struct h_multi *m);

/*
 * Appends *resp to $BATCHD_CONTRACT_LOG exactly as h_request() does with
 * its own responses, for a response obtained another way (raw.h's
 * byte-exact exchanges). req->method and req->path (with the query) are
 * what was sent; both must be valid UTF-8.
 */
void h_contract_record(const struct h_req *req, const struct h_resp *resp);

/* Shorthands; each returns as h_request. body is a NUL-terminated string. */
int h_get(struct h_service *s, const char *path, struct h_resp *resp);
int h_get_hdr(struct h_service *s, const char *path, const char *const *headers,
              struct h_resp *resp);
int h_post(struct h_service *s, const char *path, const char *content_type, const char *body,
           struct h_resp *resp);
int h_delete(struct h_service *s, const char *path, struct h_resp *resp);

void h_resp_free(struct h_resp *resp);

/* The value of the last header called `name` (case-insensitive), or NULL.
 * Borrowed from resp. */
const char *h_resp_header(const struct h_resp *resp, const char *name);

/* True when the response's Content-Type, without parameters, is `essence`
 * (case-insensitive). */
bool h_resp_is(const struct h_resp *resp, const char *essence);

/* --------------------------------------------------------------------- JSON */

/* Parses the body (duplicate keys rejected) and caches it in resp->json.
 * Returns the borrowed JSON, or NULL (with a note printed) if the body is
 * not JSON. */
json_t *h_json(struct h_resp *resp);

/* Parses a string (duplicate keys rejected). New reference or NULL. */
json_t *h_json_loads(const char *text, size_t len);

/*
 * Follows a '/'-separated path of object keys and array indexes from root
 * ("counts/total", "results/0/index"). Borrowed, or NULL.
 */
json_t *h_jget(const json_t *root, const char *path);

/* Typed lookups: true and *out set when the value at path has that type. */
bool h_jint(const json_t *root, const char *path, long long *out);
bool h_jnum(const json_t *root, const char *path, double *out); /* integer or real */
const char *h_jstr(const json_t *root, const char *path);       /* borrowed or NULL */

/*
 * True when obj is an object whose keys are exactly `keys` (NULL-terminated):
 * no key missing, no other key. Prints the difference when not.
 */
bool h_json_keys_exactly(const json_t *obj, const char *const *keys);

/* Compact JSON text of j (new, free()), or a copy of "(null)". */
char *h_json_dump(const json_t *j);

/*
 * Checks that resp is an RFC 9457 problem: Content-Type
 * application/problem+json, a JSON object with type
 * "urn:batchd:problem:<slug>", a non-empty title, status == the HTTP status
 * == `status`, a string detail, and instance equal to `path` (the request
 * path without the query). Counts failed checks (at the caller's file:line)
 * and returns true when all held.
 */
bool h_check_problem_at(struct h_resp *resp, int status, const char *slug, const char *path,
                        const char *file, int line);
#define CHECK_PROBLEM(resp, status, slug, path) \
    h_check_problem_at((resp), (status), (slug), (path), __FILE__, __LINE__)

/* --------------------------------------------------------------- processes */

/* Writes the PIDs whose parent is `parent` (from /proc/PID/stat) into out
 * (at most max) and returns how many there are (may exceed max). Zombies
 * are left out. */
size_t h_children(pid_t parent, pid_t *out, size_t max);

/* Same for every descendant (children, their children, ...). */
size_t h_descendants(pid_t root, pid_t *out, size_t max);

/* True when pid exists and is not a zombie. */
bool h_pid_alive(pid_t pid);

/* The parent PID of pid from /proc, or -1. */
pid_t h_pid_ppid(pid_t pid);

/* ------------------------------------------------------------------- misc */

/* Monotonic seconds. */
double h_now(void);
/* Sleeps ms milliseconds (EINTR-safe). */
void h_sleep_ms(long ms);

/* A growable string buffer for building big request bodies (aborts on
 * out-of-memory: a test cannot go on without its body). */
struct h_buf {
    char *p;
    size_t len, cap;
};
void h_buf_add(struct h_buf *b, const char *s, size_t n);
void h_buf_printf(struct h_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void h_buf_free(struct h_buf *b);

/*
 * Job helpers (batchd's API).
 *
 * h_submit: POSTs body with Content-Type ctype to path (e.g. "/v1/jobs"),
 * checks 202 and a Location of /v1/jobs/{id}; copies the id into
 * id[32]. Returns true on success (failed checks are counted).
 */
bool h_submit(struct h_service *s, const char *path, const char *ctype, const char *body,
              size_t len, char *id, long timeout_s);

/*
 * Polls GET /v1/jobs/{id} until its status is succeeded, failed or
 * cancelled (and, for cancelled, until done+failed+cancelled == total) and
 * finished_at is set (a job ends once its results are durable, which can
 * come a moment after its counts settle), at most timeout_s. Returns the
 * last Job object (new reference) or NULL on timeout or error (a failed
 * check is counted).
 */
json_t *h_wait_job(struct h_service *s, const char *id, int timeout_s);

/*
 * Polls GET /v1/jobs/{id} until pred(job) holds, at most timeout_s; returns
 * the matching Job (new) or NULL on timeout (no check is counted).
 */
json_t *h_poll_job(struct h_service *s, const char *id, int timeout_s,
                   bool (*pred)(const json_t *job, void *arg), void *arg);

/* An h_poll_job predicate: the job has left "queued" (arg unused). */
bool h_job_started(const json_t *job, void *arg);

/*
 * Fetches every result of a finished job through the paged endpoint
 * (limit per page), checking the order (index == position), and returns a
 * new JSON array of n Result objects, or NULL (checks counted).
 */
json_t *h_fetch_results(struct h_service *s, const char *id, size_t n, size_t limit);

/*
 * The same walk without keeping the results: calls fn(result, arg) for each
 * Result (borrowed, index == position checked) in order; fn returns false
 * to stop. Returns true when all n results were seen and fn never refused.
 */
bool h_each_result(struct h_service *s, const char *id, size_t n, size_t limit,
                   bool (*fn)(const json_t *res, void *arg), void *arg);

/* Checks a Job object's shape (every member, types, enum values, links).
 * Returns true when it held. */
bool h_check_job_at(const json_t *job, const char *file, int line);
#define CHECK_JOB(job) h_check_job_at((job), __FILE__, __LINE__)

/*
 * Checks a Result object's shape: exactly {"index": int, "output": any} or
 * {"index": int, "error": {"message": string}}. Returns true when it held;
 * sets *index, and *output (borrowed, NULL for an error result) and
 * *message (borrowed, NULL for an output).
 */
bool h_check_result_at(const json_t *res, long long *index, json_t **output,
                       const char **message, const char *file, int line);
#define CHECK_RESULT(res, index, output, message) \
    h_check_result_at((res), (index), (output), (message), __FILE__, __LINE__)

/*
 * Parses an NDJSON results stream (one Result per line, every line ending
 * with a newline) into a new array, checking each line's shape. Returns
 * NULL (checks counted) on a malformed line.
 */
json_t *h_parse_ndjson_results(const char *body, size_t len);

/* True when s matches an RFC 3339 UTC timestamp with milliseconds
 * (YYYY-MM-DDTHH:MM:SS.mmmZ). */
bool h_is_timestamp(const char *s);
/* True when s is a job id: 26 characters of [a-z2-7]. */
bool h_is_job_id(const char *s);

#endif
