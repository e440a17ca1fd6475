/*
 * models_builtin: the kernels of batchd's built-in models, for callers that
 * want the computation without the model table.
 *
 * The model table itself (model_builtin_at, model_builtin_find) is declared
 * in model.h; this header only exposes the pure numeric kernels, so that a
 * serial baseline (bench/) measures exactly the arithmetic the workers run,
 * and unit tests can check it against an independent computation.
 *
 * Process and threads: pure functions, no state; safe anywhere.
 * Ownership: nothing is allocated.
 */
#ifndef BATCHD_MODELS_BUILTIN_H
#define BATCHD_MODELS_BUILTIN_H

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
