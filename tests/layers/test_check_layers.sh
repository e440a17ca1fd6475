#!/bin/sh
# The check-layers script against small made-up trees: a clean one passes,
# and each kind of forbidden include is caught and named (so that a rule
# that silently stopped matching fails here, not in review).
set -u
script=$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-layers.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

tree() { # tree NAME FILE INCLUDE...: a tree with FILE including each INCLUDE
    name=$1 file=$2
    shift 2
    mkdir -p "$tmp/$name/$(dirname "$file")"
    : >"$tmp/$name/$file"
    for inc in "$@"; do
        echo "#include $inc" >>"$tmp/$name/$file"
    done
}
expect() { # expect NAME RC [TEXT]: the script's exit code and a line it prints
    out=$(sh "$script" "$tmp/$1" 2>&1)
    rc=$?
    if [ "$rc" -eq "$2" ] && { [ -z "${3:-}" ] || echo "$out" | grep -qF "$3"; }; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAILED: check-layers on tree $1: exit $rc (wanted $2), output:"
        echo "$out"
    fi
}

tree clean service/ring/ring.c '"service/ring/shm.h"' '"service/core/log.h"' '<stdio.h>'
tree clean workers/models/m.c '<batchd/model.h>' '"workers/models/model_util.h"'
expect clean 0 "0 forbidden"

tree unqualified service/jobs/engine.c '"ring.h"'
expect unqualified 1 '"ring.h" does not name its folder'

tree ring_user service/ring/ring.c '"service/jobs/engine.h"'
expect ring_user 1 "service/ring/ never includes service/jobs/"

tree model_ring workers/models/m.c '"service/ring/ring.h"'
expect model_ring 1 "workers/models/ never includes service/ring/"

tree worker_http workers/worker/worker.c '"api/http/http.h"'
expect worker_http 1 "workers/ never includes api/"

tree worker_store workers/worker/worker.c '"service/store/store.h"'
expect worker_store 1 "workers/ never includes service/store/"

tree api_sup api/http/server.c '"service/supervisor/supervisor.h"'
expect api_sup 1 "api/ never includes service/supervisor/"

tree abi include/batchd/model.h '"service/core/log.h"'
expect abi 1 "include/ never includes service/"

echo "check-layers self-test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
