/*
 * fuzz_request_json: api_request_parse_json(), the POST /v1/jobs JSON body.
 *
 * Each input is parsed twice: with the service's default limits and with
 * tight ones (3 items, 48-byte items, depth 4, 1.5 s timeouts) so that the
 * 413 and depth paths are as reachable as the happy one. Contract checked:
 *   - 0: a non-empty model name without NUL, 1..max_items items, and the
 *     body is JSON jansson itself accepts (no parse succeeds on garbage);
 *   - otherwise -EINVAL with a 400 invalid-json or 422 invalid-job problem,
 *     -E2BIG with 413 too-large, or -ENOMEM with 413; never anything else;
 *   - a 400 for a body jansson accepts is the depth limit: it has a
 *     pointer and the limit;
 *   - the problem encodes to valid problem+json (fuzz_check_problem);
 *   - nothing leaks (LeakSanitizer) on either path.
 */
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "api/handlers/request.h"

static void run(const uint8_t *data, size_t size, const struct api_request_limits *lim)
{
    struct api_job_request req;
    struct api_problem prob;
    memset(&prob, 0, sizeof prob);
    int rc = api_request_parse_json((const char *)data, size, lim, &req, &prob);
    json_error_t jerr;
    json_t *ref = json_loadb((const char *)data, size,
                             JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (rc == 0) {
        FUZZ_ASSERT(ref != NULL, "accepted a body jansson refuses: %s", jerr.text);
        FUZZ_ASSERT(req.model && req.model[0], "empty model accepted");
        size_t n = job_items_count(req.items);
        FUZZ_ASSERT(n >= 1 && n <= lim->max_items, "%zu items", n);
        FUZZ_ASSERT(json_is_object(ref), "a non-object body was accepted");
        FUZZ_ASSERT(json_array_size(json_object_get(ref, "inputs")) == n,
                    "item count %zu differs from the body's", n);
        api_job_request_clear(&req);
        FUZZ_ASSERT(req.model == NULL && req.items == NULL, "clear left something");
    } else {
        FUZZ_ASSERT(req.model == NULL && req.items == NULL, "a failure left allocations");
        int status = api_problem_status(prob.kind);
        if (rc == -EINVAL)
            FUZZ_ASSERT(prob.kind == API_PROBLEM_INVALID_JSON ||
                            prob.kind == API_PROBLEM_INVALID_JOB,
                        "-EINVAL with a %d %s", status, api_problem_slug(prob.kind));
        else
            FUZZ_ASSERT((rc == -E2BIG || rc == -ENOMEM) && prob.kind == API_PROBLEM_TOO_LARGE,
                        "rc %d with a %d %s", rc, status, api_problem_slug(prob.kind));
        if (prob.kind == API_PROBLEM_INVALID_JSON && ref != NULL)
            FUZZ_ASSERT((prob.has & API_PROBLEM_HAS_POINTER) && (prob.has & API_PROBLEM_HAS_LIMIT),
                        "a 400 for JSON jansson accepts must be the depth limit: %s",
                        prob.detail);
        fuzz_check_problem(&prob, "/v1/jobs");
    }
    json_decref(ref);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct api_request_limits defaults = {
        .max_items = 10000000,
        .max_item_bytes = 256 * 1024,
        .max_item_timeout_ms = 0,
        .max_depth = 0,
    };
    static const struct api_request_limits tight = {
        .max_items = 3,
        .max_item_bytes = 48,
        .max_item_timeout_ms = 1500,
        .max_depth = 4,
    };
    run(data, size, &defaults);
    run(data, size, &tight);
    return 0;
}
