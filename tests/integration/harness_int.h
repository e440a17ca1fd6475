/*
 * harness_int.h: what the pieces of the integration harness share and the
 * tests do not see (they include harness.h alone). The harness is one
 * module in four files, along its sections:
 *   harness.c       the runner (test_begin/end, the summary), checks, misc
 *   harness_proc.c  processes, spawning, the service under test
 *   harness_http.c  requests, one at a time and concurrent
 *   harness_json.c  JSON helpers and the job helpers built on them
 * Process: the test program, one thread. Ownership as in harness.h.
 */
#ifndef BATCHD_HARNESS_INT_H
#define BATCHD_HARNESS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/integration/harness.h"

#define H_DEFAULT_TIMEOUT_S 30L
#define H_MAX_BODY ((size_t)512 << 20)
#define H_MAX_PIDS 4096

/* Failed checks over the whole program (harness.c; the service's checks
 * add to it). */
extern unsigned failures_total;

/* $BATCHD_BIN, read by h_init (harness.c). */
extern const char *batchd_bin;

/* Removes a directory tree (nftw, depth first); errors are ignored. */
void remove_tree(const char *dir);

/* Reads at most cap bytes of a file into a new NUL-terminated buffer (the
 * last cap bytes when keep_tail), its length in *lenp if not NULL.
 * Returns NULL when the file cannot be read. The caller frees. */
char *read_file(const char *path, size_t cap, bool keep_tail, size_t *lenp);

#endif
