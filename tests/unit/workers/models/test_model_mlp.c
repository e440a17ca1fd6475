/*
 * Unit tests for workers/model_mlp.c: outputs against an independent
 * computation (the weights are chosen here, written into .safetensors
 * files byte by byte, and the network is evaluated by a naive loop in
 * double precision) for F32, F16, BF16 and a misaligned F32 file, one
 * image and several (more than one MLP_BLOCK); items from objects through
 * a test-only model_host backed by malloc'ed arrays (float32, uint8
 * scaled by 1/255, [n, in] and [n, h, w]); every kind of bad item and
 * bad parameter or file, with the message it must give.
 *
 * F16 and BF16 weights are drawn from values both formats hold exactly
 * (k/1024 for F16, k/256 with |k| < 128 for BF16), so the reference uses
 * the very numbers the model reads, and the encoding here is a bit copy,
 * not a second rounding routine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <batchd/model.h>
#include "workers/models/model_mlp.h"

#define TOL 1e-4 /* float32 arithmetic against double */

enum wdtype { W_F32, W_F16, W_BF16 };

struct net_ref {
    size_t n_layers;
    unsigned width[8];      /* width[0] = in, width[L] = out */
    double *w[7], *b[7];    /* exactly the values the file holds */
};

static uint64_t rng = 42;
static int rnd(int lo, int hi) /* uniform integer in [lo, hi] */
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static char tmpdir[64];

/* The bits of v (exactly representable) in the dtype, little-endian. */
static size_t encode(double v, enum wdtype dt, uint8_t *out)
{
    float f = (float)v;
    uint32_t x;
    memcpy(&x, &f, 4);
    if (dt == W_F32) {
        memcpy(out, &x, 4);
        return 4;
    }
    uint16_t h;
    if (dt == W_BF16) {
        h = (uint16_t)(x >> 16);
    } else if ((x & 0x7fffffffu) == 0) {
        h = (uint16_t)(x >> 16);
    } else { /* a normal half: rebias the exponent, keep the top 10 mantissa bits */
        uint32_t e = ((x >> 23) & 0xff) - 127 + 15;
        h = (uint16_t)(((x >> 16) & 0x8000u) | (e << 10) | ((x & 0x7fffffu) >> 13));
    }
    out[0] = (uint8_t)h;
    out[1] = (uint8_t)(h >> 8);
    return 2;
}

static double draw(enum wdtype dt)
{
    return dt == W_BF16 ? rnd(-127, 127) / 256.0 : rnd(-1000, 1000) / 1024.0;
}

/*
 * Writes a file for `ref` (weights drawn here) at path. `pad` is the
 * header's length modulo 8 to aim for (0: aligned data; 1: misaligned).
 */
static void write_net(const char *path, struct net_ref *ref, enum wdtype dt, int misalign)
{
    const char *dtn = dt == W_F32 ? "F32" : dt == W_F16 ? "F16" : "BF16";
    size_t es = dt == W_F32 ? 4 : 2;
    char hdr[4096];
    size_t hl = (size_t)snprintf(hdr, sizeof hdr, "{");
    uint64_t off = 0;
    for (size_t l = 0; l < ref->n_layers; l++) {
        unsigned in = ref->width[l], out = ref->width[l + 1];
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl,
                               "%s\"layers.%zu.bias\":{\"dtype\":\"%s\",\"shape\":[%u],"
                               "\"data_offsets\":[%llu,%llu]},"
                               "\"layers.%zu.weight\":{\"dtype\":\"%s\",\"shape\":[%u,%u],"
                               "\"data_offsets\":[%llu,%llu]}",
                               l ? "," : "", l, dtn, out, (unsigned long long)off,
                               (unsigned long long)(off + out * es), l, dtn, out, in,
                               (unsigned long long)(off + out * es),
                               (unsigned long long)(off + out * es + (uint64_t)out * in * es));
        off += out * es + (uint64_t)out * in * es;
    }
    hdr[hl++] = '}';
    while ((hl + 8) % 8 != (size_t)(misalign ? 1 : 0))
        hdr[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, hl, f);
    for (size_t l = 0; l < ref->n_layers; l++) {
        unsigned in = ref->width[l], out = ref->width[l + 1];
        ref->w[l] = malloc(sizeof(double) * out * in);
        ref->b[l] = malloc(sizeof(double) * out);
        assert_non_null(ref->w[l]);
        assert_non_null(ref->b[l]);
        uint8_t buf[4];
        for (unsigned o = 0; o < out; o++) {
            ref->b[l][o] = draw(dt);
            fwrite(buf, 1, encode(ref->b[l][o], dt, buf), f);
        }
        for (size_t k = 0; k < (size_t)out * in; k++) {
            ref->w[l][k] = draw(dt);
            fwrite(buf, 1, encode(ref->w[l][k], dt, buf), f);
        }
    }
    assert_int_equal(fclose(f), 0);
}

static void free_net(struct net_ref *ref)
{
    for (size_t l = 0; l < ref->n_layers; l++) {
        free(ref->w[l]);
        free(ref->b[l]);
    }
}

/* The reference: naive loops in double. probs gets width[L] values. */
static void reference(const struct net_ref *ref, const double *x, double *probs)
{
    double a[256], b[256];
    memcpy(a, x, sizeof(double) * ref->width[0]);
    for (size_t l = 0; l < ref->n_layers; l++) {
        unsigned in = ref->width[l], out = ref->width[l + 1];
        for (unsigned o = 0; o < out; o++) {
            double s = ref->b[l][o];
            for (unsigned i = 0; i < in; i++)
                s += ref->w[l][(size_t)o * in + i] * a[i];
            b[o] = l + 1 < ref->n_layers && s < 0 ? 0 : s;
        }
        memcpy(a, b, sizeof(double) * out);
    }
    unsigned out = ref->width[ref->n_layers];
    double mx = a[0], sum = 0;
    for (unsigned c = 1; c < out; c++)
        mx = a[c] > mx ? a[c] : mx;
    for (unsigned c = 0; c < out; c++)
        sum += exp(a[c] - mx);
    for (unsigned c = 0; c < out; c++)
        probs[c] = exp(a[c] - mx) / sum;
}

/* ---- a test host: objects in malloc'ed arrays ----------------------------- */

#define N_OBJECTS 8
static struct model_object objects[N_OBJECTS];
static size_t n_objects;

static int test_object_ref(const json_t *v, struct model_object *obj, char *err, size_t errlen)
{
    json_t *id = json_is_object(v) ? json_object_get(v, "$object") : NULL;
    if (!id)
        return 0;
    if (!json_is_string(id) || json_object_size(v) != 1) {
        snprintf(err, errlen, "malformed object reference");
        return -EINVAL;
    }
    for (size_t i = 0; i < n_objects; i++)
        if (strcmp(objects[i].id, json_string_value(id)) == 0) {
            *obj = objects[i];
            return 1;
        }
    snprintf(err, errlen, "no object %s", json_string_value(id));
    return -ENOENT;
}

/* object_new: a calloc'ed array, registered so that the test reads it
 * back by id (freed by free_made). */
static void *made[N_OBJECTS];
static size_t n_made;

static int test_object_new(uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                           struct model_object *obj, void **data, char *err, size_t errlen)
{
    if (n_objects == N_OBJECTS) {
        snprintf(err, errlen, "test host: no room");
        return -ENOSPC;
    }
    struct model_object *o = &objects[n_objects];
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "made%zu", n_objects++);
    o->dtype = dtype;
    o->ndim = ndim;
    o->bytes = model_dtype_size(dtype);
    for (uint32_t d = 0; d < ndim; d++) {
        o->shape[d] = shape[d];
        o->bytes *= shape[d];
    }
    made[n_made] = calloc(1, o->bytes);
    assert_non_null(made[n_made]);
    o->data = made[n_made];
    *data = made[n_made++];
    *obj = *o;
    return 0;
}

static void free_made(void)
{
    while (n_made > 0)
        free(made[--n_made]);
}

static const struct model_host test_host = {
    .abi_version = MODEL_ABI_VERSION,
    .size = sizeof(struct model_host),
    .object_ref = test_object_ref,
    .object_new = test_object_new,
};

/* Adds an object; data is borrowed (the test keeps it alive). */
static void add_object(const char *id, uint32_t dtype, uint32_t ndim, const uint64_t *shape,
                       const void *data)
{
    assert_true(n_objects < N_OBJECTS);
    struct model_object *o = &objects[n_objects++];
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", id);
    o->dtype = dtype;
    o->ndim = ndim;
    o->bytes = model_dtype_size(dtype);
    for (uint32_t d = 0; d < ndim; d++) {
        o->shape[d] = shape[d];
        o->bytes *= shape[d];
    }
    o->data = data;
}

/* ---- running the model ---------------------------------------------------- */

struct loaded {
    void *shared;
    void *state;
};

static int load_params(const char *const *kv, size_t n, struct loaded *L, char *err,
                       size_t errlen)
{
    const char *keys[8], *values[8];
    for (size_t i = 0; i < n; i++) {
        keys[i] = kv[2 * i];
        values[i] = kv[2 * i + 1];
    }
    struct model_params p = {n, keys, values};
    L->shared = (void *)L; /* must be overwritten */
    L->state = NULL;
    int rc = model_mlp.load(&p, NULL, &L->shared, err, errlen);
    if (rc) {
        assert_null(L->shared);
        return rc;
    }
    return model_mlp.init(L->shared, &test_host, &L->state, err, errlen);
}

static void load_file(const char *path, struct loaded *L)
{
    const char *kv[] = {"weights", path};
    char err[512] = "";
    if (load_params(kv, 1, L, err, sizeof err) != 0)
        fail_msg("load %s: %s", path, err);
}

static void unload(struct loaded *L)
{
    model_mlp.fini(L->state);
    model_mlp.unload(L->shared);
}

static json_t *image_json(const double *x, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++) /* integers and reals both count as numbers */
        json_array_append_new(a, x[i] == floor(x[i]) ? json_integer((json_int_t)x[i])
                                                     : json_real(x[i]));
    return a;
}

/* Checks one {"class", "probabilities"} against the reference for x. */
static void check_image(const json_t *o, const struct net_ref *ref, const double *x)
{
    unsigned out = ref->width[ref->n_layers];
    double want[256];
    reference(ref, x, want);
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), 2);
    json_t *probs = json_object_get(o, "probabilities");
    json_t *cls = json_object_get(o, "class");
    assert_true(json_is_array(probs));
    assert_true(json_is_integer(cls));
    assert_int_equal(json_array_size(probs), out);
    unsigned best = 0;
    for (unsigned c = 0; c < out; c++) {
        double got = json_real_value(json_array_get(probs, c));
        if (fabs(got - want[c]) > TOL)
            fail_msg("probability %u: got %.9f, expected %.9f", c, got, want[c]);
        best = want[c] > want[best] ? c : best;
    }
    /* the class must be the reference's argmax unless two are within TOL */
    double second = -1;
    for (unsigned c = 0; c < out; c++)
        if (c != best && want[c] > second)
            second = want[c];
    if (want[best] - second > TOL)
        assert_int_equal(json_integer_value(cls), best);
}

static void random_image(double *x, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        x[i] = rnd(0, 3) == 0 ? rnd(0, 3) : rnd(-1000, 1000) / 500.0;
}

static struct net_ref make_ref(void)
{
    struct net_ref ref = {.n_layers = 3, .width = {20, 16, 12, 5}};
    return ref;
}

static void path_for(char *path, size_t len, const char *name)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
}

/* One image, then 70 (two blocks), for a file of the given dtype. */
static void run_outputs(enum wdtype dt, int misalign)
{
    char path[128];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, dt, misalign);
    struct loaded L;
    load_file(path, &L);
    unsigned in = ref.width[0];
    char err[512];
    double x[70][20];

    random_image(x[0], in);
    json_t *item = image_json(x[0], in), *out = NULL;
    assert_int_equal(model_mlp.run(L.state, item, &out, err, sizeof err), 0);
    check_image(out, &ref, x[0]);
    json_decref(out);
    json_decref(item);

    item = json_array();
    for (int i = 0; i < 70; i++) {
        random_image(x[i], in);
        json_array_append_new(item, image_json(x[i], in));
    }
    assert_int_equal(model_mlp.run(L.state, item, &out, err, sizeof err), 0);
    assert_true(json_is_array(out));
    assert_int_equal(json_array_size(out), 70);
    for (int i = 0; i < 70; i++)
        check_image(json_array_get(out, i), &ref, x[i]);
    json_decref(out);
    json_decref(item);
    unload(&L);
    free_net(&ref);
}

static void test_f32(void **unused) { (void)unused; run_outputs(W_F32, 0); }
static void test_f16(void **unused) { (void)unused; run_outputs(W_F16, 0); }
static void test_bf16(void **unused) { (void)unused; run_outputs(W_BF16, 0); }
/* An F32 file whose data is not 4-byte aligned is converted, not misread. */
static void test_f32_misaligned(void **unused) { (void)unused; run_outputs(W_F32, 1); }

/* The exported forward pass (the benchmark's baseline) on its own. */
static void test_forward_api(void **unused)
{
    (void)unused;
    char path[128], err[512];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    struct mlp_model *m;
    assert_int_equal(mlp_open(path, &m, err, sizeof err), 0);
    const struct mlp_net *net = mlp_model_net(m);
    assert_int_equal(net->n_layers, 3);
    assert_int_equal(net->in, 20);
    assert_int_equal(net->out, 5);
    assert_int_equal(net->max_width, 16);
    enum { N = 3 };
    double xd[N][20], want[5];
    float x[N * 20], probs[N * 5];
    float *work = malloc(mlp_work_floats(net, N) * sizeof(float));
    assert_non_null(work);
    for (int i = 0; i < N; i++) {
        random_image(xd[i], 20);
        for (int e = 0; e < 20; e++)
            x[i * 20 + e] = (float)xd[i][e];
    }
    mlp_forward(net, x, N, probs, work);
    for (int i = 0; i < N; i++) {
        reference(&ref, xd[i], want);
        for (int c = 0; c < 5; c++)
            assert_true(fabs(probs[i * 5 + c] - want[c]) < TOL);
    }
    free(work);
    mlp_close(m);
    free_net(&ref);

    float v[] = {0.1f, 0.7f, 0.7f, -1.0f};
    assert_int_equal(mlp_argmax(v, 4), 1);
    assert_int_equal(mlp_argmax(v, 1), 0);
}

/* ---- objects --------------------------------------------------------------- */

static void test_objects(void **unused)
{
    (void)unused;
    char path[128], err[512];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    struct loaded L;
    load_file(path, &L);
    n_objects = 0;

    enum { N = 67 };
    float *f = malloc(sizeof(float) * N * 20);
    uint8_t *u = malloc(N * 20);
    double xf[N][20], xu[N][20];
    assert_non_null(f);
    assert_non_null(u);
    for (int i = 0; i < N; i++)
        for (int e = 0; e < 20; e++) {
            f[i * 20 + e] = (float)(rnd(-100, 100) / 50.0);
            xf[i][e] = f[i * 20 + e];
            u[i * 20 + e] = (uint8_t)rnd(0, 255);
            xu[i][e] = u[i * 20 + e] / 255.0;
        }
    add_object("floats", MODEL_DTYPE_F32, 2, (uint64_t[]){N, 20}, f);
    add_object("bytes", MODEL_DTYPE_U8, 3, (uint64_t[]){N, 4, 5}, u);

    json_t *item = json_pack("{s:s}", "$object", "floats"), *out = NULL;
    assert_int_equal(model_mlp.run(L.state, item, &out, err, sizeof err), 0);
    assert_int_equal(json_array_size(out), N);
    for (int i = 0; i < N; i++)
        check_image(json_array_get(out, i), &ref, xf[i]);
    json_decref(out);
    json_decref(item);

    item = json_pack("{s:s}", "$object", "bytes");
    assert_int_equal(model_mlp.run(L.state, item, &out, err, sizeof err), 0);
    assert_int_equal(json_array_size(out), N);
    for (int i = 0; i < N; i++)
        check_image(json_array_get(out, i), &ref, xu[i]);
    json_decref(out);
    json_decref(item);

    unload(&L);
    free(f);
    free(u);
    free_net(&ref);
}

/* ---- run_batch -------------------------------------------------------------- */

/*
 * Is a (run_batch's output) b (run()'s) within BATCH_RTOL? The same JSON,
 * reals within a relative BATCH_RTOL: OpenBLAS's sgemm takes another path
 * for one row than for many (measured: probabilities 1 to 10 float32 ulps
 * apart, ~1e-6 relative), so a batch is not bit-for-bit a loop of run().
 * The class (an argmax) must be equal unless the top two probabilities are
 * that close.
 */
#define BATCH_RTOL 1e-5

static bool close_json(const json_t *a, const json_t *b)
{
    if (json_is_real(a) && json_is_real(b)) {
        double x = json_real_value(a), y = json_real_value(b);
        return fabs(x - y) <= BATCH_RTOL * fabs(y) + 1e-30;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!close_json(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a) && json_is_object(b) && json_object_size(a) == json_object_size(b)) {
        const json_t *probs = json_object_get(b, "probabilities");
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)a, key, v) {
            const json_t *w = json_object_get(b, key);
            if (!w)
                return false;
            if (strcmp(key, "class") == 0 && probs && !json_equal(v, w)) {
                /* a near tie may go either way */
                double pa = json_real_value(json_array_get(probs, (size_t)json_integer_value(v)));
                double pb = json_real_value(json_array_get(probs, (size_t)json_integer_value(w)));
                if (fabs(pa - pb) > BATCH_RTOL * pb)
                    return false;
                continue;
            }
            if (!close_json(v, w))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

/* Runs items through run_batch and checks every result against run() on
 * the same item: the same JSON (bit for bit when `exact`, else within
 * BATCH_RTOL), or the same error. */
static void check_batch_equals_run(struct loaded *L, json_t **items, size_t n, bool exact)
{
    json_t **outs = calloc(n, sizeof *outs);
    char(*errs)[MODEL_ERR_LEN] = calloc(n, sizeof *errs);
    assert_non_null(outs);
    assert_non_null(errs);
    const struct model_batch b = {n, (const json_t *const *)items, outs, errs};
    char err[512] = "";
    assert_int_equal(model_mlp.run_batch(L->state, &b, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        json_t *one = NULL;
        char e1[512] = "";
        int rc = model_mlp.run(L->state, items[i], &one, e1, sizeof e1);
        if (rc == 0) {
            assert_non_null(outs[i]);
            if (exact ? !json_equal(outs[i], one) : !close_json(outs[i], one)) {
                char *a = json_dumps(outs[i], JSON_COMPACT | JSON_ENCODE_ANY);
                char *c = json_dumps(one, JSON_COMPACT | JSON_ENCODE_ANY);
                fail_msg("item %zu: run_batch %.200s, run %.200s", i, a, c);
            }
        } else {
            assert_null(outs[i]);
            assert_string_equal(errs[i], e1);
        }
        json_decref(one);
        json_decref(outs[i]);
    }
    free(outs);
    free(errs);
}

static void test_run_batch_equals_run(void **unused)
{
    (void)unused;
    char path[128];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    unsigned in = ref.width[0];
    float f[3 * 20];
    for (int e = 0; e < 3 * 20; e++)
        f[e] = (float)(rnd(-100, 100) / 50.0);
    /* more than two MLP_BATCH_BLOCKs of single images, with bad items,
     * arrays of images and an object item among them */
    enum { N = 2 * MLP_BATCH_BLOCK + 77 };
    json_t **items = calloc(N, sizeof *items);
    assert_non_null(items);
    double x[20];
    for (size_t i = 0; i < N; i++) {
        random_image(x, in);
        if (i % 500 == 3)
            items[i] = json_pack("[i,i]", 1, 2); /* wrong length */
        else if (i % 700 == 5)
            items[i] = json_pack("{s:s}", "$object", "floats");
        else if (i % 900 == 7)
            items[i] = json_pack("[o,o]", image_json(x, in), image_json(x, in));
        else if (i == N - 1)
            items[i] = json_string("not an image");
        else
            items[i] = image_json(x, in);
    }
    for (int per_item = 0; per_item <= 1; per_item++) {
        const char *kv[] = {"weights", path, "batch", per_item ? "0" : "1"};
        struct loaded L;
        char err[512] = "";
        if (load_params(kv, 2, &L, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        n_objects = 0;
        add_object("floats", MODEL_DTYPE_F32, 2, (uint64_t[]){3, 20}, f);
        /* batch=0 runs run() per item: exactly run()'s outputs */
        check_batch_equals_run(&L, items, N, per_item);
        /* a batch of one image is one row: bit for bit */
        check_batch_equals_run(&L, items, 1, true);
        unload(&L);
    }
    for (size_t i = 0; i < N; i++)
        json_decref(items[i]);
    free(items);
    free_net(&ref);
}

/* {"images": ..., "output": ...}: class, probabilities and object. */
static void test_output_forms(void **unused)
{
    (void)unused;
    char path[128], err[512];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    struct loaded L;
    load_file(path, &L);
    n_objects = 0;
    enum { N = 70 };
    unsigned out = ref.width[ref.n_layers];
    float *f = malloc(sizeof(float) * N * 20);
    double xf[N][20];
    assert_non_null(f);
    for (int i = 0; i < N; i++)
        for (int e = 0; e < 20; e++) {
            f[i * 20 + e] = (float)(rnd(-100, 100) / 50.0);
            xf[i][e] = f[i * 20 + e];
        }
    add_object("floats", MODEL_DTYPE_F32, 2, (uint64_t[]){N, 20}, f);

    json_t *plain = json_pack("{s:s}", "$object", "floats"), *want = NULL;
    assert_int_equal(model_mlp.run(L.state, plain, &want, err, sizeof err), 0);

    /* probabilities: the same as the plain object item */
    json_t *item = json_pack("{s:o,s:s}", "images", json_incref(plain), "output", "probabilities");
    json_t *got = NULL;
    assert_int_equal(model_mlp.run(L.state, item, &got, err, sizeof err), 0);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(item);
    /* the default form is probabilities */
    item = json_pack("{s:O}", "images", plain);
    assert_int_equal(model_mlp.run(L.state, item, &got, err, sizeof err), 0);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(item);

    /* class: the classes of the probabilities form */
    item = json_pack("{s:O,s:s}", "images", plain, "output", "class");
    assert_int_equal(model_mlp.run(L.state, item, &got, err, sizeof err), 0);
    assert_int_equal(json_array_size(got), N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(json_integer_value(json_array_get(got, i)),
                         json_integer_value(json_object_get(json_array_get(want, i), "class")));
    json_decref(got);
    json_decref(item);

    /* object: a float32 [N, out] object holding the same probabilities */
    item = json_pack("{s:O,s:s}", "images", plain, "output", "object");
    assert_int_equal(model_mlp.run(L.state, item, &got, err, sizeof err), 0);
    const char *id = json_string_value(json_object_get(got, "$object"));
    assert_non_null(id);
    json_t *shape = json_object_get(got, "shape");
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), N);
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), out);
    const struct model_object *o = &objects[n_objects - 1];
    assert_string_equal(o->id, id);
    assert_int_equal(o->dtype, MODEL_DTYPE_F32);
    const float *p = o->data;
    for (size_t i = 0; i < N; i++) {
        check_image(json_array_get(want, i), &ref, xf[i]);
        json_t *probs = json_object_get(json_array_get(want, i), "probabilities");
        for (unsigned c = 0; c < out; c++)
            assert_true((float)json_real_value(json_array_get(probs, c)) == p[i * out + c]);
    }
    json_decref(got);
    json_decref(item);

    /* images as a JSON array of images */
    double x2[2][20];
    random_image(x2[0], 20);
    random_image(x2[1], 20);
    item = json_pack("{s:[o,o],s:s}", "images", image_json(x2[0], 20), image_json(x2[1], 20),
                     "output", "class");
    assert_int_equal(model_mlp.run(L.state, item, &got, err, sizeof err), 0);
    assert_int_equal(json_array_size(got), 2);
    json_decref(got);
    json_decref(item);

    json_decref(plain);
    json_decref(want);
    free_made();
    unload(&L);
    free(f);
    free_net(&ref);
}

/* ---- bad items ------------------------------------------------------------- */

static void expect_item_error(struct loaded *L, const char *text, int want_rc, const char *want)
{
    json_error_t jerr;
    json_t *item = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!item)
        fail_msg("bad test JSON %s", text);
    json_t *out = NULL;
    char err[512] = "";
    int rc = model_mlp.run(L->state, item, &out, err, sizeof err);
    if (rc != want_rc || !strstr(err, want))
        fail_msg("item %.60s: rc %d \"%s\", expected %d and \"%s\"", text, rc, err, want_rc, want);
    assert_null(out);
    json_decref(item);
}

static void test_bad_items(void **unused)
{
    (void)unused;
    char path[128];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    struct loaded L;
    load_file(path, &L);
    n_objects = 0;
    static uint8_t small[64];
    add_object("ints", MODEL_DTYPE_I32, 2, (uint64_t[]){2, 20}, small);
    add_object("wide", MODEL_DTYPE_F32, 2, (uint64_t[]){1, 21}, small);
    add_object("square", MODEL_DTYPE_U8, 3, (uint64_t[]){1, 5, 5}, small);
    add_object("flat", MODEL_DTYPE_U8, 1, (uint64_t[]){20}, small);
    add_object("empty", MODEL_DTYPE_U8, 2, (uint64_t[]){0, 20}, small);
    /* data never read: the size check comes first */
    add_object("huge", MODEL_DTYPE_U8, 2, (uint64_t[]){1000000, 20}, small);

    char row19[200] = "[", row20s[220];
    for (int i = 0; i < 19; i++)
        strcat(row19, i ? ",1" : "1");
    strcat(row19, "]");
    /* [1,...,1,"x"]: 20 elements, the last a string */
    snprintf(row20s, sizeof row20s, "%.*s,\"x\"]", (int)strlen(row19) - 1, row19);
    char buf[600];

    expect_item_error(&L, row19, -EINVAL, "mlp: expected 20 numbers (the network's input size), got 19");
    expect_item_error(&L, row20s, -EINVAL, "mlp: element 19 is a string, expected a number");
    expect_item_error(&L, "[]", -EINVAL, "got an empty array");
    expect_item_error(&L, "\"img\"", -EINVAL, "mlp: expected an array of 20 numbers, an array of such arrays, {\"$object\": \"ID\"} or {\"images\": ..., \"output\": ...}, got a string");
    expect_item_error(&L, "7", -EINVAL, "got a number");
    expect_item_error(&L, "null", -EINVAL, "got null");
    snprintf(buf, sizeof buf, "[%s,%s]", row20s, row19);
    expect_item_error(&L, buf, -EINVAL, "mlp: image 0: element 19 is a string");
    snprintf(buf, sizeof buf, "[%.*s,1],%s]", (int)strlen(row19) - 1, row19, row19);
    expect_item_error(&L, buf, -EINVAL, "mlp: image 1: expected 20 numbers");
    snprintf(buf, sizeof buf, "[%.*s,1],7]", (int)strlen(row19) - 1, row19);
    expect_item_error(&L, buf, -EINVAL, "mlp: image 1: expected an array of 20 numbers, got a number");
    snprintf(buf, sizeof buf, "%.*s,1e39]", (int)strlen(row19) - 1, row19);
    expect_item_error(&L, buf, -EINVAL, "element 19 (1e+39) is out of float32's range");
    expect_item_error(&L, "{\"a\":1}", -EINVAL, "got an object");
    expect_item_error(&L, "{\"$object\":\"nope\"}", -ENOENT, "mlp: no object nope");
    expect_item_error(&L, "{\"$object\":5}", -EINVAL, "mlp: malformed object reference");
    expect_item_error(&L, "{\"$object\":\"ints\"}", -EINVAL, "mlp: object ints is int32; expected float32 or uint8");
    expect_item_error(&L, "{\"$object\":\"wide\"}", -EINVAL, "mlp: object wide has shape [1, 21]; expected [n, 20] or [n, h, w] with h*w = 20");
    expect_item_error(&L, "{\"$object\":\"square\"}", -EINVAL, "object square has shape [1, 5, 5]");
    expect_item_error(&L, "{\"$object\":\"flat\"}", -EINVAL, "object flat has shape [20]");
    expect_item_error(&L, "{\"$object\":\"empty\"}", -EINVAL, "object empty has shape [0, 20]");
    expect_item_error(&L, "{\"$object\":\"huge\"}", -E2BIG, "1000000 images x 5 values is over the 4194304 one item may return as JSON");
    expect_item_error(&L, "{\"images\":{\"$object\":\"wide\"},\"output\":\"class\"}", -EINVAL, "object wide has shape [1, 21]");
    expect_item_error(&L, "{\"images\":{\"$object\":\"flat\"},\"output\":\"nope\"}", -EINVAL, "mlp: \"output\" must be \"class\", \"probabilities\" or \"object\", got 'nope'");
    expect_item_error(&L, "{\"images\":{\"$object\":\"flat\"},\"output\":3}", -EINVAL, "got a number");
    expect_item_error(&L, "{\"images\":{\"$object\":\"flat\"},\"extra\":1}", -EINVAL, "mlp: unknown field 'extra' (an item of this form has \"images\" and optionally \"output\")");
    expect_item_error(&L, "{\"images\":7}", -EINVAL, "mlp: \"images\" must be {\"$object\": \"ID\"} or a non-empty array of images (arrays of 20 numbers), got a number");
    expect_item_error(&L, "{\"images\":[]}", -EINVAL, "got an array");

    /* Without an object store (host NULL), objects are refused clearly. */
    void *bare;
    char err[512];
    assert_int_equal(model_mlp.init(L.shared, NULL, &bare, err, sizeof err), 0);
    json_t *item = json_pack("{s:s}", "$object", "floats"), *out = NULL;
    assert_int_equal(model_mlp.run(bare, item, &out, err, sizeof err), -ENOTSUP);
    assert_non_null(strstr(err, "need the object store"));
    json_decref(item);
    item = json_pack("{s:i}", "a", 1); /* not a reference: the usual message */
    assert_int_equal(model_mlp.run(bare, item, &out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "got an object"));
    json_decref(item);
    model_mlp.fini(bare);

    unload(&L);
    free_net(&ref);
}

/* Weights that overflow float32 on an input give an item error, not NaN. */
static void test_non_finite_output(void **unused)
{
    (void)unused;
    char path[128], err[512];
    path_for(path, sizeof path, "big.safetensors");
    /* one layer 1 -> 2 with weights 3e38: any input >= 2 overflows */
    const char *h = "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                    "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = strlen(h);
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, hl, f);
    float vals[4] = {3e38f, -3e38f, 0, 0};
    fwrite(vals, 4, 4, f);
    fclose(f);
    struct loaded L;
    load_file(path, &L);
    expect_item_error(&L, "[[0.5],[4]]", -ERANGE, "mlp: image 1: the network's output is not finite");
    json_t *item = json_loads("[0.5]", JSON_DECODE_ANY, NULL), *out = NULL;
    assert_int_equal(model_mlp.run(L.state, item, &out, err, sizeof err), 0);
    json_decref(out);
    json_decref(item);
    unload(&L);
}

/* ---- parameters and files ---------------------------------------------------- */

static void expect_load_error(const char *const *kv, size_t n, const char *want)
{
    struct loaded L;
    char err[512] = "";
    int rc = load_params(kv, n, &L, err, sizeof err);
    if (rc == 0 || !strstr(err, want))
        fail_msg("load: rc %d \"%s\", expected an error with \"%s\"", rc, err, want);
}

/* Writes a file from a header and data bytes of value 0 (or the given). */
static void write_raw(const char *path, const char *h, size_t dlen, float fill)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = strlen(h);
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, hl, f);
    for (size_t i = 0; i < dlen / 4; i++)
        fwrite(&fill, 4, 1, f);
    fclose(f);
}

#define TS(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"

static void test_bad_params_and_files(void **unused)
{
    (void)unused;
    char path[128];
    path_for(path, sizeof path, "bad.safetensors");
    expect_load_error(NULL, 0, "model mlp needs weights=PATH");
    const char *empty[] = {"weights", ""};
    expect_load_error(empty, 1, "weights= needs a path");
    const char *unknown[] = {"weights", path, "layers", "3"};
    expect_load_error(unknown, 2, "unknown parameter 'layers'");
    const char *delay[] = {"weights", path, "load_delay_ms", "-1"};
    expect_load_error(delay, 2, "load_delay_ms must be an integer from 0 to 600000, got '-1'");
    const char *delay2[] = {"weights", path, "load_delay_ms", "10x"};
    expect_load_error(delay2, 2, "got '10x'");
    const char *missing[] = {"weights", "/nonexistent/w.safetensors"};
    expect_load_error(missing, 1, "/nonexistent/w.safetensors: No such file");

    static const struct {
        const char *header;
        size_t dlen;
        const char *want;
    } files[] = {
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") ","
             TS("layers.1.weight", "F32", "[2,4]", "60", "92") "," TS("layers.1.bias", "F32", "[2]", "92", "100") "}",
         100, "tensor \"layers.1.weight\" has shape [2, 4]: its in (4) does not match the out of layers.0.weight (3)"},
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "}", 48, "tensor \"layers.0.bias\" is missing"},
        {"{" TS("layers.1.weight", "F32", "[3,4]", "0", "48") "," TS("layers.1.bias", "F32", "[3]", "48", "60") "}",
         60, "tensor \"layers.0.weight\" is missing (the file has layers up to 1)"},
        {"{" TS("layers.0.weight", "I32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") "}",
         60, "tensor \"layers.0.weight\" is I32; mlp needs F32, F16 or BF16"},
        {"{" TS("layers.0.weight", "F32", "[12]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") "}",
         60, "tensor \"layers.0.weight\" must have shape [out, in]"},
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[4]", "48", "64") "}",
         64, "tensor \"layers.0.bias\" must have shape [3]"},
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") ","
             TS("extra", "F32", "[1]", "60", "64") "}",
         64, "tensor \"extra\" is not a layer of an MLP"},
        {"{" TS("layers.00.weight", "F32", "[3,4]", "0", "48") "}", 48, "tensor \"layers.00.weight\" is not a layer"},
        {"{" TS("layers.64.weight", "F32", "[3,4]", "0", "48") "}", 48, "at most 64 layers"},
        {"{" TS("layers.99999999999999999999.bias", "F32", "[3]", "0", "12") "}", 12, "at most 64 layers"},
        {"{}", 0, "the file holds no tensors"},
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") "}",
         56, "tensor \"layers.0.bias\": data_offsets [48, 60] run past the end of the file"},
        {"{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F17", "[3]", "48", "60") "}",
         60, "tensor \"layers.0.bias\": unknown dtype \"F17\""},
    };
    const char *kv[] = {"weights", path};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        write_raw(path, files[i].header, files[i].dlen, 0.5f);
        expect_load_error(kv, 1, files[i].want);
    }
    /* a NaN weight is refused at load, naming the tensor and element */
    write_raw(path, "{" TS("layers.0.weight", "F32", "[3,4]", "0", "48") "," TS("layers.0.bias", "F32", "[3]", "48", "60") "}",
              60, NAN);
    expect_load_error(kv, 1, "tensor \"layers.0.weight\": element 0 is not finite");
}

static void test_load_delay(void **unused)
{
    (void)unused;
    char path[128];
    path_for(path, sizeof path, "net.safetensors");
    struct net_ref ref = make_ref();
    write_net(path, &ref, W_F32, 0);
    const char *kv[] = {"weights", path, "load_delay_ms", "60"};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct loaded L;
    char err[512];
    assert_int_equal(load_params(kv, 2, &L, err, sizeof err), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 60.0);
    unload(&L);
    free_net(&ref);
}

static int setup(void **unused)
{
    (void)unused;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_model_mlp.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **unused)
{
    (void)unused;
    const char *names[] = {"net.safetensors", "bad.safetensors", "big.safetensors"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        path_for(path, sizeof path, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_f32_misaligned),
        cmocka_unit_test(test_forward_api),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_run_batch_equals_run),
        cmocka_unit_test(test_output_forms),
        cmocka_unit_test(test_bad_items),
        cmocka_unit_test(test_non_finite_output),
        cmocka_unit_test(test_bad_params_and_files),
        cmocka_unit_test(test_load_delay),
    };
    return cmocka_run_group_tests_name("model_mlp", tests, setup, teardown);
}
