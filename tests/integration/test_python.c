/*
 * test_python: models written in Python, served through the coprocess host
 * (docs/coprocess.md, workers/python/batchd_host.py).
 *
 * One batchd runs Python models on /usr/bin/python3 (Debian's, with
 * python3-numpy: installed through scripts/deps.sh python if missing):
 *   py     run() per item, workers=2: load() and init() append a line to a
 *          file each, so the test counts them;
 *   pyb    run_batch(), workers=1, returning an exception object in place of
 *          one item's output;
 *   pymlp  examples/python/mlp.py, next to the built-in C mlp on the same
 *          weights (build/mkmlp writes them): the outputs must agree;
 *   pyr    run() per item, workers=2, max_items=20: recycled workers;
 *   pyleak run() per item, workers=1, max_rss=96M, 8 MiB leaked per item:
 *          workers recycled for their child's resident set;
 * and checks: results; load() ran once and init() once per worker;
 * /v1/models and /v1/workers show the host and each worker's child; a
 * recycled worker's replacement gets a new child of the same host (load()
 * still once, one result per item), for max_items and for max_rss, counted
 * by reason and apart from crashes; an exception is the item's error
 * (type and message); an item that kills
 * its Python process ends as an error after --max-attempts and the rest
 * of the job succeeds; a hung item is killed by item_timeout_s; an object
 * reaches the model as a read-only numpy array whose base is the mapping
 * of the object store (no copy); run_batch's per-item exceptions; the
 * host's death: it is started again (load() runs again) and jobs run.
 * Then start-up failures, exit status 2 naming the reason: a load() that
 * starts a thread (the thread count), a syntax error (file and line), a
 * module without run(), a stateful module without reduce() (the
 * stateful hooks themselves: test_python_stateful.c).
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_TIMEOUT_S 20
#define PYTHON "/usr/bin/python3"

static struct h_service svc;
static bool svc_up;
static char dir[PATH_MAX];

static const char model_py[] =
    "\"\"\"Test model: squares, errors, crashes, hangs and objects.\"\"\"\n"
    "import mmap, os, time\n"
    "import numpy as np\n"
    "def load(params):\n"
    "    with open(params['count'], 'a') as f:\n"
    "        f.write('load %d\\n' % os.getpid())\n"
    "    return {'k': int(params['k']), 'count': params['count']}\n"
    "def init(shared):\n"
    "    with open(shared['count'], 'a') as f:\n"
    "        f.write('init %d\\n' % os.getpid())\n"
    "    return dict(shared, pid=os.getpid())\n"
    "def base_of(a):\n"
    "    while isinstance(a, np.ndarray) and a.base is not None:\n"
    "        a = a.base\n"
    "    return a.obj if isinstance(a, memoryview) else a\n"
    "def run(state, item):\n"
    "    if item == 'boom':\n"
    "        raise ValueError('bad item %s' % item)\n"
    "    if item == 'die':\n"
    "        os._exit(7)\n"
    "    if item == 'hang':\n"
    "        time.sleep(3600)\n"
    "    if isinstance(item, dict):\n"
    "        a = item['a']\n"
    "        return {'sum': a.sum(), 'shape': a.shape, 'dtype': str(a.dtype),\n"
    "                'writeable': a.flags.writeable,\n"
    "                'base': type(base_of(a)).__name__,\n"
    "                'mapped': isinstance(base_of(a), mmap.mmap),\n"
    "                'first': a.reshape(-1)[:3]}\n"
    "    return {'y': item * item * state['k'], 'pid': state['pid']}\n";

/* For recycling: no numpy, so that its host starts fast. */
static const char recycle_py[] =
    "import os\n"
    "def note(count, word):\n"
    "    with open(count, 'a') as f:\n"
    "        f.write('%s %d\\n' % (word, os.getpid()))\n"
    "def load(params):\n"
    "    note(params['count'], 'load')\n"
    "    return params['count']\n"
    "def init(count):\n"
    "    note(count, 'init')\n"
    "    return {'count': count, 'pid': os.getpid()}\n"
    "def run(state, item):\n"
    "    return {'y': item * item, 'pid': state['pid']}\n"
    "def fini(state):\n"
    "    note(state['count'], 'fini')\n";

/* For recycling by RSS: each item leaks 8 MiB (written, so resident) in
 * the child; no numpy of its own. */
static const char leak_py[] =
    "import os\n"
    "HELD = []\n"
    "def note(count, word):\n"
    "    with open(count, 'a') as f:\n"
    "        f.write('%s %d\\n' % (word, os.getpid()))\n"
    "def load(params):\n"
    "    note(params['count'], 'load')\n"
    "    return params['count']\n"
    "def init(count):\n"
    "    note(count, 'init')\n"
    "    return {'count': count, 'pid': os.getpid()}\n"
    "def run(state, item):\n"
    "    HELD.append(b'x' * (8 << 20))\n"
    "    return {'y': item + 1, 'pid': state['pid'], 'held': len(HELD)}\n"
    "def fini(state):\n"
    "    note(state['count'], 'fini')\n";

static const char batch_py[] =
    "def run_batch(state, items):\n"
    "    return [ValueError('no odd numbers') if x % 2 else x // 2 for x in items]\n";

static const char thread_py[] =
    "import threading, time\n"
    "def load(params):\n"
    "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    "def run(state, item):\n"
    "    return item\n";

static const char syntax_py[] = "def run(state, item):\n    return item +\n";

static const char norun_py[] = "def load(params):\n    return 1\n";

static const char noreduce_py[] = "def acc_run(state, acc, item):\n    return acc, item\n"
                                  "def acc_export(state, acc):\n    return acc\n";

static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL))
        return;
    fputs(text, f);
    fclose(f);
}

/* Lines of the count file `file` that start with `word`. */
static int count_file_lines(const char *file, const char *word)
{
    char path[PATH_MAX + 64], line[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strncmp(line, word, strlen(word)) == 0;
    fclose(f);
    return n;
}

static int count_lines(const char *word) { return count_file_lines("count", word); }

/* Submits {"model": model, "inputs": inputs[, "options": options]} and
 * waits for it; returns its results (new) or NULL. */
static json_t *run_job(const char *model, const char *inputs, const char *options, size_t n)
{
    char id[32];
    struct h_buf body = {0};
    h_buf_printf(&body, "{\"model\":\"%s\",\"inputs\":%s%s%s}", model, inputs,
                 options ? ",\"options\":" : "", options ? options : "");
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", body.p, body.len, id, 10);
    h_buf_free(&body);
    if (!ok)
        return NULL;
    json_t *job = h_wait_job(&svc, id, RUN_TIMEOUT_S);
    if (!CHECK(job != NULL))
        return NULL;
    json_decref(job);
    return h_fetch_results(&svc, id, n, 100);
}

static const char *result_error(const json_t *res, size_t i)
{
    return h_jstr(json_array_get(res, i), "error/message");
}

/* ------------------------------------------------------------------ tests */

static void test_results_load_once_init_per_worker(void)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "[");
    for (int i = 0; i < 40; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]");
    json_t *res = run_job("py", b.p, "{\"chunk_size\":4}", 40);
    h_buf_free(&b);
    if (!CHECK(res != NULL))
        return;
    for (int i = 0; i < 40; i++) {
        long long y = -1;
        CHECKF(h_jint(json_array_get(res, (size_t)i), "output/y", &y) && y == 3LL * i * i,
               "item %d: y=%lld", i, y);
    }
    json_decref(res);
    CHECK_INT(count_lines("load"), 1);
    CHECK_INT(count_lines("init"), 2);
}

static void test_models_and_workers_show_the_host(void)
{
    struct h_resp r;
    if (!CHECK(h_get(&svc, "/v1/models", &r) == 0) || !CHECK_INT(r.status, 200))
        return;
    json_t *models = h_jget(h_json(&r), "models");
    size_t i;
    json_t *m;
    bool seen = false;
    json_array_foreach(models, i, m) {
        if (strcmp(h_jstr(m, "name") ? h_jstr(m, "name") : "", "py") != 0)
            continue;
        seen = true;
        CHECK_STR(h_jstr(m, "runtime"), "python");
        CHECK_STR(h_jstr(m, "description"),
                  "Test model: squares, errors, crashes, hangs and objects.");
        long long pid = 0, loads = 0, pss = 0;
        CHECK(h_jint(m, "host/pid", &pid) && pid > 0);
        CHECK(h_jint(m, "host/loads", &loads) && loads == 1);
        CHECK(h_jint(m, "host/pss_bytes", &pss) && pss > 0);
        CHECK(h_jstr(m, "host/module") && strstr(h_jstr(m, "host/module"), "model.py"));
        CHECK(json_is_false(h_jget(m, "builtin")));
    }
    CHECK(seen);
    h_resp_free(&r);
    if (!CHECK(h_get(&svc, "/v1/workers", &r) == 0) || !CHECK_INT(r.status, 200))
        return;
    json_t *w;
    int py_workers = 0;
    json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
        long long cpid = 0, inits = 0, pss = 0;
        const char *model = h_jstr(w, "model") ? h_jstr(w, "model") : "";
        if (strcmp(model, "py") != 0) {
            /* the built-in mlp is a C model: no coprocess */
            if (strcmp(model, "mlp") == 0)
                CHECK(json_is_null(h_jget(w, "coprocess")));
            continue;
        }
        py_workers++;
        CHECK(h_jint(w, "coprocess/pid", &cpid) && cpid > 0);
        CHECK(h_jint(w, "coprocess/pss_bytes", &pss) && pss > 0);
        CHECK(h_jint(w, "inits", &inits) && inits == 1);
    }
    CHECK_INT(py_workers, 2);
    h_resp_free(&r);
}

static void test_exception_is_the_items_error(void)
{
    json_t *res = run_job("py", "[1,\"boom\",3]", NULL, 3);
    if (!CHECK(res != NULL))
        return;
    CHECK_STR(result_error(res, 1), "ValueError: bad item boom");
    long long y = 0;
    CHECK(h_jint(json_array_get(res, 2), "output/y", &y) && y == 27);
    json_decref(res);
}

static void test_crashing_item_is_isolated(void)
{
    json_t *res = run_job("py", "[1,2,\"die\",4,5]", "{\"chunk_size\":5}", 5);
    if (!CHECK(res != NULL))
        return;
    const char *e = result_error(res, 2);
    CHECKF(e && strstr(e, "worker died: its model process (coprocess) died on attempt 2/2"),
           "error: %s", e ? e : "(none)");
    for (size_t i = 0; i < 5; i++)
        if (i != 2)
            CHECKF(h_jget(json_array_get(res, i), "output/y") != NULL, "item %zu", i);
    json_decref(res);
}

static void test_hung_item_is_killed(void)
{
    json_t *res = run_job("py", "[1,\"hang\",3]", "{\"item_timeout_s\":1,\"chunk_size\":3}", 3);
    if (!CHECK(res != NULL))
        return;
    CHECK_STR(result_error(res, 1), "timed out after 1.000 s");
    CHECK(h_jget(json_array_get(res, 0), "output/y") && h_jget(json_array_get(res, 2), "output/y"));
    json_decref(res);
}

/* A 3x4 float32 .npy of 0..11, uploaded; its id in id[32]. */
static bool upload_npy(char *id)
{
    unsigned char npy[128 + 48];
    const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    memset(npy, ' ', 128);
    memcpy(npy, "\x93NUMPY\x01\x00", 8);
    npy[8] = 128 - 10;
    npy[9] = 0;
    memcpy(npy + 10, hdr, sizeof hdr - 1);
    npy[127] = '\n';
    for (int i = 0; i < 12; i++) {
        float f = (float)i;
        memcpy(npy + 128 + 4 * i, &f, 4);
    }
    struct h_resp r;
    const char *const headers[] = {"Content-Type: application/x-npy", NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = headers,
                        .body = (const char *)npy, .body_len = sizeof npy};
    if (!CHECK(h_request(&svc, &req, &r) == 0))
        return false;
    bool ok = CHECK_INT(r.status, 201) && h_jstr(h_json(&r), "id");
    if (ok)
        snprintf(id, 32, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    return ok;
}

static void test_object_is_a_read_only_view(void)
{
    char id[32], inputs[256];
    if (!upload_npy(id))
        return;
    snprintf(inputs, sizeof inputs, "[{\"a\":{\"$object\":\"%s\"}},{\"a\":{\"$object\":\"%s\"}}]",
             id, "zzzzzzzzzzzzzzzzzzzzzzzzzz");
    json_t *res = run_job("py", inputs, NULL, 2);
    if (!CHECK(res != NULL))
        return;
    json_t *o = h_jget(json_array_get(res, 0), "output");
    double sum = 0;
    CHECK(h_jnum(o, "sum", &sum) && sum == 66.0);
    CHECK_STR(h_jstr(o, "dtype"), "float32");
    long long d0 = 0, d1 = 0;
    CHECK(h_jint(o, "shape/0", &d0) && d0 == 3 && h_jint(o, "shape/1", &d1) && d1 == 4);
    CHECK(json_is_false(h_jget(o, "writeable")));
    /* no copy: the array's base is the mapping of the object store */
    CHECK_STR(h_jstr(o, "base"), "mmap");
    CHECK(json_is_true(h_jget(o, "mapped")));
    double first = -1;
    CHECK(h_jnum(o, "first/2", &first) && first == 2.0);
    const char *e = result_error(res, 1);
    CHECKF(e && strstr(e, "not found"), "error: %s", e ? e : "(none)");
    json_decref(res);
}

static void test_run_batch_per_item_exceptions(void)
{
    json_t *res = run_job("pyb", "[2,3,4,5,6]", NULL, 5);
    if (!CHECK(res != NULL))
        return;
    for (size_t i = 0; i < 5; i++) {
        long long x = 2 + (long long)i, y = -1;
        if (x % 2)
            CHECK_STR(result_error(res, i), "ValueError: no odd numbers");
        else
            CHECKF(h_jint(json_array_get(res, i), "output", &y) && y == x / 2, "item %zu", i);
    }
    json_decref(res);
}

static long long model_host_field(const char *model, const char *field)
{
    struct h_resp r;
    long long v = -1;
    char path[64];
    snprintf(path, sizeof path, "host/%s", field);
    if (h_get(&svc, "/v1/models", &r) == 0) {
        size_t i;
        json_t *m;
        json_array_foreach(h_jget(h_json(&r), "models"), i, m)
            if (h_jstr(m, "name") && strcmp(h_jstr(m, "name"), model) == 0)
                h_jint(m, path, &v);
    }
    h_resp_free(&r);
    return v;
}

static long long host_field(const char *field) { return model_host_field("py", field); }

/* ------------------------------------------------------------- recycling */

/* Recycles of a model's workers (GET /v1/workers), summed over its
 * worker slots: the total, those for the item limit, those for the RSS
 * limit, and the crashes (restarts); -1 if the list cannot be read. */
struct recycles {
    long long total, by_items, by_rss, restarts;
};

static struct recycles model_recycles(const char *model)
{
    struct h_resp r;
    struct recycles c = {-1, -1, -1, -1};
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        c = (struct recycles){0, 0, 0, 0};
        size_t i;
        json_t *w;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, w) {
            long long n = 0, items = 0, rss = 0, restarts = 0;
            if (!h_jstr(w, "model") || strcmp(h_jstr(w, "model"), model) != 0)
                continue;
            if (h_jint(w, "recycles", &n))
                c.total += n;
            if (h_jint(w, "recycles_by_reason/items", &items))
                c.by_items += items;
            if (h_jint(w, "recycles_by_reason/rss", &rss))
                c.by_rss += rss;
            if (h_jint(w, "restarts", &restarts))
                c.restarts += restarts;
        }
    }
    h_resp_free(&r);
    return c;
}

/* Which child (output/pid) ran each of the n results: pids[] and runs[]
 * (items per child), *n_pids of them. Checks that output/y is f(i). */
static void children_of(const json_t *res, int n, long long (*f)(int), long long *pids, int *runs,
                        int *n_pids)
{
    *n_pids = 0;
    for (int i = 0; i < n; i++) {
        long long y = -1, pid = 0;
        json_t *it = json_array_get(res, (size_t)i);
        CHECKF(h_jint(it, "output/y", &y) && y == f(i), "item %d: y=%lld", i, y);
        if (!h_jint(it, "output/pid", &pid))
            continue;
        int k = 0;
        while (k < *n_pids && pids[k] != pid)
            k++;
        if (k == *n_pids) {
            pids[k] = pid;
            runs[(*n_pids)++] = 0;
        }
        runs[k]++;
    }
}

static long long square_of(int i) { return (long long)i * i; }
static long long plus_one(int i) { return (long long)i + 1; }

/* pyr has max_items=20 and 2 workers; 200 items in tasks of 10: a worker
 * process leaves in order (its child runs fini()) after its second task,
 * and each replacement gets a new child forked from the same host, so the
 * module's load() ran once and every item has its one result. How the 20
 * tasks split between the two slots is the scheduler's: a slot that ran
 * an odd number of tasks ends with a child of 10 items, not recycled. */
static void test_recycling_keeps_the_loaded_model(void)
{
    enum { N = 200, MAX_ITEMS = 20 };
    struct h_buf b = {0};
    h_buf_printf(&b, "[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]");
    json_t *res = run_job("pyr", b.p, "{\"chunk_size\":10}", N);
    h_buf_free(&b);
    if (!CHECK(res != NULL))
        return;
    CHECK_INT(json_array_size(res), N);
    long long pids[N];
    int runs[N], n_pids = 0;
    children_of(res, N, square_of, pids, runs, &n_pids);
    json_decref(res);
    /* No child runs more than max_items; all but at most one per slot
     * ran exactly max_items and were recycled. */
    int full = 0, partial = 0;
    for (int k = 0; k < n_pids; k++) {
        CHECKF(runs[k] == MAX_ITEMS || runs[k] == 10, "child %lld ran %d items", pids[k],
               runs[k]);
        full += runs[k] == MAX_ITEMS;
        partial += runs[k] == 10;
    }
    CHECKF(partial == 0 || partial == 2, "%d children ran one task only", partial);
    CHECK_INT(full * MAX_ITEMS + partial * 10, N);
    /* The supervisor counts a recycle when it reaps the process. */
    struct recycles c = model_recycles("pyr");
    double t0 = h_now();
    while (c.total < full && h_now() - t0 < RUN_TIMEOUT_S) {
        h_sleep_ms(100);
        c = model_recycles("pyr");
    }
    CHECK_INT(c.total, full);
    CHECK_INT(c.by_items, full);
    CHECK_INT(c.restarts, 0);
    /* A recycled worker leaves in order: its child gets STOP and runs
     * fini() (it is not killed). */
    t0 = h_now();
    while (count_file_lines("count_r", "fini") < full && h_now() - t0 < RUN_TIMEOUT_S)
        h_sleep_ms(100);
    CHECK_INT(count_file_lines("count_r", "fini"), full);
    CHECK_INT(count_file_lines("count_r", "load"), 1);
    CHECK_INT(model_host_field("pyr", "loads"), 1);
    CHECK_INT(model_host_field("pyr", "restarts"), 0);
    printf("# pyr: %d children ran %d items; %lld recycles; init() ran %d times\n", n_pids, N,
           c.total, count_file_lines("count_r", "init"));
}

/* pyleak has max_rss=96M and 1 worker; each item leaks 8 MiB in the
 * child. 40 items one per task: the worker sees its child past the limit
 * after a task, leaves in order (fini() runs) and its replacement's child
 * is forked from the same host: load() ran once, the recycles are counted
 * for "rss" (not "items", not as crashes), and every item has exactly one
 * result, run by a child that held at most what the limit allows. */
static void test_recycling_by_rss_keeps_the_loaded_model(void)
{
    enum { N = 40 };
    struct h_buf b = {0};
    h_buf_printf(&b, "[");
    for (int i = 0; i < N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]");
    json_t *res = run_job("pyleak", b.p, "{\"chunk_size\":1}", N);
    h_buf_free(&b);
    if (!CHECK(res != NULL))
        return;
    CHECK_INT(json_array_size(res), N);
    long long pids[N];
    int runs[N], n_pids = 0, most = 0;
    children_of(res, N, plus_one, pids, runs, &n_pids);
    for (int i = 0; i < N; i++) {
        long long held = 0, idx = -1;
        h_jint(json_array_get(res, (size_t)i), "index", &idx);
        CHECKF(idx == i, "result %d has index %lld", i, idx);
        if (h_jint(json_array_get(res, (size_t)i), "output/held", &held) && held > most)
            most = (int)held;
    }
    json_decref(res);
    /* 96 MiB cannot hold 12 leaks of 8 MiB on top of the interpreter. */
    CHECKF(most >= 1 && most < 12, "a child held %d leaks of 8 MiB", most);
    CHECKF(n_pids >= 4, "%d children for %d items of 8 MiB under 96M", n_pids, N);
    struct recycles c = model_recycles("pyleak");
    double t0 = h_now();
    while (c.total < n_pids - 1 && h_now() - t0 < RUN_TIMEOUT_S) {
        h_sleep_ms(100);
        c = model_recycles("pyleak");
    }
    /* every child but the last left for RSS (the last may have too) */
    CHECKF(c.by_rss >= n_pids - 1 && c.by_rss <= n_pids, "%lld recycles for rss, %d children",
           c.by_rss, n_pids);
    CHECK_INT(c.by_items, 0);
    CHECK_INT(c.total, c.by_rss);
    CHECK_INT(c.restarts, 0);
    t0 = h_now();
    while (count_file_lines("count_l", "fini") < c.by_rss && h_now() - t0 < RUN_TIMEOUT_S)
        h_sleep_ms(100);
    CHECK_INT(count_file_lines("count_l", "fini"), c.by_rss);
    CHECK_INT(count_file_lines("count_l", "load"), 1);
    CHECK_INT(model_host_field("pyleak", "loads"), 1);
    CHECK_INT(model_host_field("pyleak", "restarts"), 0);
    printf("# pyleak: %d children ran %d items (at most %d leaks of 8 MiB each); %lld recycles "
           "for rss; init() ran %d times\n",
           n_pids, N, most, c.by_rss, count_file_lines("count_l", "init"));
}

static void test_host_death_and_restart(void)
{
    long long pid = host_field("pid");
    if (!CHECK(pid > 0))
        return;
    /* the host is a descendant of the service this test started */
    pid_t desc[256];
    size_t n = h_descendants(svc.pid, desc, 256);
    bool ours = false;
    for (size_t i = 0; i < n && i < 256; i++)
        ours |= desc[i] == (pid_t)pid;
    if (!CHECK(ours))
        return;
    CHECK(kill((pid_t)pid, SIGKILL) == 0);
    double t0 = h_now();
    while (h_now() - t0 < RUN_TIMEOUT_S && host_field("loads") < 2)
        h_sleep_ms(100);
    CHECK_INT(host_field("loads"), 2);
    CHECK_INT(host_field("restarts"), 1);
    CHECK(host_field("pid") > 0 && host_field("pid") != pid);
    json_t *res = run_job("py", "[1,2,3]", NULL, 3);
    if (CHECK(res != NULL)) {
        long long y = 0;
        CHECK(h_jint(json_array_get(res, 2), "output/y", &y) && y == 27);
        json_decref(res);
    }
    CHECK_INT(count_lines("load"), 2);
}

/* ------------------------------------------- examples/python/mlp.py vs mlp */

/* Every probability of two outputs (an image's, or lists of them) agrees
 * to float32 rounding, and the classes are equal. */
static bool same_mlp_output(const json_t *a, const json_t *b)
{
    if (json_is_array(a)) {
        if (!json_is_array(b) || json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_mlp_output(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    long long ca = -1, cb = -2;
    if (!h_jint(a, "class", &ca) || !h_jint(b, "class", &cb) || ca != cb)
        return false;
    json_t *pa = h_jget(a, "probabilities"), *pb = h_jget(b, "probabilities");
    if (json_array_size(pa) != 10 || json_array_size(pb) != 10)
        return false;
    for (size_t i = 0; i < 10; i++) {
        double x = json_number_value(json_array_get(pa, i));
        double y = json_number_value(json_array_get(pb, i));
        if (x - y > 1e-5 || y - x > 1e-5)
            return false;
    }
    return true;
}

static void test_numpy_mlp_matches_the_c_mlp(void)
{
    /* a uint8 [2, 28, 28] object, and images as JSON */
    static unsigned char npy[128 + 2 * 784];
    const char hdr[] = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 28, 28), }";
    memset(npy, ' ', 128);
    memcpy(npy, "\x93NUMPY\x01\x00", 8);
    npy[8] = 128 - 10;
    npy[9] = 0;
    memcpy(npy + 10, hdr, sizeof hdr - 1);
    npy[127] = '\n';
    for (int i = 0; i < 2 * 784; i++)
        npy[128 + i] = (unsigned char)((i * 37) % 256);
    const char *const headers[] = {"Content-Type: application/x-npy", NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = headers,
                        .body = (const char *)npy, .body_len = sizeof npy};
    struct h_resp r;
    if (!CHECK(h_request(&svc, &req, &r) == 0) || !CHECK_INT(r.status, 201))
        return;
    char id[32];
    snprintf(id, sizeof id, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    struct h_buf img = {0};
    h_buf_printf(&img, "[");
    for (int i = 0; i < 784; i++)
        h_buf_printf(&img, "%s%.3f", i ? "," : "", (double)((i * 13) % 100) / 100.0);
    h_buf_printf(&img, "]");
    struct h_buf in = {0};
    h_buf_printf(&in, "[%s,[%s,%s],{\"$object\":\"%s\"},[1,2]]", img.p, img.p, img.p, id);
    json_t *c = run_job("mlp", in.p, NULL, 4);
    json_t *py = run_job("pymlp", in.p, NULL, 4);
    /* the class form: the same items wrapped, an int per image */
    struct h_buf cls = {0};
    h_buf_printf(&cls,
                 "[{\"images\":%s,\"output\":\"class\"},{\"images\":[%s,%s],\"output\":"
                 "\"class\"},{\"images\":{\"$object\":\"%s\"},\"output\":\"class\"},"
                 "{\"images\":%s,\"output\":\"probabilities\"}]",
                 img.p, img.p, img.p, id, img.p);
    json_t *pyc = run_job("pymlp", cls.p, NULL, 4);
    h_buf_free(&cls);
    h_buf_free(&img);
    h_buf_free(&in);
    if (CHECK(c != NULL) && CHECK(pyc != NULL)) {
        long long want = -1, got = -2;
        h_jint(json_array_get(c, 0), "output/class", &want);
        CHECKF(h_jint(json_array_get(pyc, 0), "output", &got) && got == want,
               "class form: %lld, C model's class %lld", got, want);
        for (size_t i = 1; i < 3; i++) {
            json_t *cs = h_jget(json_array_get(c, i), "output");
            json_t *ps = h_jget(json_array_get(pyc, i), "output");
            CHECKF(json_array_size(ps) == 2 && json_array_size(cs) == 2, "item %zu", i);
            for (size_t k = 0; k < json_array_size(ps) && k < json_array_size(cs); k++)
                CHECKF(json_is_integer(json_array_get(ps, k)) &&
                           json_integer_value(json_array_get(ps, k)) ==
                               json_integer_value(json_object_get(json_array_get(cs, k), "class")),
                       "item %zu image %zu", i, k);
        }
        const char *e = result_error(pyc, 3);
        CHECKF(e && strstr(e, "\"output\": \"full\" or \"class\""), "error: %s",
               e ? e : "(none)");
    }
    json_decref(pyc);
    if (CHECK(c != NULL) && CHECK(py != NULL)) {
        for (size_t i = 0; i < 3; i++) {
            if (CHECKF(same_mlp_output(h_jget(json_array_get(c, i), "output"),
                                       h_jget(json_array_get(py, i), "output")),
                       "item %zu", i))
                continue;
            char *a = h_json_dump(json_array_get(c, i)), *b = h_json_dump(json_array_get(py, i));
            h_note("item %zu: C %s, numpy %s", i, a, b);
            free(a);
            free(b);
        }
        /* a bad item is an error in both, and only that item */
        CHECK(result_error(c, 3) != NULL);
        const char *e = result_error(py, 3);
        CHECKF(e && strstr(e, "ValueError: expected images of 784 numbers"), "error: %s",
               e ? e : "(none)");
    }
    json_decref(c);
    json_decref(py);
}

/* ------------------------------------------------------ start-up failures */

static void run_bad_start(const char *file, const char *err_has)
{
    char data[PATH_MAX + 16], spec[PATH_MAX * 3];
    snprintf(data, sizeof data, "%s/baddata", dir);
    snprintf(spec, sizeof spec, "bad:python=%s/%s,interpreter=" PYTHON, dir, file);
    const char *argv[] = {getenv("BATCHD_BIN"), "--listen", "127.0.0.1:0", "--data-dir", data,
                          "--model", spec, NULL};
    printf("  case: %s\n", file);
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    CHECKF(!r.timed_out, "%s: still running after %d s", file, RUN_TIMEOUT_S);
    CHECKF(r.exit_code == 2, "%s: exit %d, expected 2 (stderr: %s)", file, r.exit_code, r.err);
    CHECKF(strstr(r.err, err_has) != NULL, "%s: stderr does not say \"%s\": %s", file, err_has,
           r.err);
    CHECKF(strstr(r.err, "worker 0") == NULL, "%s: a worker was started: %s", file, r.err);
    h_run_result_free(&r);
}

static void test_thread_in_load_is_refused(void)
{
    run_bad_start("thread.py", "load() left 2 threads running");
}

static void test_syntax_error_names_file_and_line(void)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/syntax.py:2: SyntaxError", dir);
    run_bad_start("syntax.py", want);
}

static void test_module_without_run(void)
{
    run_bad_start("norun.py", "defines neither run(state, item) nor run_batch(state, items)");
}

static void test_stateful_without_reduce(void)
{
    run_bad_start("noreduce.py", "defines acc_run but not reduce: a stateful model needs "
                                 "acc_run, acc_export and reduce");
}

/* ------------------------------------------------------------------- main */

static void start(void)
{
    static char spec_py[PATH_MAX * 3], spec_pyr[PATH_MAX * 3], spec_pyleak[PATH_MAX * 3], spec_pyb[PATH_MAX * 3], spec_mlp[PATH_MAX * 2],
        spec_pymlp[PATH_MAX * 4], weights[PATH_MAX + 32], mkmlp[PATH_MAX + 32], cwd[PATH_MAX];
    snprintf(weights, sizeof weights, "%s/mlp.safetensors", dir);
    snprintf(mkmlp, sizeof mkmlp, "%s", getenv("BATCHD_BIN"));
    char *slash = strrchr(mkmlp, '/');
    snprintf(slash ? slash + 1 : mkmlp, 16, "mkmlp");
    const char *mk[] = {mkmlp, "--layers", "784,64,10", "--seed", "3", "--dtype", "f32", "--out",
                        weights, NULL};
    struct h_run_result rr;
    if (!CHECK(h_run(mk, NULL, 30, &rr) == 0) || !CHECKF(rr.exit_code == 0, "%s", rr.err))
        return;
    h_run_result_free(&rr);
    if (!CHECK(getcwd(cwd, sizeof cwd) != NULL))
        return;
    snprintf(spec_mlp, sizeof spec_mlp, "mlp:weights=%s,workers=1", weights);
    snprintf(spec_pymlp, sizeof spec_pymlp,
             "pymlp:python=%s/examples/python/mlp.py,interpreter=" PYTHON ",weights=%s,workers=1",
             cwd, weights);
    snprintf(spec_py, sizeof spec_py,
             "py:python=%s/model.py,interpreter=" PYTHON ",workers=2,k=3,count=%s/count", dir,
             dir);
    snprintf(spec_pyr, sizeof spec_pyr,
             "pyr:python=%s/recycle.py,interpreter=" PYTHON ",workers=2,count=%s/count_r,"
             "max_items=20",
             dir, dir);
    snprintf(spec_pyleak, sizeof spec_pyleak,
             "pyleak:python=%s/leak.py,interpreter=" PYTHON ",workers=1,count=%s/count_l,"
             "max_rss=96M",
             dir, dir);
    snprintf(spec_pyb, sizeof spec_pyb, "pyb:python=%s/batch.py,interpreter=" PYTHON ",workers=1",
             dir);
    const char *const args[] = {"--model", spec_py, "--model", spec_pyb, "--model", spec_mlp,
                                "--model", spec_pymlp, "--model", spec_pyr, "--model", spec_pyleak, "--max-attempts", "2",
                                NULL};
    /* Six interpreters start (three import numpy): room on a busy machine. */
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void) { CHECK_INT(h_service_stop(&svc, 15), 0); }

int main(void)
{
    static const struct h_test tests[] = {
        {"results; load() once, init() once per worker", test_results_load_once_init_per_worker},
        {"GET /v1/models and /v1/workers show the host and children",
         test_models_and_workers_show_the_host},
        {"an exception is the item's error", test_exception_is_the_items_error},
        {"an item that kills its Python process is isolated", test_crashing_item_is_isolated},
        {"a hung item is killed by item_timeout_s", test_hung_item_is_killed},
        {"an object is a read-only numpy view of shared memory", test_object_is_a_read_only_view},
        {"run_batch: an exception object is that item's error",
         test_run_batch_per_item_exceptions},
        {"examples/python/mlp.py gives the built-in mlp's outputs",
         test_numpy_mlp_matches_the_c_mlp},
        {"recycling (max_items=20): new children, load() still once",
         test_recycling_keeps_the_loaded_model},
        {"recycling (max_rss=96M): a leaking child is replaced, load() still once",
         test_recycling_by_rss_keeps_the_loaded_model},
        {"the host's death: started again, load() again", test_host_death_and_restart},
    };
    static const struct h_test bad[] = {
        {"a load() that starts a thread exits 2", test_thread_in_load_is_refused},
        {"a syntax error exits 2 naming file and line", test_syntax_error_names_file_and_line},
        {"a module without run() exits 2", test_module_without_run},
        {"a stateful module without reduce() exits 2", test_stateful_without_reduce},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    if (system(PYTHON " -c 'import numpy' 2>/dev/null") != 0 &&
        system("sh scripts/deps.sh python") != 0) {
        h_fail_test("python3-numpy", "cannot install it (sh scripts/deps.sh python)");
        return h_finish();
    }
    snprintf(dir, sizeof dir, "%s", h_tmpdir());
    write_file("model.py", model_py);
    write_file("batch.py", batch_py);
    write_file("recycle.py", recycle_py);
    write_file("leak.py", leak_py);
    write_file("thread.py", thread_py);
    write_file("syntax.py", syntax_py);
    write_file("norun.py", norun_py);
    write_file("noreduce.py", noreduce_py);
    h_run_one("start batchd with Python models and the built-in mlp", start);
    if (svc_up) {
        h_run_tests(tests, sizeof tests / sizeof tests[0]);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "batchd did not start");
    }
    h_service_cleanup(&svc);
    h_run_tests(bad, sizeof bad / sizeof bad[0]);
    return h_finish();
}
