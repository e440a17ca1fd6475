/*
 * Unit tests of workers/host.c, on a real object store (service/objects.c).
 *
 * The load-time table refuses with a message that says why; object_ref
 * tells references from other values, names what is wrong with a malformed
 * one, and resolves only READY objects; object_new makes objects that stay
 * invisible until the task commits, are freed at once when their item
 * fails (or never ended), and are left PENDING for the supervisor's
 * reclaim when the worker dies first; every limit has its message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers/worker/host.h"
#include "service/objects/objects.h"

#define PAGE OBJECTS_PAGE
#define WORKER 3

static int setup(void **state)
{
    static struct objects o;
    if (objects_create(&o, 8 * PAGE, 6, 2 * PAGE) != 0)
        return -1;
    host_worker_setup(&o, WORKER);
    *state = &o;
    return 0;
}

static int teardown(void **state)
{
    host_worker_setup(NULL, 0);
    objects_destroy(*state);
    return 0;
}

/* A committed upload of n bytes, filled with `fill`. */
static void upload(struct objects *o, uint64_t n, uint8_t fill, char *id)
{
    struct model_object m;
    uint64_t shape[1] = { n };
    assert_int_equal(objects_alloc(o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &m), 0);
    memset((void *)m.data, fill, n);
    assert_int_equal(objects_commit(o, m.id), 0);
    memcpy(id, m.id, MODEL_OBJECT_ID_LEN + 1);
}

/* object_ref on the JSON text `text`; err gets the message. */
static int ref(const char *text, struct model_object *obj, char *err, size_t errlen)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, je.text);
    err[0] = '\0';
    int rc = host_worker()->object_ref(v, obj, err, errlen);
    json_decref(v);
    return rc;
}

static int make(uint64_t n, struct model_object *obj, char *err, size_t errlen)
{
    uint64_t shape[1] = { n };
    void *data = NULL;
    err[0] = '\0';
    int rc = host_worker()->object_new(MODEL_DTYPE_U8, 1, shape, obj, &data, err, errlen);
    if (rc == 0) {
        assert_ptr_equal(data, obj->data);
        memset(data, 0x42, n);
    }
    return rc;
}

/* In the supervisor (no setup) the table load() gets refuses; the same
 * pointer, kept in a model's shared state, works in a worker after fork
 * (what reduce(), which gets only the shared state, relies on). */
static void test_load_table(void **unused)
{
    (void)unused;
    host_worker_setup(NULL, 0);
    const struct model_host *h = host_load();
    assert_int_equal(h->abi_version, MODEL_ABI_VERSION);
    /* the table says how long it is, so that a plugin can tell which host
     * functions exist (include/batchd/model.h, MODEL_HOST_HAS) */
    assert_int_equal(h->size, sizeof(struct model_host));
    assert_true(MODEL_HOST_HAS(h, object_ref));
    assert_true(MODEL_HOST_HAS(h, object_new));
    struct model_host older = *h;
    older.size = (uint32_t)offsetof(struct model_host, object_new); /* one without object_new */
    assert_true(MODEL_HOST_HAS(&older, object_ref));
    assert_false(MODEL_HOST_HAS(&older, object_new));
    char err[256];
    struct model_object obj;
    json_t *v = json_pack("{s:s}", "$object", "234567abcdefghijklmnopqrst");
    assert_int_equal(h->object_ref(v, &obj, err, sizeof err), -ENOTSUP);
    assert_string_equal(err, "object_ref is not available in this process: objects exist only in "
                             "workers (use it in init(), run() or reduce(), not in load())");
    uint64_t shape[1] = { 1 };
    void *data;
    assert_int_equal(h->object_new(MODEL_DTYPE_U8, 1, shape, &obj, &data, err, sizeof err),
                     -ENOTSUP);
    assert_non_null(strstr(err, "object_new is not available in this process"));
    json_decref(v); /* before the fork: the child leaks nothing it inherits */

    struct objects o;
    assert_int_equal(objects_create(&o, 4 * PAGE, 4, PAGE), 0);
    char id[MODEL_OBJECT_ID_LEN + 1];
    upload(&o, 10, 3, id);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        host_worker_setup(&o, 1);
        json_t *r = json_pack("{s:s}", "$object", id);
        int rc = h->object_ref(r, &obj, err, sizeof err);
        json_decref(r);
        _exit(rc == 1 && obj.bytes == 10 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    objects_destroy(&o);
}

static void test_ref_not_a_reference(void **state)
{
    (void)state;
    const char *values[] = { "1", "\"abc\"", "null", "true", "[1,2]", "{}",
                             "{\"object\": \"x\"}", "[{\"$object\": \"x\"}]",
                             "{\"a\": {\"$object\": 1}}" };
    char err[256];
    struct model_object obj;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        int rc = ref(values[i], &obj, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: %d (%s), expected 0: not a reference", values[i], rc, err);
    }
}

static void test_ref_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *message;
    } cases[] = {
        {"{\"$object\": \"234567abcdefghijklmnopqrst\", \"x\": 1}",
         "an object reference has exactly one key, \"$object\"; this one has 2"},
        {"{\"$object\": 12}", "\"$object\" must be a string (an object id), not a JSON number"},
        {"{\"$object\": null}", "\"$object\" must be a string (an object id), not a JSON null"},
        {"{\"$object\": [\"a\"]}", "\"$object\" must be a string (an object id), not a JSON array"},
        {"{\"$object\": \"abc\"}",
         "\"$object\": 'abc' is not an object id (26 characters of 0-9 and a-z without i, l, o, "
         "u)"},
        {"{\"$object\": \"0123456789ABCDEFGHJKMNPQRS\"}",
         "\"$object\": '0123456789ABCDEFGHJKMNPQRS' is not an object id (26 characters of 0-9 "
         "and a-z without i, l, o, u)"},
        {"{\"$object\": \"0123456789abcdefghjkmnpq\\u0000s\"}",
         "\"$object\": '0123456789abcdefghjkmnpq' is not an object id (26 characters of 0-9 and "
         "a-z without i, l, o, u)"},
    };
    char err[256];
    struct model_object obj;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t je;
        json_t *v = json_loads(cases[i].json, JSON_ALLOW_NUL, &je);
        assert_non_null(v);
        err[0] = '\0';
        int rc = host_worker()->object_ref(v, &obj, err, sizeof err);
        json_decref(v);
        if (rc != -EINVAL || strcmp(err, cases[i].message) != 0)
            fail_msg("%s: %d \"%s\", expected -EINVAL \"%s\"", cases[i].json, rc, err,
                     cases[i].message);
    }
}

static void test_ref_resolves_ready_only(void **state)
{
    struct objects *o = *state;
    char id[MODEL_OBJECT_ID_LEN + 1], text[80], err[256];
    upload(o, 1000, 0x17, id);
    struct model_object obj;
    snprintf(text, sizeof text, "{\"$object\": \"%s\"}", id);
    assert_int_equal(ref(text, &obj, err, sizeof err), 1);
    assert_string_equal(obj.id, id);
    assert_int_equal(obj.dtype, MODEL_DTYPE_U8);
    assert_int_equal(obj.ndim, 1);
    assert_int_equal(obj.shape[0], 1000);
    assert_int_equal(obj.bytes, 1000);
    assert_int_equal(((const uint8_t *)obj.data)[999], 0x17);

    /* PENDING is not there yet; deleted is not there any more */
    struct model_object p;
    uint64_t shape[1] = { 4 };
    assert_int_equal(objects_alloc(o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, shape, &p), 0);
    snprintf(text, sizeof text, "{\"$object\": \"%s\"}", p.id);
    assert_int_equal(ref(text, &obj, err, sizeof err), -ENOENT);
    char want[80];
    snprintf(want, sizeof want, "object '%s' not found", p.id);
    assert_string_equal(err, want);
    assert_int_equal(objects_abort(o, p.id), 0);
    assert_int_equal(objects_delete(o, id), 0);
    snprintf(text, sizeof text, "{\"$object\": \"%s\"}", id);
    assert_int_equal(ref(text, &obj, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "object '%s' not found", id);
    assert_string_equal(err, want);
}

/* Items 1 and 3 succeed, item 2 fails: the task commits 1 and 3 only, and
 * nothing is visible before the commit. */
static void test_new_visible_at_task_commit(void **state)
{
    struct objects *o = *state;
    char err[256];
    struct model_object a, b, c;
    assert_int_equal(make(100, &a, err, sizeof err), 0);
    host_item_end(true);
    assert_int_equal(make(PAGE, &b, err, sizeof err), 0);
    host_item_end(false);
    assert_int_equal(make(200, &c, err, sizeof err), 0);
    host_item_end(true);
    assert_int_equal(objects_find(o, a.id, NULL), -ENOENT);
    assert_int_equal(objects_find(o, c.id, NULL), -ENOENT);
    assert_int_equal(objects_commit(o, b.id), -ENOENT); /* already freed */
    struct objects_stats st;
    objects_stats(o, &st);
    assert_int_equal(st.used_bytes, 2 * PAGE);

    assert_int_equal(host_task_commit(), 2);
    struct objects_info info;
    assert_int_equal(objects_find(o, a.id, &info), 0);
    assert_int_equal(info.made_by_worker, 1);
    assert_int_equal(((const uint8_t *)info.obj.data)[99], 0x42);
    assert_int_equal(objects_find(o, c.id, NULL), 0);
    assert_int_equal(host_task_commit(), 0); /* nothing kept any more */

    /* an item that never ended (the worker broke out of the loop) */
    struct model_object d;
    assert_int_equal(make(10, &d, err, sizeof err), 0);
    assert_int_equal(host_task_commit(), 0);
    assert_int_equal(objects_commit(o, d.id), -ENOENT);
    objects_stats(o, &st);
    assert_int_equal(st.count, 2);
    assert_int_equal(st.used_bytes, 2 * PAGE);
}

/* A worker that dies before its task completes leaves PENDING objects
 * owned by its index: what the supervisor reclaims. */
/* run_batch's objects: those named by an output are kept (anywhere in
 * it, with other keys beside "$object"), the others go at once; an output
 * that is not recorded after all gives its objects back. */
static void test_batch_settle(void **state)
{
    struct objects *o = *state;
    char err[256];
    struct model_object a, b, c, d;
    assert_int_equal(make(10, &a, err, sizeof err), 0);
    host_item_end(true); /* an earlier item's object: not the batch's */
    assert_int_equal(make(10, &b, err, sizeof err), 0);
    assert_int_equal(make(10, &c, err, sizeof err), 0);
    assert_int_equal(make(10, &d, err, sizeof err), 0);
    json_t *outs[3] = {
        json_pack("{s:{s:s,s:[i]}}", "result", "$object", b.id, "shape", 10),
        NULL, /* a failed item */
        json_pack("[i,{s:s}]", 1, "$object", d.id),
    };
    host_batch_settle(outs, 3);
    /* c is named by no output: aborted now (the slot is free again) */
    assert_int_equal(objects_abort(o, c.id), -ENOENT);
    /* the third item's output is not recorded after all: d goes */
    host_drop_named(outs[2]);
    assert_int_equal(objects_abort(o, d.id), -ENOENT);
    assert_int_equal(host_task_commit(), 2);
    assert_int_equal(objects_find(o, a.id, NULL), 0);
    assert_int_equal(objects_find(o, b.id, NULL), 0);
    assert_int_equal(objects_find(o, d.id, NULL), -ENOENT);
    json_decref(outs[0]);
    json_decref(outs[2]);
    objects_delete(o, a.id);
    objects_delete(o, b.id);
}

static void test_worker_dies_before_commit(void **state)
{
    struct objects *o = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        struct model_object a;
        if (make(100, &a, err, sizeof err) != 0)
            _exit(1);
        host_item_end(true);
        _exit(0); /* dies with the task in hand */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct objects_stats st;
    objects_stats(o, &st);
    assert_int_equal(st.used_bytes, PAGE);
    assert_int_equal(st.count, 0);
    assert_int_equal(objects_reclaim_owner(o, WORKER + 1), 0);
    assert_int_equal(objects_reclaim_owner(o, WORKER), 1);
    objects_stats(o, &st);
    assert_int_equal(st.used_bytes, 0);
}

static void test_new_limits(void **state)
{
    (void)state;
    char err[256];
    struct model_object a, b, c, d, e;
    void *data;
    uint64_t shape[1] = { 1 };
    assert_int_equal(host_worker()->object_new(77, 1, shape, &a, &data, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "object_new: unknown dtype 77");
    assert_int_equal(host_worker()->object_new(MODEL_DTYPE_U8, 0, shape, &a, &data, err,
                                               sizeof err),
                     -EINVAL);
    assert_string_equal(err, "object_new: 0 dimensions, expected 1 to 8");
    uint64_t huge[2] = { 1ull << 40, 1ull << 40 };
    assert_int_equal(host_worker()->object_new(MODEL_DTYPE_U8, 2, huge, &a, &data, err,
                                               sizeof err),
                     -EINVAL);
    assert_string_equal(err, "object_new: the shape's size overflows 64 bits");

    assert_int_equal(make(2 * PAGE + 1, &a, err, sizeof err), -EFBIG);
    assert_string_equal(err, "object_new: 131073 bytes is larger than the limit of 131072 bytes "
                             "(--max-object-bytes)");
    /* 8 pages: four objects of two pages fill them */
    assert_int_equal(make(2 * PAGE, &a, err, sizeof err), 0);
    assert_int_equal(make(2 * PAGE, &b, err, sizeof err), 0);
    assert_int_equal(make(2 * PAGE, &c, err, sizeof err), 0);
    assert_int_equal(make(2 * PAGE, &d, err, sizeof err), 0);
    host_item_end(true);
    assert_int_equal(make(1, &e, err, sizeof err), -ENOSPC);
    assert_string_equal(err, "object_new: no room for 1 bytes in object memory (524288 of 524288 "
                             "bytes in use, --object-memory)");
    /* two of the six entries left: empty objects take no page */
    assert_int_equal(make(0, &e, err, sizeof err), 0);
    assert_int_equal(make(0, &e, err, sizeof err), 0);
    host_item_end(true);
    /* the table is full: -ENOSPC too, as model.h promises */
    assert_int_equal(make(0, &e, err, sizeof err), -ENOSPC);
    assert_string_equal(err, "object_new: the object table is full (6 objects, --max-objects)");
    assert_int_equal(host_task_commit(), 6);
    host_item_end(false);
    assert_int_equal(host_task_commit(), 0);
}

/* Without a store (before setup, or a test process), references and new
 * objects are refused, and non-references are still told apart. */
static void test_no_store(void **unused)
{
    (void)unused;
    host_worker_setup(NULL, 0);
    char err[256];
    struct model_object obj;
    assert_int_equal(ref("[1]", &obj, err, sizeof err), 0);
    assert_int_equal(ref("{\"$object\": \"234567abcdefghijklmnopqrst\"}", &obj, err, sizeof err),
                     -ENOTSUP);
    assert_int_equal(make(1, &obj, err, sizeof err), -ENOTSUP);
    host_item_end(false);
    assert_int_equal(host_task_commit(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_table),
        cmocka_unit_test_setup_teardown(test_ref_not_a_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ref_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ref_resolves_ready_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_visible_at_task_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_dies_before_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_limits, setup, teardown),
        cmocka_unit_test(test_no_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
