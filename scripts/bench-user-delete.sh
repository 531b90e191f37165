#!/usr/bin/env bash
# `DELETE /v1/users/{id}` on the redis backend at a small and at a large keyspace, same server,
# same run (issue 19.1: forgetting a user must cost O(the user's data), never O(keyspace)).
# A redis-backed `recd demo` (small catalog) serves; N users are deleted one after another
# (their latency, and the SCAN calls Redis counted meanwhile); then the Redis is padded with
# plain keys up to --keys in total and N other users are deleted the same way; then the
# padding goes and N more are deleted (small / large / small brackets a machine's noise).
#
#   scripts/bench-user-delete.sh [--keys 500000] [--deletes 200] [--items 2000] [--users 1000]
#
# Environment: RECD_BIN (release recd; else `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

KEYS=500000 DELETES=200 ITEMS=2000 USERS=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) KEYS=$2; shift 2 ;;
        --deletes) DELETES=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
[ $((3 * DELETES)) -le "$USERS" ] || { echo "--users must be at least 3 x --deletes" >&2; exit 2; }

BIN=$(recd_binary)
W=$(mktemp -d /tmp/bench-user-delete.XXXXXX)
REDIS_URL=$(scripts/redis.sh start)
REDIS_PORT=${REDIS_URL##*:}
trap 'kill ${PID_d:-} 2>/dev/null; scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1; rm -rf "$W"' EXIT
start_demo d --backend redis --redis-url "$REDIS_URL"

# delete FIRST: deletes users FIRST .. FIRST+DELETES-1 and prints one JSON line.
delete() {
    python3 - "$PORT_d" "$REDIS_PORT" "$1" "$DELETES" <<'EOF'
import json, socket, sys, time, urllib.request
port, rport, first, n = map(int, sys.argv[1:])
def redis(*args):
    with socket.create_connection(("127.0.0.1", rport), timeout=30) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        f = s.makefile("rb")
        line = f.readline()
        return f.read(int(line[1:]) + 2)[:-2].decode() if line.startswith(b"$") else line.decode().strip()
def scans():
    for line in redis(b"INFO", b"commandstats").splitlines():
        if line.startswith("cmdstat_scan:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0
keys, scan0, lat, gone = int(redis(b"DBSIZE")[1:]), scans(), [], 0
for i in range(first, first + n):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/users/user-{i}", method="DELETE")
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        r.read()
        gone += r.status in (200, 204)
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)
print(json.dumps({"dbsize": keys, "deletes": n, "answered_2xx": gone, "p50_ms": q(0.5),
                  "p99_ms": q(0.99), "max_ms": round(lat[-1], 2), "scan_calls": scans() - scan0}))
EOF
}

echo "{\"setup\":{\"items\":$ITEMS,\"users\":$USERS,\"date\":\"$(date -u +%FT%TZ)\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}}"
delete 0
# pad TARGET: plain keys `pad:N` until DBSIZE is TARGET (10k per script call, so that Redis
# serves in between); TARGET 0: deletes them all again.
pad() {
    python3 - "$REDIS_PORT" "$1" <<'EOF'
import socket, sys
port, target = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
def cmd(*args):
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return f.readline()
if target == 0:
    script = b"for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('UNLINK', 'pad:' .. i) end return 0"
    total = int(cmd(b"EVAL", b"return #redis.call('KEYS', 'pad:*')", 0)[1:])
    for start in range(0, total, 10000):
        cmd(b"EVAL", script, 0, start, start + 9999)
    sys.exit(0)
script = b"for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('SET', 'pad:' .. i, 'x') end return 0"
n = int(cmd(b"DBSIZE")[1:])
start = 0
while n < target:
    step = min(10000, target - n)
    cmd(b"EVAL", script, 0, start, start + step - 1)
    start += step
    n = int(cmd(b"DBSIZE")[1:])
EOF
}
pad "$KEYS"
delete "$DELETES"
pad 0
delete $((2 * DELETES))
