#!/bin/sh
# make image-test: builds the container image from the unchanged Dockerfile
# and checks that it really runs, without a Docker engine.
#
#   1. Tools: buildah, podman, runc, debootstrap and the npm packages of
#      tests/image (dockerfilelint, yaml), through scripts/deps.sh image.
#   2. Base images: debian:bookworm and debian:bookworm-slim cannot be
#      pulled here, so they are made with debootstrap (minbase) from the
#      Debian mirror apt uses; slim is the same tree without docs, man
#      pages and locales, with the official slim image's dpkg excludes.
#      The tarballs are cached in build/image-cache/ (a rerun skips this).
#   3. Build with buildah (docker format: OCI images have no HEALTHCHECK),
#      run with podman on the host network (no iptables changes), on a free
#      loopback port given as BATCHD_LISTEN, with an API token.
#   4. Checks: the image's config (user, port, volume, healthcheck,
#      labels), no curl inside, --print-config of the image's defaults; a
#      job submitted with curl and its results, 401 without the token,
#      /readyz; the HEALTHCHECK (podman healthcheck run, and batchd
#      healthcheck by exec, also against a closed port); promtool on
#      /metrics when installed; with a job running, `podman stop -t 10`
#      ends it by SIGTERM (the drain, no SIGKILL) with exit code 0 well
#      within the grace period.
#   5. Lints: dockerfilelint on the Dockerfile; docker-compose.yml and
#      deploy/kubernetes/ parsed and checked (tests/image/check-deploy.mjs).
#
# All container state (images, layers, containers, volumes) lives in a
# temporary directory, removed at the end whatever happened; containers.conf
# there selects runc and the ulimits this machine allows. Only what this
# script started is stopped.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="$ROOT/build/image-cache"
# Bumped when make_bases changes what it makes (the cache is then remade).
BASE_VERSION=2
IMAGE=localhost/batchd:test
TOKEN="image-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
FAILED=0

say() { printf 'image-test: %s\n' "$*"; }
ok() { printf 'ok - %s\n' "$*"; }
bad() { printf 'FAIL - %s\n' "$*"; FAILED=$((FAILED + 1)); }
check() { # check NAME COMMAND...: runs the command, records ok/FAIL
    name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

if [ "$(id -u)" != 0 ]; then
    say "needs root (buildah and podman with a private storage root, debootstrap)"
    exit 1
fi
sh scripts/deps.sh image

# ---------------------------------------------------------------- base images

# The first http(s) mirror of the Debian suite that apt is configured with
# (deb822 .sources stanzas, then one-line .list files).
debian_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             {
               uris = ""; suites = ""; types = ""
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                 if ($i ~ /^Suites:/) { suites = " " $i " " }
                 if ($i ~ /^Types:/) { types = $i }
               }
               if (types ~ /deb( |$)/ && suites ~ / bookworm /) { split(uris, u, " "); print u[1]; exit }
             }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { u = ""; s = ""
               for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
                                           if (u == "") u = $i; else if (s == "") s = $i }
               if (s == "bookworm") { print u; exit } }' "$f"
    done
}

make_bases() {
    mkdir -p "$CACHE"
    if [ -s "$CACHE/debian-bookworm.$BASE_VERSION.tar" ] && [ -s "$CACHE/debian-bookworm-slim.$BASE_VERSION.tar" ]; then
        say "base images: cached in $CACHE"
        return 0
    fi
    mirror=$(debian_mirror | head -n 1)
    [ -n "$mirror" ] || { say "no Debian bookworm mirror found in /etc/apt"; return 1; }
    say "debootstrap --variant=minbase bookworm from $mirror (once; cached afterwards)"
    rootfs="$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 || {
        tail -n 20 "$WORK/debootstrap.log"
        return 1
    }
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/cache/apt/*.bin
    # as in the official images: apt keeps no package caches in a layer
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    tar -C "$rootfs" --numeric-owner -cf "$CACHE/debian-bookworm.$BASE_VERSION.tar.tmp" .
    # slim: what the official bookworm-slim leaves out, and keeps out
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/usr/share/lintian/*
    tar -C "$rootfs" --numeric-owner -cf "$CACHE/debian-bookworm-slim.$BASE_VERSION.tar.tmp" .
    rm -rf "$rootfs"
    mv "$CACHE/debian-bookworm.$BASE_VERSION.tar.tmp" "$CACHE/debian-bookworm.$BASE_VERSION.tar"
    mv "$CACHE/debian-bookworm-slim.$BASE_VERSION.tar.tmp" "$CACHE/debian-bookworm-slim.$BASE_VERSION.tar"
}

# ------------------------------------------------------------ container state

WORK=$(mktemp -d /tmp/batchd-image-test.XXXXXX)
O="--root $WORK/storage --runroot $WORK/runroot --storage-driver overlay"
export CONTAINERS_CONF="$WORK/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf"
export TMPDIR="$WORK/tmp"
mkdir -p "$TMPDIR"
cat > "$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
# short names ("debian:bookworm") resolve to docker.io, where the
# imported bases are; nothing is ever pulled (--pull=never)
cat > "$CONTAINERS_REGISTRIES_CONF" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
NAME="batchd-image-test-$$"
STARTED=""

cleanup() {
    set +e
    if [ -n "$STARTED" ]; then
        # shellcheck disable=SC2086
        podman $O rm -f -t 0 "$NAME" >/dev/null 2>&1
    fi
    # shellcheck disable=SC2086
    podman $O system reset -f >/dev/null 2>&1
    # whatever the reset left mounted under our directory (bounded)
    for _ in 1 2 3; do
        mounts=$(awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
        [ -z "$mounts" ] && break
        for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_bases
# shellcheck disable=SC2086
podman $O import -q "$CACHE/debian-bookworm.$BASE_VERSION.tar" docker.io/library/debian:bookworm >/dev/null
# shellcheck disable=SC2086
podman $O import -q "$CACHE/debian-bookworm-slim.$BASE_VERSION.tar" docker.io/library/debian:bookworm-slim >/dev/null

# --------------------------------------------------------------------- build

say "buildah bud (Dockerfile unchanged)"
t0=$(date +%s)
# shellcheck disable=SC2086
if ! buildah $O bud --pull=never --layers --isolation chroot --format docker \
    -t "$IMAGE" -f Dockerfile . > "$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log"
    bad "the image builds"
    exit 1
fi
ok "the image builds ($(($(date +%s) - t0)) s)"

# shellcheck disable=SC2086
inspect() { podman $O image inspect --format "$1" "$IMAGE"; }
size=$(inspect '{{.Size}}')
# shellcheck disable=SC2086
base=$(podman $O image inspect --format '{{.Size}}' docker.io/library/debian:bookworm-slim)
say "image size: $((size / 1000000)) MB ($((base / 1000000)) MB of it the debian:bookworm-slim base); layers:"
# shellcheck disable=SC2086
podman $O history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110 | sed 's/^/    /'
check "runs as the numeric non-root user 10001" test "$(inspect '{{.Config.User}}')" = "10001:10001"
check "EXPOSE 8080" sh -c "echo '$(inspect '{{json .Config.ExposedPorts}}')' | grep -q '8080/tcp'"
check "VOLUME /var/lib/batchd" sh -c "echo '$(inspect '{{json .Config.Volumes}}')' | grep -q '/var/lib/batchd'"
check "HEALTHCHECK runs batchd healthcheck" \
    sh -c "echo '$(inspect '{{json .Config.Healthcheck}}')' | grep -q 'batchd\",\"healthcheck'"
check "OCI labels" sh -c "echo '$(inspect '{{json .Config.Labels}}')' | grep -q 'org.opencontainers.image.title'"
check "listens on 0.0.0.0:8080 by default" \
    sh -c "echo '$(inspect '{{json .Config.Env}}')' | grep -q 'BATCHD_LISTEN=0.0.0.0:8080'"

# The image's defaults, without binding anything.
# shellcheck disable=SC2086
podman $O run --rm --network none "$IMAGE" --print-config > "$WORK/print-config.txt" 2>&1 || true
check "--print-config in the image: listen 0.0.0.0:8080 from the environment" \
    grep -q '^listen  *0.0.0.0:8080  \[env BATCHD_LISTEN\]' "$WORK/print-config.txt"
# shellcheck disable=SC2086
check "no curl in the image" sh -c "! podman $O run --rm --network none --entrypoint /bin/sh '$IMAGE' -c 'command -v curl' >/dev/null 2>&1"

# ----------------------------------------------------------------------- run

PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
URL="http://127.0.0.1:$PORT"
say "podman run on $URL (host network)"
# shellcheck disable=SC2086
podman $O run -d --name "$NAME" --network host \
    -e BATCHD_LISTEN="127.0.0.1:$PORT" -e BATCHD_API_TOKENS="$TOKEN" -e BATCHD_WORKERS=2 \
    "$IMAGE" > "$WORK/cid" 2> "$WORK/run.err" || { cat "$WORK/run.err"; bad "podman run"; exit 1; }
STARTED=1
ok "the container starts"

ready=0
for _ in $(seq 1 300); do
    if [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL/readyz")" = 200 ]; then
        ready=1
        break
    fi
    sleep 0.2
done
if [ "$ready" != 1 ]; then
    # shellcheck disable=SC2086
    podman $O logs "$NAME" 2>&1 | tail -n 30
    bad "/readyz answers 200 within 60 s"
    exit 1
fi
ok "/readyz answers 200"

AUTH="Authorization: Bearer $TOKEN"
check "POST /v1/jobs without the token: 401" \
    test "$(curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d '{"model":"square","inputs":[1]}' "$URL/v1/jobs")" = 401
job=$(curl -s -m 10 -X POST -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"model":"square","inputs":[1,2,3,4]}' "$URL/v1/jobs")
id=$(printf '%s' "$job" | sed -n 's/.*"id":"\([a-z2-7]*\)".*/\1/p')
check "POST /v1/jobs with the token: a job id" test -n "$id"
status=""
for _ in $(seq 1 200); do
    status=$(curl -s -m 5 -H "$AUTH" "$URL/v1/jobs/$id" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
    [ "$status" = succeeded ] && break
    sleep 0.1
done
check "the job succeeds" test "$status" = succeeded
results=$(curl -s -m 10 -H "$AUTH" "$URL/v1/jobs/$id/results")
check "its results" test "$results" = \
    '{"results":[{"index":0,"output":1},{"index":1,"output":4},{"index":2,"output":9},{"index":3,"output":16}],"next_offset":null}'
check "/readyz still 200" test "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/readyz")" = 200

# shellcheck disable=SC2086
check "podman healthcheck run: healthy" sh -c "podman $O healthcheck run '$NAME' >/dev/null 2>&1"
# shellcheck disable=SC2086
check "batchd healthcheck inside the container: exit 0" \
    sh -c "podman $O exec '$NAME' /usr/local/bin/batchd healthcheck >/dev/null"
# shellcheck disable=SC2086
check "batchd healthcheck against a closed port: not 0" \
    sh -c "! podman $O exec '$NAME' /usr/local/bin/batchd healthcheck --listen 127.0.0.1:1 >/dev/null 2>&1"

curl -s -m 10 "$URL/metrics" > "$WORK/metrics.txt"
if command -v promtool >/dev/null 2>&1; then
    check "promtool check metrics on the container's /metrics" sh -c "promtool check metrics < '$WORK/metrics.txt'"
else
    say "SKIP promtool check metrics: promtool is not installed (sh scripts/deps.sh promtool)"
fi

# ---------------------------------------------------------------------- stop

# Work in flight when the stop comes: the drain lets it finish.
busy=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST -H "$AUTH" \
    -H 'Content-Type: application/json' \
    -d '{"model":"exp_sinh","inputs":[{"n":3000000},{"n":3000000},{"n":3000000},{"n":3000000}]}' \
    "$URL/v1/jobs")
check "a busy job is accepted before the stop" test "$busy" = 202
say "podman stop -t 10 (SIGTERM to PID 1, SIGKILL after 10 s)"
t0=$(date +%s)
# (without systemd, podman says on stderr that it has no healthcheck timer
# to remove: shown only when the stop fails)
# shellcheck disable=SC2086
podman $O stop -t 10 "$NAME" > /dev/null 2> "$WORK/stop.err" || cat "$WORK/stop.err"
took=$(($(date +%s) - t0))
# shellcheck disable=SC2086
code=$(podman $O inspect --format '{{.State.ExitCode}}' "$NAME")
check "stopped by SIGTERM in ${took} s (< 10 s: not killed)" test "$took" -lt 10
check "exit code 0" test "$code" = 0
# shellcheck disable=SC2086
podman $O logs "$NAME" > "$WORK/container.log" 2>&1
check "the log ends with an orderly exit" grep -q '"batchd exits with code 0"' "$WORK/container.log"
check "nothing had to be killed" sh -c "! grep -q 'SIGKILL' '$WORK/container.log'"
check "the log has access lines" grep -q '"event":"access"' "$WORK/container.log"

# --------------------------------------------------------------------- lints

check "dockerfilelint Dockerfile" tests/image/node_modules/.bin/dockerfilelint Dockerfile
check "docker-compose.yml and deploy/kubernetes/ are valid" node tests/image/check-deploy.mjs "$ROOT"

say "image size: $((size / 1000000)) MB (base $((base / 1000000)) MB)"
if [ "$FAILED" -gt 0 ]; then
    say "$FAILED check(s) failed"
    exit 1
fi
say "every check passed"
