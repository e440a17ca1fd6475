#!/bin/sh
# check-layers: the arrows between batchd's rooms that must never exist.
#
#   sh scripts/check-layers.sh [ROOT]      (make check-layers; part of make test)
#
# Reads every `#include` of the C sources under ROOT (default: the
# repository) and fails, naming file, line, include and rule, when
#   - an include does not name its folder (every include is written from
#     the one include root, the repository: "service/ring/ring.h"; the
#     plugin ABI is <batchd/model.h>, through -Iinclude);
#   - a file includes a folder that a rule below forbids to its own.
#
# The rules (a FROM folder never includes a TO folder), and why:
#   - a worker and a model know nothing of HTTP, jobs or the store;
#   - a model never sees the ring, the worker loop, the object store's
#     internals or the supervisor: it reaches batchd only through the
#     struct model_host of include/batchd/model.h;
#   - the ring (service/ring/) knows nothing of its users;
#   - the public plugin ABI (include/) and the example plugins include
#     nothing of batchd's but include/batchd/;
#   - the api process never touches the supervisor's state;
#   - the shared pieces (service/core/) depend on nothing above them;
#   - the job store knows the engine's data (service/jobs/items.h), never
#     the engine (no cycle: the engine calls the store);
#   - the engine's private header (service/jobs/engine_int.h) is for the
#     engine's own files: the api, the supervisor and main use engine.h
#     (the folders that may not include service/jobs/ at all already
#     cannot include it);
#   - nothing below the api process (jobs, store, objects, ring, core,
#     config) includes api/.
# Arrows not listed are allowed; docs/architecture.md draws the map.
set -u
root=${1:-.}
cd "$root" || exit 2

# FROM TO... : files under FROM may not include anything under any TO.
rules='
workers/                api/ service/jobs/ service/store/ service/supervisor/
workers/models/         service/ring/ service/objects/ service/config/ service/cmd/ workers/worker/
include/                service/ api/ workers/ tests/ examples/
examples/               service/ api/ workers/ tests/
service/ring/           service/supervisor/ service/jobs/ service/store/ service/objects/ service/config/ service/cmd/ api/ workers/
service/core/           service/supervisor/ service/ring/ service/jobs/ service/store/ service/objects/ service/config/ service/cmd/ api/ workers/
api/                    service/supervisor/ service/cmd/ service/jobs/engine_int.h
service/supervisor/     service/jobs/engine_int.h
service/cmd/            service/jobs/engine_int.h
service/jobs/           api/ service/supervisor/ service/cmd/
service/store/          api/ service/supervisor/ service/cmd/ service/jobs/engine
service/objects/        api/ service/supervisor/ service/jobs/ service/store/ service/cmd/
service/config/         api/ service/supervisor/ service/jobs/ service/store/ service/cmd/
'

tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.out"' EXIT
# file:line:include, for every quoted or <batchd/...> include of the C sources.
find service api workers include examples -name '*.[ch]' 2>/dev/null | sort |
    xargs -r grep -Hn -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*("|<batchd/)' |
    sed -E 's/^([^:]*):([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]*)[">].*/\1:\2:\3/' >"$tmp"

while IFS=: read -r file line inc; do
    case $inc in
    */*) ;;
    *)
        echo "check-layers: $file:$line: \"$inc\" does not name its folder (write it from the repository root)"
        continue
        ;;
    esac
    echo "$rules" | while read -r from tos; do
        [ -n "$from" ] || continue
        case $file in "$from"*) ;; *) continue ;; esac
        for to in $tos; do
            case $inc in
            "$to"*) echo "check-layers: $file:$line: includes $inc: $from never includes $to" ;;
            esac
        done
    done
done <"$tmp" >"$tmp.out"
bad=$(grep -c . "$tmp.out")
cat "$tmp.out"
if [ "$bad" -ne 0 ]; then
    echo "check-layers: $bad forbidden include(s) (rules: scripts/check-layers.sh)"
    exit 1
fi
echo "check-layers: $(wc -l <"$tmp") includes checked, 0 forbidden"
