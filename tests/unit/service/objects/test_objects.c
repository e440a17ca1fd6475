/*
 * Unit tests of service/objects.c: the object store, on real memfd regions.
 *
 * The life of an entry (alloc, commit, find, abort, delete) and every
 * error the header promises (-EINVAL, -EFBIG, -ENOSPC, -EMFILE, -EBUSY,
 * -ENOENT); pins and unpin_all; reclaim_owner frees only its owner's
 * PENDING objects; list paging in commit order, with a cursor that was
 * deleted since; pages reused after a delete and given back to the kernel
 * (the memfd's st_blocks) when the pool is off; the pool of freed pages
 * (kept resident, bounded, counted; a reused page never shows the old
 * object's bytes: zeroed by objects_alloc, and past the last byte by
 * objects_alloc_uninit); objects seen across fork in both directions;
 * and a child killed while it holds the store's mutex (the robust mutex:
 * the parent goes on, under an alarm so that a deadlock fails the test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service/objects/objects.h"

#define PAGE OBJECTS_PAGE

static struct objects make(uint64_t capacity, uint32_t max_objects, uint64_t max_bytes)
{
    struct objects o;
    int rc = objects_create(&o, capacity, max_objects, max_bytes);
    if (rc != 0)
        fail_msg("objects_create: %s", strerror(-rc));
    return o;
}

/* A 1-D uint8 object of n bytes, committed; returns its id in id. */
static void put(struct objects *o, uint64_t n, uint8_t fill, char *id)
{
    struct model_object m;
    uint64_t shape[1] = { n };
    assert_int_equal(objects_alloc(o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &m), 0);
    memset((void *)m.data, fill, n);
    assert_int_equal(objects_commit(o, m.id), 0);
    memcpy(id, m.id, MODEL_OBJECT_ID_LEN + 1);
}

static long blocks(const struct objects *o)
{
    struct stat st;
    assert_int_equal(fstat(o->fd, &st), 0);
    return (long)st.st_blocks;
}

static void test_create_arguments(void **unused)
{
    (void)unused;
    struct objects o;
    assert_int_equal(objects_create(&o, 0, 10, 1), -EINVAL);
    assert_null(o.base);
    assert_int_equal(objects_create(&o, PAGE, 0, 1), -EINVAL);
    assert_int_equal(objects_create(&o, PAGE, 10, 0), -EINVAL);
    assert_int_equal(objects_create(&o, PAGE, 10, PAGE + 1), -EINVAL);
    assert_int_equal(objects_create(&o, PAGE, OBJECTS_MAX_OBJECTS + 1, 1), -EINVAL);
    assert_int_equal(objects_create(&o, OBJECTS_MAX_CAPACITY + 1, 10, 1), -EINVAL);
    /* a capacity that is not a whole number of pages is rounded up */
    o = make(PAGE + 1, 3, PAGE);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.capacity_bytes, 2 * PAGE);
    assert_int_equal(st.used_bytes, 0);
    assert_int_equal(st.max_object_bytes, PAGE);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.max_objects, 3);
    objects_destroy(&o);
    assert_null(o.base);
    assert_int_equal(o.fd, -1);
}

static void test_alloc_commit_find(void **unused)
{
    (void)unused;
    struct objects o = make(16 * PAGE, 8, 4 * PAGE);
    struct model_object m;
    uint64_t shape[2] = { 3, 5 };
    assert_int_equal(objects_alloc(&o, 7, MODEL_DTYPE_F64, 2, shape, &m), 0);
    assert_true(objects_id_valid(m.id));
    assert_int_equal(m.dtype, MODEL_DTYPE_F64);
    assert_int_equal(m.ndim, 2);
    assert_int_equal(m.shape[0], 3);
    assert_int_equal(m.shape[1], 5);
    assert_int_equal(m.shape[2], 0);
    assert_int_equal(m.bytes, 3 * 5 * 8);
    /* a new object reads as zeros, and is the creator's to write */
    for (size_t i = 0; i < m.bytes; i++)
        assert_int_equal(((const uint8_t *)m.data)[i], 0);
    double *d = (double *)(uintptr_t)m.data;
    for (int i = 0; i < 15; i++)
        d[i] = i * 0.5;

    /* PENDING: invisible to find, list, delete and pins */
    assert_int_equal(objects_find(&o, m.id, NULL), -ENOENT);
    assert_int_equal(objects_delete(&o, m.id), -ENOENT);
    assert_int_equal(objects_pin(&o, m.id), -ENOENT);
    bool more = true;
    struct objects_info list[4];
    assert_int_equal(objects_list(&o, NULL, list, 4, &more), 0);
    assert_false(more);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.used_bytes, PAGE); /* its page is taken all the same */

    assert_int_equal(objects_commit(&o, m.id), 0);
    assert_int_equal(objects_commit(&o, m.id), -ENOENT); /* READY, not PENDING */
    assert_int_equal(objects_abort(&o, m.id), -ENOENT);
    struct objects_info info;
    assert_int_equal(objects_find(&o, m.id, &info), 0);
    assert_string_equal(info.obj.id, m.id);
    assert_int_equal(info.obj.bytes, 120);
    assert_ptr_equal(info.obj.data, m.data);
    assert_true(((const double *)info.obj.data)[14] == 7.0);
    assert_int_equal(info.pins, 0);
    assert_int_equal(info.made_by_worker, 1); /* owner 7 is a worker */
    assert_true(info.created_ns > 1600000000ull * 1000000000ull);
    assert_int_equal(objects_find(&o, m.id, NULL), 0);
    objects_stats(&o, &st);
    assert_int_equal(st.count, 1);

    /* ids that are not there, or not ids at all */
    char other[MODEL_OBJECT_ID_LEN + 1];
    memcpy(other, m.id, sizeof other);
    other[0] = other[0] == '0' ? '1' : '0';
    assert_int_equal(objects_find(&o, other, NULL), -ENOENT);
    assert_int_equal(objects_find(&o, "", NULL), -ENOENT);
    assert_int_equal(objects_find(&o, NULL, NULL), -ENOENT);
    char longer[40];
    snprintf(longer, sizeof longer, "%sx", m.id);
    assert_int_equal(objects_find(&o, longer, NULL), -ENOENT);

    /* an upload is not made by a worker; abort frees a PENDING one */
    char up[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 10, 1, up);
    assert_int_equal(objects_find(&o, up, &info), 0);
    assert_int_equal(info.made_by_worker, 0);
    assert_int_equal(objects_alloc(&o, 1, MODEL_DTYPE_U8, 1, shape, &m), 0);
    assert_int_equal(objects_abort(&o, m.id), 0);
    assert_int_equal(objects_abort(&o, m.id), -ENOENT);
    assert_int_equal(objects_commit(&o, m.id), -ENOENT);
    objects_stats(&o, &st);
    assert_int_equal(st.count, 2);
    assert_int_equal(st.used_bytes, 2 * PAGE);
    objects_destroy(&o);
}

static void test_ids(void **unused)
{
    (void)unused;
    /* lowercase RFC 4648 base32, the job ids' alphabet (service/core/id.h) */
    assert_true(objects_id_valid("abcdefghijklmnopqrstuvwxyz"));
    assert_true(objects_id_valid("234567abcdefghijklmnopqrst"));
    assert_false(objects_id_valid(NULL));
    assert_false(objects_id_valid(""));
    assert_false(objects_id_valid("abcdefghijklmnopqrstuvwxy"));   /* 25 */
    assert_false(objects_id_valid("abcdefghijklmnopqrstuvwxyz2")); /* 27 */
    assert_false(objects_id_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));  /* upper case */
    assert_false(objects_id_valid("0123456789abcdefghjkmnpqrs"));  /* 0, 1, 8, 9 */
    assert_false(objects_id_valid("abcdefghijklmnopqrstuvwxy="));  /* padding */

    /* 64 ids: well formed, all different */
    struct objects o = make(PAGE, 64, PAGE);
    char ids[64][MODEL_OBJECT_ID_LEN + 1];
    uint64_t shape[1] = { 0 }; /* zero-sized objects take no page */
    for (int i = 0; i < 64; i++) {
        struct model_object m;
        assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, shape, &m), 0);
        assert_int_equal(m.bytes, 0);
        assert_true(objects_id_valid(m.id));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[j], m.id);
        memcpy(ids[i], m.id, sizeof ids[i]);
    }
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.used_bytes, 0);
    objects_destroy(&o);
}

static void test_bad_shapes_and_limits(void **unused)
{
    (void)unused;
    struct objects o = make(4 * PAGE, 2, 3 * PAGE);
    struct model_object m;
    uint64_t shape[MODEL_OBJECT_MAX_DIMS + 1] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    assert_int_equal(objects_alloc(&o, 0, 99, 1, shape, &m), -EINVAL);
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 0, shape, &m), -EINVAL);
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, MODEL_OBJECT_MAX_DIMS + 1, shape, &m),
                     -EINVAL);
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, NULL, &m), -EINVAL);
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, MODEL_OBJECT_MAX_DIMS, shape, &m), 0);
    assert_int_equal(objects_abort(&o, m.id), 0);
    /* shape x element size overflows 64 bits: in the product of dims, and
     * only through the element size */
    uint64_t big[2] = { 1ull << 32, 1ull << 32 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 2, big, &m), -EINVAL);
    uint64_t big8[1] = { (1ull << 61) };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_F64, 1, big8, &m), -EINVAL);
    /* -EFBIG: one byte over the limit; the limit itself fits */
    uint64_t over[1] = { 3 * PAGE + 1 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, over, &m), -EFBIG);
    uint64_t over4[1] = { (3 * PAGE) / 4 + 1 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_I32, 1, over4, &m), -EFBIG);
    uint64_t limit[1] = { 3 * PAGE };
    char a[MODEL_OBJECT_ID_LEN + 1], b[MODEL_OBJECT_ID_LEN + 1];
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, limit, &m), 0);
    memcpy(a, m.id, sizeof a);
    /* -ENOSPC: 1 page left, 2 asked */
    uint64_t two[1] = { PAGE + 1 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, two, &m), -ENOSPC);
    uint64_t one[1] = { PAGE };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, one, &m), 0);
    memcpy(b, m.id, sizeof b);
    /* -EMFILE: the table (2 entries) is full, even for an empty object */
    uint64_t zero[1] = { 0 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, zero, &m), -EMFILE);
    /* the failures changed nothing */
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.used_bytes, 4 * PAGE);
    assert_int_equal(objects_commit(&o, a), 0);
    assert_int_equal(objects_commit(&o, b), 0);
    objects_destroy(&o);
}

static void test_pins_and_delete(void **unused)
{
    (void)unused;
    struct objects o = make(8 * PAGE, 8, PAGE);
    char a[MODEL_OBJECT_ID_LEN + 1], b[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 100, 1, a);
    put(&o, 100, 2, b);
    assert_int_equal(objects_pin(&o, a), 0);
    assert_int_equal(objects_pin(&o, a), 0);
    struct objects_info info;
    assert_int_equal(objects_find(&o, a, &info), 0);
    assert_int_equal(info.pins, 2);
    assert_int_equal(objects_delete(&o, a), -EBUSY);
    assert_int_equal(objects_unpin(&o, a), 0);
    assert_int_equal(objects_delete(&o, a), -EBUSY); /* one pin left */
    assert_int_equal(objects_unpin(&o, a), 0);
    assert_int_equal(objects_unpin(&o, a), 0); /* stays at 0 */
    assert_int_equal(objects_find(&o, a, &info), 0);
    assert_int_equal(info.pins, 0);
    assert_int_equal(objects_delete(&o, a), 0);
    assert_int_equal(objects_find(&o, a, NULL), -ENOENT);
    assert_int_equal(objects_delete(&o, a), -ENOENT);
    assert_int_equal(objects_pin(&o, a), -ENOENT);
    assert_int_equal(objects_unpin(&o, a), -ENOENT);

    /* unpin_all: a new api process drops the old one's pins */
    assert_int_equal(objects_pin(&o, b), 0);
    assert_int_equal(objects_pin(&o, b), 0);
    assert_int_equal(objects_delete(&o, b), -EBUSY);
    objects_unpin_all(&o);
    assert_int_equal(objects_delete(&o, b), 0);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.used_bytes, 0);
    objects_destroy(&o);
}

static void test_reclaim_owner(void **unused)
{
    (void)unused;
    struct objects o = make(8 * PAGE, 8, PAGE);
    uint64_t shape[1] = { 10 };
    struct model_object p3a, p3b, r3, p4, api;
    assert_int_equal(objects_alloc(&o, 3, MODEL_DTYPE_U8, 1, shape, &p3a), 0);
    assert_int_equal(objects_alloc(&o, 3, MODEL_DTYPE_U8, 1, shape, &p3b), 0);
    assert_int_equal(objects_alloc(&o, 3, MODEL_DTYPE_U8, 1, shape, &r3), 0);
    assert_int_equal(objects_commit(&o, r3.id), 0);
    assert_int_equal(objects_alloc(&o, 4, MODEL_DTYPE_U8, 1, shape, &p4), 0);
    assert_int_equal(objects_alloc(&o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &api), 0);

    assert_int_equal(objects_reclaim_owner(&o, 3), 2);
    assert_int_equal(objects_commit(&o, p3a.id), -ENOENT); /* gone */
    assert_int_equal(objects_commit(&o, p3b.id), -ENOENT);
    assert_int_equal(objects_find(&o, r3.id, NULL), 0);    /* READY stays */
    assert_int_equal(objects_reclaim_owner(&o, 3), 0);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.used_bytes, 3 * PAGE);

    assert_int_equal(objects_reclaim_owner(&o, OBJECTS_OWNER_API), 1);
    assert_int_equal(objects_commit(&o, api.id), -ENOENT);
    assert_int_equal(objects_commit(&o, p4.id), 0); /* another owner's is untouched */
    objects_stats(&o, &st);
    assert_int_equal(st.used_bytes, 2 * PAGE);
    assert_int_equal(st.count, 2);
    objects_destroy(&o);
}

static void test_list_paging(void **unused)
{
    (void)unused;
    struct objects o = make(16 * PAGE, 16, PAGE);
    char ids[7][MODEL_OBJECT_ID_LEN + 1];
    /* committed in the order 0..6, whatever order they were allocated in:
     * object 6 is allocated first and committed last */
    struct model_object late;
    uint64_t shape[1] = { 1 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, shape, &late), 0);
    for (int i = 0; i < 6; i++)
        put(&o, 1, (uint8_t)i, ids[i]);
    assert_int_equal(objects_commit(&o, late.id), 0);
    memcpy(ids[6], late.id, sizeof ids[6]);

    struct objects_info page[3];
    bool more = false;
    size_t n = objects_list(&o, NULL, page, 3, &more);
    assert_int_equal(n, 3);
    assert_true(more);
    for (int i = 0; i < 3; i++)
        assert_string_equal(page[i].obj.id, ids[i]);
    n = objects_list(&o, page[2].obj.id, page, 3, &more);
    assert_int_equal(n, 3);
    assert_true(more);
    for (int i = 0; i < 3; i++)
        assert_string_equal(page[i].obj.id, ids[3 + i]);
    n = objects_list(&o, page[2].obj.id, page, 3, &more);
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(page[0].obj.id, ids[6]);
    /* exactly a page's worth: no "more" */
    n = objects_list(&o, ids[3], page, 3, &more);
    assert_int_equal(n, 3);
    assert_false(more);
    /* "" is the start too */
    n = objects_list(&o, "", page, 1, &more);
    assert_int_equal(n, 1);
    assert_true(more);
    assert_string_equal(page[0].obj.id, ids[0]);
    /* a cursor deleted since keeps its place */
    assert_int_equal(objects_delete(&o, ids[2]), 0);
    assert_int_equal(objects_delete(&o, ids[3]), 0);
    n = objects_list(&o, ids[2], page, 3, &more);
    assert_int_equal(n, 3);
    assert_false(more);
    assert_string_equal(page[0].obj.id, ids[4]);
    assert_string_equal(page[1].obj.id, ids[5]);
    assert_string_equal(page[2].obj.id, ids[6]);
    /* an unknown cursor lists nothing; max 0 only says whether any exist */
    more = true;
    assert_int_equal(objects_list(&o, "aaaaaaaaaaaaaaaaaaaaaaaaaz", page, 3, &more), 0);
    assert_false(more);
    assert_int_equal(objects_list(&o, NULL, page, 0, &more), 0);
    assert_true(more);
    objects_destroy(&o);
}

static void test_pages_reused_and_given_back(void **unused)
{
    (void)unused;
    struct objects o = make(64 * PAGE, 16, 32 * PAGE);
    objects_set_pool_limit(&o, 0); /* the pool has tests of its own */
    long empty = blocks(&o);
    char a[MODEL_OBJECT_ID_LEN + 1], b[MODEL_OBJECT_ID_LEN + 1], c[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 16 * PAGE, 0xab, a); /* 1 MiB, every byte written */
    long full = blocks(&o);
    assert_true(full - empty >= (long)(16 * PAGE / 512));
    put(&o, PAGE, 0xcd, b);
    put(&o, PAGE, 0xef, c);
    struct objects_info ia, ib, ic;
    assert_int_equal(objects_find(&o, a, &ia), 0);
    assert_int_equal(objects_find(&o, b, &ib), 0);
    assert_int_equal(objects_find(&o, c, &ic), 0);

    /* the hole b leaves is where the next one-page object goes, zeroed */
    assert_int_equal(objects_delete(&o, b), 0);
    struct model_object m;
    uint64_t one[1] = { PAGE };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, one, &m), 0);
    assert_ptr_equal(m.data, ib.obj.data);
    for (size_t i = 0; i < PAGE; i += 4096)
        assert_int_equal(((const uint8_t *)m.data)[i], 0);
    assert_int_equal(objects_abort(&o, m.id), 0);

    /* the memory goes back to the kernel on delete */
    long before = blocks(&o);
    assert_int_equal(objects_delete(&o, a), 0);
    long after = blocks(&o);
    assert_true(before - after >= (long)(16 * PAGE / 512));
    assert_int_equal(objects_delete(&o, c), 0);
    /* what is left is the table's few pages, less than one data page */
    assert_true(blocks(&o) - empty < (long)(PAGE / 512));

    /* and all 64 pages can be one object again (no page lost) */
    objects_destroy(&o);
    o = make(8 * PAGE, 16, 8 * PAGE);
    for (int round = 0; round < 3; round++) {
        uint64_t all[1] = { 8 * PAGE };
        assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, all, &m), 0);
        assert_int_equal(objects_commit(&o, m.id), 0);
        assert_int_equal(objects_delete(&o, m.id), 0);
    }
    objects_destroy(&o);
}

/* True when every byte of p[0..n) is `v`. */
static bool all_bytes(const void *p, size_t n, uint8_t v)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return false;
    return true;
}

/* A freed object's pages stay resident in the pool; the next object that
 * lands on them reads as zeros (objects_alloc), every byte; the counters
 * say what was reused. */
static void test_pool_reuses_and_zeroes(void **unused)
{
    (void)unused;
    struct objects o = make(64 * PAGE, 16, 32 * PAGE);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.pool_limit_bytes, 16 * PAGE); /* a quarter of the capacity */
    assert_int_equal(st.pool_bytes, 0);
    char a[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 8 * PAGE, 0xab, a);
    struct objects_info ia;
    assert_int_equal(objects_find(&o, a, &ia), 0);
    long full = blocks(&o);
    assert_int_equal(objects_delete(&o, a), 0);
    /* kept: the memory is still there, counted in the pool */
    assert_int_equal(blocks(&o), full);
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, 8 * PAGE);
    assert_int_equal(st.used_bytes, 0);
    assert_int_equal(st.pool_released_bytes, 0);

    /* a smaller object on the same pages: zeros, not 0xab, and no new memory */
    struct model_object m;
    uint64_t shape[1] = { 5 * PAGE + 123 };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, shape, &m), 0);
    assert_ptr_equal(m.data, ia.obj.data);
    assert_true(all_bytes(m.data, 6 * PAGE, 0));
    assert_int_equal(blocks(&o), full);
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, 2 * PAGE);
    assert_int_equal(st.pool_reused_bytes, 6 * PAGE);
    assert_int_equal(objects_abort(&o, m.id), 0);
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, 8 * PAGE);

    /* an object larger than the pool: part warm, part fresh, all zero */
    uint64_t big[1] = { 12 * PAGE };
    assert_int_equal(objects_alloc(&o, 0, MODEL_DTYPE_U8, 1, big, &m), 0);
    assert_true(all_bytes(m.data, 12 * PAGE, 0));
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, 0);
    assert_int_equal(objects_abort(&o, m.id), 0);
    objects_destroy(&o);
}

/* objects_alloc_uninit on warm pages: what the caller will write is left
 * as it is (the caller overwrites it), but nothing past the object's last
 * byte shows the old object's bytes; the caller's bytes are what a reader
 * finds after the commit. */
static void test_pool_uninit_tail_zeroed(void **unused)
{
    (void)unused;
    struct objects o = make(64 * PAGE, 16, 32 * PAGE);
    char a[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 4 * PAGE, 0xab, a);
    assert_int_equal(objects_delete(&o, a), 0);
    struct model_object m;
    uint64_t n = 2 * PAGE + 1000;
    uint64_t shape[1] = { n };
    assert_int_equal(objects_alloc_uninit(&o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &m),
                     0);
    /* the last page's tail past byte n reads as zeros */
    assert_true(all_bytes((const uint8_t *)m.data + n, 3 * PAGE - n, 0));
    memset((void *)m.data, 0x5a, n); /* the upload writes every byte */
    assert_int_equal(objects_commit(&o, m.id), 0);
    struct objects_info info;
    assert_int_equal(objects_find(&o, m.id, &info), 0);
    assert_true(all_bytes(info.obj.data, n, 0x5a));
    assert_true(all_bytes((const uint8_t *)info.obj.data + n, 3 * PAGE - n, 0));
    assert_int_equal(objects_delete(&o, m.id), 0);

    /* on cold pages (the pool off) an uninit object reads as zeros too */
    objects_set_pool_limit(&o, 0);
    assert_int_equal(objects_alloc_uninit(&o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &m),
                     0);
    assert_true(all_bytes(m.data, 3 * PAGE, 0));
    assert_int_equal(objects_abort(&o, m.id), 0);
    objects_destroy(&o);
}

/* The pool holds at most its limit: the rest of a freed object goes back
 * to the kernel (counted), and lowering the limit gives back the excess. */
static void test_pool_bounded(void **unused)
{
    (void)unused;
    struct objects o = make(64 * PAGE, 16, 32 * PAGE);
    objects_set_pool_limit(&o, 3 * PAGE + 17); /* rounded down to 3 pages */
    long empty = blocks(&o);
    char a[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 8 * PAGE, 0xab, a);
    assert_int_equal(objects_delete(&o, a), 0);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.pool_limit_bytes, 3 * PAGE);
    assert_int_equal(st.pool_bytes, 3 * PAGE);
    assert_int_equal(st.pool_released_bytes, 5 * PAGE);
    long kept = blocks(&o) - empty;
    assert_true(kept >= (long)(3 * PAGE / 512) && kept < (long)(4 * PAGE / 512));
    objects_set_pool_limit(&o, PAGE);
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, PAGE);
    assert_true(blocks(&o) - empty < (long)(2 * PAGE / 512));
    objects_set_pool_limit(&o, 0);
    objects_stats(&o, &st);
    assert_int_equal(st.pool_bytes, 0);
    assert_true(blocks(&o) - empty < (long)(PAGE / 512));
    objects_destroy(&o);
}

/* The parent commits one; a child finds it and reads its bytes, then makes
 * one the parent finds. */
static void test_visible_across_fork(void **unused)
{
    (void)unused;
    struct objects o = make(8 * PAGE, 8, 4 * PAGE);
    char a[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 3 * PAGE, 0x5a, a);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct objects_info info;
        if (objects_find(&o, a, &info) != 0 || info.obj.bytes != 3 * PAGE)
            _exit(10);
        for (size_t i = 0; i < info.obj.bytes; i++)
            if (((const uint8_t *)info.obj.data)[i] != 0x5a)
                _exit(11);
        struct model_object m;
        uint64_t shape[1] = { 1000 };
        if (objects_alloc(&o, 2, MODEL_DTYPE_I32, 1, shape, &m) != 0)
            _exit(12);
        int32_t *v = (int32_t *)(uintptr_t)m.data;
        for (int i = 0; i < 1000; i++)
            v[i] = i * 3;
        if (objects_commit(&o, m.id) != 0)
            _exit(13);
        if (write(fds[1], m.id, sizeof m.id) != (ssize_t)sizeof m.id)
            _exit(14);
        _exit(0);
    }
    close(fds[1]);
    char id[MODEL_OBJECT_ID_LEN + 1] = "";
    assert_int_equal(read(fds[0], id, sizeof id), (ssize_t)sizeof id);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    struct objects_info info;
    assert_int_equal(objects_find(&o, id, &info), 0);
    assert_int_equal(info.obj.dtype, MODEL_DTYPE_I32);
    assert_int_equal(info.obj.bytes, 4000);
    assert_int_equal(info.made_by_worker, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(((const int32_t *)info.obj.data)[i], i * 3);
    objects_destroy(&o);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_objects: deadlock on the object store's mutex\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(99);
}

/* A child dies (SIGKILL) holding the mutex: the parent's next call gets
 * EOWNERDEAD, repairs, and goes on; the store is intact and still
 * works for other processes too. */
static void test_owner_died_holding_the_lock(void **unused)
{
    (void)unused;
    struct objects o = make(8 * PAGE, 8, 4 * PAGE);
    char a[MODEL_OBJECT_ID_LEN + 1];
    put(&o, 2 * PAGE, 7, a);
    struct model_object pending;
    uint64_t shape[1] = { PAGE };
    assert_int_equal(objects_alloc(&o, 5, MODEL_DTYPE_U8, 1, shape, &pending), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        objects_test_lock(&o);
        raise(SIGKILL);
        _exit(1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    signal(SIGALRM, on_alarm);
    alarm(10);
    struct objects_info info;
    assert_int_equal(objects_find(&o, a, &info), 0);
    assert_int_equal(((const uint8_t *)info.obj.data)[2 * PAGE - 1], 7);
    struct objects_stats st;
    objects_stats(&o, &st);
    assert_int_equal(st.count, 1);
    assert_int_equal(st.used_bytes, 3 * PAGE); /* rebuilt from the entries */
    assert_int_equal(objects_commit(&o, pending.id), 0);
    char b[MODEL_OBJECT_ID_LEN + 1];
    put(&o, PAGE, 9, b);
    /* a second death, and another process after it */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        objects_test_lock(&o);
        raise(SIGKILL);
        _exit(1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(objects_delete(&o, b) == 0 ? 0 : 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(objects_find(&o, b, NULL), -ENOENT);
    objects_stats(&o, &st);
    assert_int_equal(st.count, 2);
    alarm(0);
    objects_destroy(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_arguments),
        cmocka_unit_test(test_alloc_commit_find),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_bad_shapes_and_limits),
        cmocka_unit_test(test_pins_and_delete),
        cmocka_unit_test(test_reclaim_owner),
        cmocka_unit_test(test_list_paging),
        cmocka_unit_test(test_pages_reused_and_given_back),
        cmocka_unit_test(test_pool_reuses_and_zeroes),
        cmocka_unit_test(test_pool_uninit_tail_zeroed),
        cmocka_unit_test(test_pool_bounded),
        cmocka_unit_test(test_visible_across_fork),
        cmocka_unit_test(test_owner_died_holding_the_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
