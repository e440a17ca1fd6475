/*
 * test_mlp: the mlp model through HTTP, on weights made by build/mkmlp.
 *
 *   - batchd --model mlp:weights=FILE,workers=2 classifies images (one per
 *     item, and several in one item) and every class and probability
 *     matches a computation done here: this program reads the .safetensors
 *     file itself (its own small reader) and runs the network in double
 *     precision; bad items get per-item errors and the job goes on;
 *   - GET /v1/models lists mlp, GET /v1/workers gives each worker's RSS and
 *     PSS, and the supervisor still has exactly one thread after load()
 *     (the serial OpenBLAS started none);
 *   - memory: with a ~50 MB weights file and 2 workers that have both run
 *     the whole network (each one's RSS holds the weights), the workers'
 *     total PSS is well under 2 private copies: the pages are shared;
 *   - bad files (truncated, header length past the end, bad JSON, offsets
 *     outside the file, shapes that do not chain, unknown dtype) make
 *     batchd exit 2 at start with a message naming the tensor.
 *
 * build/mkmlp is found next to $BATCHD_BIN (or at $MKMLP_BIN); it is part
 * of `make`, so a missing one fails the test rather than skipping it.
 * Images uploaded once as .npy objects (POST /v1/objects: float32 [n, 784]
 * and uint8 [n, 28, 28]) are classified through items {"$object": ID}.
 */
#include "tests/integration/harness.h"

#include <dirent.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-4
#define RUN_TIMEOUT_S 20

static char mkmlp[512];

/* ---- this test's own reading of a .safetensors MLP ------------------------- */

struct ref_net {
    size_t n_layers;
    unsigned width[16];
    double *w[15], *b[15];
};

static double half_to_double(unsigned h)
{
    int e = (int)(h >> 10) & 0x1f, m = (int)(h & 0x3ff);
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

static double decode(const unsigned char *p, const char *dtype)
{
    if (strcmp(dtype, "F32") == 0) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    unsigned h = (unsigned)p[0] | (unsigned)p[1] << 8;
    if (strcmp(dtype, "BF16") == 0) {
        unsigned x = h << 16;
        float f;
        memcpy(&f, &x, 4);
        return f;
    }
    return half_to_double(h);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static bool ref_load(const char *path, struct ref_net *net)
{
    memset(net, 0, sizeof *net);
    size_t len = 0;
    unsigned char *b = (unsigned char *)slurp(path, &len);
    if (!CHECKF(b && len >= 8, "cannot read %s", path))
        return false;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | b[i];
    json_t *h = h_json_loads((const char *)b + 8, (size_t)hl);
    const unsigned char *data = b + 8 + hl;
    bool ok = CHECK(h != NULL);
    for (size_t l = 0; ok; l++) {
        char wn[64], bn[64];
        snprintf(wn, sizeof wn, "layers.%zu.weight", l);
        snprintf(bn, sizeof bn, "layers.%zu.bias", l);
        json_t *wt = json_object_get(h, wn), *bt = json_object_get(h, bn);
        if (!wt)
            break;
        long long out = 0, in = 0, wb = 0, bb = 0;
        ok = CHECK(h_jint(wt, "shape/0", &out)) && CHECK(h_jint(wt, "shape/1", &in)) &&
             CHECK(h_jint(wt, "data_offsets/0", &wb)) && CHECK(h_jint(bt, "data_offsets/0", &bb)) &&
             CHECK(l < 15);
        if (!ok)
            break;
        const char *dt = h_jstr(wt, "dtype");
        size_t es = strcmp(dt, "F32") == 0 ? 4 : 2;
        net->width[l] = (unsigned)in;
        net->width[l + 1] = (unsigned)out;
        net->w[l] = malloc(sizeof(double) * (size_t)(out * in));
        net->b[l] = malloc(sizeof(double) * (size_t)out);
        for (long long k = 0; k < out * in; k++)
            net->w[l][k] = decode(data + wb + (size_t)k * es, dt);
        for (long long k = 0; k < out; k++)
            net->b[l][k] = decode(data + bb + (size_t)k * es, h_jstr(bt, "dtype"));
        net->n_layers = l + 1;
    }
    json_decref(h);
    free(b);
    return ok && CHECK(net->n_layers > 0);
}

static void ref_free(struct ref_net *net)
{
    for (size_t l = 0; l < net->n_layers; l++) {
        free(net->w[l]);
        free(net->b[l]);
    }
}

static void ref_forward(const struct ref_net *net, const double *x, double *probs)
{
    static double a[1 << 15], t[1 << 15];
    memcpy(a, x, sizeof(double) * net->width[0]);
    for (size_t l = 0; l < net->n_layers; l++) {
        unsigned in = net->width[l], out = net->width[l + 1];
        for (unsigned o = 0; o < out; o++) {
            double s = net->b[l][o];
            for (unsigned i = 0; i < in; i++)
                s += net->w[l][(size_t)o * in + i] * a[i];
            t[o] = l + 1 < net->n_layers && s < 0 ? 0 : s;
        }
        memcpy(a, t, sizeof(double) * out);
    }
    unsigned out = net->width[net->n_layers];
    double mx = a[0], sum = 0;
    for (unsigned c = 1; c < out; c++)
        mx = a[c] > mx ? a[c] : mx;
    for (unsigned c = 0; c < out; c++)
        sum += exp(a[c] - mx);
    for (unsigned c = 0; c < out; c++)
        probs[c] = exp(a[c] - mx) / sum;
}

/* ---- helpers -------------------------------------------------------------- */

static bool run_mkmlp(const char *layers, const char *dtype, const char *seed, const char *out)
{
    const char *argv[] = {mkmlp, "--layers", layers, "--seed", seed, "--dtype", dtype, "--out",
                          out, NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return false;
    bool ok = CHECKF(r.exit_code == 0, "mkmlp exit %d: %s", r.exit_code, r.err);
    h_run_result_free(&r);
    return ok;
}

static uint64_t rng = 7;
static double pixel(void) /* a pixel scaled to [0, 1], like MNIST's */
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)((rng >> 33) % 256) / 255.0;
}

static void add_image(struct h_buf *b, double *x, unsigned n)
{
    h_buf_add(b, "[", 1);
    for (unsigned i = 0; i < n; i++) {
        x[i] = pixel();
        /* %.17g: the text is exactly the double the reference uses */
        h_buf_printf(b, "%s%.17g", i ? "," : "", x[i]);
    }
    h_buf_add(b, "]", 1);
}

static bool check_image(const json_t *o, const struct ref_net *net, const double *x)
{
    unsigned out = net->width[net->n_layers];
    double want[64];
    ref_forward(net, x, want);
    json_t *probs = json_object_get(o, "probabilities");
    long long cls = -1;
    if (!json_is_array(probs) || json_array_size(probs) != out || !h_jint(o, "class", &cls)) {
        char *text = h_json_dump(o);
        CHECKF(false, "not {class, probabilities[%u]}: %s", out, text);
        free(text);
        return false;
    }
    unsigned best = 0;
    bool ok = true;
    for (unsigned c = 0; c < out; c++) {
        double got = json_number_value(json_array_get(probs, c));
        ok &= CHECKF(fabs(got - want[c]) < TOL, "probability %u: got %.9f, expected %.9f", c, got,
                     want[c]);
        best = want[c] > want[best] ? c : best;
    }
    double second = -1;
    for (unsigned c = 0; c < out; c++)
        if (c != best && want[c] > second)
            second = want[c];
    if (want[best] - second > TOL)
        ok &= CHECK_INT(cls, best);
    return ok;
}

static int start_mlp(struct h_service *s, const char *weights, const char *const *extra)
{
    char spec[700];
    snprintf(spec, sizeof spec, "mlp:weights=%s,workers=2", weights);
    const char *args[12] = {"--model", spec};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 11; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    struct h_service_opts o = {.args = args};
    return h_service_start(s, &o);
}

static size_t count_tasks(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/task", (int)pid);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- classification through HTTP ----------------------------------------- */

static void test_classify(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/small.safetensors", h_tmpdir());
    struct ref_net net;
    if (!run_mkmlp("784,32,16,10", "f32", "3", path) || !ref_load(path, &net))
        return;
    struct h_service s;
    if (start_mlp(&s, path, NULL) != 0) {
        h_service_cleanup(&s);
        ref_free(&net);
        return;
    }

    /* supervisor: still one thread after load() */
    CHECKF(count_tasks(s.pid) == 1, "the supervisor has %zu threads", count_tasks(s.pid));

    enum { SINGLE = 6, MULTI = 5 };
    static double xs[SINGLE][784], xm[MULTI][784];
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"mlp\",\"inputs\":[");
    for (int i = 0; i < SINGLE; i++) {
        add_image(&b, xs[i], 784);
        h_buf_add(&b, ",", 1);
    }
    h_buf_add(&b, "[", 1);
    for (int i = 0; i < MULTI; i++) {
        if (i)
            h_buf_add(&b, ",", 1);
        add_image(&b, xm[i], 784);
    }
    h_buf_add(&b, "]", 1);
    /* bad items: a short image, a string, a bad row among good ones, an
     * object that is no reference, an empty array */
    h_buf_printf(&b, ",[1,2,3],\"seven\",[[%s],[0.5,\"x\"]],{\"a\":1},[]]}", "0.25");
    size_t n_items = SINGLE + 1 + 5;
    char id[32];
    if (h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, id, 30)) {
        json_t *job = h_wait_job(&s, id, 60);
        long long failed = -1;
        CHECK(job && h_jint(job, "counts/failed", &failed) && failed == 5);
        json_decref(job);
        json_t *res = h_fetch_results(&s, id, n_items, 100);
        for (size_t i = 0; res && i < n_items; i++) {
            long long index;
            json_t *out;
            const char *msg;
            if (!CHECK_RESULT(json_array_get(res, i), &index, &out, &msg))
                continue;
            if (i < SINGLE) {
                CHECKF(out != NULL, "item %zu failed: %s", i, msg);
                if (out)
                    check_image(out, &net, xs[i]);
            } else if (i == SINGLE) {
                if (CHECKF(json_is_array(out) && json_array_size(out) == MULTI, "item %zu: %s", i,
                           msg ? msg : "not an array of 5"))
                    for (int k = 0; k < MULTI; k++)
                        check_image(json_array_get(out, (size_t)k), &net, xm[k]);
            } else {
                static const char *const want[] = {
                    "expected 784 numbers (the network's input size), got 3",
                    "got a string",
                    "image 0: expected 784 numbers",
                    "got an object",
                    "got an empty array",
                };
                const char *w = want[i - SINGLE - 1];
                CHECKF(msg && strstr(msg, w), "item %zu: error \"%s\", expected \"%s\"", i,
                       msg ? msg : "(none)", w);
            }
        }
        json_decref(res);
    }
    h_buf_free(&b);

    /* /v1/models lists mlp; /v1/workers reports RSS and PSS */
    struct h_resp r;
    if (CHECK(h_get(&s, "/v1/models", &r) == 0) && CHECK_INT(r.status, 200)) {
        CHECK_STR(h_jstr(h_json(&r), "models/0/name"), "mlp");
        long long w = 0;
        CHECK(h_jint(h_json(&r), "models/0/workers", &w) && w == 2);
    }
    h_resp_free(&r);
    if (CHECK(h_get(&s, "/v1/workers", &r) == 0) && CHECK_INT(r.status, 200)) {
        json_t *ws = h_jget(h_json(&r), "workers");
        CHECK_INT(json_array_size(ws), 2);
        size_t i;
        json_t *w;
        json_array_foreach(ws, i, w) {
            long long rss = 0, pss = 0;
            CHECKF(h_jint(w, "rss_bytes", &rss) && rss > 0, "worker %zu: rss_bytes", i);
            CHECKF(h_jint(w, "pss_bytes", &pss) && pss > 0 && pss <= rss,
                   "worker %zu: pss_bytes %lld (rss %lld)", i, pss, rss);
        }
    }
    h_resp_free(&r);
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
    ref_free(&net);
}

/* BF16 weights through HTTP too (converted once in load()). */
static void test_classify_bf16(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bf16.safetensors", h_tmpdir());
    struct ref_net net;
    if (!run_mkmlp("784,24,10", "bf16", "5", path) || !ref_load(path, &net))
        return;
    struct h_service s;
    if (start_mlp(&s, path, NULL) == 0) {
        static double x[3][784];
        struct h_buf b = {0};
        h_buf_printf(&b, "{\"model\":\"mlp\",\"inputs\":[[");
        for (int i = 0; i < 3; i++) {
            if (i)
                h_buf_add(&b, ",", 1);
            add_image(&b, x[i], 784);
        }
        h_buf_add(&b, "]]}", 3);
        char id[32];
        if (h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, id, 30)) {
            json_decref(h_wait_job(&s, id, 60));
            json_t *res = h_fetch_results(&s, id, 1, 10);
            json_t *out = h_jget(res, "0/output");
            if (CHECKF(json_array_size(out) == 3, "output is not an array of 3"))
                for (int i = 0; i < 3; i++)
                    check_image(json_array_get(out, (size_t)i), &net, x[i]);
            json_decref(res);
        }
        h_buf_free(&b);
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);
    ref_free(&net);
}

/* A .npy v1.0 of shape (n, rest...) and descr `descr` over `bytes`. */
static char *npy_make(const char *descr, const char *shape, const void *data, size_t bytes,
                      size_t *len)
{
    char dict[160];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t header = 10 + (size_t)n + 1;
    header += (64 - header % 64) % 64;
    *len = header + bytes;
    char *b = malloc(*len);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = (uint16_t)(header - 10);
    memcpy(b + 8, &hl, 2);
    memset(b + 10, ' ', header - 10);
    memcpy(b + 10, dict, (size_t)n);
    b[header - 1] = '\n';
    memcpy(b + header, data, bytes);
    return b;
}

static bool upload_npy(struct h_service *s, const char *npy, size_t len, char *id)
{
    const char *hdrs[] = {"Content-Type: application/x-npy", NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = hdrs, .body = npy,
                        .body_len = len};
    struct h_resp r;
    bool ok = h_request(s, &req, &r) == 0 &&
              CHECKF(r.status == 201, "POST /v1/objects: %ld %s", r.status, r.body);
    if (ok)
        snprintf(id, 32, "%s", h_jstr(h_json(&r), "id"));
    h_resp_free(&r);
    return ok;
}

/*
 * Images uploaded once as objects: a float32 [n, 784] array and a uint8
 * [n, 28, 28] one (pixels / 255), classified by items {"$object": ID};
 * a wrong shape and an unknown object are per-item errors.
 */
static void test_classify_objects(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/obj.safetensors", h_tmpdir());
    struct ref_net net;
    if (!run_mkmlp("784,32,10", "f32", "9", path) || !ref_load(path, &net))
        return;
    struct h_service s;
    enum { N = 40 };
    static float f32[N][784];
    static unsigned char u8[N][784];
    static double x32[N][784], x8[N][784];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 784; k++) {
            f32[i][k] = (float)pixel();
            x32[i][k] = f32[i][k];
            u8[i][k] = (unsigned char)(rng >> 40);
            x8[i][k] = (float)u8[i][k] / 255.0f;
        }
    static float bad[3][5];
    if (start_mlp(&s, path, NULL) == 0) {
        size_t l1, l2, l3;
        char *n1 = npy_make("<f4", "(40, 784)", f32, sizeof f32, &l1);
        char *n2 = npy_make("|u1", "(40, 28, 28)", u8, sizeof u8, &l2);
        char *n3 = npy_make("<f4", "(3, 5)", bad, sizeof bad, &l3);
        char id1[32], id2[32], id3[32];
        if (upload_npy(&s, n1, l1, id1) && upload_npy(&s, n2, l2, id2) &&
            upload_npy(&s, n3, l3, id3)) {
            char body[512], id[32];
            snprintf(body, sizeof body,
                     "{\"model\":\"mlp\",\"inputs\":[{\"$object\":\"%s\"},{\"$object\":\"%s\"},"
                     "{\"$object\":\"%s\"},{\"$object\":\"aaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
                     id1, id2, id3);
            if (h_submit(&s, "/v1/jobs", "application/json", body, strlen(body), id, 30)) {
                json_decref(h_wait_job(&s, id, 60));
                json_t *res = h_fetch_results(&s, id, 4, 10);
                json_t *o1 = h_jget(res, "0/output"), *o2 = h_jget(res, "1/output");
                if (CHECKF(json_array_size(o1) == N && json_array_size(o2) == N,
                           "outputs of %zu and %zu images", json_array_size(o1),
                           json_array_size(o2)))
                    for (int i = 0; i < N; i++) {
                        check_image(json_array_get(o1, (size_t)i), &net, x32[i]);
                        check_image(json_array_get(o2, (size_t)i), &net, x8[i]);
                    }
                const char *e3 = h_jstr(res, "2/error/message");
                const char *e4 = h_jstr(res, "3/error/message");
                CHECKF(e3 && strstr(e3, "784"), "wrong shape: %s", e3 ? e3 : "(no error)");
                CHECKF(e4 && strstr(e4, "not found"), "unknown object: %s",
                       e4 ? e4 : "(no error)");
                json_decref(res);
            }
        }
        free(n1);
        free(n2);
        free(n3);
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);
    ref_free(&net);
}

/* ---- outputs of any size, and the output forms ------------------------------ */

/* Submits body (one item per input) and returns the results (new), or NULL. */
static json_t *run_items(struct h_service *s, const char *body, size_t n)
{
    char id[32];
    if (!h_submit(s, "/v1/jobs", "application/json", body, strlen(body), id, 30))
        return NULL;
    json_decref(h_wait_job(s, id, 120));
    return h_fetch_results(s, id, n, 10);
}

/* The objects the store holds now. */
static long long object_count(struct h_service *s)
{
    struct h_resp r;
    long long n = -1;
    if (h_get(s, "/v1/objects", &r) == 0 && r.status == 200)
        h_jint(h_json(&r), "count", &n);
    h_resp_free(&r);
    return n;
}

/*
 * An item over a 10,000-image object: its probabilities (~1.2 MB of JSON,
 * far past a task slot) go through an object and come back as the same
 * result JSON as a small output; the forms "class" and "object" give the
 * same classes and probabilities; no output object is left behind but the
 * one "object" asked for. With --max-output-size 1M the same item is a
 * clear item error.
 */
static void test_large_outputs_and_forms(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/big.safetensors", h_tmpdir());
    struct ref_net net;
    if (!run_mkmlp("784,32,10", "f32", "5", path) || !ref_load(path, &net))
        return;
    enum { N = 10000, OUT = 10 };
    float *f32 = malloc(sizeof(float) * N * 784);
    for (size_t i = 0; i < (size_t)N * 784; i++)
        f32[i] = (float)pixel();
    size_t len;
    char *npy = npy_make("<f4", "(10000, 784)", f32, sizeof(float) * N * 784, &len);
    struct h_service s;
    if (start_mlp(&s, path, NULL) == 0) {
        char oid[32], body[512];
        if (upload_npy(&s, npy, len, oid)) {
            snprintf(body, sizeof body,
                     "{\"model\":\"mlp\",\"inputs\":[{\"images\":{\"$object\":\"%s\"},"
                     "\"output\":\"probabilities\"},{\"images\":{\"$object\":\"%s\"},\"output\":"
                     "\"class\"},{\"images\":{\"$object\":\"%s\"},\"output\":\"object\"},"
                     "{\"$object\":\"%s\"}]}", oid, oid, oid, oid);
            double t0 = h_now();
            json_t *res = run_items(&s, body, 4);
            h_note("4 items over 10,000 images (probabilities, class, object, plain) in %.2f s",
                   h_now() - t0);
            json_t *probs = h_jget(res, "0/output"), *cls = h_jget(res, "1/output");
            json_t *obj = h_jget(res, "2/output"), *plain = h_jget(res, "3/output");
            const char *e0 = h_jstr(res, "0/error/message");
            CHECKF(json_array_size(probs) == N, "probabilities of %zu images (%s)",
                   json_array_size(probs), e0 ? e0 : "no error");
            CHECKF(json_array_size(cls) == N, "%zu classes", json_array_size(cls));
            CHECK(json_equal(probs, plain)); /* the item forms of before keep working */
            double x[784];
            for (size_t i = 0; i < json_array_size(probs) && i < json_array_size(cls); i++) {
                json_t *p = json_array_get(probs, i);
                if (i % 97 == 0) {
                    for (int k = 0; k < 784; k++)
                        x[k] = f32[i * 784 + (size_t)k];
                    check_image(p, &net, x);
                }
                if (!CHECK_INT(json_integer_value(json_array_get(cls, i)),
                               json_integer_value(json_object_get(p, "class"))))
                    break;
            }
            const char *out_id = h_jstr(obj, "$object");
            long long rows = 0, cols = 0;
            CHECK(h_jint(obj, "shape/0", &rows) && rows == N && h_jint(obj, "shape/1", &cols) &&
                  cols == OUT);
            if (CHECK(out_id != NULL)) {
                char p2[96];
                snprintf(p2, sizeof p2, "/v1/objects/%s?download=true", out_id);
                struct h_resp r;
                if (CHECK(h_get(&s, p2, &r) == 0) && CHECK_INT(r.status, 200) &&
                    CHECK_INT(r.len, sizeof(float) * N * OUT)) {
                    const float *v = (const float *)(const void *)r.body;
                    size_t bad = 0;
                    for (size_t i = 0; i < json_array_size(probs); i++)
                        for (size_t c = 0; c < OUT; c++) {
                            json_t *pc = h_jget(json_array_get(probs, i), "probabilities");
                            bad += (float)json_real_value(json_array_get(pc, c)) !=
                                   v[i * OUT + c];
                        }
                    CHECKF(bad == 0, "%zu probabilities of the object differ from the JSON", bad);
                }
                h_resp_free(&r);
            }
            /* the upload and the "object" output: every spilled output is gone */
            CHECK_INT(object_count(&s), 2);
            json_decref(res);
        }
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);

    const char *const small_max[] = {"--max-output-size", "1M", NULL};
    if (start_mlp(&s, path, small_max) == 0) {
        char oid[32], body[512];
        if (upload_npy(&s, npy, len, oid)) {
            snprintf(body, sizeof body,
                     "{\"model\":\"mlp\",\"inputs\":[{\"images\":{\"$object\":\"%s\"}},"
                     "{\"images\":{\"$object\":\"%s\"},\"output\":\"class\"}]}", oid, oid);
            json_t *res = run_items(&s, body, 2);
            const char *e0 = h_jstr(res, "0/error/message");
            CHECKF(e0 && strstr(e0, "output too large: ") &&
                       strstr(e0, "bytes, past the limit of 1048576 bytes (--max-output-size)"),
                   "past --max-output-size: %s", e0 ? e0 : "(no error)");
            CHECK_INT(json_array_size(h_jget(res, "1/output")), N); /* 10,000 classes fit */
            CHECK_INT(object_count(&s), 1);
            json_decref(res);
        }
        CHECK_INT(h_service_stop(&s, 15), 0);
    }
    h_service_cleanup(&s);
    free(npy);
    free(f32);
    ref_free(&net);
}

/* ---- memory: the weights are shared ----------------------------------------- */

static bool all_workers_ran(struct h_service *s, long long *rss, long long *pss)
{
    struct h_resp r;
    bool ok = h_get(s, "/v1/workers", &r) == 0 && r.status == 200;
    json_t *ws = ok ? h_jget(h_json(&r), "workers") : NULL;
    ok = ok && json_array_size(ws) == 2;
    for (size_t i = 0; ok && i < 2; i++) {
        long long done = 0;
        ok = h_jint(json_array_get(ws, i), "items_done", &done) && done > 0 &&
             h_jint(json_array_get(ws, i), "rss_bytes", &rss[i]) &&
             h_jint(json_array_get(ws, i), "pss_bytes", &pss[i]);
    }
    h_resp_free(&r);
    return ok;
}

static void test_shared_weights(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/big.safetensors", h_tmpdir());
    /* 784 x 16000 + 16000 x 10 floats: 50.8 MB */
    if (!run_mkmlp("784,16000,10", "f32", "1", path))
        return;
    struct stat sb;
    if (!CHECK(stat(path, &sb) == 0))
        return;
    double weights = (double)sb.st_size;
    struct h_service s;
    if (start_mlp(&s, path, NULL) != 0) {
        h_service_cleanup(&s);
        return;
    }
    CHECKF(count_tasks(s.pid) == 1, "the supervisor has %zu threads", count_tasks(s.pid));
    long long rss[2] = {0}, pss[2] = {0};
    bool ran = false;
    /* Chunks of one item each, so both workers get some; every item runs
     * the whole network, so a worker that ran one has touched every page. */
    for (int round = 0; round < 6 && !ran; round++) {
        struct h_buf b = {0};
        h_buf_printf(&b, "{\"model\":\"mlp\",\"options\":{\"chunk_size\":1},\"inputs\":[");
        static double x[784];
        for (int i = 0; i < 12; i++) {
            if (i)
                h_buf_add(&b, ",", 1);
            add_image(&b, x, 784);
        }
        h_buf_add(&b, "]}", 2);
        char id[32];
        if (h_submit(&s, "/v1/jobs", "application/json", b.p, b.len, id, 30))
            json_decref(h_wait_job(&s, id, 60));
        h_buf_free(&b);
        ran = all_workers_ran(&s, rss, pss);
    }
    if (CHECKF(ran, "after 6 jobs, not both workers had run an item")) {
        h_note("weights %.1f MB; worker RSS %.1f / %.1f MB, PSS %.1f / %.1f MB", weights / 1e6,
               (double)rss[0] / 1e6, (double)rss[1] / 1e6, (double)pss[0] / 1e6,
               (double)pss[1] / 1e6);
        for (int i = 0; i < 2; i++)
            CHECKF((double)rss[i] > 0.9 * weights,
                   "worker %d's RSS (%lld) does not hold the weights (%.0f bytes)", i, rss[i],
                   weights);
        /* two private copies would be 2 x weights; shared pages are split
         * between the processes that map them (supervisor and workers).
         * Under ThreadSanitizer every page a worker reads gets private
         * shadow memory (several bytes per byte): PSS then measures TSan,
         * not batchd, and the bound is not checked. */
        const char *san = getenv("BATCHD_SANITIZER");
        if (san && strcmp(san, "tsan") == 0)
            h_note("PSS bound not checked under ThreadSanitizer (its shadow memory)");
        else
            CHECKF((double)(pss[0] + pss[1]) < 1.2 * weights,
                   "the workers' PSS (%lld) is not well under 2 copies of the weights (%.0f)",
                   pss[0] + pss[1], 2 * weights);
    }
    CHECK_INT(h_service_stop(&s, 15), 0);
    h_service_cleanup(&s);
}

/* ---- bad files: exit 2 at start, naming the tensor -------------------------- */

static void write_file(const char *path, const char *header, size_t dlen)
{
    FILE *f = fopen(path, "wb");
    if (!CHECK(f != NULL))
        return;
    uint64_t hl = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(hl >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < dlen; i++)
        fputc(0, f);
    fclose(f);
}

static void expect_start_failure(const char *path, const char *want, const char *want2)
{
    char data[700], spec[800];
    snprintf(data, sizeof data, "%s/data-bad", h_tmpdir());
    snprintf(spec, sizeof spec, "mlp:weights=%s,workers=1", path);
    const char *argv[] = {getenv("BATCHD_BIN"), "--listen", "127.0.0.1:0", "--data-dir", data,
                          "--model", spec, NULL};
    struct h_run_result r;
    if (!CHECK(h_run(argv, NULL, RUN_TIMEOUT_S, &r) == 0))
        return;
    printf("  case: %s\n", want);
    CHECKF(!r.timed_out && r.exit_code == 2, "%s: exit %d (timed out %d), expected 2; stderr: %s",
           want, r.exit_code, r.timed_out, r.err);
    CHECKF(strstr(r.err, want) != NULL, "stderr does not name \"%s\": %s", want, r.err);
    if (want2)
        CHECKF(strstr(r.err, want2) != NULL, "stderr does not say \"%s\": %s", want2, r.err);
    h_run_result_free(&r);
}

#define TS(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"

static void test_bad_files(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bad.safetensors", h_tmpdir());

    /* truncated: a good file without its last 10 bytes */
    if (run_mkmlp("784,8,10", "f32", "1", path)) {
        struct stat sb;
        if (CHECK(stat(path, &sb) == 0) && CHECK(truncate(path, sb.st_size - 10) == 0))
            expect_start_failure(path, "tensor \\\"layers.1.bias\\\"", "run past the end of the file");
    }
    /* the 8-byte length says more than the file holds */
    FILE *f = fopen(path, "wb");
    if (CHECK(f != NULL)) {
        fwrite("\xff\x00\x00\x00\x00\x00\x00\x00{}", 1, 10, f);
        fclose(f);
        expect_start_failure(path, "header length 255 runs past the end of the file", NULL);
    }
    write_file(path, "{\"layers.0.weight\":{\"dtype\":\"F32\",", 0);
    expect_start_failure(path, "header is not valid JSON", NULL);
    write_file(path, "{" TS("layers.0.weight", "F32", "[2,3]", "0", "24") "," TS("layers.0.bias", "F32", "[2]", "24", "32") "}", 24);
    expect_start_failure(path, "tensor \\\"layers.0.bias\\\": data_offsets [24, 32] run past the end", NULL);
    write_file(path, "{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") ","
                   TS("layers.1.weight", "F32", "[2,4]", "60", "92") "," TS("layers.1.bias", "F32", "[2]", "92", "100") "}", 100);
    expect_start_failure(path, "tensor \\\"layers.1.weight\\\" has shape [2, 4]", "the shapes must chain");
    write_file(path, "{" TS("layers.0.weight", "F33", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") "}", 60);
    expect_start_failure(path, "tensor \\\"layers.0.weight\\\": unknown dtype \\\"F33\\\"", NULL);
    /* and the parameters themselves */
    expect_start_failure("", "weights=", NULL); /* refused by the --model parser already */
}

int main(void)
{
    static const struct h_test tests[] = {
        {"mlp classifies images like the reference (F32, one and several per item)", test_classify},
        {"mlp with BF16 weights", test_classify_bf16},
        {"mlp over uploaded objects (float32 and uint8)", test_classify_objects},
        {"outputs of any size; the class, probabilities and object forms",
         test_large_outputs_and_forms},
        {"a ~50 MB weights file is shared by the workers (PSS)", test_shared_weights},
        {"bad weights files: exit 2 naming the tensor", test_bad_files},
    };
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    const char *env = getenv("MKMLP_BIN");
    if (env && env[0]) {
        snprintf(mkmlp, sizeof mkmlp, "%s", env);
    } else {
        char bin[512];
        snprintf(bin, sizeof bin, "%s", getenv("BATCHD_BIN"));
        snprintf(mkmlp, sizeof mkmlp, "%s/mkmlp", dirname(bin));
    }
    if (access(mkmlp, X_OK) != 0) {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
            h_fail_test(tests[i].name, "build/mkmlp is missing (make builds it)");
        return h_finish();
    }
    h_run_tests(tests, sizeof tests / sizeof tests[0]);
    return h_finish();
}
