/*
 * fuzz_config: config_parse() with a command line, BATCHD_* variables and a
 * configuration file built from the input.
 *
 * Input: lines ('\n'); a line "BATCHD_NAME=value" sets that variable, any
 * other line is the next argv element (after argv[0] = "batchd"; at most
 * 64). A line "%FILE" (not the first) ends the lines: the bytes after it are written to a
 * temporary file and "--config PATH" is appended to argv. config_parse()
 * reads the environment, so every BATCHD_* variable is removed before each
 * run (the fuzzer's own environment included) and the ones the input set
 * are removed after it. --help output goes to /dev/null (stdout is reopened
 * there at start-up) and stdin is /dev/null. Inputs that name /dev, /proc
 * or /sys are skipped: a setting that names a file makes config_parse read
 * it, and a FIFO or a terminal would block the run.
 * Contract checked:
 *   - the result is 0, CONFIG_EXIT_OK, -EINVAL (a one-line message: not
 *     empty, no newline, NUL-terminated within errlen, also with a tiny
 *     errlen) or -ENOMEM; on anything but 0 the struct is all zeroes;
 *   - on 0 every setting is within its documented range, 1..32 models with
 *     distinct valid names and 1..256 workers each, the item timeout is at
 *     most the max item timeout, and listen_host is an IPv4 literal;
 *   - config_free() leaves a zeroed struct, and nothing leaks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>

#include "service/config/config.h"
#include "tests/fuzz/fuzz.h"

extern char **environ;

/* The configuration file of the run (mkstemp'ed once, rewritten each run). */
static char file_path[512];

static void remove_file(void)
{
    unlink(file_path);
}

static void clear_batchd_env(void)
{
    /* unsetenv() edits environ: restart the scan after each removal */
    for (int guard = 0; guard < 1000; guard++) {
        char name[256] = "";
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "BATCHD_", 7) == 0) {
                size_t n = strcspn(*e, "=");
                if (n < sizeof name) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                    break;
                }
            }
        }
        if (!name[0])
            return;
        unsetenv(name);
    }
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void check_ok(const struct config *c)
{
    struct in_addr a;
    FUZZ_ASSERT(c->listen_host && inet_pton(AF_INET, c->listen_host, &a) == 1, "listen_host");
    FUZZ_ASSERT(c->data_dir && c->data_dir[0], "data_dir");
    FUZZ_ASSERT(c->workers >= 1 && c->workers <= CONFIG_MAX_WORKERS_PER_MODEL, "workers %u",
                c->workers);
    FUZZ_ASSERT(c->n_models >= 1 && c->n_models <= CONFIG_MAX_MODELS, "%zu models", c->n_models);
    for (size_t i = 0; i < c->n_models; i++) {
        const struct config_model *m = &c->models[i];
        FUZZ_ASSERT(m->name && m->name[0] && strlen(m->name) <= 64, "model name");
        FUZZ_ASSERT(m->workers >= 1 && m->workers <= CONFIG_MAX_WORKERS_PER_MODEL,
                    "model %s workers %u", m->name, m->workers);
        for (size_t k = 0; k < i; k++)
            FUZZ_ASSERT(strcmp(c->models[k].name, m->name) != 0, "model %s twice", m->name);
        for (size_t k = 0; k < m->n_params; k++)
            FUZZ_ASSERT(m->keys[k] && m->keys[k][0] && m->values[k] && m->values[k][0],
                        "empty parameter");
    }
    FUZZ_ASSERT(c->max_body_bytes >= 1 && c->max_body_bytes <= (size_t)1 << 40, "max_body_bytes");
    FUZZ_ASSERT(c->max_items >= 1 && c->max_items <= 1000000000ull, "max_items");
    FUZZ_ASSERT(c->max_item_bytes >= 1 && c->max_item_bytes <= (size_t)1 << 30, "max_item_bytes");
    FUZZ_ASSERT(c->max_json_depth >= 1 && c->max_json_depth <= 1000, "max_json_depth");
    FUZZ_ASSERT(c->max_connections >= 1 && c->max_connections <= 65535, "max_connections");
    FUZZ_ASSERT(c->idle_timeout_s >= 1 && c->idle_timeout_s <= 86400, "idle_timeout_s");
    FUZZ_ASSERT(c->max_attempts >= 1 && c->max_attempts <= 100, "max_attempts");
    FUZZ_ASSERT(c->max_item_timeout_ms >= 1 && c->max_item_timeout_ms <= 86400000u,
                "max_item_timeout_ms");
    FUZZ_ASSERT(c->item_timeout_ms <= c->max_item_timeout_ms, "item timeout over the max");
    FUZZ_ASSERT(c->max_queued_items >= 1 && c->max_queued_items <= 10000000000ull,
                "max_queued_items");
    FUZZ_ASSERT(c->grace_ms <= 3600000u, "grace_ms");
    FUZZ_ASSERT(!c->port_file || c->port_file[0], "empty port file");
}

static void parse_once(int argc, char **argv, size_t errlen)
{
    struct config c;
    char err[512];
    memset(err, 'X', sizeof err);
    /* config_parse may permute argv (getopt): give it its own copy */
    char *args[68];
    memcpy(args, argv, sizeof(char *) * (size_t)(argc + 1));
    int rc = config_parse(&c, argc, args, err, errlen);
    FUZZ_ASSERT(rc == 0 || rc == CONFIG_EXIT_OK || rc == -EINVAL || rc == -ENOMEM, "rc %d", rc);
    if (rc == -EINVAL) {
        size_t n = strnlen(err, errlen);
        FUZZ_ASSERT(n < errlen, "the message is not NUL-terminated within errlen");
        FUZZ_ASSERT(n > 0, "an error without a message");
        FUZZ_ASSERT(!memchr(err, '\n', n), "a multi-line message: %s", err);
        FUZZ_ASSERT(errlen == sizeof err || err[errlen] == 'X', "wrote past errlen");
    }
    if (rc != 0) {
        FUZZ_ASSERT(all_zero(&c, sizeof c), "the struct is not zeroed after rc %d", rc);
        return;
    }
    check_ok(&c);
    config_free(&c);
    FUZZ_ASSERT(all_zero(&c, sizeof c), "config_free left something");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "r", stdin))
        abort();
    clear_batchd_env();
    const char *tmp = getenv("TMPDIR");
    snprintf(file_path, sizeof file_path, "%s/batchd-fuzz-config-XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(file_path);
    if (fd < 0)
        abort();
    close(fd);
    atexit(remove_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const special[] = {"/dev", "/proc", "/sys", "dev/", "proc/", "sys/"};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (memmem(data, size, special[i], strlen(special[i])))
            return 0;
    const uint8_t *file = memmem(data, size, "\n%FILE\n", 7);
    size_t lines_len = size;
    if (file) {
        lines_len = (size_t)(file - data);
        file += 7;
        FILE *f = fopen(file_path, "w");
        if (!f || fwrite(file, 1, size - (size_t)(file - data), f) != size - (size_t)(file - data))
            abort();
        fclose(f);
    }
    char *in = fuzz_cstr(data, lines_len);
    char *argv[68] = {"batchd"};
    int argc = 1;
    char *set[32];
    size_t n_set = 0;
    clear_batchd_env();
    char *save = in;
    while (save) {
        char *line = strsep(&save, "\n");
        char *eq = strchr(line, '=');
        if (strncmp(line, "BATCHD_", 7) == 0 && eq && n_set < 32) {
            *eq = '\0';
            if (line[7] && !strchr(line, ' ')) {
                setenv(line, eq + 1, 1);
                set[n_set++] = line;
                continue;
            }
            *eq = '=';
        }
        if (argc < 64)
            argv[argc++] = line;
    }
    if (file) {
        argv[argc++] = "--config";
        argv[argc++] = file_path;
    }
    argv[argc] = NULL;
    parse_once(argc, argv, 512);
    parse_once(argc, argv, 8);
    for (size_t i = 0; i < n_set; i++)
        unsetenv(set[i]);
    free(in);
    return 0;
}
