/* Unit tests of api/object_ops.c's pure parts: the Object body
 * (api_object_json) and the /metrics gauges (api_objects_metrics), on a
 * real object store. The HTTP operations themselves run against the real
 * server in tests/integration/test_objects.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/handlers/object_ops.h"

static void test_object_json(void **state)
{
    (void)state;
    struct objects_info info;
    memset(&info, 0, sizeof info);
    memcpy(info.obj.id, "0123456789abcdefghjkmnpqrs", MODEL_OBJECT_ID_LEN + 1);
    info.obj.dtype = MODEL_DTYPE_F32;
    info.obj.ndim = 2;
    info.obj.shape[0] = 2;
    info.obj.shape[1] = 3;
    info.obj.bytes = 24;
    info.created_ns = 1700000000123456789ull;
    info.pins = 2;
    json_t *j = api_object_json(&info);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"id\":\"0123456789abcdefghjkmnpqrs\",\"dtype\":\"float32\","
                              "\"shape\":[2,3],\"bytes\":24,\"created_at\":"
                              "\"2023-11-14T22:13:20.123Z\",\"pins\":2,\"in_use\":true,"
                              "\"origin\":\"upload\"}");
    free(text);
    json_decref(j);
    info.pins = 0;
    info.made_by_worker = 1;
    j = api_object_json(&info);
    assert_true(json_is_false(json_object_get(j, "in_use")));
    assert_string_equal(json_string_value(json_object_get(j, "origin")), "model");
    json_decref(j);
}

static void test_metrics(void **state)
{
    (void)state;
    struct objects o;
    assert_int_equal(objects_create(&o, 1u << 20, 4, 1u << 20), 0);
    uint64_t shape = 10;
    struct model_object obj;
    assert_int_equal(objects_alloc(&o, OBJECTS_OWNER_API, MODEL_DTYPE_U8, 1, &shape, &obj), 0);
    assert_int_equal(objects_commit(&o, obj.id), 0);
    struct sbuf b = SBUF_INIT;
    assert_int_equal(api_objects_metrics(&o, &b), 0);
    assert_non_null(strstr(b.data, "\nbatchd_objects 1\n"));
    assert_non_null(strstr(b.data, "\nbatchd_object_memory_used_bytes 65536\n"));
    assert_non_null(strstr(b.data, "\nbatchd_object_memory_capacity_bytes 1048576\n"));
    assert_non_null(strstr(b.data, "\nbatchd_objects_limit 4\n"));
    assert_non_null(strstr(b.data, "# TYPE batchd_objects gauge\n"));
    sbuf_free(&b);
    /* no store: nothing */
    assert_int_equal(api_objects_metrics(NULL, &b), 0);
    assert_int_equal(b.len, 0);
    objects_destroy(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_json),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests_name("api/object_ops", tests, NULL, NULL);
}
