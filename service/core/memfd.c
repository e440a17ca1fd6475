#include "service/core/memfd.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int memfd_map(const char *name, uint64_t size, int map_flags, void **base, int *fd)
{
    int f = memfd_create(name, MFD_CLOEXEC);
    if (f < 0)
        return -errno;
    int rc;
    if (ftruncate(f, (off_t)size) != 0) {
        rc = -errno;
        close(f);
        return rc;
    }
    void *b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | map_flags, f, 0);
    if (b == MAP_FAILED) {
        rc = -errno;
        close(f);
        return rc;
    }
    *base = b;
    *fd = f;
    return 0;
}
