/*
 * rfc3339.c: RFC 3339 UTC times with milliseconds (rfc3339.h).
 */
#include "service/core/rfc3339.h"

#include <stdio.h>
#include <time.h>

void rfc3339_format(uint64_t ns, char *buf, size_t len)
{
    time_t secs = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)((ns / 1000000ull) % 1000));
}
