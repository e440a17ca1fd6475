/*
 * worker_batch.c: the run_batch call (worker_batch.h says what it is for).
 */
#include "workers/worker/worker_batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int worker_batch_add(struct worker_batch *b, json_t *item)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        json_t **items = realloc(b->items, nc * sizeof *items);
        if (items)
            b->items = items;
        json_t **outs = items ? realloc(b->outputs, nc * sizeof *outs) : NULL;
        if (outs)
            b->outputs = outs;
        char(*errs)[MODEL_ERR_LEN] = outs ? realloc(b->errors, nc * sizeof *errs) : NULL;
        if (!errs) {
            json_decref(item);
            return -ENOMEM;
        }
        b->errors = errs;
        b->cap = nc;
    }
    b->items[b->n] = item;
    b->outputs[b->n] = NULL;
    b->errors[b->n][0] = '\0';
    b->n++;
    return 0;
}

size_t worker_batch_call(const struct model_ops *ops, void *state, struct worker_batch *b)
{
    char err[MODEL_ERR_LEN] = "";
    for (size_t i = 0; i < b->n; i++) {
        b->outputs[i] = NULL;
        b->errors[i][0] = '\0';
    }
    const struct model_batch mb = { b->n, (const json_t *const *)b->items, b->outputs,
                                    b->errors };
    int rc = ops->run_batch(state, &mb, err, sizeof err);
    size_t failed = 0;
    for (size_t i = 0; i < b->n; i++) {
        /* A model that wrote past its buffer's end left no NUL: cut it. */
        b->errors[i][MODEL_ERR_LEN - 1] = '\0';
        if (rc != 0) {
            /* model.h: a failed call's outputs are never used */
            json_decref(b->outputs[i]);
            b->outputs[i] = NULL;
            if (err[0])
                snprintf(b->errors[i], MODEL_ERR_LEN, "%s", err);
            else
                snprintf(b->errors[i], MODEL_ERR_LEN, "model %s failed (%d)", ops->name, rc);
        } else if (b->outputs[i]) {
            b->errors[i][0] = '\0';
        } else if (!b->errors[i][0]) {
            snprintf(b->errors[i], MODEL_ERR_LEN, "model %s returned no output for this item",
                     ops->name);
        }
        failed += b->outputs[i] == NULL;
    }
    return failed;
}

void worker_batch_clear(struct worker_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        json_decref(b->items[i]);
        json_decref(b->outputs[i]);
    }
    b->n = 0;
}

void worker_batch_free(struct worker_batch *b)
{
    free(b->items);
    free(b->outputs);
    free(b->errors);
    memset(b, 0, sizeof *b);
}
