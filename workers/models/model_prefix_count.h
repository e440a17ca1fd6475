/*
 * model_prefix_count: the `prefix_count` built-in model, stateful: every
 * worker counts word prefixes into a per-job accumulator, and one reduce
 * merges the workers' partial counts into the job's result. Also the
 * serial computation (one table, every document) for bench/'s baseline.
 *
 * An item is a document, a JSON array of words:
 *
 *   ["the", "then", {"base64": "3q2+7w=="}, ...]
 *
 * a word is a string (its UTF-8 bytes, NULs included) or {"base64": "..."}
 * (raw bytes, RFC 4648 standard alphabet, padding optional), at most
 * MODEL_PREFIX_COUNT_MAX_WORD bytes. Each word of len bytes adds one to the
 * count of each of its prefixes of 1..len-1 bytes (a 1-byte or empty word
 * has none). The item's own result is {"words": n, "prefixes": m}. An item
 * counts entirely or not at all: a bad word anywhere, or an accumulator
 * that would pass MODEL_PREFIX_COUNT_MAX_TABLE_BYTES, fails the item and
 * leaves the counts as they were.
 *
 * The job's result (reduce), for the parameter threshold=t (default
 * MODEL_PREFIX_COUNT_DEFAULT_THRESHOLD, `--model prefix_count:threshold=5`):
 *
 *   {"threshold": t, "count": k,
 *    "prefixes": [{"prefix": "th", "count": 9}, {"prefix_base64": "3q0=",
 *                  "count": 4}, ...]}
 *
 * the k prefixes counted MORE than t times, by count descending, then by
 * bytes ascending (memcmp; a prefix before its extensions). A prefix that
 * is not well-formed UTF-8 (cut inside a character, or bytes from a base64
 * word) is given as "prefix_base64" instead of "prefix".
 *
 * The partial (acc_export): a uint8 object of this layout (little-endian),
 * named by {"$object": "ID", "entries": n}:
 *
 *   bytes 0..3   magic "BPC1"
 *   bytes 4..7   n, the number of entries (u32)
 *   n entries    count (LEB128, >= 1), len (LEB128, 1..MAX_WORD-1),
 *                then len bytes of the prefix
 *
 * and nothing after the last entry. LEB128 (7 bits a byte, low first, at
 * most 10 bytes) keeps the common entry (a small count, a short prefix) at
 * two bytes plus the prefix, with no limit on either. reduce() checks every
 * field and refuses a malformed partial with an error naming the partial,
 * the entry and the byte offset; it never reads past the object.
 *
 * A partial is prefix-closed: with a prefix it holds the prefix one byte
 * shorter, counted at least as often (a word counts all its prefixes).
 * reduce() relies on it: it merges level by level (prefix length) and only
 * merges a prefix whose parent passed the threshold (a prefix is never
 * counted more often than its parent), so the prefixes counted once, most
 * of any real job's, are never inserted into a table.
 *
 * Memory: an accumulator is a hash table (open addressing, linear probing,
 * a power-of-two number of slots at most half full, Fibonacci hashing of a
 * FNV-1a hash that is extended byte by byte along a word, so a word's
 * prefixes cost one multiply each to hash) and an arena of the prefixes'
 * bytes, each grown by doubling.
 *
 * Process and threads: load()/unload() in the supervisor; the others in a
 * worker, one call at a time per state and per accumulator. The serial
 * function is reentrant.
 * The host: reduce() runs in a worker but is given only `shared`, and the
 * host that load() gets (the supervisor's) cannot reach objects; so init()
 * also records its (the worker's) host in the worker's copy-on-write copy
 * of *shared, and reduce() uses that one, falling back to load()'s.
 *
 * Ownership: as model.h says. load()'s *shared (the hosts and the
 * threshold) is freed by unload(); init()'s *state (the host pointer) by
 * fini(); an accumulator by acc_free(). Partials passed to reduce() are
 * borrowed; its *result is new.
 */
#ifndef BATCHD_MODEL_PREFIX_COUNT_H
#define BATCHD_MODEL_PREFIX_COUNT_H

#include <stdint.h>

#include <batchd/model.h>

/* The longest word, in bytes; its prefixes are at most one byte shorter. */
#define MODEL_PREFIX_COUNT_MAX_WORD 1024
/* threshold=N when the parameter is not given. */
#define MODEL_PREFIX_COUNT_DEFAULT_THRESHOLD 3
/* The most memory one table (slots and arena) may take: 1 GiB. */
#define MODEL_PREFIX_COUNT_MAX_TABLE_BYTES (1ull << 30)
/* The partial's magic, its first four bytes. */
#define MODEL_PREFIX_COUNT_MAGIC "BPC1"

/* The prefix_count model's table, registered in models_builtin.c. Static,
 * borrowed. */
extern const struct model_ops model_prefix_count;

/*
 * The serial computation: counts every document of `documents` (a JSON
 * array of items as above) in one table and writes the job's result for
 * `threshold` to *result (new), exactly what the model's workers and
 * reduce produce together. Returns 0; -EINVAL for a bad document (err
 * names the document and the word), -ENOMEM / -EFBIG when out of memory or
 * past MODEL_PREFIX_COUNT_MAX_TABLE_BYTES. *result is untouched on error.
 */
int model_prefix_count_serial(const json_t *documents, uint64_t threshold, json_t **result,
                              char *err, size_t errlen);

#endif
