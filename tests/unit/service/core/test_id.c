/*
 * Unit tests of service/core/id.c: the one encoder of every id (job and
 * object ids), checked against RFC 4648's own test vectors (section 10,
 * lowercase, without padding), and ids as id_new makes them: well formed,
 * the last character's spare bits zero, all different.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "service/core/id.h"

static void test_rfc4648_vectors(void **unused)
{
    (void)unused;
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", ""},          {"f", "my"},          {"fo", "mzxq"},         {"foo", "mzxw6"},
        {"foob", "mzxw6yq"}, {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        id_encode((const uint8_t *)v[i].in, strlen(v[i].in), out);
        assert_string_equal(out, v[i].out);
    }
    /* 16 bytes make ID_LEN characters; 0xff.. the last of the alphabet */
    uint8_t ones[16];
    memset(ones, 0xff, sizeof ones);
    char out[ID_LEN + 1];
    id_encode(ones, sizeof ones, out);
    assert_int_equal(strlen(out), ID_LEN);
    assert_string_equal(out, "77777777777777777777777774"); /* 128 = 25 * 5 + 3 bits */
}

static void test_new_ids(void **unused)
{
    (void)unused;
    enum { N = 256 };
    static char ids[N][ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        id_new(ids[i]);
        assert_int_equal(strlen(ids[i]), ID_LEN);
        assert_true(id_valid(ids[i], ID_LEN));
        /* 128 bits in 130: the last character carries 3 bits and two zeros */
        assert_true(strchr("aeimquy4", ids[i][ID_LEN - 1]) != NULL);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(ids[i], ids[k]);
    }
}

static void test_valid(void **unused)
{
    (void)unused;
    assert_true(id_valid("abcdefghijklmnopqrstuvwxyz", 26));
    assert_true(id_valid("22222222222222222222222222", 26));
    assert_false(id_valid(NULL, 0));
    assert_false(id_valid("", 0));
    assert_false(id_valid("abcdefghijklmnopqrstuvwxy", 25));
    assert_false(id_valid("abcdefghijklmnopqrstuvwxyz2", 27));
    assert_false(id_valid("abcdefghijklmnopqrstuvwxy0", 26)); /* 0, 1, 8, 9 are not base32 */
    assert_false(id_valid("abcdefghijklmnopqrstuvwxy8", 26));
    assert_false(id_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26));
    assert_false(id_valid("abcdefghijklmnopqrstuvwxy=", 26));
    assert_false(id_valid("abcdefghijklmnopqrstuvwxy\0", 26));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_new_ids),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
