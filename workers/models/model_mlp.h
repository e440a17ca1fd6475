/*
 * model_mlp: the `mlp` built-in model, a dense neural network (a multi-layer
 * perceptron) loaded once from a .safetensors file and shared by every
 * worker; it classifies images (28x28 = 784 inputs for MNIST-like data).
 *
 *   --model mlp:weights=PATH[,load_delay_ms=N][,batch=0|1][,workers=K]
 *
 * batch=0 makes run_batch run its items one by one through run(), as a
 * model without run_batch is run (a baseline for benchmarks); default 1.
 *
 * The file (workers/safetensors.h; build/mkmlp writes one) holds, for
 * i = 0..L-1, layers.{i}.weight of shape [out, in] (PyTorch's Linear
 * layout) and layers.{i}.bias of shape [out], and nothing else. The
 * shapes must chain: layer i's out is layer i+1's in. The network's input
 * size is layer 0's in, its output size (the classes) layer L-1's out.
 * The forward pass is y = W x + b per layer, ReLU between layers, softmax
 * after the last, in float32 with BLAS (cblas_sgemm); several images go
 * through each layer as one matrix product.
 *
 * load_delay_ms=N (0..600000) sleeps N ms in load(): it simulates a model
 * whose loading is expensive (the benchmark uses ~1000 ms, as Ray's
 * benchmark does), to show that batchd pays it once per service, not per
 * task or per worker. It changes nothing else.
 *
 * Items:
 *   [x0, ..., x{in-1}]              one image: {"class": k, "probabilities": [...]}
 *   [[...], [...], ...]             several images: an array of such objects
 *   {"$object": "ID"}               an uploaded object of shape [n, in] or
 *                                   [n, h, w] with h*w == in, float32, or
 *                                   uint8 scaled by 1/255: an array of n
 *   {"images": IMAGES, "output": FORM}   IMAGES is such an object reference
 *                                   or an array of images; FORM (optional):
 *       "probabilities" (default)   an array of {"class", "probabilities"}
 *       "class"                     an array of n class indices (ints)
 *       "object"                    {"$object": ID, "shape": [n, out]}: a
 *                                   new float32 object of the probabilities
 *                                   (host->object_new), no JSON per image
 *
 * run_batch: the items of a task that are single images are stacked into
 * one matrix and run MLP_BATCH_BLOCK rows per product (mlp_forward), each
 * row's output going to its item; the other forms go through run() one by
 * one. The outputs are run()'s up to float32 rounding: OpenBLAS's sgemm
 * takes another path for one row than for many, so a probability may
 * differ from run()'s by a few ulps (measured ~1e-6 relative; the unit test
 * holds it to 1e-5, and the class to run()'s unless two probabilities are
 * that close). batch=0 gives run()'s outputs exactly.
 * Numbers may be integers or reals and must fit a float32. An item yields
 * at most MLP_MAX_OUTPUTS JSON values (images x classes, or images for
 * "class"); a bigger one is refused (split it, or ask for "object"), so
 * the JSON an item can make is bounded. Every
 * refusal is an item error naming the image, element or object and what
 * was expected. Outputs that are not finite (weights that overflow float32
 * on this input) are an item error too, never a null.
 *
 * Memory (the point of the model): load() runs in the supervisor before
 * fork and maps the file read-only and shared (safetensors_open), so the
 * workers read the same physical pages whatever their number. F32 tensors
 * are used in place in that mapping, never copied. F16 and BF16 tensors
 * (and an F32 tensor the file leaves misaligned) are converted to float32
 * ONCE, in load(), into one anonymous mapping that is made read-only
 * before any fork: no process ever writes it again, so its pages stay
 * shared copy-on-write by every worker, like the file's. Why not convert
 * per worker: that costs one float32 copy per worker (N x 2x the file),
 * and time in every (re)spawned worker; why not compute in half precision:
 * BLAS has no half-precision product. The cost of the choice: for an F16
 * or BF16 file the service holds the file's pages (page cache, shared) and
 * one float32 copy (2x the file, shared): 3x the file in all, for any
 * number of workers. Per worker, init() allocates only scratch space for
 * MLP_BLOCK images (a few MB at most for common widths).
 *
 * BLAS is Debian's serial OpenBLAS (the Makefile links it by its own
 * directory): load() runs in the supervisor, which must never have a
 * second thread, and a threaded OpenBLAS starts its pool when the library
 * is loaded. load() refuses to run if the linked OpenBLAS is a threaded
 * build (openblas_get_parallel() != 0).
 *
 * Process: load()/unload() in the supervisor; init()/run()/fini() in a
 * worker. The host table (object_ref) is kept from init(); it may be NULL
 * (a batchd without an object store), and then {"$object"} items are
 * refused. Threads: struct mlp_model is read-only after mlp_open and may
 * be read by any number of threads; a worker's state is not thread-safe.
 * Ownership: as model.h says (item borrowed, *output new).
 */
#ifndef BATCHD_MODEL_MLP_H
#define BATCHD_MODEL_MLP_H

#include <stddef.h>
#include <stdint.h>

#include <batchd/model.h>

#define MLP_MAX_LAYERS 64
#define MLP_MAX_WIDTH (1u << 20)        /* in or out of one layer */
#define MLP_BLOCK 64                    /* images per matrix product in run() */
#define MLP_BATCH_BLOCK 1024            /* single-image items per product in run_batch() */
#define MLP_MAX_OUTPUTS (4u << 20)      /* probabilities one item may return */
#define MLP_MAX_LOAD_DELAY_MS 600000L

struct mlp_layer {
    uint32_t in, out;
    const float *weight; /* [out][in], row-major; borrowed from the model */
    const float *bias;   /* [out] */
};

struct mlp_net {
    uint32_t n_layers;
    uint32_t in, out;     /* the network's input size and classes */
    uint32_t max_width;   /* the widest layer output */
    struct mlp_layer layers[MLP_MAX_LAYERS];
};

/* A loaded network: the mapped file, the float32 copies, the layer table. */
struct mlp_model;

/* The mlp model's table, registered in models_builtin.c. Static, borrowed. */
extern const struct model_ops model_mlp;

/*
 * Loads the network in `path` (see above for what the file must hold).
 * Returns 0 and a new model in *out (free with mlp_close), or a negative
 * errno with a message in err naming the file, the tensor and the
 * problem: -EINVAL (not a valid file, or not an MLP), -ENOENT etc. from
 * opening, -ENOMEM, -ENOTSUP (a threaded OpenBLAS is linked). Nothing is
 * left allocated or mapped on failure. Does not start threads.
 */
int mlp_open(const char *path, struct mlp_model **out, char *err, size_t errlen);
void mlp_close(struct mlp_model *m);

/* The model's layer table. Borrowed from m. */
const struct mlp_net *mlp_model_net(const struct mlp_model *m);

/* Floats of scratch space mlp_forward needs for n images. */
size_t mlp_work_floats(const struct mlp_net *net, size_t n);

/*
 * The forward pass: x is n images of net->in floats (row-major, n >= 1),
 * probs receives n rows of net->out probabilities (softmax), work holds at
 * least mlp_work_floats(net, n) floats. x, probs and work must not
 * overlap. Never fails; an input or weights that overflow float32 give
 * non-finite probabilities, which the caller checks. This is exactly what
 * the workers run, so the benchmark's serial C baseline calls it.
 */
void mlp_forward(const struct mlp_net *net, const float *x, size_t n, float *probs,
                 float *work);

/* The index of the largest of v[0..n) (the first one on ties). */
uint32_t mlp_argmax(const float *v, uint32_t n);

#endif
