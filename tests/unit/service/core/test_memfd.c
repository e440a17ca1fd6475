/* Unit tests of service/core/memfd.c: zeroed, shared across fork, closed on
 * exec, and nothing left open when the mapping fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service/core/memfd.h"

static void test_shared_across_fork(void **state)
{
    (void)state;
    void *base = NULL;
    int fd = -1;
    const uint64_t size = 3 * 4096;
    assert_int_equal(memfd_map("batchd-test", size, 0, &base, &fd), 0);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, (off_t)size);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    unsigned char *p = base;
    for (uint64_t i = 0; i < size; i++)
        assert_int_equal(p[i], 0);  /* a fresh memfd reads as zeros */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        memcpy(p + size - 6, "child", 6);
        _exit(0);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_string_equal((char *)p + size - 6, "child");
    assert_int_equal(munmap(base, size), 0);
    assert_int_equal(close(fd), 0);
}

static void test_noreserve_ceiling(void **state)
{
    (void)state;
    void *base = NULL;
    int fd = -1;
    const uint64_t size = 1ull << 30;  /* a ceiling: no page is used until written */
    assert_int_equal(memfd_map("batchd-test", size, MAP_NORESERVE, &base, &fd), 0);
    ((unsigned char *)base)[size - 1] = 7;
    assert_int_equal(((unsigned char *)base)[size - 1], 7);
    assert_int_equal(munmap(base, size), 0);
    assert_int_equal(close(fd), 0);
}

static void test_failure_leaves_nothing_open(void **state)
{
    (void)state;
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);  /* the lowest free descriptor */
    void *base = (void *)1;
    int fd = 12345;
    /* larger than any file may be: ftruncate refuses it */
    int rc = memfd_map("batchd-test", UINT64_MAX / 2 + 1, 0, &base, &fd);
    assert_true(rc < 0);
    assert_ptr_equal(base, (void *)1);  /* outputs untouched on failure */
    assert_int_equal(fd, 12345);
    int again = dup(0);
    assert_int_equal(again, probe);  /* the memfd was closed */
    close(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_across_fork),
        cmocka_unit_test(test_noreserve_ceiling),
        cmocka_unit_test(test_failure_leaves_nothing_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
