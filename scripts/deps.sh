#!/bin/sh
# Installs what batchd needs on Debian 12, when it is missing.
#
#   sh scripts/deps.sh build   C toolchain and libraries (make, make test)
#   sh scripts/deps.sh node    Node.js and the npm packages of tests/contract
#
# Installs only when something is missing, and only as root (otherwise it
# says what to install and fails). Used by the Makefile and by .ci/run.
set -eu

need_pkgs() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "batchd needs these Debian packages:$missing (run: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
}

case "${1:-build}" in
build)
    need_pkgs build-essential pkg-config libmicrohttpd-dev libjansson-dev \
        libcmocka-dev libcurl4-openssl-dev
    ;;
node)
    command -v node >/dev/null 2>&1 || need_pkgs nodejs npm
    dir=$(dirname "$0")/../tests/contract
    if [ ! -d "$dir/node_modules/ajv" ] || [ ! -d "$dir/node_modules/yaml" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    ;;
*)
    echo "usage: deps.sh build|node" >&2
    exit 2
    ;;
esac
