/*
 * store_test_backend.h: which backend the store's interface tests run
 * against (the conformance suite: the same cases, both backends).
 *
 * BATCHD_TEST_PG unset: SQLite in the test's directory. Set to a
 * PostgreSQL URI (make test-pg starts a throw-away cluster and sets it):
 * that database, emptied (schema batchd dropped) before each test.
 */
#ifndef BATCHD_STORE_TEST_BACKEND_H
#define BATCHD_STORE_TEST_BACKEND_H

#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

static inline const char *test_store_where(void)
{
    const char *uri = getenv("BATCHD_TEST_PG");
    return uri && uri[0] ? uri : NULL;
}

/* Empties the PostgreSQL database (a no-op on SQLite). */
static inline void test_store_reset(void)
{
    const char *uri = test_store_where();
    if (!uri)
        return;
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_store_reset: %s", PQerrorMessage(c));
        PQfinish(c);
        abort();
    }
    PGresult *r = PQexec(c, "SET client_min_messages=warning; DROP SCHEMA IF EXISTS batchd CASCADE");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "test_store_reset: %s", PQerrorMessage(c));
        abort();
    }
    PQclear(r);
    PQfinish(c);
}

static inline void test_store_banner(const char *name)
{
    printf("%s: store backend %s\n", name, test_store_where() ? "postgresql" : "sqlite");
}

#endif
