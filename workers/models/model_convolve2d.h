/*
 * model_convolve2d: the `convolve2d` built-in model, a 2-D convolution of a
 * large shared array (an uploaded object) by a small filter, and its kernel
 * (for bench/'s serial baseline and the unit tests).
 *
 * An item:
 *
 *   {"image": {"$object": "ID"}, "filter": [[f00, f01, ...], ...],
 *    "output": "json" | "object"}                       (output optional)
 *
 * image is a 2-D float64 object of H x W (H, W >= 1); filter a non-empty
 * rectangular array of fh x fw finite numbers, fh and fw at most
 * MODEL_CONVOLVE2D_MAX_FILTER. The result is the FULL 2-D convolution
 * (zero fill) subsampled every MODEL_CONVOLVE2D_STEP-th row and column,
 * which is what scipy.signal.convolve2d(image, filter)[::5, ::5] returns:
 * shape (ceil((H+fh-1)/5), ceil((W+fw-1)/5)).
 *
 *   "output": "json" (the default)  a 2-D array of numbers, at most
 *                                   MODEL_CONVOLVE2D_MAX_JSON_VALUES of them
 *   "output": "object"              a new float64 object of that shape
 *                                   (host->object_new), and the result
 *                                   {"$object": "ID", "shape": [r, c]}
 *
 * As with the other built-ins, a result value that is not finite (a NaN or
 * an infinity in the image reached a kept output, or a sum overflowed) is
 * an item error, also for "object" (whose object is then freed by batchd).
 * Any other key in the item, a missing field, a wrong type, dtype or
 * number of dimensions is an item error that names the field.
 *
 * Model life cycle: load() takes no parameter and keeps nothing; init()
 * allocates the per-worker state (the host table given to init, and room
 * for one filter), fini() frees it. run() needs a host (objects): without
 * one (a unit test, or a batchd without objects) every item fails saying so.
 *
 * Process and threads: run() in a worker; each worker has its own state, so
 * run() must not be called concurrently on one state. The kernel is a pure
 * function, safe anywhere.
 * Ownership: as model.h says (item borrowed, *output new). The kernel
 * writes into the caller's buffer and allocates nothing.
 */
#ifndef BATCHD_MODEL_CONVOLVE2D_H
#define BATCHD_MODEL_CONVOLVE2D_H

#include <stddef.h>

#include <batchd/model.h>

/* Every STEP-th output row and column is kept. */
#define MODEL_CONVOLVE2D_STEP 5
/* The largest filter side: a "small" filter, and the bound that keeps one
 * filter in the per-worker state (32 KiB). */
#define MODEL_CONVOLVE2D_MAX_FILTER 64
/* The largest result written as JSON (about 25 MB of text); larger results
 * need "output": "object". */
#define MODEL_CONVOLVE2D_MAX_JSON_VALUES (1u << 20)

/* The convolve2d model's table, registered in models_builtin.c. Static,
 * borrowed. */
extern const struct model_ops model_convolve2d;

/* The number of kept outputs along a side of n image values and f filter
 * values (n, f >= 1): ceil((n + f - 1) / STEP). */
size_t model_convolve2d_out_dim(size_t n, size_t f);

/*
 * The kernel. image is h x w (row-major), filter fh x fw (row-major), all
 * sides >= 1; out receives model_convolve2d_out_dim(h, fh) rows of
 * model_convolve2d_out_dim(w, fw) values (row-major, fully overwritten):
 *
 *   out[r][c] = sum over a, b of filter[a][b] * image[5r - a][5c - b]
 *
 * where the image index is in range (zero fill outside). Only the kept
 * outputs are computed (1/25 of the full convolution's work), each as a
 * dot product of a filter row with a contiguous run of an image row.
 * Never fails; non-finite values propagate as IEEE arithmetic says.
 */
void model_convolve2d_kernel(const double *image, size_t h, size_t w, const double *filter,
                             size_t fh, size_t fw, double *out);

#endif
