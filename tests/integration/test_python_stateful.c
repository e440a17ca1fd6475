/*
 * test_python_stateful: stateful models in Python (acc_run, acc_export,
 * reduce; docs/coprocess.md, "Stateful models") against the built-in C
 * prefix_count, through the HTTP API.
 *
 * One batchd serves
 *   prefix_count  the C model, workers=2 (the reference);
 *   pyp           examples/python/prefix_count.py, workers=2;
 *   pyr           the same file, workers=2, max_items=50 (recycled);
 *   pyacc         a small module: sums numbers, with bad returns and an
 *                 export that fails past 1000;
 * and checks:
 *   - the same job on pyp and on prefix_count: the same reduced result,
 *     byte for byte, and each item its own {"words", "prefixes"};
 *   - a Python child killed in the middle of a job (stopped first, so that
 *     the job cannot finish around it), and then a batchd worker of the
 *     model killed the same way: the job succeeds with one result per
 *     item, the service replays the lost state ("died with its state"),
 *     and the result is still the C model's;
 *   - recycling by item count in the middle of a stateful job waits for
 *     the export (no state lost, so nothing replayed) and the result is
 *     exact;
 *   - an acc_run that raises or returns something other than (acc,
 *     output) is that item's error and counts for nothing; an acc_export
 *     that raises fails the job, naming the exception.
 *
 * Only processes that descend from the batchd this program started are
 * signalled, by PID, after checking their parents.
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static struct h_service svc;
static bool svc_up;
static char dir[PATH_MAX];

static const char acc_py[] =
    "def acc_run(state, acc, item):\n"
    "    if item == 'notuple':\n"
    "        return 5\n"
    "    if item == 'raise':\n"
    "        raise ValueError('no sum for %s' % item)\n"
    "    acc = (acc or 0) + item\n"
    "    return acc, acc\n"
    "def acc_export(state, acc):\n"
    "    if acc > 1000:\n"
    "        raise RuntimeError('too big to export: %d' % acc)\n"
    "    return acc\n"
    "def reduce(shared, partials):\n"
    "    return {'sum': sum(partials), 'partials': len(partials)}\n";

/* Deterministic documents over a small alphabet, so that prefixes repeat. */
static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* {"model":..., "inputs":[n_docs documents of `words` words], "options":...} */
static char *corpus_job(const char *model, size_t n_docs, size_t words, const char *options)
{
    uint64_t seed = rng;
    json_t *inputs = json_array();
    for (size_t d = 0; d < n_docs; d++) {
        json_t *doc = json_array();
        for (size_t w = 0; w < words; w++) {
            char s[9];
            size_t len = 1 + next_rand() % 7;
            for (size_t k = 0; k < len; k++)
                s[k] = (char)('a' + next_rand() % 4);
            s[len] = '\0';
            json_array_append_new(doc, json_string(s));
        }
        json_array_append_new(inputs, doc);
    }
    rng = seed; /* the same documents for the next model */
    json_t *req = json_pack("{s:s, s:o}", "model", model, "inputs", inputs);
    if (options)
        json_object_set_new(req, "options", json_loads(options, 0, NULL));
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return text;
}

static bool submit(const char *body, char *id)
{
    return h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30);
}

/* The job's reduced result as compact JSON text (new), or NULL. */
static char *result_text(const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/result", id);
    struct h_resp r;
    char *text = NULL;
    if (h_get(&svc, path, &r) == 0 && CHECKF(r.status == 200, "%s: %ld %s", path, r.status,
                                             r.body ? r.body : ""))
        text = json_dumps(h_json(&r), JSON_COMPACT);
    h_resp_free(&r);
    return text;
}

/* Runs a job and returns its result's text (new), or NULL; checks that
 * each of its n items has an output with `words` words. */
static char *run_corpus(const char *model, size_t n, size_t words, const char *options)
{
    char id[32];
    char *body = corpus_job(model, n, words, options);
    bool ok = submit(body, id);
    free(body);
    if (!ok)
        return NULL;
    json_t *job = h_wait_job(&svc, id, 180);
    ok = CHECK(job != NULL) && CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    if (!ok)
        return NULL;
    json_t *res = h_fetch_results(&svc, id, n, 1000);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        long long idx = -1, w = -1;
        h_jint(json_array_get(res, i), "index", &idx);
        h_jint(json_array_get(res, i), "output/words", &w);
        bad += idx != (long long)i || w != (long long)words;
    }
    CHECKF(json_array_size(res) == n && bad == 0, "%s: %zu results of %zu, %zu wrong", model,
           json_array_size(res), n, bad);
    json_decref(res);
    return result_text(id);
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

/* ---------------------------------------------------------------- tests */

static void test_same_result_as_c(void)
{
    char *c = run_corpus("prefix_count", 300, 20, "{\"chunk_size\":7}");
    char *py = run_corpus("pyp", 300, 20, "{\"chunk_size\":7}");
    if (CHECK(c && py)) {
        CHECKF(strlen(c) > 200, "a result of %zu bytes", strlen(c));
        CHECKF(strcmp(c, py) == 0, "C: %.300s\nPython: %.300s", c, py);
    }
    free(c);
    free(py);
}

/* pid of worker k of model pyp (field "pid") or of its Python child
 * ("coprocess/pid"), 0 if not found. */
static pid_t pyp_pid(int k, const char *field)
{
    struct h_resp r;
    long long pid = 0;
    int seen = 0;
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        size_t i;
        json_t *w;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
            const char *m = h_jstr(w, "model");
            if (m && strcmp(m, "pyp") == 0 && seen++ == k)
                h_jint(w, field, &pid);
        }
    }
    h_resp_free(&r);
    return (pid_t)pid;
}

/* Kills, in the middle of a job, the Python child of pyp's worker 0
 * (child = true) or the batchd worker itself: stopped first, so that the
 * job cannot finish around it, then SIGKILLed. */
static void worker_death(bool child)
{
    enum { N = 6000, WORDS = 20 };
    char id[32], path[128];
    char *body = corpus_job("pyp", N, WORDS, "{\"chunk_size\":1}");
    pid_t worker = pyp_pid(0, "pid");
    pid_t victim = child ? pyp_pid(0, "coprocess/pid") : worker;
    bool ok = CHECK(worker > 0 && victim > 0) && submit(body, id);
    free(body);
    if (!ok)
        return;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    long long done = 0;
    for (int i = 0; i < 5000 && done < 300; i++) {
        struct h_resp r;
        if (h_get(&svc, path, &r) == 0)
            h_jint(h_json(&r), "counts/done", &done);
        h_resp_free(&r);
        h_sleep_ms(2);
    }
    /* The worker is batchd's child; a Python child is its host's, and the
     * host is batchd's. */
    pid_t parent = h_pid_ppid(victim);
    bool ours = child ? parent > 0 && h_pid_ppid(parent) == svc.pid : parent == svc.pid;
    if (CHECKF(ours, "pid %d is not a pyp process of this batchd", (int)victim)) {
        kill(victim, SIGSTOP);
        h_sleep_ms(300);
        printf("  SIGKILL pyp %s pid %d after %lld items\n", child ? "Python child" : "worker",
               (int)victim, done);
        kill(victim, SIGKILL);
    }
    json_t *job = h_wait_job(&svc, id, 180);
    CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    json_t *res = h_fetch_results(&svc, id, N, 1000);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        long long idx = -1, w = -1;
        h_jint(json_array_get(res, i), "index", &idx);
        h_jint(json_array_get(res, i), "output/words", &w);
        bad += idx != (long long)i || w != WORDS;
    }
    CHECKF(json_array_size(res) == N && bad == 0, "%zu results of %d, %zu wrong",
           json_array_size(res), N, bad);
    json_decref(res);
    char *py = result_text(id);
    char *c = run_corpus("prefix_count", N, WORDS, "{\"chunk_size\":50}");
    if (CHECK(c && py))
        CHECKF(strcmp(c, py) == 0, "C: %.300s\nPython: %.300s", c, py);
    free(c);
    free(py);
    CHECKF(log_contains("died with its state"),
           "the service never replayed the dead process's items");
}

static void test_child_death(void) { worker_death(true); }
static void test_worker_death(void) { worker_death(false); }

static void test_recycle_waits_for_export(void)
{
    char *c = run_corpus("prefix_count", 400, 10, "{\"chunk_size\":10}");
    char *py = run_corpus("pyr", 400, 10, "{\"chunk_size\":10}");
    if (CHECK(c && py))
        CHECKF(strcmp(c, py) == 0, "C: %.300s\nPython: %.300s", c, py);
    free(c);
    free(py);
    CHECKF(log_contains("model pyr) is past its items limit but its child holds the state"),
           "no worker of pyr put its recycle off");
    long long recycles = 0;
    struct h_resp r;
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        size_t i;
        json_t *w;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
            long long n = 0;
            const char *m = h_jstr(w, "model");
            if (m && strcmp(m, "pyr") == 0 && h_jint(w, "recycles", &n))
                recycles += n;
        }
    }
    h_resp_free(&r);
    printf("  pyr: %lld recycles after a job of 400 items (max_items=50)\n", recycles);
}

static void test_item_errors_and_failed_export(void)
{
    char id[32];
    const char *body = "{\"model\":\"pyacc\",\"inputs\":[1,2,\"notuple\",\"raise\",3],"
                       "\"options\":{\"chunk_size\":5}}";
    if (submit(body, id)) {
        json_t *job = h_wait_job(&svc, id, 60);
        CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
        json_t *res = h_fetch_results(&svc, id, 5, 10);
        CHECK_STR(h_jstr(json_array_get(res, 2), "error/message"),
                  "TypeError: acc_run must return (acc, output), not int");
        CHECK_STR(h_jstr(json_array_get(res, 3), "error/message"), "ValueError: no sum for raise");
        json_decref(res);
        char *text = result_text(id);
        CHECK_STR(text, "{\"sum\":6,\"partials\":1}");
        free(text);
    }
    body = "{\"model\":\"pyacc\",\"inputs\":[2000]}";
    if (submit(body, id)) {
        json_t *job = h_wait_job(&svc, id, 60);
        CHECK_STR(h_jstr(job, "status"), "failed");
        const char *why = h_jstr(job, "error");
        CHECKF(why && strstr(why, "state failed: RuntimeError: too big to export: 2000"),
               "job error: %s", why ? why : "(none)");
        json_decref(job);
    }
}

/* ------------------------------------------------------------------ main */

static void start(void)
{
    static char spec_pyp[PATH_MAX * 2], spec_pyr[PATH_MAX * 2], spec_acc[PATH_MAX * 2],
        cwd[PATH_MAX];
    if (!CHECK(getcwd(cwd, sizeof cwd) != NULL))
        return;
    snprintf(spec_pyp, sizeof spec_pyp,
             "pyp:python=%s/examples/python/prefix_count.py,interpreter=" PYTHON ",workers=2",
             cwd);
    snprintf(spec_pyr, sizeof spec_pyr,
             "pyr:python=%s/examples/python/prefix_count.py,interpreter=" PYTHON
             ",workers=2,max_items=50",
             cwd);
    snprintf(spec_acc, sizeof spec_acc, "pyacc:python=%s/acc.py,interpreter=" PYTHON ",workers=1",
             dir);
    const char *const args[] = {"--model", "prefix_count:workers=2", "--model", spec_pyp,
                                "--model", spec_pyr, "--model", spec_acc, "--log-level", "info",
                                NULL};
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void) { CHECK_INT(h_service_stop(&svc, 15), 0); }

int main(void)
{
    static const struct h_test tests[] = {
        {"a Python stateful model gives the C model's result", test_same_result_as_c},
        {"a Python child killed mid-job: its state is replayed, the result exact",
         test_child_death},
        {"a worker killed mid-job: its state is replayed, the result exact", test_worker_death},
        {"recycling by count waits for the export", test_recycle_waits_for_export},
        {"acc_run errors are the item's; a failed export fails the job",
         test_item_errors_and_failed_export},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    snprintf(dir, sizeof dir, "%s", h_tmpdir());
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/acc.py", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(acc_py, f);
        fclose(f);
    }
    h_run_one("start batchd with prefix_count in C and in Python", start);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    return h_finish();
}
