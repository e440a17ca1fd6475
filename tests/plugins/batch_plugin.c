/*
 * batch_plugin.c: a test plugin with run_batch (include/batchd/model.h,
 * "Batches"), loaded by tests/integration/test_run_batch.c. Built like a
 * user's plugin (model.h and jansson only).
 *
 * Model "batchy". An item is an integer x:
 *   x >= 0         output {"x": x, "twice": 2x, "batch": n}, n the number
 *                  of items of the call that ran it (1 for run())
 *   x == -1        that item's error "negative item -1"
 *   x == -666      the worker crashes (SIGSEGV) whenever it runs it, alone
 *                  or in a batch: a poison item
 *   x == -777      sleeps 30 s (an item past any short deadline)
 * Anything else is that item's error.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <batchd/model.h>

static int one(const json_t *item, size_t n, json_t **out, char *err, size_t errlen)
{
    if (!json_is_integer(item)) {
        snprintf(err, errlen, "expected an integer");
        return -22;
    }
    json_int_t x = json_integer_value(item);
    if (x == -666) {
        /* a genuine death by SIGSEGV, also under a sanitizer (which would
         * catch it and exit 1): the default action first, as the chaos
         * model does (a test tool may break model.h's signal rule) */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &sa, NULL);
        raise(SIGSEGV);
        _exit(1);
    }
    if (x == -777) {
        struct timespec ts = { 30, 0 };
        nanosleep(&ts, NULL);
    }
    if (x < 0) {
        snprintf(err, errlen, "negative item %lld", (long long)x);
        return -22;
    }
    *out = json_pack("{s:I,s:I,s:I}", "x", x, "twice", 2 * x, "batch", (json_int_t)n);
    return *out ? 0 : -12;
}

static int batchy_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    (void)state;
    return one(item, 1, output, err, errlen);
}

static int batchy_run_batch(void *state, const struct model_batch *b, char *err, size_t errlen)
{
    (void)state, (void)err, (void)errlen;
    /* the poison and the sleeper act before any output exists, as a model
     * whose vectorized call dies would */
    for (size_t i = 0; i < b->n; i++) {
        json_int_t x = json_integer_value(b->items[i]);
        if (x == -666 || x == -777)
            one(b->items[i], b->n, &b->outputs[i], b->errors[i], MODEL_ERR_LEN);
    }
    for (size_t i = 0; i < b->n; i++)
        one(b->items[i], b->n, &b->outputs[i], b->errors[i], MODEL_ERR_LEN);
    return 0;
}

const struct model_ops batchd_model = {
    .abi_version = MODEL_ABI_VERSION,
    .name = "batchy",
    .description = "A test model with run_batch: integers doubled, -1 an error, -666 a crash",
    .run = batchy_run,
    .run_batch = batchy_run_batch,
};
