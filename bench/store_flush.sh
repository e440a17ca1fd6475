#!/bin/sh
# bench/store_flush.sh: the store's group-commit and accept rates on SQLite
# and on PostgreSQL side by side (bench/store_flush.c), both on the same
# disk (BENCH_TMP, default /tmp: a real fsync for both), PostgreSQL a
# throw-away cluster (tests/pg/pg.sh) with synchronous_commit on and
# fsync on. Nothing is asserted; the RESULT lines are printed.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
base=${BENCH_TMP:-${TMPDIR:-/tmp}}
tmp=$(mktemp -d "$base/batchd-store-flush.XXXXXX")
trap 'sh tests/pg/pg.sh stop "$tmp/pg"; rm -rf "$tmp"' EXIT INT TERM
make -s "$BUILD/bench/store_flush"
mkdir "$tmp/sqlite"
"$BUILD/bench/store_flush" "$tmp/sqlite" sqlite "$@"
uri=$(sh tests/pg/pg.sh start "$tmp/pg")
"$BUILD/bench/store_flush" "$tmp" "$uri" "$@"
