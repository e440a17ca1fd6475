/*
 * test_stateful: jobs of a stateful model (prefix_count) through the HTTP
 * API: per-worker state, the reduce, GET /v1/jobs/{id}/result.
 *
 *   - a job over many documents: its result equals an independent count
 *     made here (every prefix of lengths 1..len-1 of every word, those
 *     counted more than the threshold, by count then bytes), and every item
 *     has its own result {"words", "prefixes"};
 *   - a worker stopped and then SIGKILLed in the middle of a job takes its
 *     partial counts with it: the service runs its items again and the
 *     result is still exact, with one result per item;
 *   - the result survives a restart of batchd (it is in the store);
 *   - 409 before the result exists and for a cancelled job, 404 for a job
 *     of a model without reduce and for an unknown job; bad items get
 *     per-item errors and do not count;
 *   - with --max-items-per-worker 50, a worker past its limit in the middle
 *     of a job keeps its counts until it has exported them, is recycled
 *     after that, and the result is exact (no item is run again for a lost
 *     state).
 *
 * Only processes that are children of the batchd this program started are
 * signalled, by PID, after checking their parent.
 */
#include "tests/integration/harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct h_service svc;

/* ---------------------------------------------------------- documents */

/* Deterministic words over a small alphabet, so that prefixes repeat. */
static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

struct corpus {
    char ***docs; /* docs[d][w]: NUL-terminated words */
    size_t n_docs, words_per_doc;
};

static void corpus_make(struct corpus *c, size_t n_docs, size_t words)
{
    c->n_docs = n_docs;
    c->words_per_doc = words;
    c->docs = calloc(n_docs, sizeof *c->docs);
    for (size_t d = 0; d < n_docs; d++) {
        c->docs[d] = calloc(words, sizeof *c->docs[d]);
        for (size_t w = 0; w < words; w++) {
            size_t len = 1 + next_rand() % 7;
            char *s = malloc(len + 1);
            for (size_t k = 0; k < len; k++)
                s[k] = (char)('a' + next_rand() % 4);
            s[len] = '\0';
            c->docs[d][w] = s;
        }
    }
}

static void corpus_free(struct corpus *c)
{
    for (size_t d = 0; d < c->n_docs; d++) {
        for (size_t w = 0; w < c->words_per_doc; w++)
            free(c->docs[d][w]);
        free(c->docs[d]);
    }
    free(c->docs);
}

/* {"model":"prefix_count","inputs":[[words],...]} plus options. */
static char *corpus_job(const struct corpus *c, const char *model, const char *options)
{
    json_t *inputs = json_array();
    for (size_t d = 0; d < c->n_docs; d++) {
        json_t *doc = json_array();
        for (size_t w = 0; w < c->words_per_doc; w++)
            json_array_append_new(doc, json_string(c->docs[d][w]));
        json_array_append_new(inputs, doc);
    }
    json_t *req = json_pack("{s:s, s:o}", "model", model, "inputs", inputs);
    if (options)
        json_object_set_new(req, "options", json_loads(options, 0, NULL));
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return text;
}

/* The independent count: every prefix as a string, sorted, runs counted. */
struct pc {
    char *prefix;
    long long count;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_pc(const void *a, const void *b)
{
    const struct pc *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->prefix, y->prefix); /* ASCII here: bytes order */
}

/* Returns the expected prefixes (count > threshold) in *out, their number. */
static size_t expected_prefixes(const struct corpus *c, long long threshold, struct pc **out)
{
    size_t n = 0, cap = 1024;
    char **all = malloc(cap * sizeof *all);
    for (size_t d = 0; d < c->n_docs; d++) {
        for (size_t w = 0; w < c->words_per_doc; w++) {
            const char *word = c->docs[d][w];
            size_t len = strlen(word);
            for (size_t l = 1; l < len; l++) {
                if (n == cap)
                    all = realloc(all, (cap *= 2) * sizeof *all);
                all[n++] = strndup(word, l);
            }
        }
    }
    qsort(all, n, sizeof *all, cmp_str);
    struct pc *res = malloc((n + 1) * sizeof *res);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(all[i], all[j]) == 0)
            j++;
        if ((long long)(j - i) > threshold)
            res[k++] = (struct pc){ strdup(all[i]), (long long)(j - i) };
        i = j;
    }
    for (size_t i = 0; i < n; i++)
        free(all[i]);
    free(all);
    qsort(res, k, sizeof *res, cmp_pc);
    *out = res;
    return k;
}

/* Checks a PrefixCount result against the independent count. */
static void check_result(const json_t *result, const struct corpus *c, long long threshold)
{
    struct pc *want;
    size_t n = expected_prefixes(c, threshold, &want);
    long long t = -1, count = -1;
    CHECK(h_jint(result, "threshold", &t) && t == threshold);
    CHECKF(h_jint(result, "count", &count) && count == (long long)n,
           "count %lld, expected %zu", count, n);
    const json_t *got = h_jget(result, "prefixes");
    if (CHECKF(json_is_array(got) && json_array_size(got) == n, "prefixes: %zu, expected %zu",
               json_array_size(got), n)) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(got, i);
            const char *p = h_jstr(e, "prefix");
            long long cnt = -1;
            h_jint(e, "count", &cnt);
            if (!p || strcmp(p, want[i].prefix) != 0 || cnt != want[i].count) {
                if (bad++ < 3)
                    h_note("prefix %zu: got %s x%lld, expected %s x%lld", i, p ? p : "(none)",
                           cnt, want[i].prefix, want[i].count);
            }
        }
        CHECKF(bad == 0, "%zu prefixes differ from the independent count", bad);
    }
    for (size_t i = 0; i < n; i++)
        free(want[i].prefix);
    free(want);
}

/* ------------------------------------------------------------- helpers */

static bool submit(const char *body, char *id, size_t idlen)
{
    struct h_resp r;
    bool ok = h_post(&svc, "/v1/jobs", "application/json", body, &r) == 0 &&
              CHECKF(r.status == 202, "POST /v1/jobs: %ld %s", r.status, r.body);
    if (ok) {
        const char *s = h_jstr(h_json(&r), "id");
        snprintf(id, idlen, "%s", s ? s : "");
        const char *link = h_jstr(h_json(&r), "links/result");
        CHECKF(link && strstr(link, "/result"), "a stateful job links its result");
    }
    h_resp_free(&r);
    return ok;
}

/* GET /v1/jobs/{id}/result: its status, and the JSON in *out (200). */
static long get_result(const char *id, json_t **out)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/result", id);
    struct h_resp r;
    long st = 0;
    if (h_get(&svc, path, &r) == 0) {
        st = r.status;
        if (st == 200 && out)
            *out = json_incref(h_json(&r));
        else if (st != 200)
            CHECKF(h_resp_is(&r, "application/problem+json"), "%ld without a problem body",
                   st);
    }
    h_resp_free(&r);
    return st;
}

/* Every item has exactly one result, and a successful one counts words. */
static void check_item_results(const char *id, const struct corpus *c)
{
    size_t seen = 0, bad = 0;
    for (size_t off = 0; off < c->n_docs; off += 1000) {
        char path[160];
        snprintf(path, sizeof path, "/v1/jobs/%s/results?offset=%zu&limit=1000", id, off);
        struct h_resp r;
        if (h_get(&svc, path, &r) == 0 && r.status == 200) {
            json_t *arr = h_jget(h_json(&r), "results");
            size_t i;
            json_t *res;
            json_array_foreach(arr, i, res) {
                long long idx = -1, words = -1;
                h_jint(res, "index", &idx);
                if (idx != (long long)(off + i) || !h_jint(res, "output/words", &words) ||
                    words != (long long)c->words_per_doc)
                    bad++;
                seen++;
            }
        }
        h_resp_free(&r);
    }
    CHECKF(seen == c->n_docs && bad == 0, "%zu results of %zu, %zu wrong", seen, c->n_docs, bad);
}

/* Counts the objects the store holds (the partials must be gone). */
static long long object_count(void)
{
    struct h_resp r;
    long long n = -1;
    if (h_get(&svc, "/v1/objects", &r) == 0 && r.status == 200)
        n = (long long)json_array_size(h_jget(h_json(&r), "objects"));
    h_resp_free(&r);
    return n;
}

/* ---------------------------------------------------------------- tests */

static void test_exact_result(void)
{
    struct corpus c;
    corpus_make(&c, 400, 30);
    char *body = corpus_job(&c, "prefix_count", "{\"chunk_size\": 7}");
    char id[64];
    if (submit(body, id, sizeof id)) {
        json_t *job = h_wait_job(&svc, id, 60);
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
        json_t *res = NULL;
        if (CHECK_INT(get_result(id, &res), 200))
            check_result(res, &c, 3);
        json_decref(res);
        check_item_results(id, &c);
        /* the workers' partial states (objects) are gone with the reduce */
        CHECK_INT(object_count(), 0);
    }
    free(body);
    corpus_free(&c);
}

/* Reads the pids of the prefix_count workers; returns how many. */
static int stateful_pids(pid_t *pids, int max)
{
    struct h_resp r;
    int n = 0;
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        size_t i;
        json_t *w;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
            const char *m = h_jstr(w, "model");
            long long pid = 0;
            if (m && strcmp(m, "prefix_count") == 0 && h_jint(w, "pid", &pid) && n < max)
                pids[n++] = (pid_t)pid;
        }
    }
    h_resp_free(&r);
    return n;
}

static bool log_contains(const char *needle)
{
    FILE *f = fopen(svc.log_file, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/*
 * A worker that holds part of a job's counts dies: stopped first (so the
 * job cannot finish around it), then killed. Its items run again and the
 * result is exact.
 */
static void test_worker_death(void)
{
    struct corpus c;
    corpus_make(&c, 40000, 20);
    char *body = corpus_job(&c, "prefix_count", "{\"chunk_size\": 1}");
    char id[64];
    pid_t pids[8];
    int n = stateful_pids(pids, 8);
    if (!CHECKF(n == 2, "expected 2 prefix_count workers, saw %d", n) ||
        !submit(body, id, sizeof id)) {
        free(body);
        corpus_free(&c);
        return;
    }
    /* once some items are done, both workers hold counts */
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    long long done = 0;
    for (int i = 0; i < 2000 && done < 200; i++) {
        struct h_resp r;
        if (h_get(&svc, path, &r) == 0)
            h_jint(h_json(&r), "counts/done", &done);
        h_resp_free(&r);
        usleep(1000);
    }
    pid_t victim = pids[0];
    if (CHECKF(h_pid_ppid(victim) == svc.pid, "pid %d is not batchd's worker", (int)victim)) {
        kill(victim, SIGSTOP);
        usleep(200 * 1000);
        printf("  SIGKILL prefix_count worker pid %d after %lld items\n", (int)victim, done);
        kill(victim, SIGKILL);
    }
    json_t *job = h_wait_job(&svc, id, 120);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    long long total = 0, jdone = 0;
    h_jint(job, "counts/total", &total);
    h_jint(job, "counts/done", &jdone);
    CHECK_INT(jdone, total);
    json_decref(job);
    json_t *res = NULL;
    if (CHECK_INT(get_result(id, &res), 200))
        check_result(res, &c, 3);
    json_decref(res);
    check_item_results(id, &c);
    CHECKF(log_contains("died with its state"),
           "the service never replayed a dead worker's items");
    free(body);
    corpus_free(&c);
}

/*
 * A result larger than a task slot's output area (256 KiB by default): it
 * travels through an object. Four copies of one document of 20,000 words:
 * every prefix is counted at least 4 times, so all of them are in it.
 */
static void test_large_result(void)
{
    struct corpus c = { calloc(4, sizeof(char **)), 4, 20000 };
    for (size_t d = 0; d < 4; d++)
        c.docs[d] = calloc(c.words_per_doc, sizeof(char *));
    for (size_t w = 0; w < c.words_per_doc; w++) {
        char s[9];
        for (int k = 0; k < 8; k++)
            s[k] = (char)('a' + next_rand() % 26);
        s[8] = '\0';
        for (size_t d = 0; d < 4; d++)
            c.docs[d][w] = strdup(s);
    }
    char *body = corpus_job(&c, "prefix_count", NULL);
    char id[64];
    if (submit(body, id, sizeof id)) {
        json_t *job = h_wait_job(&svc, id, 60);
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
        json_t *res = NULL;
        if (CHECK_INT(get_result(id, &res), 200)) {
            char *text = json_dumps(res, JSON_COMPACT);
            CHECKF(text && strlen(text) > 256 * 1024, "the result is only %zu bytes",
                   text ? strlen(text) : 0);
            free(text);
            check_result(res, &c, 3);
        }
        json_decref(res);
        CHECK_INT(object_count(), 0);
    }
    free(body);
    corpus_free(&c);
}

/*
 * The same, but the stopped worker is killed only once the other has run
 * everything it could: then the job waits either for the task the stopped
 * worker holds, or (it held none) for its export, which the engine must take
 * back from the dead process and replace by replays.
 */
static void test_death_at_export(void)
{
    struct corpus c;
    corpus_make(&c, 8000, 20);
    char *body = corpus_job(&c, "prefix_count", "{\"chunk_size\": 1}");
    char id[64], path[128];
    pid_t pids[8];
    int n = stateful_pids(pids, 8);
    if (!CHECKF(n == 2, "expected 2 prefix_count workers, saw %d", n) ||
        !submit(body, id, sizeof id)) {
        free(body);
        corpus_free(&c);
        return;
    }
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    long long done = 0, last = -1;
    for (int i = 0; i < 2000 && done < 100; i++) {
        struct h_resp r;
        if (h_get(&svc, path, &r) == 0)
            h_jint(h_json(&r), "counts/done", &done);
        h_resp_free(&r);
        usleep(1000);
    }
    pid_t victim = pids[1];
    if (CHECKF(h_pid_ppid(victim) == svc.pid, "pid %d is not batchd's worker", (int)victim)) {
        kill(victim, SIGSTOP);
        /* the other worker runs what it can: wait until it stops moving */
        for (int i = 0; i < 300 && done != last; i++) {
            last = done;
            usleep(20 * 1000);
            struct h_resp r;
            if (h_get(&svc, path, &r) == 0)
                h_jint(h_json(&r), "counts/done", &done);
            h_resp_free(&r);
        }
        printf("  SIGKILL stopped worker pid %d at %lld of 8000 items\n", (int)victim, done);
        kill(victim, SIGKILL);
    }
    json_t *job = h_wait_job(&svc, id, 120);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    json_t *res = NULL;
    if (CHECK_INT(get_result(id, &res), 200))
        check_result(res, &c, 3);
    json_decref(res);
    check_item_results(id, &c);
    CHECK_INT(object_count(), 0);
    free(body);
    corpus_free(&c);
}

static void test_errors(void)
{
    CHECK_INT(get_result("aaaaaaaaaaaaaaaaaaaaaaaaaa", NULL), 404);
    /* a job of a model without reduce */
    struct h_resp r;
    char id[64] = "";
    if (h_post(&svc, "/v1/jobs", "application/json", "{\"model\":\"square\",\"inputs\":[1,2]}",
               &r) == 0 && CHECK_INT(r.status, 202))
        snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    CHECK(h_jget(h_json(&r), "links/result") == NULL);
    h_resp_free(&r);
    if (id[0])
        CHECK_INT(get_result(id, NULL), 404);

    /* bad items: per-item errors, the others still counted */
    const char *body = "{\"model\":\"prefix_count\",\"inputs\":"
                       "[[\"abcd\",\"abce\"],\"not a document\",[1,2],[\"abcf\",\"abcg\"]]}";
    if (h_post(&svc, "/v1/jobs", "application/json", body, &r) == 0 && CHECK_INT(r.status, 202))
        snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    json_t *job = h_wait_job(&svc, id, 30);
    long long failed = -1;
    CHECK(h_jint(job, "counts/failed", &failed) && failed == 2);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    json_t *res = NULL;
    if (CHECK_INT(get_result(id, &res), 200)) {
        /* a, ab, abc four times each: counted more than 3 times */
        long long count = -1;
        CHECK(h_jint(res, "count", &count) && count == 3);
        const char *first = h_jstr(json_array_get(h_jget(res, "prefixes"), 0), "prefix");
        CHECK(first && strcmp(first, "a") == 0);
    }
    json_decref(res);

    /* a cancelled job never gets a result */
    struct corpus c;
    corpus_make(&c, 3000, 10);
    char *big = corpus_job(&c, "prefix_count", "{\"chunk_size\": 1}");
    if (submit(big, id, sizeof id)) {
        long st = get_result(id, NULL);
        CHECKF(st == 409 || st == 200, "result of a running job: %ld", st);
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s", id);
        h_delete(&svc, path, &r);
        h_resp_free(&r);
        job = h_wait_job(&svc, id, 30);
        const char *status = h_jstr(job, "status");
        if (status && strcmp(status, "cancelled") == 0)
            CHECK_INT(get_result(id, NULL), 409);
        json_decref(job);
    }
    free(big);
    corpus_free(&c);
}

static void test_result_survives_restart(void)
{
    struct corpus c;
    corpus_make(&c, 50, 12);
    char *body = corpus_job(&c, "prefix_count", NULL);
    char id[64];
    if (submit(body, id, sizeof id)) {
        json_decref(h_wait_job(&svc, id, 30));
        static const char *const args[] = {"--workers", "2", "--model", "prefix_count",
                                           "--model", "square", NULL};
        struct h_service_opts o = {.args = args};
        CHECK_INT(h_service_stop(&svc, 30), 0);
        if (CHECK_INT(h_service_restart(&svc, &o), 0)) {
            json_t *res = NULL;
            if (CHECK_INT(get_result(id, &res), 200))
                check_result(res, &c, 3);
            json_decref(res);
        }
    }
    free(body);
    corpus_free(&c);
}

/* The log's size now: what a test appends comes after. */
static long log_size(void)
{
    FILE *f = fopen(svc.log_file, "r");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Like log_contains, from byte `from` on. */
static bool log_contains_from(long from, const char *needle)
{
    FILE *f = fopen(svc.log_file, "r");
    if (!f)
        return false;
    fseek(f, from, SEEK_SET);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Recycles of the prefix_count workers (sum over slots), -1 on error. */
static long long stateful_recycles(void)
{
    struct h_resp r;
    long long n = -1;
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        n = 0;
        size_t i;
        json_t *w;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
            const char *m = h_jstr(w, "model");
            long long k = 0, restarts = 0;
            if (m && strcmp(m, "prefix_count") == 0 && h_jint(w, "recycles", &k)) {
                n += k;
                h_jint(w, "restarts", &restarts);
                CHECKF(restarts == 0, "a prefix_count worker restarted (%lld)", restarts);
            }
        }
    }
    h_resp_free(&r);
    return n;
}

/*
 * Recycling during a stateful job (the last test: it restarts the service
 * with a limit). Each worker runs far more than 50 items of the job, so it
 * is past its limit while it holds counts; it must keep them until the
 * export and be replaced only then. Two jobs in a row: the second runs on
 * recycled processes.
 */
static void test_recycle_keeps_counts(void)
{
    h_service_stop(&svc, 30);
    long from = log_size();
    static const char *const args[] = {"--workers", "2", "--max-items-per-worker", "50",
                                       "--model", "prefix_count", "--model", "square", NULL};
    struct h_service_opts o = {.args = args};
    if (!CHECK(h_service_restart(&svc, &o) == 0))
        return;
    long long before = stateful_recycles();
    CHECK_INT(before, 0);
    for (int round = 0; round < 2; round++) {
        struct corpus c;
        corpus_make(&c, 400, 30);
        char *body = corpus_job(&c, "prefix_count", "{\"chunk_size\": 7}");
        char id[64];
        if (submit(body, id, sizeof id)) {
            json_t *job = h_wait_job(&svc, id, 120);
            CHECK_STR(h_jstr(job, "status"), "succeeded");
            json_decref(job);
            json_t *res = NULL;
            if (CHECK_INT(get_result(id, &res), 200))
                check_result(res, &c, 3);
            json_decref(res);
            check_item_results(id, &c);
        }
        free(body);
        corpus_free(&c);
        /* after their exports, the workers past the limit leave */
        long long n = 0;
        double until = h_now() + 30;
        for (int i = 0; i < 600 && h_now() < until; i++) {
            n = stateful_recycles();
            if (n > before)
                break;
            h_sleep_ms(50);
        }
        printf("  round %d: %lld prefix_count recycles so far\n", round + 1, n);
        CHECKF(n > before, "no prefix_count worker was recycled after job %d", round + 1);
        before = n;
    }
    CHECKF(log_contains_from(from, "holds the state"),
           "no worker said it waits for its export before leaving");
    CHECKF(!log_contains_from(from, "died with its state"),
           "a recycle lost a worker's counts (its items were run again)");
}

int main(void)
{
    if (h_init() != 0)
        return 2;
    static const char *const args[] = {"--workers", "2", "--model", "prefix_count", "--model",
                                       "square", NULL};
    struct h_service_opts o = {.args = args};
    if (h_service_start(&svc, &o) != 0) {
        h_fail_test("start", "batchd did not start");
        return h_finish();
    }
    static const struct h_test tests[] = {
        {"stateful: the reduced result equals an independent count", test_exact_result},
        {"stateful: a worker killed mid-job loses nothing", test_worker_death},
        {"stateful: a worker killed while the job waits for it", test_death_at_export},
        {"stateful: a result larger than a task slot", test_large_result},
        {"stateful: 404, 409, bad items", test_errors},
        {"stateful: the result survives a restart", test_result_survives_restart},
        {"stateful: recycling waits for the export, the result stays exact",
         test_recycle_keeps_counts},
    };
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    h_service_stop(&svc, 30);
    h_service_cleanup(&svc);
    return h_finish();
}
