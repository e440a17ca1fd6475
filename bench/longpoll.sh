#!/bin/sh
# bench/longpoll.sh: what N concurrent long-polls cost (issue 18).
#
#   sh bench/longpoll.sh [N]        (default N = 1000; build/batchd first)
#
# Starts batchd on a free port of 127.0.0.1 with a temporary data dir,
# submits a job that runs for a while, opens N connections that each send
# GET /v1/jobs/{id}?wait=60 (Python's standard library, raw sockets, bounded
# by a 120 s timeout), waits until batchd_longpoll_waiting says N, and
# prints the api process's RSS and threads before and with the waiters.
# Then it cancels the job and prints how long until the last waiter had its
# answer. Figures only: nothing is asserted (tests/integration/test_longpoll
# checks the behaviour).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${1:-1000}
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ulimit -n $((N + 512)) 2>/dev/null || true
"$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$tmp" --workers 2 \
    --model exp_sinh --max-connections $((N + 64)) >"$tmp/log" 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$tmp/port")
api=$(sed -n 's/.*api process started, pid \([0-9]*\).*/\1/p' "$tmp/log" | tail -1)
/usr/bin/python3 - "$port" "$N" "$api" <<'PY'
import json, socket, sys, time, urllib.request
port, n, api = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
def status(key):
    for line in open(f"/proc/{api}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
body = json.dumps({"model": "exp_sinh", "inputs": [{"n": 5000000}] * 400,
                   "options": {"chunk_size": 1}}).encode()
req = urllib.request.Request(base + "/v1/jobs", body, {"Content-Type": "application/json"})
job = json.load(urllib.request.urlopen(req, timeout=30))["id"]
rss0, thr0 = status("VmRSS"), status("Threads")
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(f"GET /v1/jobs/{job}?wait=60 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    socks.append(s)
deadline = time.time() + 60
waiting = 0
while time.time() < deadline:
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    waiting = int(next(l.split()[1] for l in text.splitlines()
                       if l.startswith("batchd_longpoll_waiting ")))
    if waiting >= n:
        break
    time.sleep(0.1)
rss1, thr1 = status("VmRSS"), status("Threads")
print(f"longpoll: {waiting} waiters; api RSS {rss0} KiB -> {rss1} KiB "
      f"({(rss1 - rss0) / max(waiting, 1):.1f} KiB per waiter); threads {thr0} -> {thr1}")
t0 = time.time()
urllib.request.urlopen(urllib.request.Request(base + f"/v1/jobs/{job}", method="DELETE"),
                       timeout=30).read()
ok = 0
for s in socks:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    ok += data.startswith(b"HTTP/1.1 200")
    s.close()
print(f"longpoll: {ok}/{n} answered 200 within {time.time() - t0:.3f} s of the cancel")
PY
