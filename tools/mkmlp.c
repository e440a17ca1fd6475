/*
 * mkmlp: writes a .safetensors file holding a dense network (an MLP) with
 * seeded random weights, the input of batchd's mlp model in tests,
 * benchmarks and the README. Nothing is downloaded: the same arguments
 * always give the same bytes.
 *
 *   build/mkmlp --layers 784,512,10 [--seed 1] [--dtype f32|f16|bf16] --out FILE
 *
 * --layers lists the widths, input first: "784,512,10" is two Linear
 * layers, 784 -> 512 -> 10. Layer i is the tensors layers.{i}.weight
 * [out, in] and layers.{i}.bias [out] (PyTorch's Linear layout), drawn
 * uniformly from [-1/sqrt(in), 1/sqrt(in)] (PyTorch's default range) by
 * splitmix64 from --seed (default 1), then rounded to --dtype (default
 * f32) to nearest, ties to even. The header is padded with blanks to a
 * multiple of 8 bytes, so that every tensor is aligned in a mapping.
 *
 * The file is written to FILE.tmp.PID and renamed over FILE at the end, so
 * a batchd that maps FILE never sees it change under it. Exit status: 0,
 * 1 on an I/O error, 2 on bad arguments (with the reason on stderr).
 *
 * A standalone program: it links nothing of batchd's, so that the reader
 * (workers/safetensors.c) is checked against an independent writer.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LAYERS 64
#define MAX_WIDTH 1000000UL

enum dtype { DT_F32, DT_F16, DT_BF16 };
static const char *const dt_name[] = {"F32", "F16", "BF16"};
static const size_t dt_size[] = {4, 2, 2};

static uint64_t rng_state;

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [-bound, bound). */
static float uniform(float bound)
{
    float u = (float)(splitmix64() >> 40) / 16777216.0f; /* [0, 1), 24 bits */
    return (2.0f * u - 1.0f) * bound;
}

static uint16_t to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) /* rounds to at least 65520: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: a subnormal half (or 0) */
        float a;
        memcpy(&a, &ax, 4);
        /* a * 2^24 is exact; nearbyintf rounds to nearest even */
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t h = (((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

static uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* a quiet NaN stays a NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static void usage(const char *why)
{
    fprintf(stderr, "mkmlp: %s\nusage: mkmlp --layers IN,H1,...,OUT [--seed N] "
                    "[--dtype f32|f16|bf16] --out FILE\n", why);
    exit(2);
}

static size_t parse_layers(const char *s, unsigned long *w)
{
    size_t n = 0;
    const char *p = s;
    while (*p) {
        if (n == MAX_LAYERS + 1)
            usage("--layers: too many layers");
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9')
            usage("--layers: expected positive integers separated by commas");
        unsigned long v = strtoul(p, &end, 10);
        if (errno || v == 0 || v > MAX_WIDTH)
            usage("--layers: each width must be from 1 to 1000000");
        w[n++] = v;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            usage("--layers: expected positive integers separated by commas");
        p = end;
    }
    if (n < 2)
        usage("--layers: give at least two widths (input and output)");
    return n;
}

/* Writes one tensor's values: count draws in [-bound, bound). */
static int write_values(FILE *f, enum dtype dt, uint64_t count, float bound)
{
    unsigned char buf[1 << 16];
    size_t at = 0;
    for (uint64_t i = 0; i < count; i++) {
        float v = uniform(bound);
        if (dt == DT_F32) {
            memcpy(buf + at, &v, 4); /* the file is little-endian, as is the host */
        } else {
            uint16_t h = dt == DT_F16 ? to_f16(v) : to_bf16(v);
            buf[at] = (unsigned char)(h & 0xff);
            buf[at + 1] = (unsigned char)(h >> 8);
        }
        at += dt_size[dt];
        if (at + 4 > sizeof buf) {
            if (fwrite(buf, 1, at, f) != at)
                return -1;
            at = 0;
        }
    }
    return at && fwrite(buf, 1, at, f) != at ? -1 : 0;
}

int main(int argc, char **argv)
{
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "writes host floats as LE");
    const char *layers = NULL, *out = NULL, *dts = "f32";
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage(strcmp(a, "--help") == 0 ? "writes a seeded random MLP as .safetensors"
                                           : "missing value after an option");
        if (strcmp(a, "--layers") == 0) {
            layers = argv[++i];
        } else if (strcmp(a, "--out") == 0) {
            out = argv[++i];
        } else if (strcmp(a, "--dtype") == 0) {
            dts = argv[++i];
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(argv[++i], &end, 10);
            if (errno || *end || argv[i][0] == '\0' || argv[i][0] == '-')
                usage("--seed: expected a non-negative integer");
        } else {
            usage("unknown argument");
        }
    }
    if (!layers || !out)
        usage("--layers and --out are required");
    enum dtype dt;
    if (strcmp(dts, "f32") == 0)
        dt = DT_F32;
    else if (strcmp(dts, "f16") == 0)
        dt = DT_F16;
    else if (strcmp(dts, "bf16") == 0)
        dt = DT_BF16;
    else
        usage("--dtype: expected f32, f16 or bf16");
    unsigned long w[MAX_LAYERS + 1];
    size_t nw = parse_layers(layers, w);

    /* The header: offsets follow the order the data is written in. */
    size_t hcap = 256 + strlen(layers) + nw * 256, hlen = 0;
    char *hdr = malloc(hcap);
    if (!hdr) {
        perror("mkmlp");
        return 1;
    }
    hlen += (size_t)snprintf(hdr + hlen, hcap - hlen,
                             "{\"__metadata__\":{\"format\":\"pt\",\"generator\":\"batchd mkmlp\","
                             "\"layers\":\"%s\",\"seed\":\"%" PRIu64 "\"}",
                             layers, seed);
    uint64_t off = 0;
    for (size_t l = 0; l + 1 < nw; l++) {
        uint64_t wbytes = (uint64_t)w[l + 1] * w[l] * dt_size[dt];
        uint64_t bbytes = (uint64_t)w[l + 1] * dt_size[dt];
        hlen += (size_t)snprintf(hdr + hlen, hcap - hlen,
                                 ",\"layers.%zu.weight\":{\"dtype\":\"%s\",\"shape\":[%lu,%lu],"
                                 "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                 l, dt_name[dt], w[l + 1], w[l], off, off + wbytes);
        off += wbytes;
        hlen += (size_t)snprintf(hdr + hlen, hcap - hlen,
                                 ",\"layers.%zu.bias\":{\"dtype\":\"%s\",\"shape\":[%lu],"
                                 "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                 l, dt_name[dt], w[l + 1], off, off + bbytes);
        off += bbytes;
    }
    hdr[hlen++] = '}';
    while (hlen % 8 != 0)
        hdr[hlen++] = ' ';

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid()) >= (int)sizeof tmp)
        usage("--out: path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "mkmlp: %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen;
    rng_state = seed;
    for (size_t l = 0; l + 1 < nw && !bad; l++) {
        float bound = 1.0f / sqrtf((float)w[l]);
        bad = write_values(f, dt, (uint64_t)w[l + 1] * w[l], bound) != 0 ||
              write_values(f, dt, w[l + 1], bound) != 0;
    }
    free(hdr);
    if (fclose(f) != 0)
        bad = 1;
    if (bad || rename(tmp, out) != 0) {
        fprintf(stderr, "mkmlp: writing %s: %s\n", out, strerror(errno));
        unlink(tmp);
        return 1;
    }
    return 0;
}
