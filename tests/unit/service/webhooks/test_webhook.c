/*
 * Unit tests of service/webhooks/webhook.c: the Standard Webhooks
 * signature against the specification's published example (secret
 * whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id msg_p5jXN8AQM9LWM0D4loKWxJek,
 * timestamp 1614265330, body {"test": 2432232314}), secrets, the host
 * allowlist, URL checks and the back-off's bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "service/webhooks/webhook.h"

static void test_sign_known_vector(void **unused)
{
    (void)unused;
    uint8_t key[WEBHOOK_KEY_MAX];
    size_t len = 0;
    assert_int_equal(webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &len), 0);
    assert_int_equal(len, 24);
    char sig[WEBHOOK_SIGNATURE_LEN + 1];
    const char *body = "{\"test\": 2432232314}";
    assert_int_equal(webhook_sign(key, len, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330LL, body,
                                  strlen(body), sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* one byte of the body, or of the timestamp, changes it */
    assert_int_equal(webhook_sign(key, len, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331LL, body,
                                  strlen(body), sig),
                     0);
    assert_string_not_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* an empty body signs too */
    assert_int_equal(webhook_sign(key, len, "m", 1, "", 0, sig), 0);
    assert_int_equal(strlen(sig), WEBHOOK_SIGNATURE_LEN);
}

static void test_secret_decode(void **unused)
{
    (void)unused;
    uint8_t key[WEBHOOK_KEY_MAX];
    size_t len;
    /* 24 to 64 bytes, whatever the padding */
    for (size_t n = 20; n <= 68; n++) {
        unsigned char raw[68], b64[100];
        memset(raw, 0x5a, n);
        char secret[120];
        EVP_EncodeBlock(b64, raw, (int)n);
        snprintf(secret, sizeof secret, "whsec_%s", (const char *)b64);
        int rc = webhook_secret_decode(secret, key, &len);
        if (n < WEBHOOK_KEY_MIN || n > WEBHOOK_KEY_MAX) {
            assert_int_equal(rc, -EINVAL);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(len, n);
            assert_memory_equal(key, raw, n);
        }
    }
    assert_int_equal(webhook_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &len), -EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", key, &len), -EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", key, &len), -EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_", key, &len), -EINVAL);
    assert_int_equal(webhook_secret_decode(NULL, key, &len), -EINVAL);
}

static void test_hosts_check(void **unused)
{
    (void)unused;
    char err[256];
    assert_int_equal(webhook_hosts_check("a:1", err, sizeof err), 0);
    assert_int_equal(webhook_hosts_check("hooks.example.com:443,127.0.0.1:8080,[::1]:80", err,
                                         sizeof err),
                     0);
    const char *bad[] = { "", "a", "a:", ":1", "a:0", "a:65536", "a:1x", "a:1,", ",a:1",
                          "http://a:1", "a b:1", "[::1:80", "[]:80", "a:123456" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (webhook_hosts_check(bad[i], err, sizeof err) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

static void test_url_allowed(void **unused)
{
    (void)unused;
    char why[512];
    const char *hosts = "hooks.example.com:443,127.0.0.1:8080,[::1]:80";
    assert_int_equal(webhook_url_allowed(hosts, "https://hooks.example.com/x", why, sizeof why), 0);
    assert_int_equal(webhook_url_allowed(hosts, "HTTPS://HOOKS.example.com:443/x?y", why, sizeof why), 0);
    assert_int_equal(webhook_url_allowed(hosts, "http://127.0.0.1:8080/", why, sizeof why), 0);
    assert_int_equal(webhook_url_allowed(hosts, "http://[::1]/", why, sizeof why), 0);
    /* the port is part of the rule */
    assert_int_equal(webhook_url_allowed(hosts, "http://hooks.example.com/x", why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "hooks.example.com:80"));
    assert_int_equal(webhook_url_allowed(hosts, "http://127.0.0.1/", why, sizeof why), -EPERM);
    assert_int_equal(webhook_url_allowed(hosts, "http://127.0.0.2:8080/", why, sizeof why), -EPERM);
    /* a host that merely starts like an allowed one is another host */
    assert_int_equal(webhook_url_allowed(hosts, "https://hooks.example.com.evil:443/", why, sizeof why), -EPERM);
    assert_int_equal(webhook_url_allowed(hosts, "https://evil/@hooks.example.com/", why, sizeof why), -EPERM);
    /* not such a URL at all */
    assert_int_equal(webhook_url_allowed(hosts, "ftp://127.0.0.1:8080/", why, sizeof why), -EINVAL);
    assert_int_equal(webhook_url_allowed(hosts, "127.0.0.1:8080", why, sizeof why), -EINVAL);
    assert_int_equal(webhook_url_allowed(hosts, "/x", why, sizeof why), -EINVAL);
    assert_int_equal(webhook_url_allowed(hosts, "http://u:p@127.0.0.1:8080/", why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "user or password"));
    /* off */
    assert_int_equal(webhook_url_allowed(NULL, "http://127.0.0.1:8080/", why, sizeof why), -ENOTSUP);
    assert_int_equal(webhook_url_allowed("", "http://127.0.0.1:8080/", why, sizeof why), -ENOTSUP);
}

static void test_backoff(void **unused)
{
    (void)unused;
    const uint64_t s = 1000000000ull;
    for (unsigned a = 1; a <= 40; a++) {
        uint64_t full = s;
        for (unsigned i = 1; i < a && full < 3600 * s; i++)
            full *= 2;
        if (full > 3600 * s)
            full = 3600 * s;
        uint64_t lo = webhook_backoff_ns(a, 0), hi = webhook_backoff_ns(a, UINT32_MAX);
        assert_int_equal(lo, full / 2);
        assert_true(hi < full && hi >= full / 2);
    }
    assert_true(webhook_backoff_ns(2, 7) > webhook_backoff_ns(1, 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_vector),
        cmocka_unit_test(test_secret_decode),
        cmocka_unit_test(test_hosts_check),
        cmocka_unit_test(test_url_allowed),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests_name("webhook", tests, NULL, NULL);
}
