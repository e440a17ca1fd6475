/*
 * Unit tests of api/handlers/handlers.c: the operation table against the
 * contract. Every (path, method, operationId) of openapi.yaml (read from
 * the repository root, where `make unit` runs) must resolve, through the
 * real router and api_op_find(), to the row of that operationId with a
 * begin step; and the table must hold no row the contract does not list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers/handlers.h"

#define OPENAPI "openapi.yaml"
#define MAX_OPS 64

struct contract_op {
    char path[128];
    char method[16];
    char operation_id[64];
};

/* Reads the paths section of openapi.yaml: a path at two spaces of
 * indentation, its methods at four, their operationId at six. */
static size_t read_contract(struct contract_op *ops, size_t max)
{
    FILE *f = fopen(OPENAPI, "r");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", OPENAPI);
    char line[512], path[128] = "", method[16] = "";
    bool in_paths = false;
    size_t n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != ' ' && line[0] != '\0' && line[0] != '#') {
            in_paths = strcmp(line, "paths:") == 0;
            continue;
        }
        if (!in_paths)
            continue;
        if (strncmp(line, "  /", 3) == 0) {
            snprintf(path, sizeof path, "%.*s", (int)(strlen(line) - 3) & 127, line + 2);
            method[0] = '\0';
        } else if (strncmp(line, "    ", 4) == 0 && islower((unsigned char)line[4]) &&
                   line[strlen(line) - 1] == ':') {
            snprintf(method, sizeof method, "%.*s", (int)(strlen(line) - 5) & 15, line + 4);
        } else if (strncmp(line, "      operationId: ", 19) == 0) {
            assert_true(n < max);
            assert_true(path[0] != '\0' && method[0] != '\0');
            snprintf(ops[n].path, sizeof ops[n].path, "%s", path);
            for (size_t i = 0; method[i] != '\0' && i + 1 < sizeof ops[n].method; i++) {
                ops[n].method[i] = (char)toupper((unsigned char)method[i]);
                ops[n].method[i + 1] = '\0';
            }
            snprintf(ops[n].operation_id, sizeof ops[n].operation_id, "%.63s", line + 19);
            n++;
        }
    }
    fclose(f);
    return n;
}

/* The path template with its parameters filled: {id} by a well-formed id,
 * {asset} by a file name. */
static void fill_template(const char *tmpl, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = tmpl; *p != '\0' && o + 1 < cap;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            assert_non_null(end);
            const char *v = strncmp(p, "{asset}", 7) == 0 ? "app.js"
                                                          : "abcdefghijklmnopqrstuvwxyz";
            o += (size_t)snprintf(out + o, cap - o, "%s", v);
            p = end + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static void test_every_contract_op_has_its_row(void **state)
{
    (void)state;
    struct contract_op ops[MAX_OPS];
    size_t n = read_contract(ops, MAX_OPS);
    assert_true(n >= 20);  /* the parser found the paths section */
    for (size_t i = 0; i < n; i++) {
        char path[256];
        fill_template(ops[i].path, path, sizeof path);
        struct api_match m;
        if (api_route_match(path, &m) != 0)
            fail_msg("%s %s (%s): no route", ops[i].method, ops[i].path, ops[i].operation_id);
        enum api_method meth = api_method_parse(ops[i].method);
        assert_int_not_equal(meth, API_METHOD_OTHER);
        const struct api_op *op = api_op_find(m.route, meth);
        if (op == NULL)
            fail_msg("%s %s: no row for %s", ops[i].method, ops[i].path, ops[i].operation_id);
        assert_string_equal(op->operation_id, ops[i].operation_id);
        assert_int_equal(op->route, m.route);
        assert_int_equal(op->method, meth);
        assert_non_null(op->begin);
        /* the router's Allow set and the table agree */
        assert_true(api_route_methods(m.route) & (unsigned)meth);
    }
}

static void test_no_row_outside_the_contract(void **state)
{
    (void)state;
    struct contract_op ops[MAX_OPS];
    size_t n = read_contract(ops, MAX_OPS);
    static const enum api_method methods[] = {API_METHOD_GET, API_METHOD_POST, API_METHOD_DELETE,
                                              API_METHOD_OPTIONS, API_METHOD_OTHER};
    size_t rows = 0;
    for (int route = 0; route < API_ROUTE_COUNT; route++) {
        for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
            const struct api_op *op = api_op_find((enum api_route)route, methods[k]);
            if (op == NULL)
                continue;
            rows++;
            bool listed = false;
            for (size_t i = 0; i < n; i++)
                listed = listed || strcmp(ops[i].operation_id, op->operation_id) == 0;
            if (!listed)
                fail_msg("row %s is not an operationId of %s", op->operation_id, OPENAPI);
            /* every method the router allows on a route has its row, and no other */
            assert_true(api_route_methods((enum api_route)route) & (unsigned)methods[k]);
        }
        unsigned allowed = api_route_methods((enum api_route)route);
        for (size_t k = 0; k + 1 < sizeof methods / sizeof methods[0]; k++)
            if (allowed & (unsigned)methods[k])
                assert_non_null(api_op_find((enum api_route)route, methods[k]));
    }
    assert_int_equal(rows, n);
    /* no route, no operation */
    assert_null(api_op_find(API_ROUTE_NONE, API_METHOD_GET));
}

/* Only operations that take a body have a finish step, and the ones that do
 * are the POSTs the contract gives a requestBody. */
static void test_finish_only_with_a_body(void **state)
{
    (void)state;
    assert_non_null(api_op_find(API_ROUTE_JOBS, API_METHOD_POST)->finish);
    assert_non_null(api_op_find(API_ROUTE_OBJECTS, API_METHOD_POST)->finish);
    for (int route = 0; route < API_ROUTE_COUNT; route++) {
        const struct api_op *g = api_op_find((enum api_route)route, API_METHOD_GET);
        const struct api_op *d = api_op_find((enum api_route)route, API_METHOD_DELETE);
        const struct api_op *o = api_op_find((enum api_route)route, API_METHOD_OPTIONS);
        assert_true(g == NULL || g->finish == NULL);
        assert_true(d == NULL || d->finish == NULL);
        assert_true(o == NULL || o->finish == NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_contract_op_has_its_row),
        cmocka_unit_test(test_no_row_outside_the_contract),
        cmocka_unit_test(test_finish_only_with_a_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
