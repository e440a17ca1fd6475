/*
 * test_objects: the object store's HTTP API (/v1/objects) against one
 * batchd with a small object memory (--object-memory 4M,
 * --max-object-bytes 1M, --max-objects 16) and the chaos model:
 *   - raw uploads (Content-Length and chunked) and .npy uploads of
 *     versions 1.0, 2.0 and 3.0 and every dtype, built here byte by byte;
 *     each answer is checked (201, Location, the Object body), its GET,
 *     and its download, byte-exact, raw and as .npy (Accept);
 *   - the list: paging with limit/after, totals; the /metrics gauges;
 *   - DELETE: 204, then 404; malformed ids (400), traversal (4xx);
 *   - refusals: 413 (Content-Length, an npy shape), 415, 400 for bad .npy
 *     bodies and a length that disagrees with the header, 507 when the
 *     memory or the table is full (and the memory is reusable after a
 *     delete);
 *   - an upload abandoned half-way leaves no object behind, and its memory
 *     is reusable at once;
 *   - the pool of freed pages: objects uploaded after a delete land on the
 *     deleted one's pages (batchd_object_pool_reused_bytes_total grows) and
 *     download exactly their own bytes, raw and as .npy, whole objects of
 *     1 MiB included (sent from the pages with no copy);
 *   - 409 for DELETE while a running job names the object (needs the
 *     engine's pinning: skipped, loudly, while GET shows no pin).
 */
#include "tests/integration/harness.h"
#include "tests/integration/raw.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static struct h_service svc;

/* ------------------------------------------------------------ .npy bytes */

/* Appends a .npy file of version `major`.0 to b: the dict as numpy writes
 * it, padded to 64 bytes, then `data`. */
static void npy_build(struct h_buf *b, unsigned major, const char *descr, const char *shape,
                      const void *data, size_t len)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t pre = major == 1 ? 10 : 12;
    size_t total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    unsigned char p[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0,
                           (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8), 0, 0};
    h_buf_add(b, (const char *)p, pre);
    h_buf_add(b, dict, (size_t)n);
    for (size_t i = (size_t)n; i < hlen - 1; i++)
        h_buf_add(b, " ", 1);
    h_buf_add(b, "\n", 1);
    if (len)
        h_buf_add(b, data, len);
}

/* ------------------------------------------------------------ helpers */

/* POSTs body as ctype (chunked or not) and returns the status; on 201
 * checks Location and the Object body and copies the id into id[32]. */
static long upload(const char *ctype, const void *body, size_t len, bool chunked, char *id,
                   struct h_resp *out)
{
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *hdrs[] = {ct, NULL};
    struct h_req req = {.method = "POST", .path = "/v1/objects", .headers = ctype ? hdrs : NULL,
                        .body = body ? body : "", .body_len = len, .chunked = chunked};
    struct h_resp tmp, *r = out ? out : &tmp;
    if (h_request(&svc, &req, r) != 0) {
        CHECKF(false, "no answer: %s", r->error);
        h_resp_free(r);
        return 0;
    }
    long st = r->status;
    if (st == 201 && id) {
        json_t *j = h_json(r);
        const char *got = h_jstr(j, "id");
        const char *loc = h_resp_header(r, "Location");
        if (CHECK(got != NULL) && CHECK(loc != NULL)) {
            snprintf(id, 32, "%s", got);
            char want[64];
            snprintf(want, sizeof want, "/v1/objects/%s", got);
            CHECK_STR(loc, want);
        }
        static const char *const keys[] = {"id",   "dtype",  "shape",  "bytes", "created_at",
                                           "pins", "in_use", "origin", NULL};
        CHECK(h_json_keys_exactly(j, keys));
        CHECK(h_is_timestamp(h_jstr(j, "created_at")));
        CHECK_STR(h_jstr(j, "origin"), "upload");
    }
    if (!out)
        h_resp_free(r);
    return st;
}

/* GETs the object's download (Accept as given, may be NULL). */
static int download(const char *id, const char *accept, struct h_resp *r)
{
    char path[96], acc[128];
    snprintf(path, sizeof path, "/v1/objects/%s?download=true", id);
    snprintf(acc, sizeof acc, "Accept: %s", accept ? accept : "");
    const char *hdrs[] = {acc, NULL};
    return h_get_hdr(&svc, path, accept ? hdrs : NULL, r);
}

static long delete_object(const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/objects/%s", id);
    struct h_resp r;
    long st = h_delete(&svc, path, &r) == 0 ? r.status : 0;
    if (st != 204)
        h_note("DELETE %s: %ld %s", id, st, r.body);
    h_resp_free(&r);
    return st;
}

/* The totals of GET /v1/objects. */
static bool totals(long long *count, long long *used)
{
    struct h_resp r;
    bool ok = h_get(&svc, "/v1/objects?limit=1000", &r) == 0 && CHECK_INT(r.status, 200);
    json_t *j = ok ? h_json(&r) : NULL;
    ok = ok && h_jint(j, "count", count) && h_jint(j, "used_bytes", used);
    h_resp_free(&r);
    return ok;
}

/* Deletes every object (between tests). */
static void delete_all(void)
{
    for (int round = 0; round < 20; round++) {
        struct h_resp r;
        if (h_get(&svc, "/v1/objects?limit=1000", &r) != 0 || r.status != 200) {
            h_resp_free(&r);
            return;
        }
        json_t *list = h_jget(h_json(&r), "objects");
        size_t i, n = json_array_size(list);
        json_t *o;
        json_array_foreach(list, i, o) delete_object(h_jstr(o, "id"));
        h_resp_free(&r);
        if (n == 0)
            return;
    }
}

/* ------------------------------------------------------------ the tests */

static void test_raw_round_trip(void)
{
    unsigned char data[3000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7 + 3); /* NULs and high bytes included */
    char id[32] = "";
    struct h_resp r;
    if (!CHECK_INT(upload("application/octet-stream", data, sizeof data, false, id, &r), 201))
        return;
    json_t *j = h_json(&r);
    CHECK_STR(h_jstr(j, "dtype"), "uint8");
    long long v = -1;
    CHECK(h_jint(j, "bytes", &v) && v == (long long)sizeof data);
    CHECK(h_jint(j, "shape/0", &v) && v == (long long)sizeof data);
    CHECK_INT(json_array_size(h_jget(j, "shape")), 1);
    h_resp_free(&r);

    char path[96];
    snprintf(path, sizeof path, "/v1/objects/%s", id);
    CHECK(h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 200));
    j = h_json(&r);
    CHECK_STR(h_jstr(j, "id"), id);
    CHECK(h_jint(j, "pins", &v) && v == 0);
    CHECK(json_is_false(h_jget(j, "in_use")));
    h_resp_free(&r);

    CHECK(download(id, NULL, &r) == 0 && CHECK_INT(r.status, 200));
    CHECK(h_resp_is(&r, "application/octet-stream"));
    CHECK(r.len == sizeof data && memcmp(r.body, data, sizeof data) == 0);
    CHECK_STR(h_resp_header(&r, "X-Object-Dtype"), "uint8");
    h_resp_free(&r);

    /* as .npy: numpy's own header for |u1 (3000,), then the bytes */
    struct h_buf want = {0};
    npy_build(&want, 1, "|u1", "(3000,)", data, sizeof data);
    CHECK(download(id, "application/x-npy", &r) == 0 && CHECK_INT(r.status, 200));
    CHECK(h_resp_is(&r, "application/x-npy"));
    CHECKF(r.len == want.len && memcmp(r.body, want.p, want.len) == 0,
           "npy download differs (%zu bytes, expected %zu)", r.len, want.len);
    h_resp_free(&r);
    h_buf_free(&want);

    /* a chunked body: buffered, then copied */
    char id2[32] = "";
    CHECK_INT(upload("application/octet-stream", data, sizeof data, true, id2, NULL), 201);
    CHECK(download(id2, "*/*", &r) == 0 && CHECK_INT(r.status, 200));
    CHECK(r.len == sizeof data && memcmp(r.body, data, sizeof data) == 0);
    h_resp_free(&r);
    /* an empty body is an empty object */
    char id3[32] = "";
    CHECK_INT(upload("application/octet-stream", "", 0, false, id3, NULL), 201);
    CHECK(download(id3, NULL, &r) == 0 && CHECK_INT(r.status, 200) && CHECK_INT(r.len, 0));
    h_resp_free(&r);
    CHECK_INT(delete_object(id), 204);
    CHECK_INT(delete_object(id2), 204);
    CHECK_INT(delete_object(id3), 204);
    CHECK(h_get(&svc, path, &r) == 0 && CHECK_PROBLEM(&r, 404, "not-found", path));
    h_resp_free(&r);
    CHECK_INT(delete_object(id), 404);
}

static void test_npy_versions_and_dtypes(void)
{
    static const struct {
        const char *descr, *name;
        size_t size;
    } dt[] = {
        {"<f4", "float32", 4}, {"<f8", "float64", 8}, {"<i4", "int32", 4},
        {"<i8", "int64", 8},   {"|u1", "uint8", 1},
    };
    unsigned char data[2 * 3 * 8];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(0xA0 + i);
    for (unsigned major = 1; major <= 3; major++) {
        for (size_t d = 0; d < sizeof dt / sizeof dt[0]; d++) {
            size_t len = 6 * dt[d].size;
            struct h_buf b = {0};
            npy_build(&b, major, dt[d].descr, "(2, 3)", data, len);
            char id[32] = "";
            struct h_resp r;
            long st = upload("application/x-npy", b.p, b.len, major == 2, id, &r);
            h_buf_free(&b);
            if (!CHECKF(st == 201, "v%u.0 %s: %ld %s", major, dt[d].descr, st, r.body)) {
                h_resp_free(&r);
                continue;
            }
            json_t *j = h_json(&r);
            CHECK_STR(h_jstr(j, "dtype"), dt[d].name);
            long long v = -1;
            CHECK(h_jint(j, "bytes", &v) && v == (long long)len);
            CHECK(h_jint(j, "shape/0", &v) && v == 2);
            CHECK(h_jint(j, "shape/1", &v) && v == 3);
            h_resp_free(&r);
            /* raw download: the data only */
            CHECK(download(id, NULL, &r) == 0 && CHECK_INT(r.status, 200));
            CHECK(r.len == len && memcmp(r.body, data, len) == 0);
            CHECK_STR(h_resp_header(&r, "X-Object-Shape"), "2,3");
            h_resp_free(&r);
            /* .npy download: always version 1.0, numpy's spelling */
            struct h_buf want = {0};
            const char *wd = strcmp(dt[d].descr, "|u1") == 0 ? "|u1" : dt[d].descr;
            npy_build(&want, 1, wd, "(2, 3)", data, len);
            CHECK(download(id, "application/octet-stream;q=0.5, application/x-npy", &r) == 0 &&
                  CHECK_INT(r.status, 200));
            CHECK(r.len == want.len && memcmp(r.body, want.p, want.len) == 0);
            h_resp_free(&r);
            h_buf_free(&want);
            CHECK_INT(delete_object(id), 204);
        }
    }
}

static void test_list_and_metrics(void)
{
    char ids[5][32];
    for (int i = 0; i < 5; i++)
        CHECK_INT(upload("application/octet-stream", "abc", 3, false, ids[i], NULL), 201);
    /* oldest first, two at a time */
    char after[32] = "";
    int seen = 0;
    for (int page = 0; page < 5; page++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/objects?limit=2%s%s", after[0] ? "&after=" : "", after);
        struct h_resp r;
        if (!(h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 200))) {
            h_resp_free(&r);
            break;
        }
        json_t *j = h_json(&r);
        static const char *const keys[] = {"objects",   "next_after",     "count",
                                           "used_bytes", "capacity_bytes", "max_object_bytes",
                                           "max_objects", NULL};
        CHECK(h_json_keys_exactly(j, keys));
        long long v = -1;
        CHECK(h_jint(j, "count", &v) && v == 5);
        CHECK(h_jint(j, "capacity_bytes", &v) && v == 4 * MIB);
        CHECK(h_jint(j, "used_bytes", &v) && v == 5 * 65536);
        size_t i;
        json_t *o;
        json_array_foreach(h_jget(j, "objects"), i, o) {
            if (seen < 5)
                CHECK_STR(h_jstr(o, "id"), ids[seen]);
            seen++;
        }
        const char *next = h_jstr(j, "next_after");
        bool last = json_is_null(h_jget(j, "next_after"));
        if (next)
            snprintf(after, sizeof after, "%s", next);
        h_resp_free(&r);
        if (last)
            break;
    }
    CHECK_INT(seen, 5);

    struct h_resp r;
    CHECK(h_get(&svc, "/metrics", &r) == 0 && CHECK_INT(r.status, 200));
    CHECK(strstr(r.body, "\nbatchd_objects 5\n") != NULL);
    CHECK(strstr(r.body, "\nbatchd_object_memory_used_bytes 327680\n") != NULL);
    CHECK(strstr(r.body, "\nbatchd_object_memory_capacity_bytes 4194304\n") != NULL);
    h_resp_free(&r);

    /* parameters */
    CHECK(h_get(&svc, "/v1/objects?limit=0", &r) == 0 &&
          CHECK_PROBLEM(&r, 400, "invalid-parameter", "/v1/objects"));
    h_resp_free(&r);
    CHECK(h_get(&svc, "/v1/objects?after=nope", &r) == 0 &&
          CHECK_PROBLEM(&r, 400, "invalid-parameter", "/v1/objects"));
    h_resp_free(&r);
    CHECK(h_get(&svc, "/v1/objects?status=x", &r) == 0 &&
          CHECK_PROBLEM(&r, 400, "invalid-parameter", "/v1/objects"));
    h_resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s?download=yes", ids[0]);
    CHECK(h_get(&svc, path, &r) == 0 && CHECK_PROBLEM(&r, 400, "invalid-parameter", strtok(path, "?")));
    h_resp_free(&r);
    delete_all();
}

static void test_ids(void)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"/v1/objects/abc", 400},
        {"/v1/objects/GVSYDV5ZZ7XSJF2DB7YEMQZKQA", 400},
        {"/v1/objects/gvsydv5zz7xsjf2db7yemqzkq1", 400}, /* 1 is not base32 */
        {"/v1/objects/gvsydv5zz7xsjf2db7yemqzkqaa", 400},
        {"/v1/objects/%2e%2e", 400},
        {"/v1/objects/..%2f..%2fetc%2fpasswd", 404},
        {"/v1/objects/a%2fb", 404},
        {"/v1/objects/gvsydv5zz7xsjf2db7yemqzkqa/x", 404},
        {"/v1/objects/gvsydv5zz7xsjf2db7yemqzkqa", 404}, /* well-formed, unknown */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct h_resp r;
        if (!CHECK(h_get(&svc, cases[i].path, &r) == 0))
            continue;
        CHECKF(r.status == cases[i].status, "%s: %ld", cases[i].path, r.status);
        CHECKF(h_resp_is(&r, "application/problem+json"), "%s: not a problem", cases[i].path);
        h_resp_free(&r);
    }
    struct h_resp r;
    CHECK(h_delete(&svc, "/v1/objects/abc", &r) == 0 && CHECK_INT(r.status, 400));
    h_resp_free(&r);
    /* the CORS preflights of both paths */
    static const char *const paths[] = {"/v1/objects", "/v1/objects/gvsydv5zz7xsjf2db7yemqzkqa"};
    for (size_t i = 0; i < 2; i++) {
        struct h_req req = {.method = "OPTIONS", .path = paths[i]};
        CHECK(h_request(&svc, &req, &r) == 0 && CHECK_INT(r.status, 204));
        CHECK(h_resp_header(&r, "Allow") != NULL);
        h_resp_free(&r);
    }
}

static void test_refusals(void)
{
    struct h_resp r;
    /* 415 */
    CHECK_INT(upload("text/plain", "abc", 3, false, NULL, &r), 415);
    CHECK_PROBLEM(&r, 415, "unsupported-media-type", "/v1/objects");
    h_resp_free(&r);
    CHECK_INT(upload("application/json", "{}", 2, false, NULL, NULL), 415);
    CHECK_INT(upload(NULL, "abc", 3, false, NULL, NULL), 415);
    /* 413 from Content-Length, before the body */
    size_t big = MIB + 1;
    char *body = calloc(1, big + 4096);
    if (!CHECK(body != NULL))
        return;
    CHECK_INT(upload("application/octet-stream", body, big, false, NULL, &r), 413);
    CHECK_PROBLEM(&r, 413, "too-large", "/v1/objects");
    long long lim = -1;
    CHECK(h_jint(h_json(&r), "limit", &lim) && lim == MIB);
    h_resp_free(&r);
    /* 413 from a chunked body past the limit */
    CHECK_INT(upload("application/octet-stream", body, big, true, NULL, NULL), 413);
    free(body);
    /* 413 from the npy shape (the body itself is small) */
    struct h_buf b = {0};
    npy_build(&b, 1, "<f8", "(1000, 1000)", NULL, 0);
    CHECK_INT(upload("application/x-npy", b.p, b.len, true, NULL, &r), 413);
    CHECK_PROBLEM(&r, 413, "too-large", "/v1/objects");
    h_resp_free(&r);
    h_buf_free(&b);
    /* 400: a bad .npy, and lengths that disagree with the header */
    static const struct {
        const char *descr, *shape;
        size_t data;
        const char *detail;
    } bad[] = {
        {">f4", "(2,)", 8, "big-endian"},
        {"<f2", "(2,)", 4, "'<f2' is not a supported dtype"},
        {"<f4", "()", 4, "0-d arrays"},
        {"<f4", "(3,)", 8, "Content-Length is"},
        {"<f4", "(2,)", 12, "Content-Length is"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char zeros[16] = {0};
        npy_build(&b, 1, bad[i].descr, bad[i].shape, zeros, bad[i].data);
        CHECK_INT(upload("application/x-npy", b.p, b.len, false, NULL, &r), 400);
        CHECK_PROBLEM(&r, 400, "invalid-object", "/v1/objects");
        CHECKF(strstr(h_jstr(h_json(&r), "detail") ? h_jstr(h_json(&r), "detail") : "",
                      bad[i].detail) != NULL,
               "detail %s", r.body);
        h_resp_free(&r);
        h_buf_free(&b);
    }
    /* chunked: too short, too long */
    unsigned char zeros[16] = {0};
    npy_build(&b, 1, "<f4", "(3,)", zeros, 8);
    CHECK_INT(upload("application/x-npy", b.p, b.len, true, NULL, &r), 400);
    CHECK(strstr(r.body, "ends after 8 of the 12 data bytes") != NULL);
    h_resp_free(&r);
    h_buf_free(&b);
    npy_build(&b, 1, "<f4", "(3,)", zeros, 16);
    CHECK_INT(upload("application/x-npy", b.p, b.len, true, NULL, &r), 400);
    CHECK(strstr(r.body, "goes on past the 12 data bytes") != NULL);
    h_resp_free(&r);
    h_buf_free(&b);
    CHECK_INT(upload("application/x-npy", "not numpy", 9, false, NULL, NULL), 400);
    CHECK_INT(upload("application/x-npy", "", 0, false, NULL, NULL), 400);
    long long count = -1, used = -1;
    CHECK(totals(&count, &used) && CHECK_INT(count, 0) && CHECK_INT(used, 0));
}

static void test_full(void)
{
    char *mib = malloc(MIB);
    if (!CHECK(mib != NULL))
        return;
    memset(mib, 0x5a, MIB);
    char ids[4][32];
    for (int i = 0; i < 4; i++)
        CHECK_INT(upload("application/octet-stream", mib, MIB, false, ids[i], NULL), 201);
    struct h_resp r;
    CHECK_INT(upload("application/octet-stream", "x", 1, false, NULL, &r), 507);
    CHECK_PROBLEM(&r, 507, "insufficient-storage", "/v1/objects");
    h_resp_free(&r);
    /* a deleted object's memory is reusable */
    CHECK_INT(delete_object(ids[0]), 204);
    CHECK_INT(upload("application/octet-stream", mib, MIB, false, ids[0], NULL), 201);
    free(mib);
    delete_all();
    /* the table: --max-objects 16 */
    char id[32];
    for (int i = 0; i < 16; i++)
        CHECK_INT(upload("application/octet-stream", "t", 1, false, id, NULL), 201);
    CHECK_INT(upload("application/octet-stream", "t", 1, false, NULL, &r), 507);
    CHECK(strstr(r.body, "--max-objects") != NULL);
    h_resp_free(&r);
    delete_all();
}

/* Sends headers announcing `announced` bytes and only `sent` of them,
 * then closes the connection. */
/* The value of a /metrics line "name value", or -1. */
static long long metric(const char *name)
{
    struct h_resp r;
    long long v = -1;
    if (h_get(&svc, "/metrics", &r) == 0 && r.status == 200) {
        char key[128];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(r.body, key);
        if (p)
            v = strtoll(p + strlen(key), NULL, 10);
    }
    h_resp_free(&r);
    return v;
}

/* Uploads n bytes of fill pattern `seed` raw, downloads them back raw and
 * as .npy, checks both byte for byte; returns the id in id[32]. */
static bool round_trip(size_t n, unsigned seed, char *id)
{
    unsigned char *data = malloc(n ? n : 1);
    if (!CHECK(data != NULL))
        return false;
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)((i * 31 + seed) ^ (i >> 11));
    bool ok = CHECK_INT(upload("application/octet-stream", data, n, false, id, NULL), 201);
    struct h_resp r;
    ok = ok && CHECK(download(id, NULL, &r) == 0) && CHECK_INT(r.status, 200) &&
         CHECKF(r.len == n && memcmp(r.body, data, n) == 0,
                "download of %zu bytes differs from the upload (%zu bytes back)", n, r.len);
    h_resp_free(&r);
    char shape[32];
    snprintf(shape, sizeof shape, "(%zu,)", n);
    struct h_buf want = {0};
    npy_build(&want, 1, "|u1", shape, data, n);
    ok = ok && CHECK(download(id, "application/x-npy", &r) == 0) && CHECK_INT(r.status, 200) &&
         CHECKF(r.len == want.len && memcmp(r.body, want.p, want.len) == 0,
                "npy download of %zu bytes differs", n);
    h_resp_free(&r);
    h_buf_free(&want);
    free(data);
    return ok;
}

static void test_pool_reuse(void)
{
    delete_all();
    long long reused0 = metric("batchd_object_pool_reused_bytes_total");
    CHECK(reused0 >= 0);
    CHECK_INT(metric("batchd_object_pool_limit_bytes"), MIB); /* a quarter of 4M */
    char a[32] = "", b[32] = "", c[32] = "";
    if (!round_trip(MIB, 1, a)) /* the largest object, whole */
        return;
    CHECK_INT(delete_object(a), 204);
    CHECK_INT(metric("batchd_object_pool_bytes"), MIB);
    /* smaller, and not a whole number of pages: on a's pages, its own bytes */
    if (!round_trip(300001, 2, b))
        return;
    CHECK(metric("batchd_object_pool_reused_bytes_total") - reused0 >= 300001);
    CHECK_INT(delete_object(b), 204);
    if (!round_trip(70000, 3, c))
        return;
    CHECK_INT(delete_object(c), 204);
    /* a .npy upload on reused pages, and a model-less empty object */
    unsigned char f[16] = {0};
    for (int i = 0; i < 16; i++)
        f[i] = (unsigned char)(0xf0 + i);
    struct h_buf npy = {0};
    npy_build(&npy, 1, "<f4", "(4,)", f, sizeof f);
    char d[32] = "";
    struct h_resp r;
    CHECK_INT(upload("application/x-npy", npy.p, npy.len, false, d, NULL), 201);
    CHECK(download(d, NULL, &r) == 0 && CHECK_INT(r.status, 200) &&
          CHECK(r.len == sizeof f && memcmp(r.body, f, sizeof f) == 0));
    h_resp_free(&r);
    CHECK(download(d, "application/x-npy", &r) == 0 && CHECK_INT(r.status, 200) &&
          CHECK(r.len == npy.len && memcmp(r.body, npy.p, npy.len) == 0));
    h_resp_free(&r);
    h_buf_free(&npy);
    CHECK_INT(delete_object(d), 204);
}

static bool send_half(const char *ctype, const void *body, size_t announced, size_t sent)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)svc.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/objects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     ctype, announced);
    ok = ok && write(fd, head, (size_t)n) == n;
    size_t off = 0;
    while (ok && off < sent) {
        ssize_t w = write(fd, (const char *)body + off, sent - off);
        if (w <= 0)
            ok = false;
        else
            off += (size_t)w;
    }
    h_sleep_ms(200); /* let the server take in what was sent */
    close(fd);
    return ok;
}

static void test_abandoned(void)
{
    char *mib = calloc(1, MIB);
    if (!CHECK(mib != NULL))
        return;
    /* fill 3 MiB, so that only an abandoned upload's memory coming back
     * lets the last 1 MiB object in */
    char ids[3][32];
    for (int i = 0; i < 3; i++)
        CHECK_INT(upload("application/octet-stream", mib, MIB, false, ids[i], NULL), 201);
    CHECK(send_half("application/octet-stream", mib, MIB, MIB / 2));
    struct h_buf b = {0};
    npy_build(&b, 1, "<f8", "(131072,)", mib, MIB - 128);
    CHECK(send_half("application/x-npy", b.p, b.len, 4096));
    h_buf_free(&b);
    /* the server notices the closed connections: bounded wait */
    long long count = -1, used = -1;
    for (int i = 0; i < 100; i++) {
        if (totals(&count, &used) && used == 3 * MIB)
            break;
        h_sleep_ms(50);
    }
    CHECK_INT(count, 3);
    CHECK_INT(used, 3 * MIB);
    char id[32];
    CHECK_INT(upload("application/octet-stream", mib, MIB, false, id, NULL), 201);
    free(mib);
    delete_all();
}

static bool is_running(const json_t *job, void *arg)
{
    (void)arg;
    const char *st = h_jstr(job, "status");
    return st && strcmp(st, "running") == 0;
}

static void test_delete_while_used(void)
{
    char id[32] = "";
    if (!CHECK_INT(upload("application/octet-stream", "pinned", 6, false, id, NULL), 201))
        return;
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"chaos\",\"inputs\":[{\"sleep_ms\":3000,\"value\":{\"$object\":\"%s\"}},"
             "{\"sleep_ms\":3000,\"value\":{\"$object\":\"%s\"}}]}",
             id, id);
    char job[32];
    if (!h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), job, 30))
        return;
    json_t *j = h_poll_job(&svc, job, 10, is_running, NULL);
    CHECK(j != NULL);
    json_decref(j);
    char path[96];
    snprintf(path, sizeof path, "/v1/objects/%s", id);
    struct h_resp r;
    long long pins = -1;
    CHECK(h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 200));
    h_jint(h_json(&r), "pins", &pins);
    h_resp_free(&r);
    if (pins == 0) {
        h_skip("the engine does not pin the objects a running job names yet (service/engine.c)");
    } else {
        CHECK(h_delete(&svc, path, &r) == 0 && CHECK_PROBLEM(&r, 409, "conflict", path));
        h_resp_free(&r);
    }
    json_t *done = h_wait_job(&svc, job, 30);
    CHECK(done != NULL);
    json_decref(done);
    /* the job is over: its pins are gone */
    for (int i = 0; i < 50; i++) {
        if (delete_object(id) != 409)
            break;
        h_sleep_ms(100);
    }
    CHECK(h_get(&svc, path, &r) == 0 && CHECK_INT(r.status, 404));
    h_resp_free(&r);
}

int main(void)
{
    static const struct h_test tests[] = {
        {"raw upload, get, download byte-exact (raw and .npy), delete", test_raw_round_trip},
        {".npy 1.0, 2.0, 3.0 of every dtype, round trip", test_npy_versions_and_dtypes},
        {"list (paged, totals) and /metrics gauges", test_list_and_metrics},
        {"malformed ids and traversal: 4xx problems", test_ids},
        {"413, 415, 400 (bad .npy, lengths)", test_refusals},
        {"507: object memory and table full; memory reusable", test_full},
        {"an abandoned upload leaves nothing behind", test_abandoned},
        {"freed pages reused: each object downloads its own bytes", test_pool_reuse},
        {"409: DELETE while a running job names the object", test_delete_while_used},
    };
    static const char *const args[] = {"--workers",          "1",  "--model",       "chaos",
                                       "--object-memory",    "4M", "--max-object-bytes", "1M",
                                       "--max-objects",      "16", NULL};
    struct h_service_opts o = {.args = args};
    return h_main_on_service(&svc, &o, 15, tests, sizeof tests / sizeof tests[0]);
}
