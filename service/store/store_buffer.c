/*
 * store_buffer.c: the flush buffer (store_buffer.h).
 */
#include "service/store/store_buffer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "service/core/log.h"
#include "service/store/store_backend.h"

void store_buffer_init(struct store_buffer *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
}

void store_buffer_destroy(struct store_buffer *b)
{
    for (size_t i = 0; i < b->n_blocks; i++)
        free(b->blocks[i].data);
    free(b->blocks);
    free(b->updates);
    pthread_mutex_destroy(&b->mu);
}

/* Buffers a row update (mu held): a newer update of a job replaces the
 * one waiting. */
static int store_buffer_update_locked(struct store_buffer *b, const struct store_job *job)
{
    for (size_t i = 0; i < b->n_updates; i++) {
        if (b->updates[i].seq == job->seq) {
            b->updates[i] = *job;
            return 0;
        }
    }
    if (b->n_updates == b->cap_updates) {
        size_t nc = b->cap_updates ? b->cap_updates * 2 : 16;
        struct store_job *p = realloc(b->updates, nc * sizeof *p);
        if (!p)
            return -ENOMEM;
        b->updates = p;
        b->cap_updates = nc;
    }
    b->updates[b->n_updates++] = *job;
    return 0;
}

int store_buffer_update(struct store_buffer *b, const struct store_job *job)
{
    pthread_mutex_lock(&b->mu);
    int rc = store_buffer_update_locked(b, job);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int store_buffer_put(struct store_buffer *b, uint64_t seq, uint64_t first, uint32_t n,
                     const char *texts, const uint32_t *lens, const struct store_job *row)
{
    size_t len;
    uint8_t *data = store_encode_block(n, texts, lens, &len);
    if (!data)
        return -ENOMEM;
    pthread_mutex_lock(&b->mu);
    if (b->n_blocks == b->cap_blocks) {
        size_t nc = b->cap_blocks ? b->cap_blocks * 2 : 64;
        struct store_pending_block *p = realloc(b->blocks, nc * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&b->mu);
            free(data);
            return -ENOMEM;
        }
        b->blocks = p;
        b->cap_blocks = nc;
    }
    /* The block and the counts that include it go into the same flush: a
     * flush between the two would make the block durable without them. */
    if (row && store_buffer_update_locked(b, row) != 0) {
        pthread_mutex_unlock(&b->mu);
        free(data);
        return -ENOMEM;
    }
    b->blocks[b->n_blocks++] = (struct store_pending_block){ seq, first, n, len, data };
    b->pending_bytes += len;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

size_t store_buffer_bytes(struct store_buffer *b)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->pending_bytes;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void store_buffer_take(struct store_buffer *b, struct store_batch *batch)
{
    pthread_mutex_lock(&b->mu);
    batch->blocks = b->blocks;
    batch->n_blocks = b->n_blocks;
    batch->bytes = b->pending_bytes;
    batch->updates = b->updates;
    batch->n_updates = b->n_updates;
    b->blocks = NULL;
    b->n_blocks = b->cap_blocks = 0;
    b->pending_bytes = 0;
    b->updates = NULL;
    b->n_updates = b->cap_updates = 0;
    pthread_mutex_unlock(&b->mu);
}

void store_buffer_requeue(struct store_buffer *b, struct store_batch *batch)
{
    pthread_mutex_lock(&b->mu);
    size_t n_blocks = batch->n_blocks, n_updates = batch->n_updates;
    size_t cap_b = n_blocks + b->n_blocks + 1, cap_u = n_updates + b->n_updates + 1;
    struct store_pending_block *nb = malloc(cap_b * sizeof *nb);
    struct store_job *nu = malloc(cap_u * sizeof *nu);
    if (!nb || !nu) {
        /* Keeping them is impossible: they are lost from the buffer, and the
         * jobs' results are written again by recovery after a restart. */
        log_error("store: out of memory keeping unwritten results");
        for (size_t i = 0; i < n_blocks; i++)
            free(batch->blocks[i].data);
        free(nb);
        free(nu);
    } else {
        /* (memcpy from NULL is undefined even for 0 bytes: the buffers
         * are NULL when empty) */
        if (n_blocks)
            memcpy(nb, batch->blocks, n_blocks * sizeof *nb);
        if (b->n_blocks)
            memcpy(nb + n_blocks, b->blocks, b->n_blocks * sizeof *nb);
        /* An update is a whole row: one buffered since the failed flush
         * supersedes the failed one of the same job, which is dropped (so
         * that the buffer keeps at most one update per job, the rule
         * store_buffer_update's in-place replacement relies on). */
        size_t nn = 0;
        for (size_t i = 0; i < n_updates; i++) {
            bool newer = false;
            for (size_t k = 0; k < b->n_updates && !newer; k++)
                newer = b->updates[k].seq == batch->updates[i].seq;
            if (!newer)
                nu[nn++] = batch->updates[i];
        }
        if (b->n_updates)
            memcpy(nu + nn, b->updates, b->n_updates * sizeof *nu);
        nn += b->n_updates;
        free(b->blocks);
        free(b->updates);
        b->blocks = nb;
        b->n_blocks += n_blocks;
        b->cap_blocks = cap_b;
        b->updates = nu;
        b->n_updates = nn;
        b->cap_updates = cap_u;
        b->pending_bytes += batch->bytes;
    }
    pthread_mutex_unlock(&b->mu);
    free(batch->blocks);
    free(batch->updates);
    memset(batch, 0, sizeof *batch);
}

void store_batch_free(struct store_batch *batch)
{
    for (size_t i = 0; i < batch->n_blocks; i++)
        free(batch->blocks[i].data);
    free(batch->blocks);
    free(batch->updates);
    memset(batch, 0, sizeof *batch);
}
