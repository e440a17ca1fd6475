#include "service/core/fdlimit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

unsigned fdlimit_library_limit(unsigned ceiling)
{
    /* the newcomers that arrive while evicted connections are closing
     * (one turn of libmicrohttpd's loop): an eighth, at least 16 */
    unsigned extra = ceiling / 8 < 16 ? 16 : ceiling / 8;
    return ceiling + extra;
}

uint64_t fdlimit_needed(unsigned ceiling, unsigned threads)
{
    return (uint64_t)fdlimit_library_limit(ceiling) + FDLIMIT_RESERVE + 2u * (uint64_t)threads;
}

/* fs.nr_open: the most a process's RLIMIT_NOFILE may be. */
static uint64_t nr_open(void)
{
    unsigned long long n = 1048576; /* the kernel's default */
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    if (f) {
        if (fscanf(f, "%llu", &n) != 1)
            n = 1048576;
        fclose(f);
    }
    return n;
}

int fdlimit_raise(uint64_t *soft)
{
    struct rlimit rl;
    *soft = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    *soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY)
        want = (rlim_t)nr_open();
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    *soft = (uint64_t)want;
    return 0;
}

int fdlimit_fit(unsigned *ceiling, bool explicit_, unsigned threads, uint64_t soft, char *err,
                size_t errlen)
{
    uint64_t need = fdlimit_needed(*ceiling, threads);
    if (need <= soft)
        return 0;
    /* the largest ceiling c with fdlimit_needed(c) <= soft */
    uint64_t lo = 0, hi = *ceiling;
    while (lo < hi) {
        uint64_t mid = (lo + hi + 1) / 2;
        if (fdlimit_needed((unsigned)mid, threads) <= soft)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (explicit_ || lo < 16) {
        snprintf(err, errlen,
                 "--max-connections %u needs %llu open files, but the limit is %llu (ulimit -Hn): "
                 "raise the limit, or set --max-connections %llu or less",
                 *ceiling, (unsigned long long)need, (unsigned long long)soft,
                 (unsigned long long)lo);
        return -EMFILE;
    }
    *ceiling = (unsigned)lo;
    return 1;
}
