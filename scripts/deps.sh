#!/bin/sh
# Installs what batchd needs on Debian 12, when it is missing.
#
#   sh scripts/deps.sh build   C toolchain and libraries (make, make test)
#   sh scripts/deps.sh node    Node.js and the npm packages of tests/contract
#   sh scripts/deps.sh image   buildah, podman, runc, debootstrap (make image-test),
#                              Node.js and the npm packages of tests/image
#   sh scripts/deps.sh promtool  Prometheus's promtool (the /metrics format check)
#   sh scripts/deps.sh readme  what README.md's examples use (make readme runs
#                              them): curl, jq, python3, and NumPy for Debian's
#                              /usr/bin/python3
#   sh scripts/deps.sh bench   wrk, curl, Debian's python3 with numpy and scipy
#                              (the Python baselines of make bench), Celery,
#                              Redis and Dask distributed (its peers)
#   sh scripts/deps.sh sklearn Debian's python3-sklearn too (examples/python/iris.py)
#   sh scripts/deps.sh pg      PostgreSQL 15's server programs (make test-pg
#                              starts a throw-away cluster: tests/pg/pg.sh)
#   sh scripts/deps.sh sanitizers  clang, its sanitizer/libFuzzer runtimes, valgrind
#   sh scripts/deps.sh python  Debian's python3 with pip, venv and numpy (the
#                              Python client's tests, make python; Python models,
#                              their tests and examples/python/)
#   sh scripts/deps.sh browser Debian's chromium, Node.js and the npm packages of
#                              tests/browser (playwright-core drives the system
#                              chromium: no browser is ever downloaded)
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
    # openssl: the command that makes test_tls's self-signed certificate
    # libcurl4-openssl-dev, libssl-dev: webhook delivery and its HMAC
    # libopenblas-serial-dev: cblas_sgemm for the mlp model, the serial
    # build (the supervisor must not have threads: see the Makefile)
    need_pkgs build-essential pkg-config libmicrohttpd-dev libjansson-dev \
        libcmocka-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev libssl-dev openssl \
        libopenblas-serial-dev
    ;;
pg)
    need_pkgs postgresql-15 libpq-dev
    ;;
node)
    command -v node >/dev/null 2>&1 || need_pkgs nodejs npm
    dir=$(dirname "$0")/../tests/contract
    if [ ! -d "$dir/node_modules/ajv" ] || [ ! -d "$dir/node_modules/yaml" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    ;;
sanitizers)
    # clang with its sanitizer and libFuzzer runtimes (make fuzz, make tsan),
    # and valgrind (make valgrind)
    need_pkgs clang libclang-rt-14-dev valgrind
    ;;
browser)
    command -v node >/dev/null 2>&1 || need_pkgs nodejs npm
    [ -x /usr/bin/chromium ] || need_pkgs chromium
    dir=$(dirname "$0")/../tests/browser
    if [ ! -d "$dir/node_modules/playwright-core" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    ;;
python)
    # /usr/bin/python3, not the first python3 on PATH: the client is tested
    # with the interpreter Debian's users have (pip: the install test;
    # numpy: uploading arrays as .npy; Python models (docs/coprocess.md)
    # run on it too, and their objects and outputs are numpy arrays)
    need_pkgs python3 python3-pip python3-venv python3-numpy
    ;;
image)
    need_pkgs buildah podman runc debootstrap
    command -v node >/dev/null 2>&1 || need_pkgs nodejs npm
    dir=$(dirname "$0")/../tests/image
    if [ ! -x "$dir/node_modules/.bin/dockerfilelint" ] || [ ! -d "$dir/node_modules/yaml" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    ;;
promtool)
    # Debian ships promtool in the prometheus package (its server is not
    # started here: there is no init system to start it).
    command -v promtool >/dev/null 2>&1 || need_pkgs prometheus
    ;;
readme)
    # python3-venv, python3-pip: the Python client's install example
    need_pkgs curl jq python3 python3-numpy python3-venv python3-pip
    ;;
bench)
    # wrk: polling under load; python3-numpy/-scipy: the Python baselines
    # (run with /usr/bin/python3, Debian's interpreter, which these serve);
    # the peers of workload 9 (bench/peers.sh): Celery with Redis as
    # broker and backend, and Dask distributed
    need_pkgs wrk curl python3 python3-numpy python3-scipy python3-celery python3-redis \
        redis-server python3-distributed python3-dask
    ;;
sklearn)
    # examples/python/iris.py: Debian's scikit-learn (1.2 on Debian 12)
    need_pkgs python3 python3-numpy python3-sklearn
    ;;
*)
    echo "usage: deps.sh build|node|browser|python|sklearn|image|promtool|readme|sanitizers|bench" >&2
    exit 2
    ;;
esac
