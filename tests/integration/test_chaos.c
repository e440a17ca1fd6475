/*
 * test_chaos: batchd under sustained, randomised faults.
 *
 *   - Random worker kills: while 100,000-item `square` jobs run in small
 *     tasks (1 and 50 items), a random worker is SIGKILLed every 20-200 ms
 *     (at most 60 kills and 30 s). Each job still succeeds, every index
 *     has exactly one result (paged with limit=10000 and streamed), equal
 *     to index², and /v1/workers counts one restart per kill that landed.
 *     The seed is printed; BATCHD_CHAOS_SEED=N replays the choice of
 *     victims and gaps (not the timing, so not the exact run).
 *   - Slow clients (slowloris), one table row each: a raw TCP connection
 *     sends its bytes one at a time every ~200 ms for at most 5 s while 50
 *     normal requests (GET /healthz, a small job, its results) succeed on
 *     other connections; then the service must answer or close the slow
 *     connection, and with --idle-timeout 2 it closes it.
 *   - A model that cannot start (`chaos:init_fail=boom`): /readyz says
 *     not-ready naming the model and the reason, other models keep
 *     working, the model's jobs are refused with 503 model-unavailable once
 *     it is down, its worker is respawned with back-off (not in a tight
 *     loop), and the supervisor logs one line per attempt.
 *   - A job failed because its model is down finishes: finished_at is set,
 *     its items no longer count against --max-queued-items, it can be
 *     purged. (A known bug today: the test says so and is skipped, loudly.)
 *
 * Every wait is bounded in count and time; nothing asserts on durations.
 * Only processes this program started (the batchd supervisor and its
 * children, checked by parent PID) are signalled, by PID.
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_W 16

/* ------------------------------------------------------------ helpers */

struct wk {
    long long id;
    pid_t pid;
    char model[64];
    char state[16];
    long long restarts, inits;
};

/* Reads GET /v1/workers into w[max]; returns the count, or -1 (noted). */
static int get_workers(struct h_service *s, struct wk *w, int max)
{
    struct h_resp r;
    struct h_req rq = {.method = "GET", .path = "/v1/workers", .timeout_s = 10};
    int n = -1;
    if (h_request(s, &rq, &r) == 0 && r.status == 200) {
        json_t *arr = h_jget(h_json(&r), "workers");
        size_t i;
        json_t *o;
        n = 0;
        json_array_foreach(arr, i, o) {
            if (n >= max)
                break;
            struct wk *x = &w[n++];
            memset(x, 0, sizeof *x);
            long long pid = 0;
            h_jint(o, "id", &x->id);
            h_jint(o, "pid", &pid); /* null while the slot has no process */
            x->pid = (pid_t)pid;
            snprintf(x->model, sizeof x->model, "%s", h_jstr(o, "model") ? h_jstr(o, "model") : "");
            snprintf(x->state, sizeof x->state, "%s", h_jstr(o, "state") ? h_jstr(o, "state") : "");
            h_jint(o, "restarts", &x->restarts);
            h_jint(o, "inits", &x->inits);
        }
    } else {
        h_note("GET /v1/workers: %ld %s", r.status, r.status ? r.body : r.error);
    }
    h_resp_free(&r);
    return n;
}

/* The model's worker `model` (the first one), true when found. */
static bool find_worker(struct h_service *s, const char *model, struct wk *out)
{
    struct wk w[MAX_W];
    int n = get_workers(s, w, MAX_W);
    for (int k = 0; k < n; k++) {
        if (strcmp(w[k].model, model) == 0) {
            *out = w[k];
            return true;
        }
    }
    return false;
}

/* xorshift64*: the kills' schedule, reproducible from the printed seed. */
static uint64_t rng_state;

static void rng_seed(void)
{
    const char *env = getenv("BATCHD_CHAOS_SEED");
    uint64_t seed = env && env[0] ? strtoull(env, NULL, 10)
                                  : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (seed == 0)
        seed = 1;
    rng_state = seed;
    printf("  seed %llu (BATCHD_CHAOS_SEED=%llu replays it)\n", (unsigned long long)seed,
           (unsigned long long)seed);
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static long rng_range(long lo, long hi)
{
    return lo + (long)(rng_next() % (uint64_t)(hi - lo + 1));
}

/* One request with a short timeout: the "promptly" of the tests. */
static int req(struct h_service *s, const char *method, const char *path, const char *body,
               struct h_resp *r)
{
    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    struct h_req rq = {.method = method, .path = path, .headers = body ? json_ct : NULL,
                       .body = body, .body_len = body ? strlen(body) : 0, .timeout_s = 5};
    return h_request(s, &rq, r);
}

static bool has_status(const json_t *job, void *arg)
{
    const char *st = h_jstr(job, "status");
    return st != NULL && strcmp(st, (const char *)arg) == 0;
}

/* The service's log (new, NUL-terminated; free()), or NULL. */
static char *read_log(const struct h_service *s)
{
    FILE *f = fopen(s->log_file, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; buf != NULL && i < 4096; i++) { /* at most 256 MiB */
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

/* -------------------------------------------------- random worker kills */

enum {
    KILL_ITEMS = 100000,
    KILL_MAX = 60,
    KILL_MAX_S = 30,
    KILL_GAP_MIN_MS = 20,
    KILL_GAP_MAX_MS = 200,
};

/*
 * The jobs that run side by side while the kills go on, each of
 * KILL_ITEMS `square` items. One such job alone ends in about a second on
 * two workers even with one item per task (the engine's per-task work is
 * the limit, not the model), so ballast jobs of one-item tasks share the
 * engine's round-robin with it and keep every job running for a few
 * seconds. The checked jobs get every result read back (pages and
 * stream); the ballast only its status and counts (its results would add
 * megabytes to the contract log and prove nothing new).
 */
static const struct kill_job {
    int chunk;
    bool check_results;
} kill_jobs[] = {
    {1, true}, {50, true}, {1, false}, {1, false}, {1, false}, {1, false},
};
#define N_KILL_JOBS (sizeof kill_jobs / sizeof kill_jobs[0])

static bool square_ok(const json_t *res, void *arg)
{
    size_t *bad = arg;
    long long idx = -1, out = -1;
    h_jint(res, "index", &idx);
    if (!h_jint(res, "output", &out) || out != idx * idx) {
        if ((*bad)++ < 3) {
            char *d = h_json_dump(res);
            h_note("result %s, expected output %lld", d, idx * idx);
            free(d);
        }
    }
    return true;
}

/* True when any of the jobs is still queued or running (or unreadable). */
static bool any_job_running(struct h_service *s, char ids[][32], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", ids[i]);
        struct h_resp r;
        bool running = true;
        if (req(s, "GET", path, NULL, &r) == 0 && r.status == 200) {
            const char *st = h_jstr(h_json(&r), "status");
            running = st != NULL && (strcmp(st, "queued") == 0 || strcmp(st, "running") == 0);
        }
        h_resp_free(&r);
        if (running)
            return true;
    }
    return false;
}

/* The finished job `id` succeeded with KILL_ITEMS outputs; with
 * check_results, every index 0..KILL_ITEMS-1 has exactly one result, equal
 * to index². */
static void check_square_job(struct h_service *s, const char *id, bool check_results)
{
    json_t *job = h_wait_job(s, id, 180);
    if (!CHECK(job != NULL))
        return;
    long long done = -1, failed = -1;
    h_jint(job, "counts/done", &done);
    h_jint(job, "counts/failed", &failed);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    CHECKF(done == KILL_ITEMS && failed == 0, "job %s: done %lld failed %lld of %d", id, done,
           failed, KILL_ITEMS);
    json_decref(job);
    if (!check_results)
        return;

    /* Paged: index == position (so exactly one per index), output == i². */
    size_t bad = 0;
    CHECK(h_each_result(s, id, KILL_ITEMS, 10000, square_ok, &bad));
    CHECKF(bad == 0, "job %s: %zu wrong outputs", id, bad);

    /* Streamed: every index exactly once (a duplicate would show here even
     * if the paged view hid it). */
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s/results?stream=true", id);
    struct h_req rq = {.method = "GET", .path = path, .timeout_s = 60};
    struct h_resp r;
    if (CHECKF(h_request(s, &rq, &r) == 0, "%s", r.error) && CHECK_INT(r.status, 200)) {
        json_t *lines = h_parse_ndjson_results(r.body, r.len);
        unsigned char *seen = calloc(KILL_ITEMS, 1);
        size_t dup = 0, out_of_range = 0;
        for (size_t i = 0; seen != NULL && lines != NULL && i < json_array_size(lines); i++) {
            long long idx = -1;
            h_jint(json_array_get(lines, i), "index", &idx);
            if (idx < 0 || idx >= KILL_ITEMS)
                out_of_range++;
            else if (seen[idx]++)
                dup++;
        }
        CHECKF(seen != NULL && lines != NULL && json_array_size(lines) == KILL_ITEMS && dup == 0 &&
                   out_of_range == 0,
               "job %s stream: %zu lines, %zu duplicates, %zu out of range", id,
               lines ? json_array_size(lines) : 0, dup, out_of_range);
        free(seen);
        json_decref(lines);
    }
    h_resp_free(&r);
}

static void test_random_kills(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "square", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    rng_seed();
    /* The items once; each job's body is them plus its options. */
    struct h_buf items = {0};
    for (int i = 0; i < KILL_ITEMS; i++)
        h_buf_printf(&items, "%s%d", i ? "," : "", i);

    /* Submit the jobs one per turn and kill from the first turn on (the
     * first job runs while the others are submitted), until every job has
     * ended or a bound is reached. Each pid is killed at most once, so
     * every kill that landed is one restart. */
    char ids[N_KILL_JOBS][32];
    size_t n_jobs = 0;
    pid_t killed[KILL_MAX];
    int landed = 0, tries = 0;
    bool running = true, submit_failed = false;
    double t0 = h_now(), deadline = t0 + KILL_MAX_S;
    for (int i = 0; i < 10000 && landed < KILL_MAX && h_now() < deadline; i++) {
        if (n_jobs < N_KILL_JOBS) {
            struct h_buf b = {0};
            h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[%s],\"options\":{\"chunk_size\":%d}}",
                         items.p, kill_jobs[n_jobs].chunk);
            bool ok = h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, ids[n_jobs], 60);
            h_buf_free(&b);
            if (!ok) {
                submit_failed = true;
                break;
            }
            n_jobs++;
        } else {
            running = any_job_running(&s, ids, n_jobs);
            if (!running)
                break;
        }
        struct wk w[MAX_W];
        int n = get_workers(&s, w, MAX_W);
        pid_t cand[MAX_W];
        int nc = 0;
        for (int k = 0; k < n; k++) {
            bool again = false;
            for (int j = 0; j < landed; j++)
                again |= killed[j] == w[k].pid;
            /* idle or busy: past init(), so a kill is a crash while
             * serving (respawned at once), not an init failure (backed off) */
            if (w[k].pid > 0 && !again &&
                (strcmp(w[k].state, "idle") == 0 || strcmp(w[k].state, "busy") == 0))
                cand[nc++] = w[k].pid;
        }
        if (nc > 0) {
            pid_t victim = cand[rng_range(0, nc - 1)];
            tries++;
            /* only a child of our batchd, checked just before the signal */
            if (h_pid_ppid(victim) == s.pid && kill(victim, SIGKILL) == 0)
                killed[landed++] = victim;
        }
        h_sleep_ms(rng_range(KILL_GAP_MIN_MS, KILL_GAP_MAX_MS));
    }
    printf("  %d kills landed (%d tried) in %.1f s; %s\n", landed, tries, h_now() - t0,
           running ? "the jobs were still running when the kills stopped (a bound was reached)"
                   : "then the jobs had ended");
    h_buf_free(&items);
    if (submit_failed)
        goto out;
    CHECKF(landed >= 1, "no kill landed while the jobs ran (they ended too soon to test anything)");

    for (size_t j = 0; j < n_jobs; j++)
        check_square_job(&s, ids[j], kill_jobs[j].check_results);

    /* One restart per kill, once the last one was reaped (bounded). */
    long long restarts = -1;
    double until = h_now() + 10;
    for (int i = 0; i < 1000 && restarts != landed && h_now() < until; i++) {
        struct wk w[MAX_W];
        int n = get_workers(&s, w, MAX_W);
        restarts = 0;
        for (int k = 0; k < n; k++)
            restarts += w[k].restarts;
        if (restarts != landed)
            h_sleep_ms(50);
    }
    printf("  /v1/workers: %lld restarts in total\n", restarts);
    CHECKF(restarts > 0, "no restart counted");
    CHECKF(restarts == landed, "%lld restarts for %d kills", restarts, landed);
out:
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

/* ------------------------------------------------------------ slowloris */

enum { IDLE_TIMEOUT_S = 2, TRICKLE_MAX_MS = 5000, NORMAL_PER_CASE = 50 };

enum slow_expect {
    SLOW_CLOSED,   /* closed by the service, unanswered or with a 4xx */
    SLOW_ANSWERED, /* answered with `status`, then closed */
};

/* A slow client: `prefix` is sent at once, then `trickle` one byte every
 * interval_ms for at most TRICKLE_MAX_MS. */
struct slow_case {
    const char *name;
    const char *prefix;
    const char *trickle;
    int interval_ms;
    enum slow_expect expect;
    int status;
};

static const struct slow_case slow_cases[] = {
    {"a request line and header that never end", "",
     "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
     200, SLOW_CLOSED, 0},
    {"a job body that never ends",
     "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     "Content-Length: 200\r\n\r\n",
     "{\"model\":\"square\",\"inputs\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}", 200,
     SLOW_CLOSED, 0},
    {"a header finished slowly (answered, then idle)", "GET /healthz HTTP/1.1\r\n",
     "Host: 127.0.0.1\r\n\r\n", 200, SLOW_ANSWERED, 200},
    {"an HTTP/1.0 request sent byte by byte", "", "GET /healthz HTTP/1.0\r\n\r\n", 150,
     SLOW_ANSWERED, 200},
};

struct slow_conn {
    int fd;
    size_t sent, len;
    bool closed, reset;
    char in[8192];
    size_t in_len;
};

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads what has arrived without waiting more than wait_ms; notes a close. */
static void slow_pump(struct slow_conn *c, int wait_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    for (int i = 0; i < 64 && !c->closed; i++) {
        if (poll(&p, 1, i == 0 ? wait_ms : 0) <= 0)
            return;
        char buf[4096];
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            size_t room = sizeof c->in - 1 - c->in_len;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(c->in + c->in_len, buf, take);
            c->in_len += take;
            c->in[c->in_len] = '\0';
        } else if (n == 0) {
            c->closed = true;
        } else if (errno == ECONNRESET) {
            c->closed = c->reset = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            c->closed = true;
        }
    }
}

/* The status of the response at the start of c->in, or 0. */
static int slow_status(const struct slow_conn *c)
{
    int st = 0;
    if (c->in_len >= 12 && strncmp(c->in, "HTTP/1.", 7) == 0 && sscanf(c->in + 9, "%3d", &st) == 1)
        return st;
    return 0;
}

/* Normal request number k on the service's own (curl) connection: a cycle
 * of GET /healthz, POST a small job, wait for it and read its results.
 * Returns true when it was answered as expected. */
static bool normal_request(struct h_service *s, int k, char *last_id, int *last_k)
{
    struct h_resp r;
    bool ok = false;
    switch (k % 3) {
    case 0:
        ok = req(s, "GET", "/healthz", NULL, &r) == 0 && r.status == 200;
        if (!ok)
            h_note("normal GET /healthz: %ld %s", r.status, r.status ? r.body : r.error);
        h_resp_free(&r);
        return ok;
    case 1: {
        char body[96];
        snprintf(body, sizeof body, "{\"model\":\"square\",\"inputs\":[%d,%d]}", k, k + 1);
        ok = req(s, "POST", "/v1/jobs", body, &r) == 0 && r.status == 202 &&
             h_jstr(h_json(&r), "id") != NULL;
        if (ok) {
            snprintf(last_id, 32, "%s", h_jstr(h_json(&r), "id"));
            *last_k = k;
        } else {
            last_id[0] = '\0';
            h_note("normal POST /v1/jobs: %ld %s", r.status, r.status ? r.body : r.error);
        }
        h_resp_free(&r);
        return ok;
    }
    default: {
        if (last_id[0] == '\0')
            return false;
        json_t *job = h_poll_job(s, last_id, 10, has_status, "succeeded");
        if (job == NULL) {
            h_note("normal job %s did not succeed within 10 s", last_id);
            return false;
        }
        json_decref(job);
        char path[96];
        snprintf(path, sizeof path, "/v1/jobs/%s/results", last_id);
        long long a = -1, b = -1, x = *last_k;
        if (req(s, "GET", path, NULL, &r) == 0 && r.status == 200) {
            h_jint(h_json(&r), "results/0/output", &a);
            h_jint(h_json(&r), "results/1/output", &b);
        }
        ok = a == x * x && b == (x + 1) * (x + 1);
        if (!ok)
            h_note("normal GET %s: %ld %s", path, r.status, r.status ? r.body : r.error);
        h_resp_free(&r);
        return ok;
    }
    }
}

static void run_slow_case(struct h_service *s, const struct slow_case *sc, int *normal_ok,
                          int *normal_failed)
{
    printf("  slow client: %s\n", sc->name);
    struct slow_conn c = {.fd = tcp_connect(s->port), .len = strlen(sc->trickle)};
    if (!CHECKF(c.fd >= 0, "connect to 127.0.0.1:%d: %s", s->port, strerror(errno)))
        return;
    size_t plen = strlen(sc->prefix);
    if (plen > 0 && !CHECKF(send(c.fd, sc->prefix, plen, MSG_NOSIGNAL) == (ssize_t)plen,
                            "sending the prefix: %s", strerror(errno))) {
        close(c.fd);
        return;
    }
    char last_id[32] = "";
    int last_k = 0, k = 0;
    double t0 = h_now(), next_byte = t0, last_sent = t0;
    bool send_refused = false;
    for (int i = 0; i < 100000; i++) {
        double now = h_now();
        bool trickling = !c.closed && c.sent < c.len && now - t0 < TRICKLE_MAX_MS / 1000.0;
        if (trickling && now >= next_byte) {
            if (send(c.fd, sc->trickle + c.sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
                c.sent++;
                last_sent = now;
            } else if (errno == EPIPE || errno == ECONNRESET) {
                c.closed = send_refused = true; /* the service closed it */
            }
            next_byte += sc->interval_ms / 1000.0;
        }
        slow_pump(&c, 0);
        if (k < NORMAL_PER_CASE) {
            if (normal_request(s, k, last_id, &last_k))
                (*normal_ok)++;
            else
                (*normal_failed)++;
            k++;
        }
        if (!trickling && k >= NORMAL_PER_CASE)
            break;
        if (now - t0 > 60) /* a hard bound whatever happens */
            break;
        h_sleep_ms(k < NORMAL_PER_CASE ? 40 : 20);
    }

    /* Now it must be answered or closed: the idle timeout runs from the
     * last byte sent; wait for it plus a generous margin (bounded). */
    double deadline = last_sent + IDLE_TIMEOUT_S + 10;
    for (int i = 0; i < 10000 && !c.closed && h_now() < deadline; i++)
        slow_pump(&c, 100);
    int st = slow_status(&c);
    int first_line = (int)strcspn(c.in, "\r\n");
    printf("    sent %zu of %zu trickled bytes; %s; %s %.*s\n", c.sent, c.len,
           c.closed ? (c.reset ? "reset by the service"
                       : send_refused ? "refused by the service while sending"
                                      : "closed by the service")
                    : "STILL OPEN",
           c.in_len ? "received" : "nothing received", first_line, c.in);
    CHECKF(c.closed, "the slow connection was still open %d s after its last byte "
                     "(--idle-timeout %d)",
           IDLE_TIMEOUT_S + 10, IDLE_TIMEOUT_S);
    if (sc->expect == SLOW_ANSWERED) {
        CHECKF(st == sc->status, "the slow request got status %d, expected %d", st, sc->status);
        CHECKF(strstr(c.in, "\r\n\r\n") != NULL && strstr(c.in, "\"status\"") != NULL,
               "no /healthz body in the answer");
    } else {
        CHECKF(c.in_len == 0 || (st >= 400 && st < 500),
               "an unfinished request was answered with %d (expected nothing, or a 4xx)", st);
    }
    close(c.fd);
}

static void test_slowloris(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "square", "--idle-timeout",
                                       "2", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    pid_t kids[MAX_W];
    size_t nk = h_children(s.pid, kids, MAX_W);
    for (size_t i = 0; i < sizeof slow_cases / sizeof slow_cases[0]; i++) {
        int ok = 0, failed = 0;
        run_slow_case(&s, &slow_cases[i], &ok, &failed);
        printf("    normal requests meanwhile: %d answered, %d failed\n", ok, failed);
        CHECKF(failed == 0 && ok == NORMAL_PER_CASE,
               "%s: %d of %d normal requests failed next to the slow client", slow_cases[i].name,
               failed, NORMAL_PER_CASE);
    }
    /* Nothing was replaced: a slow client costs a thread, not a process. */
    pid_t kids2[MAX_W];
    size_t nk2 = h_children(s.pid, kids2, MAX_W);
    CHECK_INT(nk2, nk);
    for (size_t i = 0; i < nk && i < MAX_W; i++)
        CHECKF(h_pid_alive(kids[i]), "child %d of batchd is gone", (int)kids[i]);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

/* ---------------------------------------------- a model that cannot start */

/* Submits a chaos job; returns the status (0: no answer) and, on 202, the
 * id. A 503 must be a model-unavailable problem with Retry-After. */
static long submit_chaos(struct h_service *s, char *id)
{
    struct h_resp r;
    id[0] = '\0';
    long st = 0;
    if (req(s, "POST", "/v1/jobs", "{\"model\":\"chaos\",\"inputs\":[1,2,3]}", &r) == 0) {
        st = r.status;
        if (st == 202 && h_jstr(h_json(&r), "id") != NULL) {
            snprintf(id, 32, "%s", h_jstr(h_json(&r), "id"));
        } else if (st == 503) {
            CHECK_PROBLEM(&r, 503, "model-unavailable", "/v1/jobs");
            const char *ra = h_resp_header(&r, "Retry-After");
            CHECKF(ra != NULL && atoi(ra) >= 1, "503 model-unavailable with Retry-After %s",
                   ra ? ra : "(none)");
            const char *detail = h_jstr(h_json(&r), "detail");
            CHECKF(detail != NULL && strstr(detail, "chaos") != NULL,
                   "the 503's detail does not name the model: %s", detail ? detail : "(none)");
        } else {
            CHECKF(false, "chaos job: status %ld %.300s (expected 202 or 503)", st, r.body);
        }
    } else {
        CHECKF(false, "chaos job: no answer: %s", r.error);
    }
    h_resp_free(&r);
    return st;
}

/* A chaos job accepted before the model went down ends failed, naming the
 * reason. (That it also gets finished_at is test_failed_job_finishes's.) */
static void check_failed_chaos_job(struct h_service *s, const char *id)
{
    json_t *job = h_poll_job(s, id, 30, has_status, "failed");
    if (!CHECKF(job != NULL, "chaos job %s did not end failed within 30 s", id))
        return;
    const char *err = h_jstr(job, "error");
    CHECKF(err != NULL && strstr(err, "boom") != NULL, "job %s: error %s", id, err ? err : "null");
    json_decref(job);
}

/* Submits a 2-item square job and checks it succeeds with 4 and 9. */
static void square_still_works(struct h_service *s)
{
    const char *body = "{\"model\":\"square\",\"inputs\":[2,3]}";
    char id[32];
    if (!h_submit(s, "/v1/jobs", "application/json", body, strlen(body), id, 10))
        return;
    json_t *job = h_wait_job(s, id, 30);
    if (CHECK(job != NULL))
        CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    json_t *res = h_fetch_results(s, id, 2, 10);
    CHECK(res != NULL && json_integer_value(h_jget(res, "0/output")) == 4 &&
          json_integer_value(h_jget(res, "1/output")) == 9);
    json_decref(res);
}

/* Counts the supervisor's "init failed: boom" lines (one per attempt) and
 * checks that no attempt (worker pid) has more than one. */
static long count_init_failed_lines(const struct h_service *s)
{
    char *log = read_log(s);
    if (!CHECKF(log != NULL, "cannot read %s", s->log_file))
        return -1;
    long n = 0;
    int pids[256], np = 0;
    for (char *line = log, *end; line != NULL && *line != '\0'; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (end)
            *end = '\0';
        if (strstr(line, "\"proc\":\"supervisor\"") == NULL)
            continue;
        const char *m = strstr(line, "init failed: boom");
        if (m == NULL)
            continue;
        n++;
        const char *p = strstr(line, ") pid ");
        int pid = p ? atoi(p + 6) : 0;
        for (int i = 0; i < np; i++)
            CHECKF(pids[i] != pid, "two \"init failed\" lines for worker pid %d", pid);
        if (np < 256)
            pids[np++] = pid;
        if (n == 1)
            printf("  log: %.200s\n", line);
    }
    free(log);
    return n;
}

static void test_init_fail(void)
{
    /* --grace 2: a task of a job accepted before the model went down stays
     * in the ring (nobody can take it), and the drain would wait for it. */
    static const char *const args[] = {"--workers", "1", "--model", "chaos:init_fail=boom",
                                       "--model", "square", "--grace", "2", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args, .no_ready_wait = true};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    /* Right away: accepted (it then fails) or already refused. */
    char early[32];
    long st = submit_chaos(&s, early);
    printf("  a chaos job submitted at once: %ld\n", st);

    /* Other models keep working. */
    square_still_works(&s);

    /* /readyz: 503 not-ready naming the model and the reason (bounded:
     * between attempts the worker may be "starting"). */
    bool named = false;
    double deadline = h_now() + 15;
    for (int i = 0; i < 1000 && !named && h_now() < deadline; i++) {
        struct h_resp r;
        if (req(&s, "GET", "/readyz", NULL, &r) == 0) {
            CHECKF(r.status == 503, "/readyz %ld with a model that cannot start", r.status);
            if (r.status == 503 && CHECK_PROBLEM(&r, 503, "not-ready", "/readyz")) {
                const char *d = h_jstr(h_json(&r), "detail");
                named = d != NULL && strstr(d, "chaos") != NULL && strstr(d, "boom") != NULL;
                if (named) {
                    printf("  /readyz: %s\n", d);
                    CHECKF(h_resp_header(&r, "Retry-After") != NULL, "not-ready without Retry-After");
                }
            }
        }
        h_resp_free(&r);
        if (!named)
            h_sleep_ms(50);
    }
    CHECKF(named, "/readyz never named model chaos and \"boom\"");

    if (early[0])
        check_failed_chaos_job(&s, early);

    /* Until the model is down, its jobs are accepted (and fail); then
     * refused. Poll by submitting (bounded). */
    bool down = st == 503;
    deadline = h_now() + 20;
    for (int i = 0; i < 200 && !down && h_now() < deadline; i++) {
        char id[32];
        long s2 = submit_chaos(&s, id);
        down = s2 == 503;
        if (id[0])
            check_failed_chaos_job(&s, id);
        if (!down)
            h_sleep_ms(100);
    }
    if (CHECKF(down, "model chaos was never reported down (no 503 within 20 s)")) {
        char id[32];
        CHECK_INT(submit_chaos(&s, id), 503);
    }

    /* The worker: failed, respawned with back-off (100 ms doubling), not in
     * a tight loop. */
    struct wk w;
    bool failed_seen = false;
    deadline = h_now() + 10;
    for (int i = 0; i < 1000 && !failed_seen && h_now() < deadline; i++) {
        failed_seen = find_worker(&s, "chaos", &w) && strcmp(w.state, "failed") == 0;
        if (!failed_seen)
            h_sleep_ms(20);
    }
    CHECKF(failed_seen, "the chaos worker was never seen in state \"failed\"");
    struct wk w1 = {0}, w2 = {0};
    find_worker(&s, "chaos", &w1);
    h_sleep_ms(3000);
    find_worker(&s, "chaos", &w2);
    printf("  chaos worker: state %s, restarts %lld, 3 s later %lld (inits %lld)\n", w2.state,
           w1.restarts, w2.restarts, w2.inits);
    CHECKF(w1.restarts >= 1, "restarts %lld", w1.restarts);
    /* The gap after the k-th failure is 100 ms * 2^(k-1): from the 6th on
     * it is 3.2 s or more, so only before that must 3 s show a new one. */
    CHECKF(w2.restarts > w1.restarts || w1.restarts >= 6,
           "restarts did not grow (%lld, then %lld 3 s later)", w1.restarts, w2.restarts);
    CHECKF(w2.restarts - w1.restarts < 20 && w2.restarts < 20,
           "a tight respawn loop: %lld restarts, %lld in 3 s", w2.restarts,
           w2.restarts - w1.restarts);
    CHECK_INT(w2.inits, 0);

    /* One log line per attempt. A restart is counted just before its line
     * is written, so read the count, the log and the count again until
     * the count held still around the read (bounded; the back-off is
     * seconds now, the window microseconds). */
    struct wk wa = {0}, wb = {0};
    long lines = -1;
    for (int i = 0; i < 20; i++) {
        find_worker(&s, "chaos", &wa);
        lines = count_init_failed_lines(&s);
        find_worker(&s, "chaos", &wb);
        if (wa.restarts == wb.restarts && lines == wb.restarts)
            break;
        h_sleep_ms(50);
    }
    printf("  %ld \"init failed: boom\" lines in the log for %lld restarts\n", lines,
           wb.restarts);
    CHECKF(wa.restarts == wb.restarts && lines == wb.restarts,
           "%ld \"init failed\" lines for %lld..%lld attempts", lines, wa.restarts, wb.restarts);

    square_still_works(&s);
    CHECK_INT(h_service_stop(&s, 20), 0);
    h_service_cleanup(&s);
}

/*
 * A job failed because its model is down must finish: finished_at set, its
 * items released from --max-queued-items, and purgeable. Today the task
 * it had in the ring stays there (no worker of the model ever takes it),
 * so none of that happens until a restart. Known bug: reported loudly as a
 * skip, so that the rest of the suite stays usable; once fixed, this test
 * passes by itself (then turn the skip into plain checks).
 */
static void test_failed_job_finishes(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "chaos:init_fail=boom",
                                       "--model", "square", "--max-queued-items", "10",
                                       "--grace", "2", NULL};
    struct h_service s;
    struct h_service_opts o = {.args = args, .no_ready_wait = true};
    if (h_service_start(&s, &o) != 0) {
        h_service_cleanup(&s);
        return;
    }
    struct h_resp r;
    const char *ten = "{\"model\":\"chaos\",\"inputs\":[1,2,3,4,5,6,7,8,9,10]}";
    char id[32] = "";
    if (req(&s, "POST", "/v1/jobs", ten, &r) == 0 && r.status == 202 && h_jstr(h_json(&r), "id"))
        snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    long first = r.status;
    h_resp_free(&r);
    if (id[0] == '\0') {
        CHECKF(first == 503, "the first chaos job: %ld", first);
        h_skip("the model was down before the first job (503): nothing to check");
        goto out;
    }
    json_t *job = h_poll_job(&s, id, 30, has_status, "failed");
    if (!CHECKF(job != NULL, "job %s did not end failed within 30 s", id))
        goto out;
    json_decref(job);
    /* Bounded: finishing may wait for a flush. */
    bool finished = false;
    long long d = 0, f = 0, c = 0, t = 0;
    double deadline = h_now() + 5;
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (int i = 0; i < 500 && !finished && h_now() < deadline; i++) {
        if (req(&s, "GET", path, NULL, &r) == 0 && r.status == 200) {
            json_t *j = h_json(&r);
            h_jint(j, "counts/done", &d);
            h_jint(j, "counts/failed", &f);
            h_jint(j, "counts/cancelled", &c);
            h_jint(j, "counts/total", &t);
            finished = !json_is_null(h_jget(j, "finished_at")) && d + f + c == t;
        }
        h_resp_free(&r);
        if (!finished)
            h_sleep_ms(50);
    }
    /* Its 10 items no longer hold the queue (--max-queued-items 10). */
    long square = 0;
    if (req(&s, "POST", "/v1/jobs", "{\"model\":\"square\",\"inputs\":[3]}", &r) == 0)
        square = r.status;
    h_resp_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s?purge=true", id);
    long purge = 0;
    if (req(&s, "DELETE", path, NULL, &r) == 0)
        purge = r.status;
    h_resp_free(&r);
    printf("  failed job: finished_at %s, counts %lld+%lld+%lld of %lld; then a square job %ld, "
           "purge %ld\n",
           finished ? "set" : "null", d, f, c, t, square, purge);
    CHECKF(finished, "the failed job never finished (finished_at null, counts %lld+%lld+%lld of "
                     "%lld)", d, f, c, t);
    CHECKF(square == 202, "its items still count against --max-queued-items (square job: %ld)",
           square);
    CHECKF(purge == 204, "the failed job cannot be purged (%ld)", purge);
out:
    CHECK_INT(h_service_stop(&s, 20), 0);
    h_service_cleanup(&s);
}

/* ------------------------------------------------------------------- main */

static bool have_chaos(void)
{
    const char *argv[] = {getenv("BATCHD_BIN"), "--help", NULL};
    struct h_run_result r;
    bool found = h_run(argv, NULL, 10, &r) == 0 && r.exit_code == 0 && r.out != NULL &&
                 strstr(r.out, "chaos") != NULL;
    h_run_result_free(&r);
    return found;
}

static void test_init_fail_if_chaos(void)
{
    if (!have_chaos()) {
        h_skip("this batchd has no built-in `chaos` model (batchd --help names none)");
        return;
    }
    test_init_fail();
}

static void test_failed_job_finishes_if_chaos(void)
{
    if (!have_chaos()) {
        h_skip("this batchd has no built-in `chaos` model (batchd --help names none)");
        return;
    }
    test_failed_job_finishes();
}

int main(void)
{
    static const struct h_test tests[] = {
        {"random worker SIGKILLs during 100,000-item jobs", test_random_kills},
        {"slow clients next to normal requests (--idle-timeout 2)", test_slowloris},
        {"a model whose init fails: not-ready, 503, back-off, one log line per attempt",
         test_init_fail_if_chaos},
        {"a job failed because its model is down finishes", test_failed_job_finishes_if_chaos},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
