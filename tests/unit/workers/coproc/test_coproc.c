/*
 * Unit tests of workers/coproc/coproc.c, the frame codec of the coprocess
 * protocol (docs/coprocess.md).
 *
 * Parsing: a whole frame, a frame cut anywhere (more bytes needed), a
 * length of 0, a length past the cap, two frames back to back; RESULT,
 * DONE and FORKED payloads of every wrong size. Building: the header
 * carries the length. Sockets: frames through a socketpair, one written a
 * byte at a time, a frame bigger than the reader's first buffer, an fd
 * passed with SCM_RIGHTS, EOF (clean and mid-frame), and the timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers/coproc/coproc.h"

static void test_parse_whole_and_cut(void **state)
{
    (void)state;
    const uint8_t buf[] = { 4, 0, 0, 0, 'R', 'a', 'b', 'c' };
    struct coproc_frame f = { 0 };
    assert_int_equal(coproc_frame_parse(buf, sizeof buf, 100, &f), 8);
    assert_int_equal(f.type, 'R');
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.data, "abc", 3);
    /* every cut is "read more", and leaves *f alone */
    for (size_t n = 0; n < sizeof buf; n++) {
        struct coproc_frame g = { .type = 'x' };
        assert_int_equal(coproc_frame_parse(buf, n, 100, &g), 0);
        assert_int_equal(g.type, 'x');
    }
}

static void test_parse_bad_lengths(void **state)
{
    (void)state;
    struct coproc_frame f;
    const uint8_t zero[] = { 0, 0, 0, 0, 'R' };
    assert_int_equal(coproc_frame_parse(zero, sizeof zero, 100, &f), -EPROTO);
    const uint8_t big[] = { 101, 0, 0, 0, 'R' };
    assert_int_equal(coproc_frame_parse(big, sizeof big, 100, &f), -EMSGSIZE);
    const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'R' };
    assert_int_equal(coproc_frame_parse(huge, sizeof huge, UINT32_MAX, &f), -EMSGSIZE);
    /* a type byte alone is a frame with an empty payload */
    const uint8_t one[] = { 1, 0, 0, 0, 'S', 9 };
    assert_int_equal(coproc_frame_parse(one, sizeof one, 100, &f), 5);
    assert_int_equal(f.type, 'S');
    assert_int_equal(f.len, 0);
}

static void test_payloads(void **state)
{
    (void)state;
    uint8_t p[16] = { 7, 0, 0, 0, 1, '4', '2' };
    struct coproc_frame f = { COPROC_RESULT, p, 7 };
    uint32_t index, len;
    bool ok;
    const uint8_t *data;
    assert_int_equal(coproc_result_parse(&f, &index, &ok, &data, &len), 0);
    assert_int_equal(index, 7);
    assert_true(ok);
    assert_int_equal(len, 2);
    assert_memory_equal(data, "42", 2);
    p[4] = 0;
    assert_int_equal(coproc_result_parse(&f, &index, &ok, &data, &len), 0);
    assert_false(ok);
    p[4] = 2; /* neither ok nor error */
    assert_int_equal(coproc_result_parse(&f, &index, &ok, &data, &len), -EPROTO);
    for (uint32_t n = 0; n < 5; n++) {
        struct coproc_frame s = { COPROC_RESULT, p, n };
        assert_int_equal(coproc_result_parse(&s, &index, &ok, &data, &len), -EPROTO);
    }
    uint32_t a, b;
    for (uint32_t n = 0; n < 10; n++) {
        struct coproc_frame s = { COPROC_DONE, p, n };
        assert_int_equal(coproc_u32_parse(&s, &a), n == 4 ? 0 : -EPROTO);
        assert_int_equal(coproc_u32x2_parse(&s, &a, &b), n == 8 ? 0 : -EPROTO);
    }
    coproc_le32_put(p, 0x01020304);
    coproc_le32_put(p + 4, 99);
    struct coproc_frame k = { COPROC_FORKED, p, 8 };
    assert_int_equal(coproc_u32x2_parse(&k, &a, &b), 0);
    assert_int_equal(a, 0x01020304);
    assert_int_equal(b, 99);
}

static void test_build(void **state)
{
    (void)state;
    struct coproc_buf b = { 0 };
    assert_int_equal(coproc_buf_begin(&b, COPROC_BATCH), 0);
    assert_int_equal(coproc_buf_put_u32(&b, 1), 0);
    assert_int_equal(coproc_buf_put_u32(&b, 2), 0);
    assert_int_equal(coproc_buf_put(&b, "[]", 2), 0);
    coproc_buf_end(&b);
    struct coproc_frame f;
    assert_int_equal(coproc_frame_parse(b.p, b.len, 100, &f), (ssize_t)b.len);
    assert_int_equal(f.type, COPROC_BATCH);
    assert_int_equal(f.len, 10);
    assert_int_equal(coproc_le32_get(f.data), 1);
    assert_memory_equal(f.data + 8, "[]", 2);
    /* begin empties it for the next frame */
    assert_int_equal(coproc_buf_begin(&b, COPROC_STOP), 0);
    coproc_buf_end(&b);
    assert_int_equal(b.len, 5);
    coproc_buf_free(&b);
}

static void test_socket_frames(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct coproc_reader r;
    coproc_reader_init(&r, sv[0], 1u << 24);
    struct coproc_frame f;
    assert_int_equal(coproc_read(&r, &f, 0), -ETIMEDOUT);
    assert_int_equal(coproc_send(sv[1], COPROC_READY, "{}", 2, -1), 0);
    assert_int_equal(coproc_send(sv[1], COPROC_DONE, "\0\0\0\0", 4, -1), 0);
    assert_int_equal(coproc_read(&r, &f, 1000), 0);
    assert_int_equal(f.type, COPROC_READY);
    assert_memory_equal(f.data, "{}", 2);
    assert_int_equal(coproc_read(&r, &f, 1000), 0);
    assert_int_equal(f.type, COPROC_DONE);

    /* a frame much bigger than the first buffer, from another process,
     * the header written a byte at a time */
    size_t big = 3u << 20;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t hdr[5];
        coproc_le32_put(hdr, (uint32_t)big + 1);
        hdr[4] = COPROC_RESULT;
        for (int i = 0; i < 5; i++) {
            if (coproc_write_all(sv[1], hdr + i, 1) != 0)
                _exit(1);
            usleep(1000);
        }
        uint8_t *p = malloc(big);
        if (!p)
            _exit(1);
        for (size_t i = 0; i < big; i++)
            p[i] = (uint8_t)(i * 7);
        int rc = coproc_write_all(sv[1], p, big) == 0 ? 0 : 1;
        free(p); /* valgrind follows the child and counts what it leaves */
        _exit(rc);
    }
    assert_int_equal(coproc_read(&r, &f, 10000), 0);
    assert_int_equal(f.type, COPROC_RESULT);
    assert_int_equal(f.len, big);
    for (size_t i = 0; i < big; i += 4099)
        assert_int_equal(f.data[i], (uint8_t)(i * 7));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(st, 0);

    /* a frame cut by EOF, then a clean EOF on a new pair */
    uint8_t half[] = { 9, 0, 0, 0, 'R', 1 };
    assert_int_equal(coproc_write_all(sv[1], half, sizeof half), 0);
    close(sv[1]);
    assert_int_equal(coproc_read(&r, &f, 1000), -EPROTO);
    coproc_reader_free(&r);
    close(sv[0]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    coproc_reader_init(&r, sv[0], 100);
    close(sv[1]);
    assert_int_equal(coproc_read(&r, &f, 1000), -EPIPE);
    coproc_reader_free(&r);
    close(sv[0]);
}

static void test_socket_bad_frame_and_fd(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct coproc_reader r;
    coproc_reader_init(&r, sv[0], 16);
    struct coproc_frame f;
    /* an fd travels with a frame */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(coproc_send(sv[1], COPROC_FORK, "\1\0\0\0", 4, pipefd[1]), 0);
    assert_int_equal(coproc_read(&r, &f, 1000), 0);
    assert_int_equal(f.type, COPROC_FORK);
    assert_true(r.passed_fd >= 0);
    assert_int_equal(write(r.passed_fd, "x", 1), 1);
    char c = 0;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    close(pipefd[0]);
    close(pipefd[1]);
    /* past the reader's cap */
    assert_int_equal(coproc_send(sv[1], COPROC_RESULT, "0123456789abcdefghij", 20, -1), 0);
    assert_int_equal(coproc_read(&r, &f, 1000), -EMSGSIZE);
    coproc_reader_free(&r); /* closes a passed fd nobody took */
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_whole_and_cut),
        cmocka_unit_test(test_parse_bad_lengths),
        cmocka_unit_test(test_payloads),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_socket_frames),
        cmocka_unit_test(test_socket_bad_frame_and_fd),
    };
    return cmocka_run_group_tests_name("coproc", tests, NULL, NULL);
}
