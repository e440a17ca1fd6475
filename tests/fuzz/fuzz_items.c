/*
 * fuzz_items: the compact item text and the result text, the path an item
 * takes after the request parser accepted it, without the engine thread:
 *
 *   body value --request.c: json_dumpb(compact, 17 digits)--> item text
 *   item text --job_items_append (engine.c)--> the job's arena
 *   item text --worker.c: json_loadb--> model run() --> output text, or an
 *   error message that engine.c copies into the result JSON as it is
 *
 * Input: one JSON value (parsed with the request parser's flags; inputs
 * that parser would refuse, including nesting past the default depth of
 * 64, are skipped). Contract checked:
 *   - the compact text parses again with the worker's flags and is equal
 *     to the value (every double survives), and is a fixed point (dumping
 *     what was parsed gives the same bytes);
 *   - job_items_append / job_items_append_json accept it;
 *   - each built-in model that needs no file (echo, square, sum_squares,
 *     exp_sinh, convolve2d without objects, prefix_count through acc_run;
 *     exp_sinh only for n <= 10000 to keep runs short) either
 *     returns an output whose compact text is valid JSON in valid UTF-8,
 *     or fails with a non-empty error message that is valid UTF-8 (the
 *     ring's output record says "UTF-8 text", and the engine escapes only
 *     quotes, backslashes and control bytes when it puts the message into
 *     a Result: anything else would make GET .../results invalid JSON);
 *   - worker_utf8_repair(), which every model's message passes through on
 *     its way into the ring, turns the raw input bytes into valid UTF-8 of
 *     the same length and leaves valid text alone.
 */
#include "service/jobs/engine.h"
#include "tests/fuzz/fuzz.h"
#include <batchd/model.h>
#include "workers/worker/worker.h"

#define ITEM_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))
#define PARSE_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)
#define WORKER_PARSE_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

static unsigned depth_of(const json_t *v)
{
    unsigned max = 0;
    size_t i;
    const char *k;
    json_t *c;
    if (json_is_array(v)) {
        json_array_foreach((json_t *)v, i, c) {
            unsigned d = depth_of(c);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, c) {
            unsigned d = depth_of(c);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

/* New text of v (compact, 17 digits); aborts on failure. *len set. */
static char *dump(const json_t *v, size_t *len)
{
    size_t n = json_dumpb(v, NULL, 0, ITEM_FLAGS);
    FUZZ_ASSERT(n > 0, "json_dumpb cannot size a parsed value");
    char *s = malloc(n + 1);
    if (!s)
        abort();
    FUZZ_ASSERT(json_dumpb(v, s, n, ITEM_FLAGS) == n, "json_dumpb changed its mind");
    s[n] = '\0';
    *len = n;
    return s;
}

static bool skip_model(const struct model_ops *m, const json_t *item)
{
    if (m->flags & MODEL_FLAG_NOT_DEFAULT)
        return true; /* chaos and the like: they crash or sleep on purpose */
    if (strcmp(m->name, "exp_sinh") == 0) {
        json_t *n = json_object_get(item, "n");
        if (json_is_integer(n) && json_integer_value(n) > 10000)
            return true;
    }
    return false;
}

static void run_models(const json_t *item)
{
    const struct model_ops *m;
    for (size_t i = 0; (m = model_builtin_at(i)) != NULL; i++) {
        if (skip_model(m, item))
            continue;
        char err[512] = "";
        void *shared = NULL, *state = NULL;
        /* no host: models that read objects (convolve2d) check the item
         * and then fail it for want of objects, with a message */
        if (m->load)
            FUZZ_ASSERT(m->load(NULL, NULL, &shared, err, sizeof err) == 0, "%s load: %s",
                        m->name, err);
        if (m->init)
            FUZZ_ASSERT(m->init(shared, NULL, &state, err, sizeof err) == 0, "%s init: %s",
                        m->name, err);
        json_t *out = NULL;
        void *acc = NULL;
        /* a stateful model (prefix_count) has acc_run instead of run */
        int rc = m->acc_run ? m->acc_run(state, &acc, item, &out, err, sizeof err)
                            : m->run(state, item, &out, err, sizeof err);
        if (m->acc_free)
            m->acc_free(state, acc);
        if (rc == 0) {
            FUZZ_ASSERT(out != NULL, "%s returned no output", m->name);
            size_t n;
            char *text = dump(out, &n);
            FUZZ_ASSERT(fuzz_utf8_valid(text, n), "%s output is not UTF-8", m->name);
            json_error_t jerr;
            json_t *back = json_loadb(text, n, WORKER_PARSE_FLAGS, &jerr);
            FUZZ_ASSERT(back != NULL, "%s output text is not JSON: %s", m->name, jerr.text);
            json_decref(back);
            free(text);
            json_decref(out);
        } else {
            size_t n = strnlen(err, sizeof err);
            FUZZ_ASSERT(n > 0 && n < sizeof err, "%s failed (%d) without a message", m->name, rc);
            FUZZ_ASSERT(fuzz_utf8_valid(err, n), "%s error message is not valid UTF-8: %s",
                        m->name, err);
        }
        if (m->fini)
            m->fini(state);
        if (m->unload)
            m->unload(shared);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* worker_utf8_repair on the raw bytes: valid UTF-8 afterwards, and valid
 * input untouched. */
static void check_repair(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    size_t n = strlen(s);
    bool valid = fuzz_utf8_valid(s, n);
    char *copy = strdup(s);
    if (!copy)
        abort();
    size_t replaced = worker_utf8_repair(s);
    FUZZ_ASSERT(strlen(s) == n, "the repair changed the length");
    FUZZ_ASSERT(fuzz_utf8_valid(s, n), "the repair left invalid UTF-8");
    FUZZ_ASSERT(valid == (replaced == 0), "%zu replaced in %s input", replaced,
                valid ? "valid" : "invalid");
    if (valid)
        FUZZ_ASSERT(strcmp(s, copy) == 0, "valid text was changed");
    free(copy);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_repair(data, size);
    json_error_t jerr;
    json_t *v = json_loadb((const char *)data, size, PARSE_FLAGS, &jerr);
    if (!v)
        return 0;
    if (depth_of(v) > 64) {
        json_decref(v);
        return 0;
    }
    size_t n;
    char *text = dump(v, &n);
    json_t *back = json_loadb(text, n, WORKER_PARSE_FLAGS, &jerr);
    FUZZ_ASSERT(back != NULL, "item text %s does not parse: %s", text, jerr.text);
    FUZZ_ASSERT(json_equal(v, back), "item text %s is not the value it came from", text);
    size_t n2;
    char *text2 = dump(back, &n2);
    FUZZ_ASSERT(n2 == n && memcmp(text, text2, n) == 0, "not a fixed point: %s then %s", text,
                text2);
    free(text2);

    struct job_items *items = job_items_new();
    FUZZ_ASSERT(items != NULL, "job_items_new");
    FUZZ_ASSERT(job_items_append(items, text, n) == 0, "job_items_append");
    FUZZ_ASSERT(job_items_append_json(items, v) == 0, "job_items_append_json");
    FUZZ_ASSERT(job_items_count(items) == 2, "count");
    job_items_free(items);

    run_models(back);
    json_decref(back);
    free(text);
    json_decref(v);
    return 0;
}
