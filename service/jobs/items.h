/*
 * items: the inputs of one job, as compact JSON texts in one arena.
 *
 * Built by the HTTP layer while it validates the request body (api/handlers/
 * request.c), then handed to engine_submit(); written to and read back from
 * the job store (service/store/) as they are. A data type of its own, so
 * that the store needs nothing else of the engine.
 *
 * Process: api. Not thread-safe (one owner at a time: the builder, then the
 * engine). Ownership: job_items_new's list is the caller's until it is
 * handed on (engine_submit takes it); texts returned are borrowed.
 */
#ifndef BATCHD_ITEMS_H
#define BATCHD_ITEMS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Written only by the functions below; the engine reads the fields (the
 * hot paths copy texts into ring slots and hash whole requests). */
struct job_items {
    char *data;       /* the texts back to back */
    size_t len, cap;  /* bytes used, allocated */
    uint64_t *off; /* off[k] = start of item k; off[n] = len */
    size_t n, ncap;
};


/* Returns a new, empty item list, or NULL on out-of-memory. */
struct job_items *job_items_new(void);
/* Appends one item given as its JSON text (already validated, compact).
 * Returns 0, -ENOMEM, or -E2BIG past 4 GiB of item text. */
int job_items_append(struct job_items *items, const char *json, size_t len);
/* Appends the compact serialization of `item` (borrowed). Same returns. */
int job_items_append_json(struct job_items *items, const json_t *item);
/* Makes room for `bytes` more bytes of text and `n` more items, so that
 * appending that much does not reallocate (and the text's room is faulted
 * in at once, not page by page). A bound, not a promise: appending more
 * still works. Returns 0, -ENOMEM or -E2BIG (nothing changed). */
int job_items_reserve(struct job_items *items, size_t bytes, size_t n);
size_t job_items_count(const struct job_items *items);
/* Item i's JSON text (borrowed; not NUL-terminated) and its length. Items
 * are stored back to back: item i+1 starts where item i ends. */
const char *job_items_get(const struct job_items *items, size_t i, size_t *len);
/* Frees the list. NULL is fine. */
void job_items_free(struct job_items *items);

#endif
