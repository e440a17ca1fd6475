/*
 * id.c: random ids in RFC 4648 base32, lowercase (id.h).
 */
#include "service/core/id.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char id_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

void id_encode(const uint8_t *in, size_t n, char *out)
{
    unsigned acc = 0, bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = id_alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = id_alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

void id_new(char out[ID_LEN + 1])
{
    uint8_t r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* Cannot happen on a kernel that has getrandom once the pool is
             * seeded; refusing to make an id would be worse than this. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                         ((uint64_t)getpid() << 48);
            clock_gettime(CLOCK_MONOTONIC, &ts);
            x ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull;
            for (; got < sizeof r; got++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                r[got] = (uint8_t)x;
            }
            break;
        }
        got += (size_t)n;
    }
    id_encode(r, sizeof r, out);
}

bool id_valid(const char *s, size_t len)
{
    if (!s || len != ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
            return false;
    }
    return true;
}
