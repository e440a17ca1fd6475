/*
 * store_buffer: the results and job-row updates waiting for the next
 * store_flush(), shared by every backend (store_backend.h).
 *
 * Producers (the engine's collector) append under a short mutex that is
 * never held across a commit: a flush takes the whole buffer (a batch),
 * writes it in one transaction, and on failure puts it back in front of
 * what arrived meanwhile, so that nothing accepted is ever dropped by a
 * failed write (a full disk, a lost PostgreSQL connection).
 *
 * The buffer keeps at most one update per job: a newer row replaces the
 * waiting one (a row is a whole row, not a delta).
 *
 * Process: api. Threads: every function is safe from any thread.
 * Ownership: a batch taken by store_buffer_take belongs to the caller
 * until store_buffer_requeue (which takes it back) or store_batch_free.
 */
#ifndef BATCHD_STORE_BUFFER_H
#define BATCHD_STORE_BUFFER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "service/store/store.h"

struct store_pending_block {
    uint64_t seq, first;
    uint32_t n;
    size_t len;
    uint8_t *data; /* encoded block (store_backend.h) */
};

/* What one flush writes. */
struct store_batch {
    struct store_pending_block *blocks;
    size_t n_blocks, bytes;
    struct store_job *updates;
    size_t n_updates;
};

struct store_buffer {
    pthread_mutex_t mu;
    struct store_pending_block *blocks;
    size_t n_blocks, cap_blocks, pending_bytes;
    struct store_job *updates;
    size_t n_updates, cap_updates;
};

void store_buffer_init(struct store_buffer *b);
/* Frees whatever is still buffered (unwritten: the caller knows). */
void store_buffer_destroy(struct store_buffer *b);

/* store.h's store_job_update and store_put_results: 0 or -ENOMEM, the
 * buffer unchanged on failure. */
int store_buffer_update(struct store_buffer *b, const struct store_job *job);
int store_buffer_put(struct store_buffer *b, uint64_t seq, uint64_t first, uint32_t n,
                     const char *texts, const uint32_t *lens, const struct store_job *row);

/* Bytes of results waiting. */
size_t store_buffer_bytes(struct store_buffer *b);

/* Takes everything buffered into *batch (empty afterwards). */
void store_buffer_take(struct store_buffer *b, struct store_batch *batch);

/* Puts a batch whose write failed back in front of what came since
 * (takes it: *batch is emptied). An update buffered since supersedes the
 * batch's update of the same job. */
void store_buffer_requeue(struct store_buffer *b, struct store_batch *batch);

/* Frees a batch (written, or given up). */
void store_batch_free(struct store_batch *batch);

#endif
