/*
 * npy: NumPy's .npy format, read strictly and written minimally.
 *
 * POST /v1/objects accepts a body of Content-Type application/x-npy (what
 * numpy.save writes), and GET /v1/objects/{id}?download=true can answer
 * with one. The format (numpy.lib.format, versions 1.0, 2.0 and 3.0):
 *
 *   "\x93NUMPY"  major  minor  HEADER_LEN  header  data
 *                 u8     u8    u16 LE (1.0), u32 LE (2.0, 3.0)
 *
 * The header is a Python dict literal, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   \n
 * ASCII for 1.0 and 2.0, UTF-8 for 3.0. It is parsed here by a small
 * grammar, never evaluated: exactly the keys 'descr', 'fortran_order' and
 * 'shape', each once, in any order, strings in '' or "" without escapes, a
 * trailing comma, and whitespace (space, tab, CR, LF) between tokens and
 * after the closing brace (NumPy's padding). What is accepted:
 *
 *   descr          '<f4' '<f8' '<i4' '<i8' (little-endian) and '|u1' '<u1'
 *                  'u1' (one byte has no byte order), i.e. enum model_dtype
 *   fortran_order  False (True is refused: the bytes would be in another
 *                  order than the shape says to a reader of C order)
 *   shape          a tuple of 1..MODEL_OBJECT_MAX_DIMS non-negative decimal
 *                  integers, "(n,)" for one dimension; a dimension may be 0
 *
 * The 0-d array (shape (), what numpy.save writes for a scalar) is refused
 * with a message saying to save it as a 1-element array: an object always
 * has 1..8 dimensions (struct model_object), and turning () into (1,) would
 * make a download differ from the upload. Big-endian and every other dtype
 * ('<f2', '|b1', '<c8', '|O', '<U3', ...), structured dtypes (a list as
 * descr) and headers longer than NPY_HEADER_MAX bytes are refused too, each
 * with a message naming the field and what was found.
 *
 * The data follows the header and is exactly prod(shape) x element size
 * bytes (overflow-checked); the caller compares that with the body length.
 *
 * Pure functions: any process, any thread, nothing allocated, no state.
 */
#ifndef BATCHD_NPY_H
#define BATCHD_NPY_H

#include <stddef.h>
#include <stdint.h>

#include <batchd/model.h>

/* The magic string, and the preamble's length before HEADER_LEN ends. */
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_PREAMBLE_V1 10u /* magic, major, minor, u16 header length */
#define NPY_PREAMBLE_V2 12u /* magic, major, minor, u32 header length */

/* Longest header accepted (HEADER_LEN). NumPy's own reader refuses more
 * than 10000 bytes by default; every header this module accepts fits in
 * a few hundred. It bounds what a client can make the server buffer
 * before the data starts. */
#define NPY_HEADER_MAX 16384u

/* Room for any header npy_header_write() produces (8 dimensions of 20
 * digits padded to 64 bytes is 320). */
#define NPY_WRITE_MAX 384u

struct npy_info {
    uint8_t major, minor;             /* the version (1.0, 2.0 or 3.0) */
    uint32_t dtype;                   /* enum model_dtype */
    uint32_t ndim;                    /* 1..MODEL_OBJECT_MAX_DIMS */
    uint64_t shape[MODEL_OBJECT_MAX_DIMS];
    uint64_t data_offset;             /* where the data starts: preamble + HEADER_LEN */
    uint64_t data_bytes;              /* prod(shape) x element size */
};

/*
 * Parses the .npy preamble and header at buf[0..len) (len may be the
 * whole file or just its first bytes, as a body arrives).
 *
 * Returns 0 with *info filled; the data is the data_bytes at
 * buf + data_offset (not looked at: whether len holds it is the caller's
 * question).
 * Returns -EAGAIN when buf is a valid beginning but too short: *need is
 * then the total number of bytes to have before calling again (the
 * preamble's length until HEADER_LEN is known, then data_offset). A
 * failure later in the header is reported only once it has all arrived.
 * Returns -EINVAL for anything malformed or unsupported, -EOVERFLOW when
 * the shape's byte count does not fit in 64 bits, -E2BIG when HEADER_LEN
 * is over NPY_HEADER_MAX; err (NUL-terminated, cut to errlen) then says
 * what and where, e.g. "npy header, byte 31: 'shape' must be a tuple of
 * integers, found '['". *info is unspecified on failure; *need is set only
 * for -EAGAIN. err may be NULL when errlen is 0.
 */
int npy_parse(const void *buf, size_t len, struct npy_info *info, size_t *need, char *err,
              size_t errlen);

/*
 * Writes a version 1.0 preamble and header for `dtype` and `shape` (ndim
 * dimensions, C order) into out[0..outlen), padded with spaces and a final
 * newline so that the data that follows starts at a multiple of 64 bytes,
 * as numpy.save does. Returns the number of bytes written (the data
 * offset, at most NPY_WRITE_MAX), -EINVAL for an unknown dtype or ndim
 * outside 1..MODEL_OBJECT_MAX_DIMS, -ENOSPC when outlen is too small
 * (out's content is then unspecified).
 */
int npy_header_write(uint32_t dtype, uint32_t ndim, const uint64_t *shape, void *out,
                     size_t outlen);

#endif
