#!/bin/sh
# A throw-away PostgreSQL cluster for the tests (never Debian's own
# cluster): initdb in a temporary folder as the postgres user, listening on
# 127.0.0.1 only, on a free port, with its socket in that folder.
#
#   sh tests/pg/pg.sh start DIR     creates DIR (must not exist), starts the
#                                   server, prints its URI on stdout
#   sh tests/pg/pg.sh stop DIR      pg_ctl stop -m fast, then removes DIR
#   sh tests/pg/pg.sh restart DIR   pg_ctl restart -m fast (same port)
#   sh tests/pg/pg.sh uri DIR       the URI again
#   sh tests/pg/pg.sh halt DIR      stops the server, keeps DIR (resume starts
#   sh tests/pg/pg.sh resume DIR    it again on the same port)
#
# Exit 77 (skip) when PostgreSQL 15 is not installed and cannot be
# (scripts/deps.sh pg installs it as root).
set -eu
BIN=/usr/lib/postgresql/15/bin
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: pg.sh start|stop|restart|uri DIR" >&2; exit 2; }
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
    if [ ! -x "$BIN/initdb" ]; then
        sh "$(dirname "$0")/../../scripts/deps.sh" pg >&2 || exit 77
    fi
    mkdir -p "$dir"
    chmod 755 "$dir" "$(dirname "$dir")" 2>/dev/null || true
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1
    # a free port: ask the kernel for one, then give it to postgres (a race
    # with another program is possible but harmless: start fails, retried)
    for attempt in 1 2 3 4 5; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-h 127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=100" start >/dev/null 2>&1 && break
        port=""
    done
    [ -n "$port" ] || { echo "pg.sh: the server did not start; see $dir/server.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    [ -d "$dir/data" ] && as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
restart)
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 restart >/dev/null
    ;;
halt)
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $(cat "$dir/port") -k $dir" start >/dev/null
    ;;
uri)
    echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
    ;;
*)
    echo "pg.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
