#include "api/http/route.h"

#include <errno.h>
#include <string.h>

#include "service/objects/objects.h"

_Static_assert(MODEL_OBJECT_ID_LEN == ENGINE_JOB_ID_LEN, "api_match.id holds both kinds of id");

struct route_info {
    const char *template;
    unsigned methods;
    const char *allow;
};

static const struct route_info routes[API_ROUTE_COUNT] = {
    [API_ROUTE_NONE] = { "unmatched", 0, "" },
    /* the /v1 routes answer OPTIONS too: browsers preflight cross-origin calls */
    [API_ROUTE_JOBS] = { "/v1/jobs", API_METHOD_GET | API_METHOD_POST | API_METHOD_OPTIONS,
                         "GET, POST, OPTIONS" },
    [API_ROUTE_JOB] = { "/v1/jobs/{id}", API_METHOD_GET | API_METHOD_DELETE | API_METHOD_OPTIONS,
                        "GET, DELETE, OPTIONS" },
    [API_ROUTE_JOB_RESULTS] = { "/v1/jobs/{id}/results", API_METHOD_GET | API_METHOD_OPTIONS,
                                "GET, OPTIONS" },
    [API_ROUTE_JOB_RESULT] = { "/v1/jobs/{id}/result", API_METHOD_GET | API_METHOD_OPTIONS,
                               "GET, OPTIONS" },
    [API_ROUTE_MODELS] = { "/v1/models", API_METHOD_GET | API_METHOD_OPTIONS, "GET, OPTIONS" },
    [API_ROUTE_WORKERS] = { "/v1/workers", API_METHOD_GET | API_METHOD_OPTIONS, "GET, OPTIONS" },
    [API_ROUTE_HEALTHZ] = { "/healthz", API_METHOD_GET, "GET" },
    [API_ROUTE_READYZ] = { "/readyz", API_METHOD_GET, "GET" },
    [API_ROUTE_METRICS] = { "/metrics", API_METHOD_GET, "GET" },
    [API_ROUTE_DASHBOARD] = { "/", API_METHOD_GET, "GET" },
    [API_ROUTE_UI_ASSET] = { "/ui/{asset}", API_METHOD_GET, "GET" },
    [API_ROUTE_OBJECTS] = { "/v1/objects", API_METHOD_GET | API_METHOD_POST | API_METHOD_OPTIONS,
                            "GET, POST, OPTIONS" },
    [API_ROUTE_OBJECT] = { "/v1/objects/{id}",
                           API_METHOD_GET | API_METHOD_DELETE | API_METHOD_OPTIONS,
                           "GET, DELETE, OPTIONS" },
};

/* Routes without a parameter, matched by the whole path. */
static const struct {
    const char *path;
    enum api_route route;
} fixed_routes[] = {
    { "/v1/jobs", API_ROUTE_JOBS },       { "/v1/models", API_ROUTE_MODELS },
    { "/v1/workers", API_ROUTE_WORKERS }, { "/healthz", API_ROUTE_HEALTHZ },
    { "/readyz", API_ROUTE_READYZ },      { "/metrics", API_ROUTE_METRICS },
    { "/", API_ROUTE_DASHBOARD },         { "/v1/objects", API_ROUTE_OBJECTS },
};

bool api_job_id_valid(const char *s, size_t len)
{
    if (len != ENGINE_JOB_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
            return false;
    }
    return true;
}

static void match_id(struct api_match *m, const char *seg, size_t len)
{
    m->id_valid = api_job_id_valid(seg, len);
    if (m->id_valid) {
        memcpy(m->id, seg, len);
        m->id[len] = '\0';
    }
}

int api_route_match(const char *path, struct api_match *m)
{
    memset(m, 0, sizeof *m);
    if (!path)
        return -ENOENT;
    for (size_t i = 0; i < sizeof fixed_routes / sizeof fixed_routes[0]; i++) {
        if (strcmp(path, fixed_routes[i].path) == 0) {
            m->route = fixed_routes[i].route;
            return 0;
        }
    }
    static const char ui_prefix[] = "/ui/";
    if (strncmp(path, ui_prefix, sizeof ui_prefix - 1) == 0) {
        const char *asset = path + sizeof ui_prefix - 1;
        if (asset[0] == '\0' || strchr(asset, '/'))
            return -ENOENT;
        m->route = API_ROUTE_UI_ASSET;
        m->asset = asset;
        return 0;
    }
    static const char obj_prefix[] = "/v1/objects/";
    if (strncmp(path, obj_prefix, sizeof obj_prefix - 1) == 0) {
        const char *seg = path + sizeof obj_prefix - 1;
        /* one segment: "/v1/objects/a/b" is no route at all */
        if (seg[0] == '\0' || strchr(seg, '/'))
            return -ENOENT;
        m->route = API_ROUTE_OBJECT;
        m->id_valid = objects_id_valid(seg);
        if (m->id_valid)
            memcpy(m->id, seg, MODEL_OBJECT_ID_LEN + 1);
        return 0;
    }
    static const char prefix[] = "/v1/jobs/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return -ENOENT;
    const char *seg = path + sizeof prefix - 1;
    const char *slash = strchr(seg, '/');
    size_t seg_len = slash ? (size_t)(slash - seg) : strlen(seg);
    if (seg_len == 0)
        return -ENOENT;
    if (!slash) {
        m->route = API_ROUTE_JOB;
    } else if (strcmp(slash, "/results") == 0) {
        m->route = API_ROUTE_JOB_RESULTS;
    } else if (strcmp(slash, "/result") == 0) {
        m->route = API_ROUTE_JOB_RESULT;
    } else {
        return -ENOENT;
    }
    match_id(m, seg, seg_len);
    return 0;
}

enum api_method api_method_parse(const char *method)
{
    if (!method)
        return API_METHOD_OTHER;
    /* methods are case-sensitive (RFC 9110 9.1): "get" is not GET */
    if (strcmp(method, "GET") == 0)
        return API_METHOD_GET;
    if (strcmp(method, "POST") == 0)
        return API_METHOD_POST;
    if (strcmp(method, "DELETE") == 0)
        return API_METHOD_DELETE;
    if (strcmp(method, "OPTIONS") == 0)
        return API_METHOD_OPTIONS;
    return API_METHOD_OTHER;
}

static const struct route_info *route_info(enum api_route route)
{
    if ((unsigned)route >= API_ROUTE_COUNT)
        route = API_ROUTE_NONE;
    return &routes[route];
}

unsigned api_route_methods(enum api_route route) { return route_info(route)->methods; }
const char *api_route_allow(enum api_route route) { return route_info(route)->allow; }
const char *api_route_template(enum api_route route) { return route_info(route)->template; }
