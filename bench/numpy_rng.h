/*
 * numpy_rng: numpy.random.default_rng(seed).random(...) in C, bit for bit,
 * so that a C benchmark program makes the same arrays as the Python
 * baselines (bench/mlp_data.py, bench/py_convolve.py) without Python.
 *
 * default_rng(seed) is PCG64 (128-bit LCG, XSL-RR output) seeded through a
 * SeedSequence of the one integer seed (< 2^32 here); random() of float64
 * is (next64 >> 11) * 2^-53, of float32 (next32 >> 8) * 2^-24, where
 * next32 hands out the low then the high half of one next64. The
 * constants are numpy's (numpy/random/bit_generator.pyx, pcg64.h). Checked
 * against numpy 1.24 by writing default_rng(1003).random((10000, 784),
 * float32) and default_rng(2000).random((3000, 3000)) from C and comparing
 * them with numpy's in full: equal.
 *
 * Header-only, no allocation; a struct npy_rng is one generator's state,
 * used by one thread at a time.
 */
#ifndef BATCHD_BENCH_NUMPY_RNG_H
#define BATCHD_BENCH_NUMPY_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct npy_rng {
    unsigned __int128 state, inc;
    bool has32;     /* a high half of the last next64 is waiting */
    uint32_t half;
};

/* SeedSequence's hash of one 32-bit seed into 4 pool words. */
static inline void npy_seedseq_pool(uint32_t seed, uint32_t pool[4])
{
    uint32_t hc = 0x43b0d7e5u;
#define NPY_HASHMIX(v) ((v) ^= hc, hc *= 0x931e8875u, (v) *= hc, (v) ^= (v) >> 16)
    for (int i = 0; i < 4; i++) {
        uint32_t v = i == 0 ? seed : 0;
        NPY_HASHMIX(v);
        pool[i] = v;
    }
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 4; d++) {
            if (s == d)
                continue;
            uint32_t v = pool[s];
            NPY_HASHMIX(v);
            uint32_t r = 0xca01f9ddu * pool[d] - 0x4973f715u * v;
            pool[d] = r ^ (r >> 16);
        }
#undef NPY_HASHMIX
}

static inline uint64_t npy_rng_next64(struct npy_rng *g)
{
    const unsigned __int128 mult =
        ((unsigned __int128)0x2360ED051FC65DA4ULL << 64) | 0x4385DF649FCCF645ULL;
    g->state = g->state * mult + g->inc;
    uint64_t hi = (uint64_t)(g->state >> 64), lo = (uint64_t)g->state;
    unsigned rot = (unsigned)(hi >> 58);
    uint64_t x = hi ^ lo;
    return (x >> rot) | (x << ((64 - rot) & 63));
}

/* The generator of numpy.random.default_rng(seed). */
static inline void npy_rng_seed(struct npy_rng *g, uint32_t seed)
{
    uint32_t pool[4], w[8];
    npy_seedseq_pool(seed, pool);
    uint32_t hc = 0x8b51f9ddu;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % 4];
        v ^= hc;
        hc *= 0x58f38dedu;
        v *= hc;
        v ^= v >> 16;
        w[i] = v;
    }
    uint64_t s[4];
    for (int i = 0; i < 4; i++)
        s[i] = (uint64_t)w[2 * i] | (uint64_t)w[2 * i + 1] << 32;
    unsigned __int128 initstate = (unsigned __int128)s[0] << 64 | s[1];
    unsigned __int128 initseq = (unsigned __int128)s[2] << 64 | s[3];
    g->state = 0;
    g->inc = initseq << 1 | 1;
    g->has32 = false;
    g->half = 0;
    npy_rng_next64(g);
    g->state += initstate;
    npy_rng_next64(g);
}

static inline uint32_t npy_rng_next32(struct npy_rng *g)
{
    if (g->has32) {
        g->has32 = false;
        return g->half;
    }
    uint64_t v = npy_rng_next64(g);
    g->has32 = true;
    g->half = (uint32_t)(v >> 32);
    return (uint32_t)v;
}

/* Fills x[0..n) as default_rng(seed).random(n, dtype=np.float32) would. */
static inline void npy_random_f32(uint32_t seed, float *x, size_t n)
{
    struct npy_rng g;
    npy_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(npy_rng_next32(&g) >> 8) * (1.0f / 16777216.0f);
}

/* Fills x[0..n) as default_rng(seed).random(n) (float64) would. */
static inline void npy_random_f64(uint32_t seed, double *x, size_t n)
{
    struct npy_rng g;
    npy_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(npy_rng_next64(&g) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
