/*
 * worker_batch: the call of a model's run_batch hook (include/batchd/
 * model.h, "Batches"), and the buffers it needs, reused across tasks.
 *
 * worker.c gathers the parsed items of a task into a struct worker_batch,
 * calls worker_batch_call(), then commits each item's output or error to
 * the ring in order. This module is where batchd holds a model to the
 * hook's contract (as worker_run_item does for run()): after the call,
 * every item has exactly one of an output or a non-empty error message,
 * whatever the model did.
 *
 * Process: a worker. Not thread-safe (one batch per worker at a time).
 * Ownership: the batch owns its items (new references, released by
 * worker_batch_clear) and the outputs the call left (released by
 * worker_batch_clear too, or taken by the caller, who then sets the slot
 * to NULL).
 */
#ifndef BATCHD_WORKER_BATCH_H
#define BATCHD_WORKER_BATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <batchd/model.h>

struct worker_batch {
    size_t n, cap;
    json_t **items;                /* [n], owned */
    json_t **outputs;              /* [n], owned until taken */
    char (*errors)[MODEL_ERR_LEN]; /* [n] */
};

/* Appends an item (takes the reference, also on failure). Returns 0 or
 * -ENOMEM (the item is released). */
int worker_batch_add(struct worker_batch *b, json_t *item);

/*
 * Calls ops->run_batch over b's items (b->n >= 1). Afterwards, for each i:
 * outputs[i] is a new reference (the item succeeded) and errors[i] is
 * empty, or outputs[i] is NULL and errors[i] holds the item's message: the
 * model's, or when the whole call failed (a negative return) the call's
 * `err` for every item, or "model NAME returned no output for this item"
 * when the model left both empty. Returns how many items failed.
 */
size_t worker_batch_call(const struct model_ops *ops, void *state, struct worker_batch *b);

/* Releases the items and any outputs left, and empties b (keeps the
 * buffers for the next batch). */
void worker_batch_clear(struct worker_batch *b);

/* Frees the buffers (after worker_batch_clear). */
void worker_batch_free(struct worker_batch *b);

#endif
