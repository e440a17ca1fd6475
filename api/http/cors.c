#include "api/http/cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/http/http.h"

bool api_cors_origin_allowed(const struct config *cfg, const char *origin)
{
    if (!origin || !origin[0])
        return false;
    for (size_t i = 0; i < cfg->n_cors_origins; i++) {
        const char *o = cfg->cors_origins[i];
        if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0)
            return true;
    }
    return false;
}

enum MHD_Result api_cors_add_headers(const struct api_req *r, struct MHD_Response *resp)
{
    if (r->cfg->n_cors_origins == 0)
        return MHD_YES;
    if (MHD_add_response_header(resp, "Vary", "Origin") != MHD_YES)
        return MHD_NO;
    const char *origin = api_req_header(r, "Origin");
    if (!api_cors_origin_allowed(r->cfg, origin))
        return MHD_YES;
    /* The origin itself, not "*": the answer is the same for a listed origin
     * either way, and one rule covers both kinds of list. */
    if (MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin) != MHD_YES ||
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                API_CORS_EXPOSE_HEADERS) != MHD_YES)
        return MHD_NO;
    return MHD_YES;
}

/* operationId preflightJobs, preflightJob, preflightJobResults,
 * preflightModels, preflightWorkers */
enum MHD_Result api_cors_preflight(struct api_req *r)
{
    struct MHD_Response *resp = api_response_take(NULL, 0, NULL);
    if (!resp)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    const char *allow = api_route_allow(r->match.route);
    enum MHD_Result ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (ok == MHD_YES && api_cors_origin_allowed(r->cfg, api_req_header(r, "Origin"))) {
        char age[16];
        snprintf(age, sizeof age, "%d", API_CORS_MAX_AGE_S);
        if (MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow) != MHD_YES ||
            MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                    API_CORS_ALLOW_HEADERS) != MHD_YES ||
            MHD_add_response_header(resp, "Access-Control-Max-Age", age) != MHD_YES)
            ok = MHD_NO;
    }
    if (ok != MHD_YES) {
        MHD_destroy_response(resp);
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    }
    return api_send(r, MHD_HTTP_NO_CONTENT, resp);
}
