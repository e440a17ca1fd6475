/*
 * Unit tests of service/supervisor/zygote.c with the real Python host
 * (workers/python/batchd_host.py, found through BATCHD_HOSTS_DIR; the
 * tests run from the repository's root, as make runs them) on
 * /usr/bin/python3:
 *   - zygote_find_host: an unknown runtime, a directory without the host;
 *   - a module is loaded (LOADED, with its docstring as description), a
 *     child is forked for a worker and answers READY on the worker's
 *     socket; closing the control socket stops the host (exit 0);
 *   - a stateful module: LOADED says so; ACC_BATCH, EXPORT, DROP and
 *     REDUCE frames and their VALUE answers, an acc_run that raises;
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
    assert_false(z.stateful);
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

/* Sends a frame whose payload is a u64 job key, then `rest`. */
static void send_keyed(int fd, uint8_t type, uint64_t key, const char *rest)
{
    struct coproc_buf b = { 0 };
    assert_int_equal(coproc_buf_begin(&b, type), 0);
    coproc_buf_put_u32(&b, (uint32_t)key);
    coproc_buf_put_u32(&b, (uint32_t)(key >> 32));
    if (rest) { /* one item */
        coproc_buf_put_u32(&b, 1);
        coproc_buf_put_u32(&b, (uint32_t)strlen(rest));
        coproc_buf_put(&b, rest, strlen(rest));
    }
    coproc_buf_end(&b);
    assert_int_equal(coproc_write_all(fd, b.p, b.len), 0);
    coproc_buf_free(&b);
}

/* Reads a VALUE frame and checks its status and text. */
static void read_value(struct coproc_reader *r, bool ok, const char *text)
{
    struct coproc_frame f;
    assert_int_equal(coproc_read(r, &f, 10000), 0);
    assert_int_equal(f.type, COPROC_VALUE);
    assert_true(f.len >= 1);
    assert_int_equal(f.data[0], ok ? 1 : 0);
    assert_int_equal(f.len - 1, strlen(text));
    assert_memory_equal(f.data + 1, text, f.len - 1);
}

/* A stateful module: LOADED says so; two jobs' items go to two
 * accumulators (ACC_BATCH), one is exported, the other dropped (an export
 * after the drop is null), a failing acc_run leaves the sum as it was, and
 * REDUCE gets load()'s value. */
static void test_stateful_frames(void **state)
{
    (void)state;
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/acc.py", tmp);
    write_module(path, "def load(p):\n    return 100\n"
                       "def acc_run(s, acc, x):\n"
                       "    if x < 0:\n        raise ValueError('negative')\n"
                       "    return (acc or 0) + x, x * 2\n"
                       "def acc_export(s, acc):\n    return {'sum': acc}\n"
                       "def reduce(shared, parts):\n    return shared + sum(p['sum'] for p in parts)\n");
    struct config_model m = { .name = "acc", .runtime = "python", .module = path,
                              .interpreter = "/usr/bin/python3", .workers = 1 };
    struct zygote z;
    start(&z, &m);
    assert_int_equal(zygote_wait_loaded(&z, 30000, err, sizeof err), 0);
    assert_true(z.stateful);
    int fd = -1;
    pid_t child = 0;
    assert_int_equal(zygote_fork_child(&z, 0, 10000, &fd, &child, err, sizeof err), 0);
    struct coproc_reader r;
    coproc_reader_init(&r, fd, 1u << 20);
    struct coproc_frame f;
    assert_int_equal(coproc_read(&r, &f, 10000), 0);
    assert_int_equal(f.type, COPROC_READY);
    const uint64_t job1 = 0x100000001ull, job2 = 0x100000002ull;
    const char *items[] = { "5", "7", "-1", "3" };
    const uint64_t keys[] = { job1, job1, job1, job2 };
    for (int i = 0; i < 4; i++) {
        send_keyed(fd, COPROC_ACC_BATCH, keys[i], items[i]);
        assert_int_equal(coproc_read(&r, &f, 10000), 0);
        uint32_t index, len;
        bool ok;
        const uint8_t *data;
        assert_int_equal(coproc_result_parse(&f, &index, &ok, &data, &len), 0);
        assert_int_equal(ok, i != 2);
        if (i == 2)
            assert_memory_equal(data, "ValueError: negative", len);
        assert_int_equal(coproc_read(&r, &f, 10000), 0);
        assert_int_equal(f.type, COPROC_DONE);
    }
    send_keyed(fd, COPROC_EXPORT, job1, NULL);
    read_value(&r, true, "{\"sum\":12}");
    send_keyed(fd, COPROC_DROP, job2, NULL); /* no answer */
    send_keyed(fd, COPROC_EXPORT, job2, NULL);
    read_value(&r, true, "null");
    const char *parts = "[{\"sum\":12},{\"sum\":30}]";
    assert_int_equal(coproc_send(fd, COPROC_REDUCE, parts, (uint32_t)strlen(parts), -1), 0);
    read_value(&r, true, "142");
    assert_int_equal(coproc_send(fd, COPROC_REDUCE, "[{}]", 4, -1), 0);
    read_value(&r, false, "KeyError: 'sum'");
    coproc_reader_free(&r);
    close(fd);
    pid_t host = z.pid;
    zygote_close(&z);
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
        cmocka_unit_test(test_stateful_frames),
        cmocka_unit_test(test_load_error),
    };
    return cmocka_run_group_tests_name("zygote", tests, setup, teardown);
}
