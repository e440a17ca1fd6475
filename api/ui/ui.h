/*
 * ui: the dashboard's files (api/ui/), embedded in the binary, and the two
 * operations that serve them: getDashboard (GET /, index.html) and
 * getUiAsset (GET /ui/{asset}).
 *
 * The files are turned into C arrays at build time by scripts/embed.c
 * (build/gen/ui_assets.c defines api_ui_assets[]), so batchd serves its
 * dashboard with no file on disk, no CDN and no network: what was tested is
 * what runs. Each asset carries its Content-Type and an ETag computed from
 * its bytes (FNV-1a 64), so responses are:
 *
 *   200  the bytes, Content-Type, ETag, Cache-Control: no-cache (the browser
 *        may keep a copy but must revalidate it), a restrictive
 *        Content-Security-Policy (default-src 'self': no inline script or
 *        style, no other origin), X-Content-Type-Options: nosniff and
 *        Referrer-Policy: no-referrer;
 *   304  when If-None-Match names the ETag (same headers, no body);
 *   404  not-found problem for a name that is not embedded.
 *
 * Process and threads: api process, any libmicrohttpd thread; the table is
 * read-only static data.
 * Ownership: nothing is allocated here except the response; the asset
 * bytes are static and handed to libmicrohttpd as persistent buffers.
 */
#ifndef BATCHD_API_UI_H
#define BATCHD_API_UI_H

#include <stddef.h>

#include <microhttpd.h>

struct api_req;

struct api_ui_asset {
    const char *name;          /* the file name, e.g. "app.js" */
    const char *content_type;  /* e.g. "application/javascript; charset=utf-8" */
    const unsigned char *data; /* static */
    size_t len;
    const char *etag;          /* a strong, quoted entity tag: "\"<16 hex>\"" */
};

/* Generated (build/gen/ui_assets.c): every file of api/ui/, sorted by name. */
extern const struct api_ui_asset api_ui_assets[];
extern const size_t api_ui_assets_count;

/* The Content-Security-Policy of every dashboard response. Static. */
#define API_UI_CSP                                                                          \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "     \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "         \
    "frame-ancestors 'none'"

/* The embedded asset called `name` (exact, case-sensitive), or NULL.
 * Borrowed (static). */
const struct api_ui_asset *api_ui_asset_find(const char *name);

/* operationId getDashboard: answers GET / with index.html (200 or 304).
 * Returns what api_send() returns. */
enum MHD_Result api_ui_get_dashboard(struct api_req *r);

/* operationId getUiAsset: answers GET /ui/{asset} (200, 304, or 404 when
 * no such asset is embedded). Returns what api_send() returns. */
enum MHD_Result api_ui_get_asset(struct api_req *r);

#endif
