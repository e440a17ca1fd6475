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
};

static int mlp_load(const struct model_params *params, const struct model_host *host,
                    void **shared, char *err, size_t errlen)
{
    (void)host;
    *shared = NULL;
    const char *path = NULL;
    long delay_ms = 0;
    for (size_t i = 0; params && i < params->n; i++) {
        const char *k = params->keys[i], *v = params->values[i];
        if (strcmp(k, "weights") == 0) {
            if (v[0] == '\0') {
                model_err(err, errlen, "model mlp: weights= needs a path");
                return -EINVAL;
            }
            path = v;
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
                    "model mlp: unknown parameter '%.64s' (takes weights=PATH, load_delay_ms=N)",
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

static int mlp_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    struct mlp_state *s = state;
    const struct mlp_net *net = &s->m->net;
    struct mlp_source src = {0};
    struct model_object obj;
    if (json_is_array(item) && json_array_size(item) > 0) {
        if (json_is_array(json_array_get(item, 0))) {
            src.rows = item;
            src.n = json_array_size(item);
        } else {
            src.one = item;
            src.n = 1;
        }
    } else if (json_is_object(item)) {
        int rc = object_source(s, item, &obj, &src, err, errlen);
        if (rc)
            return rc;
    } else {
        model_err(err, errlen, "mlp: expected an array of %u numbers, an array of such arrays, or "
                             "{\"$object\": \"ID\"}, got %s",
                net->in, json_is_array(item) ? "an empty array" : model_json_kind(item));
        return -EINVAL;
    }
    if (src.n > MLP_MAX_OUTPUTS / net->out) {
        model_err(err, errlen, "mlp: %zu images x %u classes is over the %u probabilities one item "
                             "may return; split the item",
                src.n, net->out, MLP_MAX_OUTPUTS);
        return -E2BIG;
    }
    json_t *results = src.one ? NULL : json_array();
    if (!src.one && !results)
        goto oom;
    for (size_t start = 0; start < src.n; start += MLP_BLOCK) {
        size_t rows = src.n - start < MLP_BLOCK ? src.n - start : MLP_BLOCK;
        const float *x = s->x;
        if (src.obj && src.obj->dtype == MODEL_DTYPE_F32 &&
            (uintptr_t)src.obj->data % sizeof(float) == 0) {
            /* float32 objects are read in place, like the weights */
            x = (const float *)src.obj->data + start * net->in;
        } else {
            for (size_t r = 0; r < rows; r++) {
                int rc = fill_row(&src, start + r, net->in, s->x + r * net->in, err, errlen);
                if (rc) {
                    json_decref(results);
                    return rc;
                }
            }
        }
        mlp_forward(net, x, rows, s->probs, s->work);
        for (size_t r = 0; r < rows; r++) {
            const float *p = s->probs + r * net->out;
            for (uint32_t c = 0; c < net->out; c++)
                if (!isfinite(p[c])) {
                    char where[48] = "";
                    if (!src.one)
                        snprintf(where, sizeof where, "image %zu: ", start + r);
                    model_err(err, errlen, "mlp: %sthe network's output is not finite (its "
                                         "activations overflow float32 on this input)",
                            where);
                    json_decref(results);
                    return -ERANGE;
                }
            json_t *o = image_output(p, net->out);
            if (!o)
                goto oom;
            if (src.one) {
                *output = o;
                return 0;
            }
            if (json_array_append_new(results, o) != 0)
                goto oom;
        }
    }
    *output = results;
    return 0;
oom:
    json_decref(results);
    model_err(err, errlen, "mlp: out of memory for the output");
    return -ENOMEM;
}

const struct model_ops model_mlp = {
    .abi_version = MODEL_ABI_VERSION,
    .flags = MODEL_FLAG_NOT_DEFAULT,
    .name = "mlp",
    .description = "A dense network from a .safetensors file (weights=PATH): an image (an array "
                   "of numbers), an array of images or {\"$object\": ID} -> {\"class\", "
                   "\"probabilities\"} per image.",
    .load = mlp_load,
    .init = mlp_init,
    .run = mlp_run,
    .fini = mlp_fini,
    .unload = mlp_unload,
    .real_digits = 9, /* probabilities are float32 */
};
