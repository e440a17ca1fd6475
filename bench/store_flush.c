/*
 * store_flush: the store's write rates through store.h, on SQLite or
 * PostgreSQL (issue 16): how many flushes (group commits) per second, each
 * one transaction of B result blocks of 64 items plus the job's row, and
 * how many single-item jobs accepted per second (store_job_create: one
 * transaction each, durable before it returns).
 *
 * Usage: store_flush DATA_DIR [STORE] [--flushes N] [--blocks B] [--jobs J]
 *   STORE: sqlite (default) or a postgresql:// URI (an empty database, or
 *   one batchd made: the bench's job is added and left there).
 * Prints: RESULT store_flush backend=... flushes_per_s=... items_per_s=...
 *         jobs_per_s=...
 * Nothing is asserted (the machine is shared); exit 1 on a store error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "service/core/sbuf.h"
#include "service/jobs/engine.h"
#include "service/jobs/items.h"
#include "service/store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_job(struct store_job *j, unsigned k, uint64_t total)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "bench%06u%015ld", k, (long)time(NULL));
    snprintf(j->model, sizeof j->model, "echo");
    j->status = JOB_QUEUED;
    j->total = total;
    j->created_ns = 1;
    j->chunk_size = 64;
    j->max_attempts = 3;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_flush DATA_DIR [STORE] [--flushes N] [--blocks B] [--jobs J]\n");
        return 2;
    }
    const char *dir = argv[1], *where = NULL;
    long flushes = 2000, blocks = 4, jobs = 500;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--flushes") == 0 && i + 1 < argc)
            flushes = atol(argv[++i]);
        else if (strcmp(argv[i], "--blocks") == 0 && i + 1 < argc)
            blocks = atol(argv[++i]);
        else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            jobs = atol(argv[++i]);
        else
            where = argv[i];
    }
    char err[512];
    struct store *s = store_open(where, dir, 0, err, sizeof err);
    if (!s) {
        fprintf(stderr, "store_flush: %s\n", err);
        return 1;
    }
    uint64_t total = (uint64_t)flushes * (uint64_t)blocks * 64;
    struct store_job job;
    make_job(&job, 0, total);
    struct job_items *it = job_items_new();
    for (uint64_t i = 0; i < total; i++)
        job_items_append(it, "1", 1);
    if (store_job_create(s, &job, it, NULL) != 0) {
        fprintf(stderr, "store_flush: cannot create the job\n");
        return 1;
    }
    job_items_free(it);
    const char text[] = "{\"index\":0,\"output\":1}";
    uint32_t lens[64];
    struct sbuf texts = SBUF_INIT;
    for (int k = 0; k < 64; k++) {
        lens[k] = (uint32_t)strlen(text);
        sbuf_append(&texts, text, lens[k]);
    }
    double t0 = now_s();
    uint64_t first = 0;
    for (long f = 0; f < flushes; f++) {
        for (long b = 0; b < blocks; b++, first += 64) {
            job.done = first + 64;
            if (store_put_results(s, job.seq, first, 64, texts.data, lens, &job) != 0)
                return 1;
        }
        if (store_flush(s) != 0) {
            fprintf(stderr, "store_flush: a flush failed\n");
            return 1;
        }
    }
    double dt = now_s() - t0;
    struct job_items *one = job_items_new();
    job_items_append(one, "1", 1);
    double t1 = now_s();
    for (long k = 0; k < jobs; k++) {
        struct store_job j;
        make_job(&j, (unsigned)k + 1, 1);
        if (store_job_create(s, &j, one, NULL) != 0) {
            fprintf(stderr, "store_flush: a job create failed\n");
            return 1;
        }
    }
    double dj = now_s() - t1;
    job_items_free(one);
    sbuf_free(&texts);
    printf("RESULT store_flush backend=%s flushes=%ld blocks_per_flush=%ld flushes_per_s=%.0f"
           " items_per_s=%.0f jobs=%ld jobs_per_s=%.0f\n",
           store_backend_name(s), flushes, blocks, (double)flushes / dt, (double)total / dt,
           jobs, (double)jobs / dj);
    store_close(s);
    return 0;
}
