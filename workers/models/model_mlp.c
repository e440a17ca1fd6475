/*
 * model_mlp.c: see model_mlp.h. Loading (file, layer table, conversions,
 * checks), the forward pass, and the model table's hooks, which turn JSON
 * and objects into rows of floats and probabilities back into JSON.
 */
#include "workers/models/model_mlp.h"

#include "workers/models/safetensors.h"
#include "workers/models/model_util.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct mlp_model {
    struct mlp_net net;
    struct safetensors st;
    float *converted;     /* F16/BF16 (or misaligned F32) as float32; read-only */
    size_t converted_len; /* bytes mapped */
    bool per_item; /* batch=0: run_batch runs its items one by one (benchmarks) */
};

/* ---- loading ------------------------------------------------------------- */

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) { /* zero or subnormal: m x 2^-24 */
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    uint32_t bits = e == 31 ? sign | 0x7f800000u | (m << 13)
                            : sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts a tensor's numel elements to float32 into dst. The data may be
 * unaligned, so elements are read byte by byte (the file is little-endian). */
static void convert(const struct safetensors_tensor *t, float *dst)
{
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++) {
        if (t->dtype == SAFETENSORS_F32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = t->dtype == SAFETENSORS_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
}

static bool in_place(const struct safetensors_tensor *t)
{
    return t->dtype == SAFETENSORS_F32 && safetensors_aligned(t);
}

/* Parses "layers.{i}.weight" / "layers.{i}.bias" in canonical form (no
 * sign, no leading zero). Returns 0 (weight), 1 (bias) or -1. */
static int layer_name(const char *name, unsigned long *index)
{
    if (strncmp(name, "layers.", 7) != 0)
        return -1;
    const char *p = name + 7;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1;
    char *end;
    unsigned long i = strtoul(p, &end, 10);
    if (i >= MLP_MAX_LAYERS && end - p > 3)
        i = MLP_MAX_LAYERS; /* any huge index is just "too many" */
    *index = i;
    if (strcmp(end, ".weight") == 0)
        return 0;
    if (strcmp(end, ".bias") == 0)
        return 1;
    return -1;
}

static int check_float(const struct safetensors_tensor *t, char *err, size_t errlen)
{
    if (t->dtype != SAFETENSORS_F32 && t->dtype != SAFETENSORS_F16 &&
        t->dtype != SAFETENSORS_BF16) {
        model_err(err, errlen, "tensor \"%s\" is %s; mlp needs F32, F16 or BF16", t->name,
                safetensors_dtype_name(t->dtype));
        return -EINVAL;
    }
    return 0;
}

/* Builds m->net from m->st; converts what cannot be used in place. */
static int build_net(struct mlp_model *m, char *err, size_t errlen)
{
    const struct safetensors *st = &m->st;
    const struct safetensors_tensor *w[MLP_MAX_LAYERS] = {0}, *b[MLP_MAX_LAYERS] = {0};
    unsigned long n_layers = 0;
    for (size_t k = 0; k < st->n; k++) {
        const struct safetensors_tensor *t = &st->tensors[k];
        unsigned long i;
        int kind = layer_name(t->name, &i);
        char shown[84];
        if (kind < 0) {
            model_err(err, errlen,
                    "tensor \"%s\" is not a layer of an MLP (expected layers.{i}.weight and "
                    "layers.{i}.bias only)",
                    safetensors_shown(t->name, 80, shown, sizeof shown));
            return -EINVAL;
        }
        if (i >= MLP_MAX_LAYERS) {
            model_err(err, errlen, "tensor \"%s\": mlp supports at most %d layers",
                    safetensors_shown(t->name, 80, shown, sizeof shown), MLP_MAX_LAYERS);
            return -EINVAL;
        }
        (kind == 0 ? w : b)[i] = t; /* names are unique: the header refused duplicates */
        if (i + 1 > n_layers)
            n_layers = i + 1;
    }
    if (n_layers == 0) {
        model_err(err, errlen, "the file holds no tensors (expected layers.0.weight ...)");
        return -EINVAL;
    }
    size_t convert_floats = 0;
    for (unsigned long i = 0; i < n_layers; i++) {
        if (!w[i] || !b[i]) {
            model_err(err, errlen, "tensor \"layers.%lu.%s\" is missing (the file has layers up to %lu)",
                    i, w[i] ? "bias" : "weight", n_layers - 1);
            return -EINVAL;
        }
        int rc = check_float(w[i], err, errlen);
        if (!rc)
            rc = check_float(b[i], err, errlen);
        if (rc)
            return rc;
        if (w[i]->ndim != 2 || w[i]->shape[0] == 0 || w[i]->shape[1] == 0 ||
            w[i]->shape[0] > MLP_MAX_WIDTH || w[i]->shape[1] > MLP_MAX_WIDTH) {
            model_err(err, errlen,
                    "tensor \"%s\" must have shape [out, in], each from 1 to %u (it has %u "
                    "dimensions%s)",
                    w[i]->name, MLP_MAX_WIDTH, w[i]->ndim, w[i]->ndim == 2 ? ", out of range" : "");
            return -EINVAL;
        }
        uint32_t out = (uint32_t)w[i]->shape[0], in = (uint32_t)w[i]->shape[1];
        if (b[i]->ndim != 1 || b[i]->shape[0] != out) {
            model_err(err, errlen, "tensor \"%s\" must have shape [%u] (the out of %s)",
                    b[i]->name, out, w[i]->name);
            return -EINVAL;
        }
        if (i > 0 && in != m->net.layers[i - 1].out) {
            model_err(err, errlen,
                    "tensor \"%s\" has shape [%u, %u]: its in (%u) does not match the out of "
                    "layers.%lu.weight (%u); the shapes must chain",
                    w[i]->name, out, in, in, i - 1, m->net.layers[i - 1].out);
            return -EINVAL;
        }
        m->net.layers[i].in = in;
        m->net.layers[i].out = out;
        if (!in_place(w[i]))
            convert_floats += w[i]->numel;
        if (!in_place(b[i]))
            convert_floats += b[i]->numel;
        if (out > m->net.max_width)
            m->net.max_width = out;
    }
    m->net.n_layers = (uint32_t)n_layers;
    m->net.in = m->net.layers[0].in;
    m->net.out = m->net.layers[n_layers - 1].out;

    if (convert_floats > 0) {
        m->converted_len = convert_floats * sizeof(float);
        /* Its own mapping, not the heap: no allocator metadata shares its
         * pages, so nothing a worker does can write (and un-share) them. */
        void *p = mmap(NULL, m->converted_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            m->converted_len = 0;
            model_err(err, errlen, "cannot map %zu bytes for the float32 weights: %s",
                    convert_floats * sizeof(float), strerror(errno));
            return -ENOMEM;
        }
        m->converted = p;
    }
    float *next = m->converted;
    for (unsigned long i = 0; i < n_layers; i++) {
        const struct safetensors_tensor *pair[2] = {w[i], b[i]};
        const float *dst[2];
        for (int k = 0; k < 2; k++) {
            if (in_place(pair[k])) {
                dst[k] = pair[k]->data;
            } else {
                convert(pair[k], next);
                dst[k] = next;
                next += pair[k]->numel;
            }
            /* A NaN or infinite weight would make every answer NaN: say so
             * now, once, rather than fail every item. */
            for (uint64_t e = 0; e < pair[k]->numel; e++)
                if (!isfinite(dst[k][e])) {
                    model_err(err, errlen, "tensor \"%s\": element %llu is not finite",
                            pair[k]->name, (unsigned long long)e);
                    return -EINVAL;
                }
        }
        m->net.layers[i].weight = dst[0];
        m->net.layers[i].bias = dst[1];
    }
    if (m->converted && mprotect(m->converted, m->converted_len, PROT_READ) != 0) {
        model_err(err, errlen, "mprotect: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

int mlp_open(const char *path, struct mlp_model **out, char *err, size_t errlen)
{
    *out = NULL;
    /* A threaded OpenBLAS would already have started its pool in this
     * process (the supervisor), which then must not fork. */
    if (openblas_get_parallel() != 0) {
        model_err(err, errlen, "the linked OpenBLAS is a threaded build (%s); batchd's supervisor "
                             "must stay single-threaded: link the serial one (libopenblas0-serial)",
                openblas_get_config());
        return -ENOTSUP;
    }
    struct mlp_model *m = calloc(1, sizeof *m);
    if (!m) {
        model_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = safetensors_open(path, &m->st, err, errlen);
    if (rc)
        goto fail;
    char why[384] = "";
    rc = build_net(m, why, sizeof why);
    if (rc) {
        model_err(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    *out = m;
    return 0;
fail:
    mlp_close(m);
    return rc;
}

void mlp_close(struct mlp_model *m)
{
    if (!m)
        return;
    if (m->converted)
        munmap(m->converted, m->converted_len);
    safetensors_close(&m->st);
    free(m);
}

const struct mlp_net *mlp_model_net(const struct mlp_model *m)
{
    return &m->net;
}

/* ---- the forward pass ---------------------------------------------------- */

size_t mlp_work_floats(const struct mlp_net *net, size_t n)
{
    return 2 * n * (size_t)net->max_width;
}

uint32_t mlp_argmax(const float *v, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[k])
            k = i;
    return k;
}

void mlp_forward(const struct mlp_net *net, const float *x, size_t n, float *probs,
                 float *work)
{
    const float *cur = x;
    float *bufs[2] = {work, work + n * net->max_width};
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const struct mlp_layer *L = &net->layers[l];
        bool last = l + 1 == net->n_layers;
        float *dst = last ? probs : bufs[l % 2];
        /* dst = bias (each row), then dst += cur . W^T in one product */
        for (size_t r = 0; r < n; r++)
            memcpy(dst + r * L->out, L->bias, L->out * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L->out, (int)L->in,
                    1.0f, cur, (int)L->in, L->weight, (int)L->in, 1.0f, dst, (int)L->out);
        if (!last) {
            for (size_t e = 0; e < n * L->out; e++)
                dst[e] = dst[e] > 0.0f ? dst[e] : 0.0f;
        }
        cur = dst;
    }
    /* softmax per row, shifted by the row's maximum so exp cannot overflow */
    for (size_t r = 0; r < n; r++) {
        float *row = probs + r * net->out;
        float mx = row[mlp_argmax(row, net->out)];
        double sum = 0.0;
        for (uint32_t c = 0; c < net->out; c++) {
            row[c] = expf(row[c] - mx);
            sum += row[c];
        }
        for (uint32_t c = 0; c < net->out; c++)
            row[c] = (float)(row[c] / sum);
    }
}

/* ---- the model table ----------------------------------------------------- */

struct mlp_state {
    const struct mlp_model *m;
    const struct model_host *host; /* from init(); NULL: no object store */
    float *x;                      /* MLP_BLOCK x in */
    float *probs;                  /* MLP_BLOCK x out */
    float *work;                   /* mlp_work_floats(MLP_BLOCK) */
    /* run_batch's scratch, grown on first use */
    float *bx;                     /* bcap x in: the batch's images */
    size_t *bmap;                  /* bcap: row -> item index */
    size_t bcap;
    float *bprobs;                 /* MLP_BATCH_BLOCK x out */
    float *bwork;                  /* mlp_work_floats(MLP_BATCH_BLOCK) */
};

static int mlp_load(const struct model_params *params, const struct model_host *host,
                    void **shared, char *err, size_t errlen)
{
    (void)host;
    *shared = NULL;
    const char *path = NULL;
    long delay_ms = 0;
    bool per_item = false;
    for (size_t i = 0; params && i < params->n; i++) {
        const char *k = params->keys[i], *v = params->values[i];
        if (strcmp(k, "weights") == 0) {
            if (v[0] == '\0') {
                model_err(err, errlen, "model mlp: weights= needs a path");
                return -EINVAL;
            }
            path = v;
        } else if (strcmp(k, "batch") == 0) {
            if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
                model_err(err, errlen, "model mlp: batch must be 0 or 1, got '%.32s'", v);
                return -EINVAL;
            }
            per_item = v[0] == '0';
        } else if (strcmp(k, "load_delay_ms") == 0) {
            char *end;
            errno = 0;
            delay_ms = strtol(v, &end, 10);
            if (errno || end == v || *end || delay_ms < 0 || delay_ms > MLP_MAX_LOAD_DELAY_MS) {
                model_err(err, errlen,
                        "model mlp: load_delay_ms must be an integer from 0 to %ld, got '%.32s'",
                        MLP_MAX_LOAD_DELAY_MS, v);
                return -EINVAL;
            }
        } else {
            model_err(err, errlen,
                    "model mlp: unknown parameter '%.64s' (takes weights=PATH, load_delay_ms=N, "
                    "batch=0|1)",
                    k);
            return -EINVAL;
        }
    }
    if (!path) {
        model_err(err, errlen, "model mlp needs weights=PATH (a .safetensors file; build/mkmlp "
                             "makes one)");
        return -EINVAL;
    }
    if (delay_ms > 0) {
        /* Simulated expensive loading (model_mlp.h); a signal cannot cut it
         * short because the remainder is slept again. */
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    struct mlp_model *m;
    int rc = mlp_open(path, &m, err, errlen);
    if (rc)
        return rc;
    m->per_item = per_item;
    *shared = m;
    return 0;
}

static void mlp_unload(void *shared)
{
    mlp_close(shared);
}

static int mlp_init(const void *shared, const struct model_host *host, void **state, char *err,
                    size_t errlen)
{
    const struct mlp_model *m = shared;
    struct mlp_state *s = calloc(1, sizeof *s);
    if (s) {
        s->m = m;
        s->host = host;
        s->x = malloc((size_t)MLP_BLOCK * m->net.in * sizeof(float));
        s->probs = malloc((size_t)MLP_BLOCK * m->net.out * sizeof(float));
        s->work = malloc(mlp_work_floats(&m->net, MLP_BLOCK) * sizeof(float));
    }
    if (!s || !s->x || !s->probs || !s->work) {
        if (s) {
            free(s->x);
            free(s->probs);
            free(s->work);
            free(s);
        }
        model_err(err, errlen, "mlp: out of memory for the scratch space");
        return -ENOMEM;
    }
    *state = s;
    return 0;
}

static void mlp_fini(void *state)
{
    struct mlp_state *s = state;
    if (!s)
        return;
    free(s->x);
    free(s->probs);
    free(s->work);
    free(s->bx);
    free(s->bmap);
    free(s->bprobs);
    free(s->bwork);
    free(s);
}

/* Where the images come from: JSON rows, or an object's float32/uint8 rows. */
struct mlp_source {
    const json_t *rows;  /* array of images (several), or NULL */
    const json_t *one;   /* the single image, or NULL */
    const struct model_object *obj;
    size_t n;
};

/* Copies image `i` into dst (in floats). Returns 0 or -EINVAL with err. */
static int fill_row(const struct mlp_source *src, size_t i, uint32_t in, float *dst, char *err,
                    size_t errlen)
{
    if (src->obj) {
        const uint8_t *base = (const uint8_t *)src->obj->data;
        if (src->obj->dtype == MODEL_DTYPE_U8) {
            const uint8_t *p = base + i * in;
            for (uint32_t e = 0; e < in; e++)
                dst[e] = (float)p[e] * (1.0f / 255.0f);
        } else {
            memcpy(dst, base + i * in * sizeof(float), in * sizeof(float));
        }
        return 0;
    }
    const json_t *img = src->one ? src->one : json_array_get(src->rows, i);
    char where[48] = "";
    if (!src->one)
        snprintf(where, sizeof where, "image %zu: ", i);
    if (!json_is_array(img)) {
        model_err(err, errlen, "mlp: %sexpected an array of %u numbers, got %s", where, in,
                model_json_kind(img));
        return -EINVAL;
    }
    if (json_array_size(img) != in) {
        model_err(err, errlen, "mlp: %sexpected %u numbers (the network's input size), got %zu",
                where, in, json_array_size(img));
        return -EINVAL;
    }
    for (uint32_t e = 0; e < in; e++) {
        const json_t *v = json_array_get(img, e);
        if (!json_is_number(v)) {
            model_err(err, errlen, "mlp: %selement %u is %s, expected a number", where, e,
                    model_json_kind(v));
            return -EINVAL;
        }
        double d = json_number_value(v);
        dst[e] = (float)d;
        if (!isfinite(dst[e])) {
            model_err(err, errlen, "mlp: %selement %u (%g) is out of float32's range", where, e, d);
            return -EINVAL;
        }
    }
    return 0;
}

static json_t *image_output(const float *probs, uint32_t out)
{
    json_t *arr = json_array();
    for (uint32_t c = 0; arr && c < out; c++)
        if (json_array_append_new(arr, json_real((double)probs[c])) != 0) {
            json_decref(arr);
            return NULL;
        }
    if (!arr)
        return NULL;
    return json_pack("{s:i,s:o}", "class", (int)mlp_argmax(probs, out), "probabilities", arr);
}

/* Resolves an {"$object"} item into *src. Returns 0 or a negative errno. */
static int object_source(struct mlp_state *s, const json_t *item, struct model_object *obj,
                         struct mlp_source *src, char *err, size_t errlen)
{
    const uint32_t in = s->m->net.in;
    char why[256] = "";
    int rc;
    if (s->host && s->host->object_ref) {
        rc = s->host->object_ref(item, obj, why, sizeof why);
    } else if (json_object_get(item, "$object")) {
        model_err(err, errlen, "mlp: {\"$object\"} items need the object store, which this "
                             "batchd does not have");
        return -ENOTSUP;
    } else {
        rc = 0; /* not a reference */
    }
    if (rc == 0) {
        model_err(err, errlen, "mlp: expected an array of %u numbers, an array of such arrays, "
                             "or {\"$object\": \"ID\"}, got an object",
                in);
        return -EINVAL;
    }
    if (rc < 0) {
        model_err(err, errlen, "mlp: %s", why[0] ? why : strerror(-rc));
        return rc;
    }
    if (obj->dtype != MODEL_DTYPE_F32 && obj->dtype != MODEL_DTYPE_U8) {
        const char *dn = model_dtype_name(obj->dtype);
        model_err(err, errlen, "mlp: object %s is %s; expected float32 or uint8", obj->id,
                dn ? dn : "of an unknown dtype");
        return -EINVAL;
    }
    uint64_t per_image = 0, bytes = 0;
    bool shape_ok = (obj->ndim == 2 || obj->ndim == 3) && obj->shape[0] > 0;
    if (shape_ok && obj->ndim == 2)
        per_image = obj->shape[1];
    else if (shape_ok && __builtin_mul_overflow(obj->shape[1], obj->shape[2], &per_image))
        shape_ok = false;
    if (!shape_ok || per_image != in) {
        char shape[96] = "[";
        for (uint32_t d = 0; d < obj->ndim && d < MODEL_OBJECT_MAX_DIMS; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", d ? ", " : "",
                     (unsigned long long)obj->shape[d]);
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "]");
        model_err(err, errlen, "mlp: object %s has shape %s; expected [n, %u] or [n, h, w] with "
                             "h*w = %u, n >= 1",
                obj->id, shape, in, in);
        return -EINVAL;
    }
    /* The store checked this; a model reading shared memory checks again
     * rather than read past the object. */
    if (__builtin_mul_overflow(obj->shape[0], (uint64_t)in * model_dtype_size(obj->dtype),
                               &bytes) ||
        obj->bytes != bytes || !obj->data) {
        model_err(err, errlen, "mlp: object %s holds %llu bytes, not what its shape says",
                obj->id, (unsigned long long)obj->bytes);
        return -EINVAL;
    }
    src->obj = obj;
    src->n = (size_t)obj->shape[0];
    return 0;
}

/* What an item asks for ("output" of the {"images": ...} form). */
enum mlp_output {
    MLP_OUT_PROBABILITIES = 0, /* [{"class", "probabilities"}, ...] (the default) */
    MLP_OUT_CLASS,             /* [k, ...] */
    MLP_OUT_OBJECT,            /* a float32 [n, out] object of probabilities */
};

/* Where the outputs of one item go, block by block. */
struct mlp_sink {
    enum mlp_output form;
    bool one;        /* a single image: its object, not an array of them */
    json_t *results; /* the array (probabilities, class) */
    json_t *single;  /* the single image's output */
    float *obj_data; /* object form: n x out floats */
};

/* Appends rows [start, start+rows) of probabilities to the sink. Returns 0
 * or -ENOMEM. */
static int sink_block(struct mlp_sink *k, const struct mlp_net *net, size_t start, size_t rows,
                      const float *probs)
{
    for (size_t r = 0; r < rows; r++) {
        const float *p = probs + r * net->out;
        json_t *o;
        switch (k->form) {
        case MLP_OUT_OBJECT:
            memcpy(k->obj_data + (start + r) * net->out, p, net->out * sizeof(float));
            continue;
        case MLP_OUT_CLASS:
            o = json_integer(mlp_argmax(p, net->out));
            break;
        default:
            o = image_output(p, net->out);
            break;
        }
        if (!o)
            return -ENOMEM;
        if (k->one) {
            k->single = o;
            continue;
        }
        if (json_array_append_new(k->results, o) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* The error for a row whose probabilities are not finite. */
static int not_finite(bool one, size_t row, char *err, size_t errlen)
{
    char where[48] = "";
    if (!one)
        snprintf(where, sizeof where, "image %zu: ", row);
    model_err(err, errlen, "mlp: %sthe network's output is not finite (its activations "
                           "overflow float32 on this input)", where);
    return -ERANGE;
}

/* The index of the first row of probs[rows][out] with a value that is not
 * finite, or rows. */
static size_t first_not_finite(const float *probs, size_t rows, uint32_t out)
{
    for (size_t r = 0; r < rows; r++)
        for (uint32_t c = 0; c < out; c++)
            if (!isfinite(probs[r * out + c]))
                return r;
    return rows;
}

/* Runs the images of src through the network, MLP_BLOCK at a time, into
 * the sink. Returns 0 or a negative errno with err. */
static int run_source(struct mlp_state *s, const struct mlp_source *src, struct mlp_sink *k,
                      char *err, size_t errlen)
{
    const struct mlp_net *net = &s->m->net;
    for (size_t start = 0; start < src->n; start += MLP_BLOCK) {
        size_t rows = src->n - start < MLP_BLOCK ? src->n - start : MLP_BLOCK;
        const float *x = s->x;
        if (src->obj && src->obj->dtype == MODEL_DTYPE_F32 &&
            (uintptr_t)src->obj->data % sizeof(float) == 0) {
            /* float32 objects are read in place, like the weights */
            x = (const float *)src->obj->data + start * net->in;
        } else {
            for (size_t r = 0; r < rows; r++) {
                int rc = fill_row(src, start + r, net->in, s->x + r * net->in, err, errlen);
                if (rc)
                    return rc;
            }
        }
        mlp_forward(net, x, rows, s->probs, s->work);
        size_t bad = first_not_finite(s->probs, rows, net->out);
        if (bad < rows)
            return not_finite(src->one != NULL, start + bad, err, errlen);
        if (sink_block(k, net, start, rows, s->probs) != 0) {
            model_err(err, errlen, "mlp: out of memory for the output");
            return -ENOMEM;
        }
    }
    return 0;
}

/* Reads the {"images": ..., "output": ...} form into *src and k->form.
 * Returns 0 or -EINVAL (-ENOENT, -ENOTSUP) with err naming the field. */
static int images_form(struct mlp_state *s, const json_t *item, struct model_object *obj,
                       struct mlp_source *src, struct mlp_sink *k, char *err, size_t errlen)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)item, key, v) {
        if (strcmp(key, "images") != 0 && strcmp(key, "output") != 0) {
            model_err(err, errlen, "mlp: unknown field '%.64s' (an item of this form has "
                                   "\"images\" and optionally \"output\")", key);
            return -EINVAL;
        }
    }
    const json_t *out = json_object_get(item, "output");
    if (out) {
        const char *o = json_string_value(out);
        if (o && strcmp(o, "probabilities") == 0)
            k->form = MLP_OUT_PROBABILITIES;
        else if (o && strcmp(o, "class") == 0)
            k->form = MLP_OUT_CLASS;
        else if (o && strcmp(o, "object") == 0)
            k->form = MLP_OUT_OBJECT;
        else {
            model_err(err, errlen, "mlp: \"output\" must be \"class\", \"probabilities\" or "
                                   "\"object\", got %s%.32s%s", o ? "'" : "",
                      o ? o : model_json_kind(out), o ? "'" : "");
            return -EINVAL;
        }
    }
    const json_t *images = json_object_get(item, "images");
    if (json_is_object(images))
        return object_source(s, images, obj, src, err, errlen);
    if (json_is_array(images) && json_array_size(images) > 0 &&
        json_is_array(json_array_get(images, 0))) {
        src->rows = images;
        src->n = json_array_size(images);
        return 0;
    }
    model_err(err, errlen, "mlp: \"images\" must be {\"$object\": \"ID\"} or a non-empty array of "
                           "images (arrays of %u numbers), got %s",
              s->m->net.in, images ? model_json_kind(images) : "nothing");
    return -EINVAL;
}

static int mlp_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    struct mlp_state *s = state;
    const struct mlp_net *net = &s->m->net;
    struct mlp_source src = {0};
    struct mlp_sink k = {0};
    struct model_object obj, res;
    int rc;
    if (json_is_array(item) && json_array_size(item) > 0) {
        if (json_is_array(json_array_get(item, 0))) {
            src.rows = item;
            src.n = json_array_size(item);
        } else {
            src.one = item;
            src.n = 1;
            k.one = true;
        }
    } else if (json_is_object(item) && json_object_get(item, "images")) {
        rc = images_form(s, item, &obj, &src, &k, err, errlen);
        if (rc)
            return rc;
    } else if (json_is_object(item)) {
        rc = object_source(s, item, &obj, &src, err, errlen);
        if (rc)
            return rc;
    } else {
        model_err(err, errlen, "mlp: expected an array of %u numbers, an array of such arrays, "
                               "{\"$object\": \"ID\"} or {\"images\": ..., \"output\": ...}, got %s",
                net->in, json_is_array(item) ? "an empty array" : model_json_kind(item));
        return -EINVAL;
    }
    size_t per_image = k.form == MLP_OUT_CLASS ? 1 : net->out;
    if (k.form != MLP_OUT_OBJECT && src.n > MLP_MAX_OUTPUTS / per_image) {
        model_err(err, errlen, "mlp: %zu images x %zu values is over the %u one item may return "
                               "as JSON; split the item or ask for \"output\": \"object\"",
                src.n, per_image, MLP_MAX_OUTPUTS);
        return -E2BIG;
    }
    if (k.form == MLP_OUT_OBJECT) {
        if (!s->host || !MODEL_HOST_HAS(s->host, object_new)) {
            model_err(err, errlen, "mlp: \"output\": \"object\" needs the object store, which this "
                                   "batchd does not have");
            return -ENOTSUP;
        }
        uint64_t shape[2] = { src.n, net->out };
        void *data;
        char why[300] = "";
        rc = s->host->object_new(MODEL_DTYPE_F32, 2, shape, &res, &data, why, sizeof why);
        if (rc) {
            model_err(err, errlen, "mlp: %s", why[0] ? why : strerror(-rc));
            return rc;
        }
        k.obj_data = data;
    } else if (!k.one) {
        k.results = json_array();
        if (!k.results)
            goto oom;
    }
    rc = run_source(s, &src, &k, err, errlen);
    if (rc) {
        json_decref(k.results);
        json_decref(k.single);
        return rc; /* an object made for it is freed by batchd */
    }
    if (k.form == MLP_OUT_OBJECT) {
        *output = json_pack("{s:s,s:[I,I]}", "$object", res.id, "shape", (json_int_t)src.n,
                            (json_int_t)net->out);
        if (!*output)
            goto oom;
        return 0;
    }
    *output = k.one ? k.single : k.results;
    return 0;
oom:
    json_decref(k.results);
    model_err(err, errlen, "mlp: out of memory for the output");
    return -ENOMEM;
}

/* Is item a single image (an array of numbers)? Those are the items
 * run_batch stacks into one matrix; every other form goes to mlp_run. */
static bool single_image(const json_t *item)
{
    return json_is_array(item) && json_array_size(item) > 0 &&
           !json_is_array(json_array_get(item, 0));
}

/* Grows the batch scratch to hold `rows` images. Returns 0 or -ENOMEM. */
static int batch_reserve(struct mlp_state *s, size_t rows)
{
    if (rows <= s->bcap)
        return 0;
    const struct mlp_net *net = &s->m->net;
    size_t cap = s->bcap ? s->bcap : 256;
    while (cap < rows)
        cap *= 2;
    float *x = realloc(s->bx, cap * net->in * sizeof(float));
    if (x)
        s->bx = x;
    size_t *map = x ? realloc(s->bmap, cap * sizeof *map) : NULL;
    if (!map)
        return -ENOMEM;
    s->bmap = map;
    s->bcap = cap;
    return 0;
}

/*
 * run_batch (model.h, "Batches"): every item that is a single image becomes
 * a row of one matrix, and the network runs over it MLP_BATCH_BLOCK rows
 * at a time (a few large products instead of one per item); each row's
 * output goes to its item. An image that does not parse fails alone. Items
 * of the other forms (arrays of images, objects) are already batches of
 * their own: they go through mlp_run one by one.
 */
static int mlp_run_batch(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    struct mlp_state *s = state;
    const struct mlp_net *net = &s->m->net;
    size_t m = 0;
    if (s->m->per_item) {
        /* batch=0: what the worker does without run_batch (a baseline) */
        for (size_t i = 0; i < b->n; i++)
            mlp_run(state, b->items[i], &b->outputs[i], b->errors[i], MODEL_ERR_LEN);
        return 0;
    }
    for (size_t i = 0; i < b->n; i++)
        m += single_image(b->items[i]);
    if (m > 0 && batch_reserve(s, m) != 0) {
        model_err(err, errlen, "mlp: out of memory for a batch of %zu images", m);
        return -ENOMEM;
    }
    size_t rows = 0;
    for (size_t i = 0; i < b->n; i++) {
        const json_t *item = b->items[i];
        if (!single_image(item)) {
            mlp_run(state, item, &b->outputs[i], b->errors[i], MODEL_ERR_LEN);
            continue;
        }
        struct mlp_source one = { .one = item, .n = 1 };
        if (fill_row(&one, 0, net->in, s->bx + rows * net->in, b->errors[i], MODEL_ERR_LEN) == 0)
            s->bmap[rows++] = i;
    }
    for (size_t start = 0; start < rows; start += MLP_BATCH_BLOCK) {
        size_t n = rows - start < MLP_BATCH_BLOCK ? rows - start : MLP_BATCH_BLOCK;
        if (!s->bprobs) {
            s->bprobs = malloc((size_t)MLP_BATCH_BLOCK * net->out * sizeof(float));
            s->bwork = malloc(mlp_work_floats(net, MLP_BATCH_BLOCK) * sizeof(float));
            if (!s->bprobs || !s->bwork) {
                model_err(err, errlen, "mlp: out of memory for a batch's scratch space");
                return -ENOMEM;
            }
        }
        mlp_forward(net, s->bx + start * net->in, n, s->bprobs, s->bwork);
        for (size_t r = 0; r < n; r++) {
            size_t i = s->bmap[start + r];
            const float *p = s->bprobs + r * net->out;
            if (first_not_finite(p, 1, net->out) == 0)
                not_finite(true, 0, b->errors[i], MODEL_ERR_LEN);
            else if (!(b->outputs[i] = image_output(p, net->out)))
                model_err(b->errors[i], MODEL_ERR_LEN, "mlp: out of memory for the output");
        }
    }
    return 0;
}

const struct model_ops model_mlp = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = MODEL_FLAG_NOT_DEFAULT,
    .name = "mlp",
    .description = "A dense network from a .safetensors file (weights=PATH): an image (an array "
                   "of numbers), an array of images, {\"$object\": ID}, or {\"images\": ..., "
                   "\"output\": \"class\" | \"probabilities\" | \"object\"}. Single images "
                   "are batched (run_batch).",
    .load = mlp_load,
    .init = mlp_init,
    .run = mlp_run,
    .run_batch = mlp_run_batch,
    .fini = mlp_fini,
    .unload = mlp_unload,
    .real_digits = 9, /* probabilities are float32 */
};
