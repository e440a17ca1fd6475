/*
 * memfd: an anonymous shared-memory region that survives fork, the one way
 * batchd makes one (the ring, service/ring/shm.h, and the object store,
 * service/objects/objects.h).
 *
 * The region is a memfd (no name in any file system, closed on exec) of
 * the given size, mapped read-write and shared, so a child forked after
 * this sees the same pages. A fresh memfd reads as zeros.
 *
 * Process and threads: any; the caller decides who maps it before fork.
 *
 * Ownership: on success the caller owns *fd and the mapping at *base
 * (`size` bytes): munmap() and close() them. On failure nothing is left
 * open or mapped.
 */
#ifndef BATCHD_CORE_MEMFD_H
#define BATCHD_CORE_MEMFD_H

#include <stdint.h>

/*
 * Creates the memfd `name` of `size` bytes and maps it. `map_flags` are
 * added to MAP_SHARED (MAP_NORESERVE for a region whose size is only a
 * ceiling: tmpfs pages cost nothing until written).
 * Returns 0 with *base and *fd set, or the negative errno of memfd_create,
 * ftruncate or mmap.
 */
int memfd_map(const char *name, uint64_t size, int map_flags, void **base, int *fd);

#endif
