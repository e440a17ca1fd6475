#!/bin/sh
# make test-pg: the tests that apply to a PostgreSQL store, run against a
# throw-away cluster (tests/pg/pg.sh) that this script starts and stops:
#   - the store conformance suite: the SQLite store's unit tests with
#     BATCHD_TEST_PG set (the same cases through store.h; the few about
#     SQLite's file are skipped and say so);
#   - integration tests with every batchd on that server (the harness gives
#     each data dir a database of its own: tests/integration/harness.h).
# Usage: sh tests/pg/run.sh BUILD_DIR UNIT_TEST... -- INTEGRATION_TEST...
# Prints the unit and integration summaries (tests/run_unit.sh,
# tests/run_integration.sh); exit 1 on any failure.
set -u
build=$1
shift
units=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    units="$units $1"
    shift
done
[ $# -gt 0 ] && shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/batchd-test-pg.XXXXXX")
rmdir "$dir"
here=$(dirname "$0")
uri=$(sh "$here/pg.sh" start "$dir") || { echo "test-pg: PostgreSQL did not start" >&2; exit 1; }
trap 'sh "$here/pg.sh" stop "$dir"' EXIT INT TERM
echo "test-pg: PostgreSQL 15 at $uri"
rc=0
# shellcheck disable=SC2086
BATCHD_TEST_PG=$uri sh tests/run_unit.sh $units || rc=1
BATCHD_TEST_PG=$uri sh tests/run_integration.sh "$@" || rc=1
exit $rc
