/*
 * scan: the fast path of a POST /v1/jobs body. One pass over the text
 * validates each item and copies its JSON text straight into the job's
 * item arena: no DOM, no node per item, no number formatted again.
 *
 * Why: accepting 1M `square` items (a 6.9 MB body) took ~0.6 s, more than
 * running them; perf put ~14% in printf-family number formatting (jansson
 * writes every number it re-serialises through snprintf), ~10% in
 * malloc/free (a json_t per item), and the rest in page faults and
 * memmoves of a DOM that is thrown away. The items are already JSON: they
 * only need checking and, where they are not compact, compacting.
 *
 * The contract is a subset: the scan either accepts a body exactly as the
 * jansson path of request.c would (JSON_DECODE_ANY, REJECT_DUPLICATES,
 * ALLOW_NUL, the depth, item-count and item-size limits), or says
 * -EAGAIN, "not on the fast path", and request.c parses the body again
 * with jansson, which gives today's answers, error problems included
 * (their line, column, index and pointer). So the scan never builds an
 * error message: anything wrong, and anything unusual, is -EAGAIN.
 * Unusual, handled by the jansson path only: an object key with a
 * backslash escape, an object with more than SCAN_MAX_KEYS members, a
 * string escape that is a lone surrogate, a body whose top level is not an
 * object holding an "inputs" array of at least one item.
 *
 * What an accepted item's text is: compact (whitespace outside strings
 * removed); strings spelled as jansson writes them (escapes decoded, then
 * only '"', '\\' and control characters escaped, \u00XX in upper case, so
 * "\u0024object" is stored as "$object", as the engine's object-pin search
 * expects); literals as they are; numbers exactly as the client wrote them
 * (that is the point: a real keeps its digits, and reads back to the same
 * double jansson would have made of it; an integer past 64 bits, or a real
 * past DBL_MAX, is refused as jansson refuses it). The item-size limit
 * keeps its meaning (the item's compact text with each real written with
 * 17 digits): an item that might pass it goes to jansson's path, which
 * measures exactly.
 *
 * Process and threads: api process, the request's thread. Pure: nothing
 * but the body and the limits decide the result.
 * Ownership: the body is borrowed; on success *items and *rest are new
 * (job_items_free, json_decref); on failure they are NULL.
 */
#ifndef BATCHD_API_SCAN_H
#define BATCHD_API_SCAN_H

#include <stddef.h>

#include <jansson.h>

#include "service/jobs/items.h"

/* Most members of one object inside an item that the scan checks for
 * duplicates itself (pairwise); a larger object goes to jansson. */
#define SCAN_MAX_KEYS 64

/* The limits the scan applies (request.h's, restated so that this module
 * depends on nothing of request.c). */
struct scan_limits {
    size_t max_items;
    size_t max_item_bytes;
    unsigned max_depth; /* containers nested, counted from the body's root */
};

/*
 * A JSON body {"model": ..., "inputs": [...], ...}: the items of "inputs"
 * into *items, every other top-level member, parsed by jansson, into the
 * object *rest (in the body's order; their shape is request.c's to check).
 * Returns 0, -EAGAIN (not on the fast path: parse it with jansson), or
 * -ENOMEM.
 */
int scan_json_body(const char *body, size_t len, const struct scan_limits *lim,
                   struct job_items **items, json_t **rest);

/*
 * An NDJSON body: one item per line, blank lines (spaces, tabs, CR)
 * skipped, "\r\n" accepted. Returns 0 with at least one item, -EAGAIN, or
 * -ENOMEM.
 */
int scan_ndjson_body(const char *body, size_t len, const struct scan_limits *lim,
                     struct job_items **items);

#endif
