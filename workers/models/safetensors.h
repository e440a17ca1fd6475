/*
 * safetensors: a strict reader of .safetensors files (Hugging Face's
 * tensor container), for models that load weights once and share them.
 *
 * The format: an 8-byte little-endian header length N, N bytes of a JSON
 * object (UTF-8, may be padded with trailing blanks), then the data area,
 * which runs to the end of the file. Each member of the object but
 * "__metadata__" describes one tensor:
 *
 *   "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [B, E]}
 *
 * with B and E byte offsets into the data area (not the file). The optional
 * "__metadata__" is an object of string values.
 *
 * Everything is checked, with a message naming the tensor and what is
 * wrong: the header length against the file's size, the JSON (duplicate
 * keys are refused: which of two values a reader took would be a guess),
 * the members of each tensor (no other key: a misspelt key must not be
 * ignored), the dtype, the shape (non-negative integers, at most
 * SAFETENSORS_MAX_DIMS of them), the byte size (product of the shape times
 * the element size, overflow-checked) against E - B, and the offsets. Like
 * the reference implementation (the `safetensors` Rust crate), the tensors
 * must tile the data area exactly: sorted by offset, each starts where the
 * previous one ended, and the last ends at the end of the file; so no two
 * tensors overlap, no byte is unaccounted for, and a truncated or padded
 * file is refused rather than half-read.
 *
 * Process and threads: no global state; a struct safetensors is read-only
 * after it is built, so any number of threads and forked processes may
 * read it. safetensors_open() maps the file read-only and shared: called
 * in the supervisor before fork, every worker reads the same physical
 * pages (the page cache), however many workers there are. The file must
 * not be truncated while it is mapped (reading a page past the new end
 * raises SIGBUS); replace it with a new file (rename) instead.
 *
 * Ownership: a struct safetensors owns its tensor table, the parsed header
 * and (safetensors_open only) the mapping; safetensors_close() frees them.
 * After safetensors_parse() the tensors' data point into the caller's
 * buffer, which must outlive the struct. Names and the metadata are
 * borrowed from the struct.
 */
#ifndef BATCHD_SAFETENSORS_H
#define BATCHD_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SAFETENSORS_MAX_DIMS 8
/* The reference implementation's limit on the JSON header (100 MB): a
 * larger one is refused before anything is allocated for it. */
#define SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)

enum safetensors_dtype {
    SAFETENSORS_BOOL,
    SAFETENSORS_U8,
    SAFETENSORS_I8,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_I16,
    SAFETENSORS_U16,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_I32,
    SAFETENSORS_U32,
    SAFETENSORS_F32,
    SAFETENSORS_I64,
    SAFETENSORS_U64,
    SAFETENSORS_F64,
};

struct safetensors_tensor {
    const char *name;   /* borrowed from the parsed header */
    enum safetensors_dtype dtype;
    uint32_t ndim;      /* 0 (a scalar) .. SAFETENSORS_MAX_DIMS */
    uint64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t numel;     /* product of shape (1 for a scalar) */
    uint64_t begin;     /* data_offsets, relative to the data area */
    uint64_t end;
    const void *data;   /* data area + begin; read-only; alignment is
                           whatever the file gives (see safetensors_aligned) */
};

struct safetensors {
    size_t n;                           /* tensors, in the header's order */
    struct safetensors_tensor *tensors;
    json_t *metadata;                   /* "__metadata__" (borrowed) or NULL */
    const uint8_t *data;                /* the data area */
    uint64_t data_len;
    json_t *header;                     /* owned: the names live here */
    void *map;                          /* safetensors_open's mapping, or NULL */
    size_t map_len;
};

/*
 * Parses a whole file held in buf[0..len). On success fills *st and
 * returns 0. On failure returns -EINVAL (malformed or inconsistent; the
 * reason, naming the tensor where there is one, is in err) or -ENOMEM,
 * and *st is left empty (safetensors_close on it is harmless). buf is
 * borrowed and must outlive *st.
 */
int safetensors_parse(const void *buf, size_t len, struct safetensors *st, char *err,
                      size_t errlen);

/*
 * Opens `path`, maps it read-only (MAP_SHARED, populated up front so the
 * reading happens at load time rather than in the first request), and
 * parses it. Returns 0, -EINVAL as safetensors_parse (the message starts
 * with the path), or the negative errno of open/fstat/mmap (e.g. -ENOENT)
 * with a message; on failure nothing stays open or mapped.
 */
int safetensors_open(const char *path, struct safetensors *st, char *err, size_t errlen);

/* Frees what *st owns and unmaps the file; *st is left empty. */
void safetensors_close(struct safetensors *st);

/* The tensor called `name`, or NULL. Borrowed from st. Linear: for
 * loading, not for a hot path. */
const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
                                                  const char *name);

/* The format's name of a dtype ("F32", "BF16", ...) and its size in bytes. */
const char *safetensors_dtype_name(enum safetensors_dtype dtype);
size_t safetensors_dtype_size(enum safetensors_dtype dtype);

/*
 * A name (or any header string) as error messages show it: at most `max`
 * bytes of s, cut on a UTF-8 character boundary with "..." appended when
 * cut, control bytes replaced by '?' (a name may hold any character JSON
 * can escape). Writes into buf (cap bytes, NUL-terminated; cap >= 4) and
 * returns it.
 */
const char *safetensors_shown(const char *s, size_t max, char *buf, size_t cap);

/* True when the tensor's data is aligned for its element type (a file whose
 * header length is not a multiple of the element size misaligns it). */
bool safetensors_aligned(const struct safetensors_tensor *t);

#endif
