#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "service/jobs/engine.h"
#include "service/core/log.h"
#include "service/core/sanitizer.h"
#include "api/http/server.h"
#include "service/webhooks/webhook_sender.h"

/* Writes "PORT\n" to path.tmp, then renames it to path. Returns 0 or -errno. */
static int write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -ENAMETOOLONG;
    char text[8];
    int len = snprintf(text, sizeof text, "%u\n", (unsigned)port);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, text, (size_t)len);
    int rc = w == len ? 0 : (w < 0 ? -errno : -EIO);
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* True for 127.0.0.0/8 (config.c stores "localhost" as 127.0.0.1). */
static bool is_loopback(const char *host)
{
    struct in_addr a;
    return host && inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Says at start-up whether requests need a token, and shouts when an
 * address other machines can reach is served without one (the container
 * image's 0.0.0.0 without BATCHD_API_TOKENS). */
static void log_exposure(const struct config *cfg, bool auth)
{
    if (auth) {
        log_info("authentication is on: the /v1 routes%s need a bearer token",
                 cfg->auth_metrics ? " and /metrics" : "");
        return;
    }
    log_info("authentication is off: no API token is configured (BATCHD_API_TOKENS or "
             "--tokens-file)");
    if (!is_loopback(cfg->listen_host))
        log_warn("WARNING: listening on %s without authentication: anyone who can reach this "
                 "address can submit and cancel jobs. Set BATCHD_API_TOKENS or --tokens-file, "
                 "or listen on 127.0.0.1",
                 cfg->listen_host);
}

int api_run(const struct config *cfg, struct shm *shm, struct objects *objects, int listen_fd)
{
    log_set_proc("api");

    /* Before any thread: the mask is inherited by every thread created
     * from here on. SETMASK, not BLOCK: the supervisor forks us with its
     * own mask, which is not ours to keep. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGHUP);
    int rc = pthread_sigmask(SIG_SETMASK, &stop_set, NULL);
    if (rc != 0) {
        log_error("cannot set the signal mask: %s", strerror(rc));
        return API_EXIT_FAILED;
    }
    /* A signal whose disposition is "ignore" is discarded even while
     * blocked, and sigwait() would never see it: make sure it is not. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    /* Two malloc arenas, not glibc's 8 per core: every connection has a
     * thread here, and each thread arena keeps the memory freed in it, so
     * the process grew by megabytes as connections came and went, up to
     * 16 arenas' worth. The threads mostly wait for sockets and the store;
     * they hardly contend for malloc. Before the first thread (the
     * engine's): arenas are chosen when a thread first allocates. */
    mallopt(M_ARENA_MAX, 2);

    struct engine *engine = engine_create(cfg, shm, objects);
    if (!engine) {
        log_error("the engine could not start");
        return API_EXIT_FAILED;
    }

    int err = 0;
    /* completion webhooks: delivered by a thread of this process (never the
     * supervisor's: it forks), when webhooks are configured */
    struct webhook_sender *webhooks = webhook_sender_start(cfg, engine, &err);
    if (!webhooks && err) {
        engine_destroy(engine);
        return API_EXIT_FAILED;
    }
    struct api_server *server = api_server_start(cfg, engine, objects, webhooks, listen_fd, &err);
    if (!server) {
        webhook_sender_stop(webhooks);
        engine_destroy(engine);
        /* An unreadable tokens file (checked at start, so it changed since)
         * may be mid-replacement: worth a respawn with back-off. */
        return err == -EINVAL ? API_EXIT_FAILED : API_EXIT_FATAL;
    }
    uint16_t port = api_server_port(server);
    if (cfg->port_file) {
        rc = write_port_file(cfg->port_file, port);
        if (rc) {
            log_error("cannot write the port file %s: %s", cfg->port_file, strerror(-rc));
            api_server_stop(server);
            webhook_sender_stop(webhooks);
            engine_destroy(engine);
            return API_EXIT_FATAL;
        }
    }
    bool v6 = cfg->listen_host && strchr(cfg->listen_host, ':') && cfg->listen_host[0] != '[';
    log_info("listening on %s://%s%s%s:%u", cfg->tls_cert_pem ? "https" : "http", v6 ? "[" : "",
             cfg->listen_host ? cfg->listen_host : "", v6 ? "]" : "", (unsigned)port);
    log_exposure(cfg, api_server_auth_enabled(server));

    int sig = 0;
    for (;;) {
        rc = sigwait(&stop_set, &sig);
        if (rc != 0) {
            log_warn("sigwait: %s", strerror(rc));
            continue;
        }
        if (sig == SIGHUP) {
            api_server_reload(server);
            continue;
        }
        break;
    }
    log_info("%s received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* New jobs are refused first (503), so nothing is accepted that the
     * stop could lose. The tasks already in the ring run to their end while
     * the server still answers status polls: the drain lasts until they are
     * done, the drain budget is spent (the supervisor stops the workers
     * at its api deadline: service/core/process.h draws the timeline), or
     * a second stop signal comes.
     * Then the connections end; the engine goes last because handlers still
     * running use it. */
    engine_stop_accepting(engine);
    uint64_t budget_ms = shutdown_drain_budget_ms(cfg->grace_ms);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (engine_drained(engine))
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t spent = (uint64_t)(now.tv_sec - t0.tv_sec) * 1000u +
                         (uint64_t)((now.tv_nsec - t0.tv_nsec) / 1000000);
        if (spent >= budget_ms) {
            log_warn("drain: tasks still running after %llu ms; stopping anyway",
                     (unsigned long long)spent);
            break;
        }
        struct timespec tick = { 0, 50 * 1000000L };
        int again = sigtimedwait(&stop_set, NULL, &tick);
        if (again == SIGTERM || again == SIGINT) {
            log_warn("second stop signal: not draining any longer");
            break;
        }
    }
    api_server_stop(server);
    webhook_sender_stop(webhooks);
    engine_destroy(engine);
    log_info("stopped");
    /* the supervisor _exit()s us with this status: LSan's only look */
    san_leak_check();
    return API_EXIT_OK;
}
