/*
 * Unit tests of service/supervisor/zygote.c with the real Python host
 * (workers/python/batchd_host.py, found through BATCHD_HOSTS_DIR; the
 * tests run from the repository's root, as make runs them) on
 * /usr/bin/python3:
 *   - zygote_find_host: an unknown runtime, a directory without the host;
 *   - a module is loaded (LOADED, with its docstring as description), a
 *     child is forked for a worker and answers READY on the worker's
 *     socket; closing the control socket stops the host (exit 0);
 *   - load() raising is ERROR with the exception's type and message, and
 *     the host exits 2; an interpreter that does not exist is ERROR too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers/coproc/coproc.h"
#include "service/supervisor/zygote.h"

static char tmp[64];

static int setup(void **state)
{
    (void)state;
    char cwd[PATH_MAX], dir[PATH_MAX + 32];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    snprintf(dir, sizeof dir, "%s/workers/python", cwd);
    setenv("BATCHD_HOSTS_DIR", dir, 1);
    snprintf(tmp, sizeof tmp, "/tmp/test_zygote.XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_module(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_find_host(void **state)
{
    (void)state;
    char buf[PATH_MAX], err[512];
    assert_int_equal(zygote_find_host("cobol", buf, sizeof buf, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "cobol"));
    assert_int_equal(zygote_find_host("python", buf, sizeof buf, err, sizeof err), 0);
    assert_non_null(strstr(buf, "batchd_host.py"));
    const char *saved = getenv("BATCHD_HOSTS_DIR");
    char keep[PATH_MAX];
    snprintf(keep, sizeof keep, "%s", saved);
    setenv("BATCHD_HOSTS_DIR", tmp, 1);
    assert_int_equal(zygote_find_host("python", buf, sizeof buf, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "batchd_host.py: not found"));
    setenv("BATCHD_HOSTS_DIR", keep, 1);
}

static void start(struct zygote *z, struct config_model *m)
{
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    char err[512];
    memset(z, 0, sizeof *z);
    z->m = m;
    z->ctl = -1;
    assert_int_equal(zygote_start(z, -1, 0, &mask, err, sizeof err), 0);
    assert_int_equal(z->state, ZYGOTE_LOADING);
}

static int reap(pid_t pid)
{
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_load_fork_stop(void **state)
{
    (void)state;
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/ok.py", tmp);
    write_module(path, "\"\"\"Doubles.\"\"\"\ndef load(p):\n    return int(p['k'])\n"
                       "def run(s, x):\n    return s * x\n");
    char *keys[] = { "k" }, *values[] = { "2" };
    struct config_model m = { .name = "ok", .runtime = "python", .module = path,
                              .interpreter = "/usr/bin/python3", .workers = 1, .n_params = 1,
                              .keys = keys, .values = values };
    struct zygote z;
    start(&z, &m);
    assert_int_equal(zygote_wait_loaded(&z, 30000, err, sizeof err), 0);
    assert_int_equal(z.state, ZYGOTE_READY);
    assert_string_equal(z.description, "Doubles.");
    int fd = -1;
    pid_t child = 0;
    assert_int_equal(zygote_fork_child(&z, 5, 10000, &fd, &child, err, sizeof err), 0);
    assert_true(child > 0);
    struct coproc_reader r;
    coproc_reader_init(&r, fd, 1u << 20);
    struct coproc_frame f;
    assert_int_equal(coproc_read(&r, &f, 10000), 0);
    assert_int_equal(f.type, COPROC_READY);
    /* one item through the child: 21 * 2 */
    struct coproc_buf b = { 0 };
    assert_int_equal(coproc_buf_begin(&b, COPROC_BATCH), 0);
    coproc_buf_put_u32(&b, 1);
    coproc_buf_put_u32(&b, 2);
    coproc_buf_put(&b, "21", 2);
    coproc_buf_end(&b);
    assert_int_equal(coproc_write_all(fd, b.p, b.len), 0);
    assert_int_equal(coproc_read(&r, &f, 10000), 0);
    uint32_t index, len;
    bool ok;
    const uint8_t *data;
    assert_int_equal(coproc_result_parse(&f, &index, &ok, &data, &len), 0);
    assert_true(ok);
    assert_int_equal(len, 2);
    assert_memory_equal(data, "42", 2);
    assert_int_equal(coproc_read(&r, &f, 10000), 0);
    assert_int_equal(f.type, COPROC_DONE);
    coproc_buf_free(&b);
    coproc_reader_free(&r);
    close(fd); /* the child exits */
    pid_t host = z.pid;
    zygote_close(&z); /* the host exits once its child has */
    assert_int_equal(reap(host), 0);
}

static void test_load_error(void **state)
{
    (void)state;
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/bad.py", tmp);
    write_module(path, "def load(p):\n    raise KeyError('weights')\ndef run(s, x):\n"
                       "    return x\n");
    struct config_model m = { .name = "bad", .runtime = "python", .module = path,
                              .interpreter = "/usr/bin/python3", .workers = 1 };
    struct zygote z;
    start(&z, &m);
    assert_int_equal(zygote_wait_loaded(&z, 30000, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "load() failed: KeyError: 'weights'"));
    assert_non_null(strstr(err, "bad.py:2"));
    pid_t host = z.pid;
    zygote_close(&z);
    assert_int_equal(reap(host), 2);

    m.interpreter = "/no/such/python";
    start(&z, &m);
    assert_int_equal(zygote_wait_loaded(&z, 30000, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "cannot run the interpreter '/no/such/python'"));
    host = z.pid;
    zygote_close(&z);
    assert_int_equal(reap(host), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_host),
        cmocka_unit_test(test_load_fork_stop),
        cmocka_unit_test(test_load_error),
    };
    return cmocka_run_group_tests_name("zygote", tests, setup, teardown);
}
