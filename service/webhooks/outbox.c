#include "service/webhooks/outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "service/core/log.h"

struct outbox {
    pthread_mutex_t mu;
    sqlite3 *db;
};

struct outbox *outbox_open(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, STORE_FILE);
    struct outbox *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&o->mu, NULL);
    int rc = sqlite3_open_v2(path, &o->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 o->db ? sqlite3_errmsg(o->db) : sqlite3_errstr(rc));
        outbox_close(o);
        return NULL;
    }
    /* the engine's group commit holds the write lock for a moment at a
     * time: wait for it rather than fail */
    sqlite3_busy_timeout(o->db, 10000);
    sqlite3_exec(o->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    return o;
}

void outbox_close(struct outbox *o)
{
    if (!o)
        return;
    sqlite3_close(o->db);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

int outbox_next_due(struct outbox *o, uint64_t *next_ns, bool *any)
{
    *any = false;
    *next_ns = 0;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *st = NULL;
    int out = -EIO;
    if (sqlite3_prepare_v2(o->db, "SELECT min(next_ns) FROM outbox WHERE state=0", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *any = true;
            *next_ns = (uint64_t)sqlite3_column_int64(st, 0);
        }
        out = 0;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&o->mu);
    return out;
}

static void copy_text(char *dst, size_t cap, const unsigned char *t)
{
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int outbox_take_due(struct outbox *o, uint64_t now, struct outbox_event *ev, size_t max,
                    size_t *n)
{
    *n = 0;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(o->db,
                                "SELECT id, url, type, job_id, model, status, total, done, failed,"
                                " created_ns, started_ns, finished_ns, chunk_size, error, attempts,"
                                " body FROM outbox WHERE state=0 AND next_ns<=?1"
                                " ORDER BY next_ns LIMIT ?2",
                                -1, &st, NULL);
    int out = 0;
    if (rc != SQLITE_OK) {
        out = -EIO;
        goto done;
    }
    sqlite3_bind_int64(st, 1, now > INT64_MAX ? INT64_MAX : (sqlite3_int64)now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
        struct outbox_event *e = &ev[*n];
        memset(e, 0, sizeof *e);
        e->id = sqlite3_column_int64(st, 0);
        copy_text(e->url, sizeof e->url, sqlite3_column_text(st, 1));
        copy_text(e->type, sizeof e->type, sqlite3_column_text(st, 2));
        copy_text(e->row.id, sizeof e->row.id, sqlite3_column_text(st, 3));
        copy_text(e->row.model, sizeof e->row.model, sqlite3_column_text(st, 4));
        e->row.status = sqlite3_column_int(st, 5);
        e->row.total = (uint64_t)sqlite3_column_int64(st, 6);
        e->row.done = (uint64_t)sqlite3_column_int64(st, 7);
        e->row.failed = (uint64_t)sqlite3_column_int64(st, 8);
        e->row.created_ns = (uint64_t)sqlite3_column_int64(st, 9);
        e->row.started_ns = (uint64_t)sqlite3_column_int64(st, 10);
        e->row.finished_ns = (uint64_t)sqlite3_column_int64(st, 11);
        e->row.chunk_size = (uint32_t)sqlite3_column_int64(st, 12);
        copy_text(e->row.error, sizeof e->row.error, sqlite3_column_text(st, 13));
        e->attempts = (unsigned)sqlite3_column_int64(st, 14);
        const unsigned char *body = sqlite3_column_text(st, 15);
        if (body && !(e->body = strdup((const char *)body))) {
            out = -ENOMEM;
            break;
        }
        (*n)++;
    }
    if (!out && rc != SQLITE_ROW && rc != SQLITE_DONE)
        out = -EIO;
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&o->mu);
    if (out)
        log_error("webhooks: cannot read the outbox: %s", sqlite3_errmsg(o->db));
    return out;
}

void outbox_event_clear(struct outbox_event *ev)
{
    free(ev->body);
    ev->body = NULL;
}

/* Runs one UPDATE with the binds fn makes (mu held). */
static int exec_update(struct outbox *o, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(o->db, sql, -1, st, NULL) != SQLITE_OK)
        return -EIO;
    return 0;
}

int outbox_save_body(struct outbox *o, int64_t id, const char *body)
{
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *st = NULL;
    int out = exec_update(o, "UPDATE outbox SET body=?2 WHERE id=?1", &st);
    if (!out) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
        out = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&o->mu);
    return out;
}

int outbox_record(struct outbox *o, int64_t id, enum outbox_state state, unsigned attempts,
                  uint64_t next_ns, int last_status, const char *last_error,
                  uint64_t delivered_ns)
{
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *st = NULL;
    int out = exec_update(o,
                          "UPDATE outbox SET state=?2, attempts=?3, next_ns=?4, last_status=?5,"
                          " last_error=?6, delivered_ns=?7 WHERE id=?1",
                          &st);
    if (!out) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, (int)state);
        sqlite3_bind_int64(st, 3, attempts);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)next_ns);
        sqlite3_bind_int(st, 5, last_status);
        sqlite3_bind_text(st, 6, last_error ? last_error : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)delivered_ns);
        out = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    }
    if (out)
        log_error("webhooks: cannot record a delivery attempt: %s", sqlite3_errmsg(o->db));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&o->mu);
    return out;
}

/* "2026-12-07T16:21:57.587Z", as the Job object writes its times. */
static json_t *time_json(uint64_t ns)
{
    if (!ns)
        return json_null();
    time_t sec = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[32], buf[48];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, sizeof buf, "%.20s.%03uZ", day, (unsigned)((ns / 1000000ull) % 1000));
    return json_string(buf);
}

json_t *outbox_job_state(struct outbox *o, const char *job_id, uint64_t *version)
{
    static const char *const names[] = { "pending", "delivered", "failed" };
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *st = NULL;
    json_t *out = NULL;
    if (sqlite3_prepare_v2(o->db,
                           "SELECT w.url, o.state, o.attempts, o.next_ns, o.last_status,"
                           " o.last_error, o.delivered_ns FROM webhooks w LEFT JOIN outbox o"
                           " ON o.job = w.job WHERE w.job_id=?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            bool has_event = sqlite3_column_type(st, 1) != SQLITE_NULL;
            int state = has_event ? sqlite3_column_int(st, 1) : -1;
            unsigned attempts = (unsigned)sqlite3_column_int64(st, 2);
            uint64_t next = (uint64_t)sqlite3_column_int64(st, 3);
            int last_status = sqlite3_column_int(st, 4);
            const unsigned char *err = sqlite3_column_text(st, 5);
            uint64_t delivered = (uint64_t)sqlite3_column_int64(st, 6);
            const char *sname = state >= 0 && state <= 2 ? names[state] : "waiting";
            out = json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "url",
                            (const char *)sqlite3_column_text(st, 0), "state", sname,
                            "attempts", (json_int_t)attempts, "last_status",
                            last_status ? json_integer(last_status) : json_null(),
                            "last_error",
                            err && err[0] ? json_string((const char *)err) : json_null(),
                            "next_attempt_at",
                            state == OUTBOX_PENDING ? time_json(next) : json_null(),
                            "delivered_at", time_json(delivered));
            if (version)
                *version = (uint64_t)(state + 1) | ((uint64_t)attempts << 2);
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&o->mu);
    return out;
}
