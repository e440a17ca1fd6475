/*
 * models_builtin: the kernels of batchd's built-in models, for callers that
 * want the computation without the model table.
 *
 * The table of built-in models (model_builtin_at, model_builtin_find), and
 * the pure numeric kernels, so that a serial baseline (bench/) measures
 * exactly the arithmetic the workers run, and unit tests can check it
 * against an independent computation. batchd-internal: plugins never see
 * this header (include/batchd/model.h is theirs).
 *
 * Process and threads: pure functions, no state; safe anywhere.
 * Ownership: nothing is allocated.
 */
#ifndef BATCHD_MODELS_BUILTIN_H
#define BATCHD_MODELS_BUILTIN_H

#include <stddef.h>

struct model_ops;

/* Returns the n-th built-in model, or NULL past the end. Borrowed, static. */
const struct model_ops *model_builtin_at(size_t i);

/* Returns the built-in model called `name`, or NULL. Borrowed, static. */
const struct model_ops *model_builtin_find(const char *name);

/* The exp_sinh model's range for n. */
#define MODEL_EXP_SINH_MAX_N 100000000L

/*
 * Returns sum_{i=1..n} exp(i/n) * sinh(i/n), added up left to right in
 * double precision (the plain loop the peers run, so the comparison is of
 * like with like). n must be >= 1; for n <= 0 the sum is empty and 0.0 is
 * returned. Never fails.
 */
double model_exp_sinh_kernel(long n);

#endif
