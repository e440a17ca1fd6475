#include "service/supervisor/supervisor.h"
#include "service/supervisor/respawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "workers/worker/host.h"
#include "service/core/listener.h"
#include "service/core/log.h"
#include <batchd/model.h>
#include "workers/models/model_util.h"
#include "workers/models/models_builtin.h"
#include "workers/worker/plugin.h"
#include "service/objects/objects.h"
#include "service/ring/ring.h"
#include "service/ring/shm.h"
#include "service/store/store.h"
#include "service/supervisor/zygote.h"
#include "workers/coproc/coproc_worker.h"
#include "workers/worker/worker.h"

/* The exit classes, struct sup_child and the back-off: respawn.h. */

struct sup {
    const struct config *cfg;
    enum sup_state state;
    struct shm shm;
    struct objects objects; /* the object store, created before any fork */
    const struct model_ops **ops; /* per group (a coprocess model's is sup_coproc_ops) */
    struct zygote *zygotes;       /* per group: a coprocess model's host (zygote.h) */
    struct sup_child *hosts;      /* per group: the host's respawn policy */
    struct plugin **plugins;      /* per group: the loaded plugin, or NULL for a built-in */
    void **shared;                /* per group, from load() */
    uint64_t *load_ns;            /* per group: how long load() took */
    uint32_t n_groups, n_workers;
    struct sup_child *workers;
    struct sup_child api;
    int lock_fd;
    int listen_fd;        /* listener.h: bound once, inherited by api processes */
    pid_t self;
    sigset_t orig_mask;
    int exit_code;
};

/* The table of a coprocess model in the supervisor: it has no hook here
 * (load() runs in the host, the rest in the host's children), only what
 * the supervisor reads. */
static const struct model_ops sup_coproc_ops = {
    .abi_version = MODEL_ABI_VERSION,
    .name = "coprocess",
    .description = "",
};

/* Waits this long for a host's FORKED answer (it only forks). */
#define SUP_FORK_TIMEOUT_MS 10000

static const char *const sup_state_names[] = { "starting", "running", "stopping", "stopped" };

static void sup_set_state(struct sup *s, enum sup_state st)
{
    if (s->state == st)
        return;
    log_info("supervisor: %s -> %s", sup_state_names[s->state], sup_state_names[st]);
    s->state = st;
}

static uint64_t sup_now_ms(void) { return shm_now_mono_ns() / 1000000ULL; }

/* "exit code 3", "signal 11 (SIGSEGV), core dumped": how a child ended,
 * for the log. */
static void sup_describe(int status, char *buf, size_t len)
{
    proc_describe_status(status, buf, len);
    if (WIFSIGNALED(status) && WCOREDUMP(status)) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, ", core dumped");
    }
}

static int sup_lock_data_dir(struct sup *s)
{
    const char *dir = s->cfg->data_dir;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        log_error("data directory %s cannot be created: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("data directory %s is not a directory", dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        log_error("data directory %s is not writable: %s", dir, strerror(errno));
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/batchd.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof other - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        log_error("data directory %s is in use by another batchd (pid %s)", dir,
                  other[0] ? other : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("cannot write pid to %s: %s", path, strerror(errno));
    s->lock_fd = fd;
    return 0;
}

/* Starts the host of coprocess group g. At start-up (`wait`) it waits for
 * load() and a failure is fatal; later the answer is polled by the main
 * loop (sup_hosts_tick). Returns 0 or -1 (logged). */
static int sup_start_host(struct sup *s, uint32_t g, bool wait)
{
    struct zygote *z = &s->zygotes[g];
    const struct config_model *m = z->m;
    char err[SHM_ERR_LEN];
    int rc = zygote_start(z, s->objects.fd, s->objects.size, &s->orig_mask, err, sizeof err);
    if (rc) {
        log_error("model %s: cannot start its %s host: %s", m->name, m->runtime, err);
        return -1;
    }
    s->hosts[g].pid = z->pid;
    s->hosts[g].started_ms = sup_now_ms();
    s->hosts[g].respawn_at_ms = 0;
    log_info("model %s: %s host started, pid %d (%s)", m->name, m->runtime, (int)z->pid,
             m->module);
    if (!wait)
        return 0;
    /* Waited for in slices: a stop signal (blocked, see sup_run) ends a
     * load that takes too long. */
    while ((rc = zygote_wait_loaded(z, 200, err, sizeof err)) == -EAGAIN) {
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT)) {
            log_error("model %s: stopped while its load() was running", m->name);
            return -1;
        }
    }
    if (rc) {
        log_error("model %s: load failed: %s", m->name, err);
        return -1;
    }
    log_info("model %s: %s host pid %d loaded %s in %.3f s", m->name, m->runtime, (int)z->pid,
             m->module, (double)z->load_ns / 1e9);
    return 0;
}

static int sup_load_models(struct sup *s)
{
    const struct config *cfg = s->cfg;
    s->n_groups = (uint32_t)cfg->n_models;
    s->ops = calloc(s->n_groups, sizeof *s->ops);
    s->shared = calloc(s->n_groups, sizeof *s->shared);
    s->load_ns = calloc(s->n_groups, sizeof *s->load_ns);
    s->plugins = calloc(s->n_groups, sizeof *s->plugins);
    s->zygotes = calloc(s->n_groups, sizeof *s->zygotes);
    s->hosts = calloc(s->n_groups, sizeof *s->hosts);
    if (!s->ops || !s->shared || !s->load_ns || !s->plugins || !s->zygotes || !s->hosts)
        abort(); /* start-up may abort on out-of-memory (docs/architecture.md) */
    for (uint32_t g = 0; g < s->n_groups; g++) {
        s->zygotes[g].m = &cfg->models[g];
        s->zygotes[g].ctl = -1;
        coproc_reader_init(&s->zygotes[g].rd, -1, 0);
    }
    for (uint32_t g = 0; g < s->n_groups; g++) {
        const struct config_model *m = &cfg->models[g];
        const struct model_ops *ops;
        if (m->runtime) {
            if (sup_start_host(s, g, true) != 0)
                return -1;
            s->ops[g] = &sup_coproc_ops;
            s->load_ns[g] = s->zygotes[g].load_ns;
            continue;
        }
        if (m->plugin) {
            /* dlopen here, before the first fork: the workers inherit the
             * mapped object and never load anything themselves. */
            char perr[1024];
            s->plugins[g] = plugin_open(m->plugin, m->name, perr, sizeof perr);
            if (!s->plugins[g]) {
                log_error("model %s: %s", m->name, perr);
                return -1;
            }
            ops = plugin_ops(s->plugins[g]);
            log_info("model %s: plugin %s loaded (it calls itself %s)", m->name, m->plugin,
                     plugin_own_name(s->plugins[g]));
        } else {
            ops = model_builtin_find(m->name);
            if (!ops) {
                log_error("model %s: no such built-in model", m->name);
                return -1;
            }
        }
        struct model_params params = { m->n_params, (const char *const *)m->keys,
                                       (const char *const *)m->values };
        char err[SHM_ERR_LEN] = "";
        uint64_t t0 = shm_now_mono_ns();
        /* A model without load() takes no parameters: say so rather than
         * ignore them. */
        int rc = ops->load ? ops->load(&params, host_load(), &s->shared[g], err, sizeof err)
                           : model_params_none(m->name, &params, err, sizeof err);
        if (rc != 0) {
            log_error("model %s: load failed: %s", m->name, err[0] ? err : strerror(-rc));
            return -1;
        }
        s->ops[g] = ops;
        s->load_ns[g] = shm_now_mono_ns() - t0;
        log_info("model %s loaded in %.3f s (%u workers)", m->name, (double)s->load_ns[g] / 1e9,
                 m->workers);
    }
    return 0;
}

static int sup_create_shm(struct sup *s)
{
    const struct config *cfg = s->cfg;
    uint32_t *workers = calloc(s->n_groups, sizeof *workers);
    const char **names = calloc(s->n_groups, sizeof *names);
    if (!workers || !names)
        abort();
    s->n_workers = 0;
    for (uint32_t g = 0; g < s->n_groups; g++) {
        workers[g] = cfg->models[g].workers;
        names[g] = cfg->models[g].name;
        s->n_workers += workers[g];
    }
    /* A slot carries a chunk of items; the biggest single item must fit. */
    uint32_t cap = (uint32_t)(cfg->max_item_bytes + 64);
    if (cap < 64 * 1024)
        cap = 64 * 1024;
    struct shm_layout lay = {
        .n_groups = s->n_groups,
        .group_workers = workers,
        .group_names = names,
        .slots_per_worker = 32,
        .in_cap = cap,
        .out_cap = cap,
    };
    int rc = shm_create(&s->shm, &lay);
    free(workers);
    free(names);
    if (rc) {
        log_error("cannot create the shared-memory region: %s", strerror(-rc));
        return -1;
    }
    shm_header(&s->shm)->max_output = cfg->max_output_size;
    for (uint32_t g = 0; g < s->n_groups; g++) {
        struct shm_group *gr = shm_group(&s->shm, g);
        gr->load_ns = s->load_ns[g];
        /* Copied here so that the api process never looks a model up (a
         * plugin is in no table it knows). Both become JSON strings: cut at
         * a character boundary, and a path (bytes, from the command line)
         * repaired to UTF-8. */
        const char *desc = s->ops[g]->description ? s->ops[g]->description : "";
        snprintf(gr->description, sizeof gr->description, "%.*s",
                 model_utf8_prefix(desc, sizeof gr->description - 1), desc);
        worker_utf8_repair(gr->description);
        const struct config_model *m = &cfg->models[g];
        if (m->runtime) {
            const char *d = s->zygotes[g].description;
            snprintf(gr->description, sizeof gr->description, "%.*s",
                     model_utf8_prefix(d, sizeof gr->description - 1), d);
            worker_utf8_repair(gr->description);
            snprintf(gr->runtime, sizeof gr->runtime, "%s", m->runtime);
            snprintf(gr->module, sizeof gr->module, "%.*s",
                     model_utf8_prefix(m->module, sizeof gr->module - 1), m->module);
            worker_utf8_repair(gr->module);
            atomic_store_explicit(&gr->host_pid, s->zygotes[g].pid, memory_order_relaxed);
            atomic_store_explicit(&gr->host_loads, 1, memory_order_relaxed);
        }
        if (s->plugins[g]) {
            const char *path = plugin_path(s->plugins[g]);
            snprintf(gr->plugin, sizeof gr->plugin, "%.*s",
                     model_utf8_prefix(path, sizeof gr->plugin - 1), path);
            worker_utf8_repair(gr->plugin);
        }
        /* The engine drives a stateful model's jobs differently (exports,
         * replays, the reduce): tell it which groups those are. */
        if (s->ops[g]->acc_run || (m->runtime && s->zygotes[g].stateful))
            gr->flags |= SHM_GROUP_STATEFUL;
        /* Resolved by config: the model's own max_items= / max_rss=, else
         * the global --max-items-per-worker / --max-worker-rss. */
        gr->max_items = cfg->models[g].max_items;
        gr->max_rss = cfg->models[g].max_rss;
    }
    return 0;
}

/* What a child must not keep of the supervisor's: the data dir's lock. */
static void sup_child_setup(struct sup *s, const char *name)
{
    proc_child_setup(name, s->self);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    /* The hosts' control sockets are the supervisor's alone. */
    for (uint32_t g = 0; s->zygotes && g < s->n_groups; g++)
        if (s->zygotes[g].ctl >= 0)
            close(s->zygotes[g].ctl);
}

/* Workers have no business with the listening socket either. worker_main
 * names itself and asks for the parent-death signal (proc_child_setup). */
static void sup_worker_setup(struct sup *s)
{
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
}

/* The model's name as configured (a plugin may call itself otherwise). */
static const char *sup_model_name(const struct sup *s, uint32_t g)
{
    return s->cfg->models[g].name;
}

static void sup_spawn_worker(struct sup *s, uint32_t w)
{
    struct shm_worker *sw = shm_worker(&s->shm, w);
    struct sup_child *c = &s->workers[w];
    uint32_t g = sw->group;
    /* Reset the slot's per-process fields before the child exists. */
    atomic_store_explicit(&sw->inits, 0, memory_order_relaxed);
    atomic_store_explicit(&sw->state, WORKER_STARTING, memory_order_relaxed);
    atomic_store_explicit(&sw->current_job, 0, memory_order_relaxed);
    atomic_store_explicit(&sw->task_started_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&sw->started_ns, shm_now_real_ns(), memory_order_relaxed);
    /* A coprocess model's worker comes with its child of the host. */
    int coproc_fd = -1;
    if (s->cfg->models[g].runtime) {
        struct zygote *z = &s->zygotes[g];
        pid_t child;
        char err[SHM_ERR_LEN];
        if (z->state != ZYGOTE_READY) {
            c->respawn_at_ms = sup_now_ms() + SUP_BACKOFF_MIN_MS; /* after the host */
            return;
        }
        if (zygote_fork_child(z, w, SUP_FORK_TIMEOUT_MS, &coproc_fd, &child, err,
                              sizeof err) != 0) {
            log_error("worker %u (model %s): its host pid %d forks no child: %s; the host is "
                      "restarted", w, sup_model_name(s, g), (int)z->pid, err);
            kill(z->pid, SIGKILL); /* reaped and restarted like any host death */
            c->respawn_at_ms = sup_now_ms() + SUP_BACKOFF_MIN_MS;
            return;
        }
        atomic_store_explicit(&sw->coproc_pid, child, memory_order_relaxed);
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork of worker %u failed: %s; retrying", w, strerror(errno));
        if (coproc_fd >= 0) {
            close(coproc_fd); /* its child reads EOF and exits */
            atomic_store_explicit(&sw->coproc_pid, 0, memory_order_relaxed);
        }
        c->respawn_at_ms = sup_now_ms() + SUP_BACKOFF_MIN_MS;
        return;
    }
    if (pid == 0) {
        /* The child says who it is before it can take a task: the engine
         * tells a live worker process from a dead one by this pid (a
         * stateful job's state lives in the process), and the parent's own
         * store below may come only after the child has finished a task. */
        atomic_store_explicit(&sw->pid, getpid(), memory_order_release);
        sup_worker_setup(s);
        host_worker_setup(&s->objects, w);
        if (coproc_fd >= 0)
            coproc_worker_main(&s->shm, w, coproc_fd, s->self);
        worker_main(&s->shm, w, s->ops[g], s->shared[g], s->self);
    }
    if (coproc_fd >= 0)
        close(coproc_fd);
    /* sw->pid is the child's to write (above): one writer, so no store
     * here can land after the child's first task. */
    c->pid = pid;
    c->started_ms = sup_now_ms();
    c->respawn_at_ms = 0;
    if (coproc_fd >= 0)
        log_info("worker %u (model %s) started, pid %d, its %s child pid %d", w,
                 sup_model_name(s, g), (int)pid, s->cfg->models[g].runtime,
                 (int)atomic_load_explicit(&sw->coproc_pid, memory_order_relaxed));
    else
        log_info("worker %u (model %s) started, pid %d", w, sup_model_name(s, g), (int)pid);
}

static void sup_spawn_api(struct sup *s)
{
    struct sup_child *c = &s->api;
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork of the api process failed: %s; retrying", strerror(errno));
        c->respawn_at_ms = sup_now_ms() + SUP_BACKOFF_MIN_MS;
        return;
    }
    if (pid == 0) {
        sup_child_setup(s, "batchd-api");
        log_set_proc("api");
        sigprocmask(SIG_SETMASK, &s->orig_mask, NULL);
        _exit(api_run(s->cfg, &s->shm, &s->objects, s->listen_fd));
    }
    c->pid = pid;
    c->started_ms = sup_now_ms();
    c->respawn_at_ms = 0;
    log_info("api process started, pid %d", (int)pid);
}

static void sup_worker_exited(struct sup *s, uint32_t w, int status)
{
    struct shm_worker *sw = shm_worker(&s->shm, w);
    struct sup_child *c = &s->workers[w];
    uint32_t g = sw->group;
    pid_t pid = c->pid;
    char how[96];
    sup_describe(status, how, sizeof how);
    c->pid = 0;
    atomic_store_explicit(&sw->pid, 0, memory_order_relaxed);
    /* Its coprocess child goes with it (it may be stuck in a call that
     * never reads the closed socket: a deadline kill). */
    pid_t child = atomic_exchange_explicit(&sw->coproc_pid, 0, memory_order_relaxed);
    /* An orderly worker (stopped, or recycled after its task) said STOP:
     * its child runs fini() and exits. */
    bool orderly = WIFEXITED(status) &&
                   (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == WORKER_EXIT_RECYCLE);
    if (child > 0 && !orderly)
        kill(child, SIGKILL);
    /* Hand its task back before a replacement can take the same worker id. */
    uint32_t n = ring_reclaim_worker(&s->shm, w, status);
    /* Objects it was making for a task that never completed: the task runs
     * again and makes them anew. */
    uint32_t lost = objects_reclaim_owner(&s->objects, w);
    if (lost)
        log_info("worker %u: %u unfinished object(s) freed", w, lost);
    enum sup_exit_class cls = sup_classify(SUP_CHILD_WORKER, status);
    bool init_failed = cls == SUP_EXITED_INIT;
    bool fatal = cls == SUP_EXITED_FATAL;
    bool recycled = cls == SUP_EXITED_RECYCLED;
    atomic_store_explicit(&sw->state, init_failed ? WORKER_FAILED : WORKER_DEAD,
                          memory_order_relaxed);
    /* Only a recycle hands its replacement a start time to measure from. */
    if (!recycled)
        atomic_store_explicit(&sw->recycle_at_ns, 0, memory_order_relaxed);
    if (s->state != SUP_RUNNING) {
        log_info("worker %u (model %s) exited: %s", w, sup_model_name(s, g), how);
        return;
    }
    if (recycled) {
        /* A planned exit after a finished task: not a death (restarts stay
         * as they are, no back-off), and its replacement is forked now. A
         * task handed back here would be a worker bug: say so. */
        uint32_t why = atomic_load_explicit(&sw->recycle_reason, memory_order_relaxed);
        atomic_fetch_add_explicit(why == WORKER_RECYCLE_RSS ? &sw->recycles_rss
                                                            : &sw->recycles_items,
                                  1, memory_order_relaxed);
        sup_count_failure(c, false, sup_now_ms());
        if (n)
            log_error("worker %u (model %s) pid %d left to be recycled holding %u task(s): "
                      "handed back", w, sup_model_name(s, g), (int)pid, n);
        log_info("worker %u (model %s) pid %d recycled (%s limit); replacing it", w,
                 sup_model_name(s, g), (int)pid,
                 worker_recycle_reason_name((enum worker_recycle_reason)why));
        sup_spawn_worker(s, w);
        return;
    }
    struct shm_group *gr = shm_group(&s->shm, g);
    if (init_failed) {
        snprintf(gr->load_error, sizeof gr->load_error, "%s", sw->init_error);
        atomic_fetch_add_explicit(&gr->init_failures, 1, memory_order_relaxed);
    } else if (atomic_load_explicit(&sw->inits, memory_order_relaxed) > 0) {
        atomic_store_explicit(&gr->init_failures, 0, memory_order_relaxed);
    }
    /* Back off only when the slot cannot get through init(): a crash while
     * serving (a poison item, a deadline kill) is bounded by max-attempts,
     * and its replacement is needed now. */
    bool early = init_failed || atomic_load_explicit(&sw->inits, memory_order_relaxed) == 0;
    sup_count_failure(c, early, sup_now_ms());
    uint64_t delay = early ? sup_backoff(c) : 0;
    if (fatal) {
        log_error("worker %u (model %s) exited fatally (%s): not respawned", w,
                  sup_model_name(s, g), how);
        return;
    }
    atomic_fetch_add_explicit(&sw->restarts, 1, memory_order_relaxed);
    if (init_failed) {
        log_error("worker %u (model %s) pid %d: init failed: %s; retrying in %llu ms", w,
                  sup_model_name(s, g), (int)pid, sw->init_error, (unsigned long long)delay);
        c->respawn_at_ms = sup_now_ms() + delay;
        return;
    }
    log_warn("worker %u (model %s) pid %d died: %s; %u task(s) handed back; respawn in %llu ms",
             w, sup_model_name(s, g), (int)pid, how, n, (unsigned long long)delay);
    c->respawn_at_ms = sup_now_ms() + delay;
    if (delay == 0)
        sup_spawn_worker(s, w);
}

static void sup_api_exited(struct sup *s, int status)
{
    char how[96];
    sup_describe(status, how, sizeof how);
    s->api.pid = 0;
    /* Its uploads in progress die with it, and so do its jobs' pins (the
     * next api process pins again what its recovered jobs name). */
    uint32_t lost = objects_reclaim_owner(&s->objects, OBJECTS_OWNER_API);
    objects_unpin_all(&s->objects);
    if (lost)
        log_info("api process: %u unfinished upload(s) freed", lost);
    if (s->state != SUP_RUNNING) {
        log_info("api process exited: %s", how);
        return;
    }
    if (sup_classify(SUP_CHILD_API, status) == SUP_EXITED_FATAL) {
        log_error("api process failed fatally (%s): stopping", how);
        s->exit_code = SUP_EXIT_FATAL;
        sup_set_state(s, SUP_STOPPING);
        return;
    }
    sup_count_failure(&s->api, true, sup_now_ms());
    uint64_t delay = s->api.failures > 1 ? sup_backoff(&s->api) : 0;
    log_warn("api process died: %s; restarting in %llu ms (its jobs come back from the store)",
             how, (unsigned long long)delay);
    s->api.respawn_at_ms = sup_now_ms() + delay;
    if (delay == 0)
        sup_spawn_api(s);
}

/* A coprocess model's host died: its children die with it (and their
 * workers with them); it is started again, load() and all. */
static void sup_host_exited(struct sup *s, uint32_t g, int status)
{
    struct zygote *z = &s->zygotes[g];
    struct sup_child *c = &s->hosts[g];
    char how[96];
    sup_describe(status, how, sizeof how);
    pid_t pid = c->pid;
    bool was_ready = z->state == ZYGOTE_READY;
    c->pid = 0;
    z->pid = 0;
    zygote_close(z);
    struct shm_group *gr = shm_group(&s->shm, g);
    atomic_store_explicit(&gr->host_pid, 0, memory_order_relaxed);
    if (s->state != SUP_RUNNING) {
        log_info("model %s: %s host pid %d exited: %s", sup_model_name(s, g),
                 s->cfg->models[g].runtime, (int)pid, how);
        return;
    }
    /* A host that dies before it has loaded is failing to start: back off. */
    sup_count_failure(c, !was_ready, sup_now_ms());
    uint64_t delay = !was_ready ? sup_backoff(c) : 0;
    atomic_fetch_add_explicit(&gr->host_restarts, 1, memory_order_relaxed);
    log_warn("model %s: %s host pid %d died: %s; starting it again in %llu ms (load() runs "
             "again; its workers are replaced)", sup_model_name(s, g), s->cfg->models[g].runtime,
             (int)pid, how, (unsigned long long)delay);
    c->respawn_at_ms = sup_now_ms() + delay;
}

/* Starts the hosts that are due, and takes the answers of those loading;
 * a host that has loaded gets its waiting workers at once. */
static void sup_hosts_tick(struct sup *s)
{
    uint64_t now = sup_now_ms();
    for (uint32_t g = 0; g < s->n_groups; g++) {
        if (!s->cfg->models[g].runtime)
            continue;
        struct zygote *z = &s->zygotes[g];
        struct sup_child *c = &s->hosts[g];
        struct shm_group *gr = shm_group(&s->shm, g);
        if (z->state == ZYGOTE_DOWN && !c->pid && c->respawn_at_ms && c->respawn_at_ms <= now) {
            if (sup_start_host(s, g, false) != 0) {
                c->failures++;
                c->respawn_at_ms = now + sup_backoff(c);
            }
            continue;
        }
        if (z->state != ZYGOTE_LOADING)
            continue;
        char err[SHM_ERR_LEN];
        int rc = zygote_wait_loaded(z, 0, err, sizeof err);
        if (rc == -EAGAIN)
            continue;
        if (rc != 0) {
            log_error("model %s: %s host pid %d: load failed: %s", sup_model_name(s, g),
                      s->cfg->models[g].runtime, (int)z->pid, err);
            snprintf(gr->load_error, sizeof gr->load_error, "load failed: %.200s", err);
            zygote_close(z);
            if (c->pid)
                kill(c->pid, SIGKILL); /* reaped, then started again after a back-off */
            continue;
        }
        atomic_store_explicit(&gr->host_pid, z->pid, memory_order_relaxed);
        atomic_fetch_add_explicit(&gr->host_loads, 1, memory_order_relaxed);
        gr->load_error[0] = '\0';
        log_info("model %s: %s host pid %d loaded %s again in %.3f s", sup_model_name(s, g),
                 s->cfg->models[g].runtime, (int)z->pid, s->cfg->models[g].module,
                 (double)z->load_ns / 1e9);
        for (uint32_t k = 0; k < gr->n_workers; k++) {
            uint32_t w = gr->first_worker + k;
            if (!s->workers[w].pid && s->workers[w].respawn_at_ms)
                sup_spawn_worker(s, w);
        }
    }
}

/* Reaps every exited child (a loop: one SIGCHLD may stand for several). */
static void sup_reap(struct sup *s)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        if (pid == s->api.pid) {
            sup_api_exited(s, status);
            continue;
        }
        bool found = false;
        for (uint32_t g = 0; g < s->n_groups && !found; g++) {
            if (s->hosts[g].pid == pid) {
                sup_host_exited(s, g, status);
                found = true;
            }
        }
        for (uint32_t w = 0; w < s->n_workers && !found; w++) {
            if (s->workers[w].pid == pid) {
                sup_worker_exited(s, w, status);
                found = true;
                break;
            }
        }
        if (!found)
            log_warn("reaped unknown child %d", (int)pid);
    }
}

static void sup_respawn_due(struct sup *s)
{
    uint64_t now = sup_now_ms();
    for (uint32_t w = 0; w < s->n_workers; w++) {
        struct sup_child *c = &s->workers[w];
        if (!c->pid && c->respawn_at_ms && c->respawn_at_ms <= now)
            sup_spawn_worker(s, w);
    }
    if (!s->api.pid && s->api.respawn_at_ms && s->api.respawn_at_ms <= now)
        sup_spawn_api(s);
}

/* Milliseconds until the next respawn is due, capped at 1 s. */
static long sup_next_timeout(struct sup *s)
{
    uint64_t now = sup_now_ms(), next = now + 1000;
    for (uint32_t w = 0; w < s->n_workers; w++)
        if (!s->workers[w].pid && s->workers[w].respawn_at_ms && s->workers[w].respawn_at_ms < next)
            next = s->workers[w].respawn_at_ms;
    if (!s->api.pid && s->api.respawn_at_ms && s->api.respawn_at_ms < next)
        next = s->api.respawn_at_ms;
    for (uint32_t g = 0; g < s->n_groups; g++) {
        if (s->zygotes[g].state == ZYGOTE_LOADING && now + 50 < next)
            next = now + 50; /* a host's answer is polled, not waited for */
        if (!s->hosts[g].pid && s->hosts[g].respawn_at_ms && s->hosts[g].respawn_at_ms < next)
            next = s->hosts[g].respawn_at_ms;
    }
    return next > now ? (long)(next - now) : 0;
}

static unsigned sup_live_children(struct sup *s)
{
    unsigned n = s->api.pid ? 1 : 0;
    for (uint32_t w = 0; w < s->n_workers; w++)
        n += s->workers[w].pid ? 1 : 0;
    for (uint32_t g = 0; g < s->n_groups; g++)
        n += s->hosts[g].pid ? 1 : 0;
    return n;
}

static void sup_signal_children(struct sup *s, int sig)
{
    if (s->api.pid)
        kill(s->api.pid, sig);
    for (uint32_t w = 0; w < s->n_workers; w++)
        if (s->workers[w].pid)
            kill(s->workers[w].pid, sig);
    for (uint32_t g = 0; g < s->n_groups; g++)
        if (s->hosts[g].pid)
            kill(s->hosts[g].pid, sig);
}

/* Waits (reaping) until `done(s)` or the deadline; a second stop signal
 * cuts the wait short. Returns false if it was cut short. */
static bool sup_wait_until(struct sup *s, const sigset_t *set, uint64_t deadline,
                           bool (*done)(struct sup *))
{
    while (!done(s) && sup_now_ms() < deadline) {
        struct timespec ts = { 0, 50 * 1000000L };
        int sig = sigtimedwait(set, NULL, &ts);
        sup_reap(s);
        if (sig == SIGINT || sig == SIGTERM) {
            log_warn("second stop signal: not waiting any longer");
            return false;
        }
    }
    return true;
}

static bool sup_api_gone(struct sup *s) { return s->api.pid == 0; }
static bool sup_all_gone(struct sup *s) { return sup_live_children(s) == 0; }

static bool sup_workers_gone(struct sup *s)
{
    for (uint32_t w = 0; w < s->n_workers; w++)
        if (s->workers[w].pid)
            return false;
    return s->api.pid == 0;
}

/* A host reads EOF on its control socket as "exit once your children
 * have" (they exit when their workers close their sockets). */
static void sup_close_hosts(struct sup *s)
{
    for (uint32_t g = 0; g < s->n_groups; g++)
        zygote_close(&s->zygotes[g]);
}

/*
 * The shutdown sequence, within --grace from the stop signal (the timeline
 * and its offsets: service/core/process.h):
 *   1. the api process gets SIGTERM: it refuses new jobs (503), lets the
 *      tasks in the ring finish, and exits when they are done or when its
 *      drain budget is spent;
 *   2. then (at the latest at the api deadline) the workers get SIGTERM:
 *      each finishes the task in hand;
 *   3. whatever still runs at the kill time gets SIGKILL.
 */
static void sup_stop_children(struct sup *s, const sigset_t *set)
{
    atomic_store_explicit(&shm_header(&s->shm)->shutting_down, 1, memory_order_relaxed);
    uint64_t start = sup_now_ms();
    uint64_t grace = s->cfg->grace_ms;
    /* Leave the workers at least a moment after the api has gone. */
    uint64_t api_deadline = start + shutdown_api_deadline_ms(grace);
    uint64_t end = start + shutdown_kill_ms(grace);
    bool patient = true;
    if (s->api.pid) {
        kill(s->api.pid, SIGTERM);
        patient = sup_wait_until(s, set, api_deadline, sup_api_gone);
    }
    for (uint32_t w = 0; w < s->n_workers; w++)
        if (s->workers[w].pid)
            kill(s->workers[w].pid, SIGTERM);
    if (s->api.pid)
        kill(s->api.pid, SIGTERM);
    if (patient)
        patient = sup_wait_until(s, set, end, sup_workers_gone);
    sup_close_hosts(s);
    if (patient)
        sup_wait_until(s, set, end, sup_all_gone);
    if (sup_live_children(s) > 0) {
        log_warn("%u child process(es) still running after %llu ms: SIGKILL",
                 sup_live_children(s), (unsigned long long)(sup_now_ms() - start));
        sup_signal_children(s, SIGKILL);
        /* SIGKILL cannot be ignored: the wait is for the kernel to reap. */
        uint64_t deadline = sup_now_ms() + SHUTDOWN_REAP_WAIT_MS;
        while (sup_live_children(s) > 0 && sup_now_ms() < deadline) {
            struct timespec ts = { 0, 20 * 1000000L };
            sigtimedwait(set, NULL, &ts);
            sup_reap(s);
        }
        if (sup_live_children(s) > 0)
            log_error("%u child process(es) did not exit after SIGKILL", sup_live_children(s));
    }
}

int sup_run(const struct config *cfg)
{
    struct sup sup;
    memset(&sup, 0, sizeof sup);
    struct sup *s = &sup;
    s->cfg = cfg;
    s->lock_fd = -1;
    s->listen_fd = -1;
    s->self = getpid();
    s->exit_code = SUP_EXIT_OK;
    s->shm.fd = -1;
    s->objects.fd = -1;
    log_set_proc("supervisor");

    /* All the signals we act on stay blocked: sigtimedwait() takes them
     * synchronously, so there are no handlers and nothing async-unsafe. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &s->orig_mask);
    signal(SIGPIPE, SIG_IGN);

    int rc = SUP_EXIT_FATAL;
    if (sup_lock_data_dir(s) != 0)
        goto out;
    char err[512];
    /* A store that cannot be used is a start-up error (exit 2), not an api
     * process that fails in a loop. The connection is closed before any
     * fork: no SQLite handle or PostgreSQL connection crosses one. */
    if (store_check(s->cfg->store, s->cfg->data_dir, err, sizeof err) != 0) {
        log_error("%s", err);
        goto out;
    }
    s->listen_fd = listener_open(s->cfg->listen_host, s->cfg->listen_port, err, sizeof err);
    if (s->listen_fd < 0) {
        log_error("%s", err);
        goto out;
    }
    /* Before load() and every fork: each child inherits the mapping. */
    int orc = objects_create(&s->objects, cfg->object_memory, cfg->max_objects,
                             cfg->max_object_bytes);
    if (orc != 0) {
        log_error("cannot create the object store (--object-memory %zu, --max-objects %u): %s",
                  cfg->object_memory, cfg->max_objects, strerror(-orc));
        goto out;
    }
    if (sup_load_models(s) != 0)
        goto out;
    if (sup_create_shm(s) != 0)
        goto out;
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    if (!s->workers)
        abort();
    for (uint32_t w = 0; w < s->n_workers; w++)
        sup_spawn_worker(s, w);
    sup_spawn_api(s);
    sup_set_state(s, SUP_RUNNING);
    log_info("batchd running: %u model(s), %u worker(s), pid %d", s->n_groups, s->n_workers,
             (int)s->self);

    while (s->state == SUP_RUNNING) {
        long ms = sup_next_timeout(s);
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("received SIG%s: shutting down", sigabbrev_np(sig));
            sup_set_state(s, SUP_STOPPING);
            break;
        }
        if (sig == SIGHUP) {
            /* the api process reloads its tokens file (api.h); workers and
             * the supervisor have nothing to reload */
            log_info("received SIGHUP: forwarded to the api process");
            if (s->api.pid)
                kill(s->api.pid, SIGHUP);
        }
        sup_reap(s);
        if (s->state == SUP_RUNNING) {
            sup_respawn_due(s);
            sup_hosts_tick(s);
        }
    }
    sup_set_state(s, SUP_STOPPING);
    sup_stop_children(s, &set);
    sup_set_state(s, SUP_STOPPED);
    rc = s->exit_code;

out:
    /* Hosts of a start-up that failed half-way: stopped and reaped here. */
    for (uint32_t g = 0; s->hosts && g < s->n_groups; g++) {
        zygote_close(&s->zygotes[g]);
        if (s->hosts[g].pid) {
            kill(s->hosts[g].pid, SIGKILL);
            waitpid(s->hosts[g].pid, NULL, 0);
        }
    }
    free(s->zygotes);
    free(s->hosts);
    for (uint32_t g = 0; s->ops && g < s->n_groups; g++)
        if (s->ops[g] && s->ops[g]->unload)
            s->ops[g]->unload(s->shared[g]);
    /* After unload(): its code and the shared state may live in the object. */
    for (uint32_t g = 0; s->plugins && g < s->n_groups; g++)
        plugin_close(s->plugins[g]);
    free(s->plugins);
    free(s->ops);
    free(s->shared);
    free(s->load_ns);
    free(s->workers);
    if (s->shm.base)
        shm_destroy(&s->shm);
    if (s->objects.base)
        objects_destroy(&s->objects);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    log_info("batchd exits with code %d", rc);
    return rc;
}
