/*
 * test_recycle: worker recycling (--max-items-per-worker, --max-worker-rss,
 * a model's max_items= and max_rss=) with the real service.
 *
 *   - by count: echo with max_items=50 over 1,000 items in chunks of 10:
 *     every item has exactly one result (its own input), each worker
 *     slot's recycles equal its items_done / 50 (a process leaves after
 *     exactly 50 items, and only then), restarts stay 0, /metrics says the
 *     same with reason="items";
 *   - by RSS: chaos with max_rss=128M, each item leaking 8 MiB (leak_kb):
 *     every item has one result, the worker is recycled for "rss" (at
 *     least twice: a process holds at most 16 such items), never for
 *     "items", and restarts stay 0;
 *   - a model's own limit beats the global one: --max-items-per-worker 20
 *     with echo:max_items=50 (2 recycles per 100 items), square (the global
 *     20: 5 recycles) and sum_squares:max_items=0 (none); /v1/models shows
 *     each model's limit.
 *
 * Recycling during a stateful job is in test_stateful.c (it needs that
 * file's independent count); bad values of the flags in test_cli.c.
 * The time a recycle takes (decision to replacement ready) is printed, not
 * asserted.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_service svc;

/* One worker's figures from /v1/workers. */
struct wk {
    long long id, items_done, restarts, recycles, by_items, by_rss;
    double last_recycle_s; /* -1 = never */
    char model[32];
};

/* Reads /v1/workers into w[0..max); returns how many, -1 on error. */
static int read_workers(struct wk *w, int max)
{
    struct h_resp r;
    int n = -1;
    if (h_get(&svc, "/v1/workers", &r) == 0 && r.status == 200) {
        n = 0;
        size_t i;
        json_t *o;
        json_array_foreach(h_jget(h_json(&r), "workers"), i, o) {
            if (n == max)
                break;
            struct wk *x = &w[n++];
            memset(x, 0, sizeof *x);
            h_jint(o, "id", &x->id);
            h_jint(o, "items_done", &x->items_done);
            h_jint(o, "restarts", &x->restarts);
            h_jint(o, "recycles", &x->recycles);
            h_jint(o, "recycles_by_reason/items", &x->by_items);
            h_jint(o, "recycles_by_reason/rss", &x->by_rss);
            if (!h_jnum(o, "last_recycle_seconds", &x->last_recycle_s))
                x->last_recycle_s = -1;
            snprintf(x->model, sizeof x->model, "%s", h_jstr(o, "model") ? h_jstr(o, "model") : "");
        }
    }
    h_resp_free(&r);
    return n;
}

/* Submits {"model": model, "inputs": [pre 0 post, pre 1 post, ...]} (n
 * items) in chunks of chunk and waits for it to succeed; the id goes to
 * id[32]. */
static bool run_job(const char *model, int n, const char *pre, const char *post, int chunk,
                    char *id)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"%s\",\"inputs\":[", model);
    for (int i = 0; i < n; i++) {
        if (i)
            h_buf_add(&b, ",", 1);
        h_buf_printf(&b, "%s%d%s", pre, i, post);
    }
    h_buf_printf(&b, "],\"options\":{\"chunk_size\":%d}}", chunk);
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, id, 60);
    h_buf_free(&b);
    if (!ok)
        return false;
    json_t *job = h_wait_job(&svc, id, 180);
    ok = CHECK(job != NULL) && CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    return ok;
}

/* Every item has exactly one result, and item i's output is i. */
static void check_results(const char *id, int n)
{
    json_t *all = h_fetch_results(&svc, id, (size_t)n, 500);
    if (!CHECKF(all && json_array_size(all) == (size_t)n, "%zu results of %d",
                all ? json_array_size(all) : 0, n)) {
        json_decref(all);
        return;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        json_t *res = json_array_get(all, (size_t)i);
        char want[64];
        snprintf(want, sizeof want, "%d", i);
        char *got = h_json_dump(h_jget(res, "output"));
        long long idx = -1;
        h_jint(res, "index", &idx);
        if (idx != i || strcmp(got, want) != 0) {
            if (bad++ < 3)
                h_note("result %d: index %lld output %s, expected %s", i, idx, got, want);
        }
        free(got);
    }
    CHECKF(bad == 0, "%d results wrong", bad);
    json_decref(all);
}

/* Sums the samples of /metrics lines that start with `prefix`. */
static long long metric_sum(const char *prefix)
{
    struct h_resp r;
    long long sum = -1;
    if (h_get(&svc, "/metrics", &r) == 0 && r.status == 200) {
        sum = 0;
        size_t plen = strlen(prefix);
        for (const char *line = r.body; line && *line;) {
            const char *nl = strchr(line, '\n');
            size_t llen = nl ? (size_t)(nl - line) : strlen(line);
            if (llen > plen && strncmp(line, prefix, plen) == 0) {
                const char *sp = line + llen;
                while (sp > line && sp[-1] != ' ')
                    sp--;
                sum += atoll(sp);
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    h_resp_free(&r);
    return sum;
}

static bool start(const char *const *args)
{
    struct h_service_opts o = {.args = args, .ready_timeout_s = 60};
    return h_service_start(&svc, &o) == 0;
}

static void stop(void)
{
    h_service_stop(&svc, 60);
    h_service_cleanup(&svc);
}

/*
 * Waits (bounded) until each slot of `model` has recycles == items_done /
 * per (the supervisor counts a recycle when it reaps the process, a moment
 * after its last task was collected). Fills w; returns how many workers.
 */
static int settle(const char *model, long long per, struct wk *w, int max)
{
    int n = 0;
    double until = h_now() + 30;
    for (int tries = 0; tries < 600 && h_now() < until; tries++) {
        n = read_workers(w, max);
        bool settled = n > 0;
        for (int k = 0; k < n && settled; k++)
            if (strcmp(w[k].model, model) == 0)
                settled = per ? w[k].recycles == w[k].items_done / per : true;
        if (settled)
            break;
        h_sleep_ms(50);
    }
    return n;
}

static void print_times(const struct wk *w, int n, const char *model)
{
    for (int k = 0; k < n; k++)
        if (strcmp(w[k].model, model) == 0)
            printf("  worker %lld (%s): %lld items, %lld recycles (items %lld, rss %lld), "
                   "restarts %lld, last recycle took %.3f ms (decision to replacement ready)\n",
                   w[k].id, model, w[k].items_done, w[k].recycles, w[k].by_items, w[k].by_rss,
                   w[k].restarts, w[k].last_recycle_s * 1e3);
}

static void test_by_count(void)
{
    static const char *const args[] = {"--workers", "2", "--model", "echo:max_items=50", NULL};
    if (!start(args))
        return;
    char id[32];
    double t0 = h_now();
    if (run_job("echo", 1000, "", "", 10, id)) {
        printf("  1000 items in %.2f s with a recycle every 50 items per worker\n",
               h_now() - t0);
        check_results(id, 1000);
        struct wk w[8];
        int n = settle("echo", 50, w, 8);
        long long items = 0, recycles = 0;
        for (int k = 0; k < n; k++) {
            items += w[k].items_done;
            recycles += w[k].recycles;
            CHECKF(w[k].recycles == w[k].items_done / 50,
                   "worker %lld: %lld recycles for %lld items (one per 50)", w[k].id,
                   w[k].recycles, w[k].items_done);
            CHECKF(w[k].by_items == w[k].recycles && w[k].by_rss == 0,
                   "worker %lld: recycles by reason: items %lld, rss %lld", w[k].id,
                   w[k].by_items, w[k].by_rss);
            CHECKF(w[k].restarts == 0, "worker %lld: %lld restarts (a recycle is no crash)",
                   w[k].id, w[k].restarts);
        }
        print_times(w, n, "echo");
        CHECK_INT(n, 2);
        CHECK_INT(items, 1000);
        CHECKF(recycles >= 19, "%lld recycles for 1000 items at 50 per process", recycles);
        CHECK_INT(metric_sum("batchd_worker_recycles_total{model=\"echo\""), recycles);
        CHECK_INT(metric_sum("batchd_worker_recycles_total{model=\"echo\",worker=\"0\","
                             "reason=\"rss\"}") +
                      metric_sum("batchd_worker_recycles_total{model=\"echo\",worker=\"1\","
                                 "reason=\"rss\"}"),
                  0);
        CHECK_INT(metric_sum("batchd_worker_restarts_total{model=\"echo\""), 0);
    }
    stop();
}

static void test_by_rss(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "chaos:max_rss=128M", NULL};
    if (!start(args))
        return;
    char id[32];
    if (run_job("chaos", 40, "{\"leak_kb\":8192,\"value\":", "}", 1, id)) {
        check_results(id, 40);
        struct wk w[4];
        int n = 0;
        /* the last process may have left after the job's last item */
        double until = h_now() + 30;
        do {
            n = read_workers(w, 4);
            if (n == 1 && w[0].recycles >= 2 && w[0].items_done == 40)
                break;
            h_sleep_ms(50);
        } while (h_now() < until);
        print_times(w, n, "chaos");
        if (CHECK_INT(n, 1)) {
            CHECKF(w[0].by_rss >= 2, "%lld recycles for rss (8 MiB leaked per item, 128M limit)",
                   w[0].by_rss);
            CHECKF(w[0].by_items == 0, "%lld recycles for items", w[0].by_items);
            CHECKF(w[0].by_rss <= 40, "%lld recycles for 40 items", w[0].by_rss);
            CHECK_INT(w[0].restarts, 0);
            CHECK_INT(w[0].items_done, 40);
        }
        CHECK_INT(metric_sum("batchd_worker_recycles_total{model=\"chaos\",worker=\"0\","
                             "reason=\"rss\"}"),
                  n == 1 ? w[0].by_rss : -1);
    }
    stop();
}

/* max_items_per_worker of each model in /v1/models, -1 for null. */
static long long model_limit(const char *name)
{
    struct h_resp r;
    long long v = -2;
    if (h_get(&svc, "/v1/models", &r) == 0 && r.status == 200) {
        size_t i;
        json_t *m;
        json_array_foreach(h_jget(h_json(&r), "models"), i, m) {
            const char *mn = h_jstr(m, "name");
            if (mn && strcmp(mn, name) == 0) {
                json_t *l = h_jget(m, "max_items_per_worker");
                v = json_is_null(l) ? -1 : json_is_integer(l) ? json_integer_value(l) : -3;
            }
        }
    }
    h_resp_free(&r);
    return v;
}

static void test_model_beats_global(void)
{
    static const char *const args[] = {"--workers", "1", "--max-items-per-worker", "20",
                                       "--model", "echo:max_items=50", "--model", "square",
                                       "--model", "sum_squares:max_items=0", NULL};
    if (!start(args))
        return;
    CHECK_INT(model_limit("echo"), 50);
    CHECK_INT(model_limit("square"), 20);
    CHECK_INT(model_limit("sum_squares"), -1);
    char a[32], b[32], c[32];
    bool ok = run_job("echo", 100, "", "", 10, a) && run_job("square", 100, "", "", 10, b) &&
              run_job("sum_squares", 100, "[", "]", 10, c);
    if (ok) {
        check_results(a, 100);
        struct wk w[4];
        settle("echo", 50, w, 4);
        settle("square", 20, w, 4);
        int n = read_workers(w, 4);
        print_times(w, n, "echo");
        print_times(w, n, "square");
        for (int k = 0; k < n; k++) {
            long long want = strcmp(w[k].model, "echo") == 0     ? 2
                             : strcmp(w[k].model, "square") == 0 ? 5
                                                                  : 0;
            CHECKF(w[k].recycles == want, "%s: %lld recycles for 100 items, expected %lld",
                   w[k].model, w[k].recycles, want);
            CHECK_INT(w[k].restarts, 0);
        }
        CHECK_INT(n, 3);
    }
    stop();
}

int main(void)
{
    if (h_init() != 0)
        return 2;
    static const struct h_test tests[] = {
        {"recycle: by item count, every item once, counted apart from restarts", test_by_count},
        {"recycle: by RSS, a leaking model", test_by_rss},
        {"recycle: a model's own limit beats the global one", test_model_beats_global},
    };
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
