#include "api/ui/ui.h"

#include <string.h>

#include "api/http/http.h"

/* The dashboard page among the embedded files. */
#define UI_INDEX "index.html"

const struct api_ui_asset *api_ui_asset_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < api_ui_assets_count; i++)
        if (strcmp(api_ui_assets[i].name, name) == 0)
            return &api_ui_assets[i];
    return NULL;
}

/* Adds the headers shared by the 200 and the 304 of an asset. Returns
 * MHD_YES, or MHD_NO when out of memory. */
static enum MHD_Result ui_add_headers(struct MHD_Response *resp, const struct api_ui_asset *a)
{
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, a->etag) != MHD_YES ||
        /* keep a copy, but ask every time: a new batchd may serve new files */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
        MHD_add_response_header(resp, "Content-Security-Policy", API_UI_CSP) != MHD_YES ||
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") != MHD_YES)
        return MHD_NO;
    return MHD_YES;
}

/* Answers 200 with the asset, or 304 when If-None-Match names its ETag. */
static enum MHD_Result ui_send(struct api_req *r, const struct api_ui_asset *a)
{
    bool fresh = api_etag_matches(api_req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), a->etag);
    struct MHD_Response *resp;
    if (fresh) {
        resp = api_response_take(NULL, 0, NULL);
    } else {
        /* static bytes: libmicrohttpd never writes to or frees them */
        resp = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
        if (resp &&
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type) !=
                MHD_YES) {
            MHD_destroy_response(resp);
            resp = NULL;
        }
    }
    if (resp && ui_add_headers(resp, a) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    if (!resp)
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "out of memory building the response");
    return api_send(r, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
}

enum MHD_Result api_ui_get_dashboard(struct api_req *r)
{
    const struct api_ui_asset *a = api_ui_asset_find(UI_INDEX);
    if (!a) /* the build embeds it; only a broken build gets here */
        return api_send_problemf(r, API_PROBLEM_INTERNAL, "the dashboard is not built in");
    return ui_send(r, a);
}

enum MHD_Result api_ui_get_asset(struct api_req *r)
{
    const struct api_ui_asset *a = api_ui_asset_find(r->match.asset);
    if (!a)
        return api_send_problemf(r, API_PROBLEM_NOT_FOUND, "no dashboard file %s", r->path);
    return ui_send(r, a);
}
