/*
 * retention: the api process's memory as finished jobs accumulate.
 *
 * A finished job is served from the store and keeps nothing in the api
 * process (docs/architecture.md, "What is in memory"). This client fills a
 * running batchd with tiny finished jobs through the real API (POST
 * /v1/jobs of one echo item, from several threads on kept-alive
 * connections), and at each checkpoint (--at, ascending) waits until no
 * job is queued or running, exercises the read paths (the list's first
 * page, a filtered page, a page behind a cursor, a job's status and
 * results), then prints the api process's resident memory (VmRSS of
 * /proc/PID/status) at once ("busy") and again after --settle seconds
 * without requests ("idle": the engine gives free heap pages back to the
 * system every 10 s), and the median time of GET /v1/jobs?limit=100.
 *
 * Usage: retention --url http://127.0.0.1:PORT --supervisor PID
 *                  [--at N]... [--threads T] [--settle S] [--timeout S]
 * Prints on stdout, per checkpoint:
 *   RETAINED jobs=N api_rss_kb=K busy_rss_kb=B list100_ms=M
 * (api_rss_kb is the idle figure) and at the end, from the first
 * checkpoint to the last (idle figures):
 *   RESULT retention growth_kb=G from=N1 to=N2 per_job_bytes=B
 * No figure is asserted (the machine is shared); exit status 1 only when
 * the service fails (an HTTP error, a timeout, no api process found).
 * Every request has a timeout; every wait is bounded.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_AT 16
#define BODY_CAP (1u << 20)

struct resp {
    char *p;
    size_t len;
};

static const char *g_url;
static long g_timeout_s = 600;
static atomic_long g_next;  /* the next job number to submit */
static long g_goal;         /* submit until g_next reaches this */
static atomic_int g_failed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t add = size * n;
    if (r->len + add > BODY_CAP)
        return 0;
    char *p = realloc(r->p, r->len + add + 1);
    if (!p)
        return 0;
    memcpy(p + r->len, data, add);
    r->p = p;
    r->len += add;
    r->p[r->len] = '\0';
    return add;
}

/* One request on handle h; returns the HTTP status (0 on failure) and the
 * body in *r (caller frees r->p). */
static long request(CURL *h, const char *path, const char *body, struct resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", g_url, path);
    r->p = NULL;
    r->len = 0;
    struct curl_slist *hdrs = NULL;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    return status;
}

static void *submitter(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    if (!h) {
        atomic_store(&g_failed, 1);
        return NULL;
    }
    char body[128];
    for (;;) {
        long k = atomic_fetch_add(&g_next, 1);
        if (k >= g_goal || atomic_load(&g_failed))
            break;
        snprintf(body, sizeof body, "{\"model\":\"echo\",\"inputs\":[%ld]}", k);
        struct resp r;
        long st = 0;
        /* 429/503 (admission control) are waited out, a bounded number of times */
        for (int tries = 0; tries < 1000; tries++) {
            st = request(h, "/v1/jobs", body, &r);
            free(r.p);
            if (st != 429 && st != 503)
                break;
            usleep(10000);
        }
        if (st != 202) {
            fprintf(stderr, "retention: POST /v1/jobs answered %ld\n", st);
            atomic_store(&g_failed, 1);
            break;
        }
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* The number of jobs the list shows with `status` (0 or 1 is enough). */
static long jobs_with(CURL *h, const char *status)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?status=%s&limit=1", status);
    struct resp r;
    long st = request(h, path, NULL, &r), n = -1;
    json_t *j = st == 200 ? json_loads(r.p, 0, NULL) : NULL;
    if (j)
        n = (long)json_array_size(json_object_get(j, "jobs"));
    json_decref(j);
    free(r.p);
    return n;
}

static bool wait_idle(CURL *h)
{
    double deadline = now_s() + (double)g_timeout_s;
    for (int i = 0; i < 1000000 && now_s() < deadline; i++) {
        if (jobs_with(h, "queued") == 0 && jobs_with(h, "running") == 0)
            return true;
        usleep(50000);
    }
    return false;
}

/* The api process: the supervisor's child that is not a worker. */
static long api_pid(CURL *h, long sup)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", sup, sup);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long kids[256];
    int nk = 0;
    while (nk < 256 && fscanf(f, "%ld", &kids[nk]) == 1)
        nk++;
    fclose(f);
    struct resp r;
    long st = request(h, "/v1/workers", NULL, &r);
    json_t *j = st == 200 ? json_loads(r.p, 0, NULL) : NULL;
    free(r.p);
    long api = 0;
    int found = 0;
    for (int k = 0; j && k < nk; k++) {
        bool worker = false;
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(j, "workers"), i, w)
            worker |= json_integer_value(json_object_get(w, "pid")) == kids[k];
        if (!worker) {
            api = kids[k];
            found++;
        }
    }
    json_decref(j);
    return found == 1 ? api : 0;
}

static long rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The read paths a dashboard and clients use; returns the median time of
 * GET /v1/jobs?limit=100 in ms, or -1 on an HTTP error. */
static double exercise_reads(CURL *h)
{
    double t[21];
    char after[64] = "", id[64] = "";
    for (int i = 0; i < 21; i++) {
        struct resp r;
        double t0 = now_s();
        long st = request(h, "/v1/jobs?limit=100", NULL, &r);
        t[i] = (now_s() - t0) * 1000;
        json_t *j = st == 200 ? json_loads(r.p, 0, NULL) : NULL;
        free(r.p);
        if (!j)
            return -1;
        const char *na = json_string_value(json_object_get(j, "next_after"));
        const char *first =
            json_string_value(json_object_get(json_array_get(json_object_get(j, "jobs"), 0), "id"));
        if (na)
            snprintf(after, sizeof after, "%s", na);
        if (first)
            snprintf(id, sizeof id, "%s", first);
        json_decref(j);
    }
    char path[256];
    const char *more[4] = { "/v1/jobs?status=succeeded&limit=100", path, NULL, NULL };
    snprintf(path, sizeof path, "/v1/jobs?limit=100&after=%s", after);
    char p2[128], p3[128];
    snprintf(p2, sizeof p2, "/v1/jobs/%s", id);
    snprintf(p3, sizeof p3, "/v1/jobs/%s/results", id);
    more[2] = p2;
    more[3] = p3;
    for (int i = 0; i < 4; i++) {
        struct resp r;
        long st = request(h, more[i], NULL, &r);
        free(r.p);
        if (st != 200) {
            fprintf(stderr, "retention: GET %s answered %ld\n", more[i], st);
            return -1;
        }
    }
    qsort(t, 21, sizeof *t, cmp_double);
    return t[10];
}

int main(int argc, char **argv)
{
    long sup = 0, at[MAX_AT], settle_s = 11;
    int n_at = 0, threads = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--url"))
            g_url = argv[i + 1];
        else if (!strcmp(argv[i], "--supervisor"))
            sup = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--at") && n_at < MAX_AT)
            at[n_at++] = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--settle"))
            settle_s = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout"))
            g_timeout_s = atol(argv[i + 1]);
        else {
            fprintf(stderr, "retention: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (!g_url || sup <= 0 || n_at == 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: retention --url URL --supervisor PID --at N [--at N]... "
                        "[--threads T] [--timeout S]\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    long api = h ? api_pid(h, sup) : 0;
    if (!api) {
        fprintf(stderr, "retention: the api process of batchd %ld was not found\n", sup);
        return 1;
    }
    long first_rss = 0, first_at = 0, last_rss = 0, last_at = 0;
    int rc = 0;
    for (int c = 0; c < n_at && rc == 0; c++) {
        g_goal = at[c];
        double t0 = now_s();
        long from = atomic_load(&g_next);
        pthread_t th[64];
        for (int k = 0; k < threads; k++)
            pthread_create(&th[k], NULL, submitter, NULL);
        for (int k = 0; k < threads; k++)
            pthread_join(th[k], NULL);
        atomic_store(&g_next, g_goal);
        double secs = now_s() - t0;
        if (atomic_load(&g_failed) || !wait_idle(h)) {
            fprintf(stderr, "retention: the jobs did not all finish\n");
            rc = 1;
            break;
        }
        double list_ms = exercise_reads(h);
        if (list_ms < 0) {
            rc = 1;
            break;
        }
        long busy = rss_kb(api);
        sleep((unsigned)(settle_s > 0 ? settle_s : 0));
        long kb = rss_kb(api);
        fprintf(stderr, "retention: %ld jobs submitted in %.1f s (%.0f/s)\n", at[c] - from, secs,
                secs > 0 ? (double)(at[c] - from) / secs : 0.0);
        printf("RETAINED jobs=%ld api_rss_kb=%ld busy_rss_kb=%ld list100_ms=%.2f\n", at[c], kb,
               busy, list_ms);
        fflush(stdout);
        if (c == 0) {
            first_rss = kb;
            first_at = at[c];
        }
        last_rss = kb;
        last_at = at[c];
    }
    if (rc == 0 && last_at > first_at)
        printf("RESULT retention growth_kb=%ld from=%ld to=%ld per_job_bytes=%.1f\n",
               last_rss - first_rss, first_at, last_at,
               (double)(last_rss - first_rss) * 1024.0 / (double)(last_at - first_at));
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return rc;
}
