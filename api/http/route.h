/*
 * route: maps a request path and method to one of openapi.yaml's routes.
 *
 * The table is small and fixed, so matching is a few string comparisons on
 * path segments, no regexes and no allocation. A path matches a route by
 * its shape alone ("/v1/jobs/<one segment>"); whether that segment is a
 * well-formed job id is reported separately (api_match.id_valid), because a
 * malformed id on a known route answers 404 with the right method and 405
 * with a wrong one, and must never reach the engine.
 *
 * Process and threads: api process, any thread; the table is read-only.
 * Ownership: no allocation; strings returned are static.
 */
#ifndef BATCHD_API_ROUTE_H
#define BATCHD_API_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "service/jobs/engine.h"

enum api_route {
    API_ROUTE_NONE = 0,    /* no such path */
    API_ROUTE_JOBS,        /* /v1/jobs                 createJob, listJobs */
    API_ROUTE_JOB,         /* /v1/jobs/{id}            getJob, cancelJob */
    API_ROUTE_JOB_RESULTS, /* /v1/jobs/{id}/results    getJobResults */
    API_ROUTE_JOB_RESULT,  /* /v1/jobs/{id}/result     getJobResult */
    API_ROUTE_MODELS,      /* /v1/models               listModels */
    API_ROUTE_WORKERS,     /* /v1/workers              listWorkers */
    API_ROUTE_HEALTHZ,     /* /healthz                 getHealth */
    API_ROUTE_READYZ,      /* /readyz                  getReady */
    API_ROUTE_METRICS,     /* /metrics                 getMetrics */
    API_ROUTE_DASHBOARD,   /* /                        getDashboard */
    API_ROUTE_UI_ASSET,    /* /ui/{asset}              getUiAsset */
    API_ROUTE_OBJECTS,     /* /v1/objects              createObject, listObjects */
    API_ROUTE_OBJECT,      /* /v1/objects/{id}         getObject, deleteObject */
    API_ROUTE_COUNT
};

/* Methods as bits, for the allowed set of a route. */
enum api_method {
    API_METHOD_OTHER = 0,
    API_METHOD_GET = 1u << 0,
    API_METHOD_POST = 1u << 1,
    API_METHOD_DELETE = 1u << 2,
    API_METHOD_OPTIONS = 1u << 3, /* the /v1 routes: CORS preflight (cors.h) */
};

struct api_match {
    enum api_route route;
    bool id_valid;                       /* routes with {id}: a job id is [a-z2-7]{26},
                                            an object id objects_id_valid() */
    char id[ENGINE_JOB_ID_LEN + 1];      /* the id when id_valid, else "" (both kinds of
                                            id are 26 characters) */
    const char *asset;                   /* API_ROUTE_UI_ASSET: the {asset} segment,
                                            borrowed from the path; else NULL */
};

/*
 * Matches `path` (the request path without the query string). Returns 0
 * and fills *m when the path has the shape of a route, -ENOENT otherwise
 * (m->route is then API_ROUTE_NONE). Paths are exact: no trailing slash, no
 * empty segments, case-sensitive. "/ui/<one segment>" matches
 * API_ROUTE_UI_ASSET whatever the segment; whether such an asset exists is
 * the handler's question (404 problem).
 */
int api_route_match(const char *path, struct api_match *m);

/* Returns the method's bit, API_METHOD_OTHER for anything else (HEAD
 * included: no operation defines it). */
enum api_method api_method_parse(const char *method);

/* The API_METHOD_* bits the route implements (0 for API_ROUTE_NONE). */
unsigned api_route_methods(enum api_route route);

/* The Allow header value of the route, e.g. "GET, POST". Static. */
const char *api_route_allow(enum api_route route);

/* The openapi path template ("/v1/jobs/{id}"), the metrics label of the
 * route; "unmatched" for API_ROUTE_NONE so that arbitrary paths never
 * become label values. Static. */
const char *api_route_template(enum api_route route);

/* True when s[0..len) is a job id: exactly ENGINE_JOB_ID_LEN characters of
 * lowercase base32 [a-z2-7]. */
bool api_job_id_valid(const char *s, size_t len);

#endif
