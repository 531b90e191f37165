#!/usr/bin/env bash
# Redis Cluster scale-out (issue 17): the same demo data on ONE Redis and on a local Redis
# Cluster of N masters (scripts/redis.sh cluster), each served by its own `recd serve`;
# interleaved rounds of `recd bench --scenario recommend --no-cache` and `--scenario events`,
# with the Redis CPU they cost (INFO cpu of every master, main threads), then the KNN recall
# of each deployment against brute force over its own vectors (examples/redis_recall.rs).
#
#   scripts/bench-cluster.sh [--items 20000] [--users 2000] [--masters 3] [--duration 15]
#                            [--rounds 2] [--concurrency 32]
#
# Environment: RECD_BIN (release recd; else `cargo build --release`), RECD_RECALL_BIN (the
# redis_recall example; else built). Prints one JSON line per run.
# Every node, both servers and the load generator share this machine: on 2 cores the figures
# measure what the fan-out costs, not what more machines would add.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=20000 USERS=2000 MASTERS=3 DURATION=15 ROUNDS=2 C=32
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --masters) MASTERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --concurrency) C=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
RECD=$(recd_binary)
if [ -n "${RECD_RECALL_BIN:-}" ]; then
    RECALL=$RECD_RECALL_BIN
else
    cargo build --release -q -p recd-store --example redis_recall >&2
    RECALL="${CARGO_TARGET_DIR:-target}/release/examples/redis_recall"
fi
W=$(mktemp -d)
PIDS=()
SINGLE=$(scripts/redis.sh start --owner $$)
CLUSTER=$(scripts/redis.sh cluster start --masters "$MASTERS" --owner $$)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    scripts/redis.sh cluster stop "$CLUSTER" >/dev/null 2>&1 || true
    scripts/redis.sh stop "${SINGLE##*:}" >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

# The master ports of a URL (a single Redis: its one port).
ports() { echo "$1" | sed 's#^redis[+a-z]*://##' | tr ',' '\n' | sed 's#.*:##' | head -n "$2"; }
PORTS_single=$(ports "$SINGLE" 1)
PORTS_cluster=$(ports "$CLUSTER" "$MASTERS")

# Redis main-thread CPU seconds so far, summed over PORTS.
redis_cpu() {
    python3 - "$@" <<'PY'
import socket, sys
total = 0.0
for port in sys.argv[1:]:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n")
        f = s.makefile("rb")
        n = int(f.readline()[1:])
        text = f.read(n).decode()
    total += sum(float(l.split(":")[1]) for l in text.splitlines()
                 if l.startswith("used_cpu_") and "_main_thread:" in l)
print(total)
PY
}

# serve NAME URL: load the demo into URL, serve it; sets PORT_NAME.
serve() {
    local name=$1 url=$2 port pid
    port=$(free_port)
    RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000 \
        "$RECD" demo --backend redis --redis-url "$url" --data-dir "$W/$name" --items "$ITEMS" \
        --users "$USERS" --seed 42 --load-only > "$W/$name-load.log" 2>&1 ||
        { cat "$W/$name-load.log" >&2; exit 1; }
    "$RECD" serve --backend redis --redis-url "$url" --data-dir "$W/$name" \
        --listen "127.0.0.1:$port" > "$W/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listening $pid "$W/$name.log"
    eval "PORT_$name=$port"
}
START=$(date +%s)
serve single "$SINGLE"
serve cluster "$CLUSTER"
# Memory per item and per user on the single Redis (a sample's MEMORY USAGE, and the
# index's own sizes from FT.INFO over the items), for docs/cluster.md's sizing model.
python3 - "$PORTS_single" <<'PY'
import json, socket, sys

def cmd(port, *args):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)))
        f = s.makefile("rb")
        return read(f)

def read(f):
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t in b"+-":
        return rest.decode()
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return [read(f) for _ in range(max(n, 0))]
    return rest.decode()

port = sys.argv[1]
p = "recd:"
items = cmd(port, "ZRANGE", p + "ids", "0", "199")
users = cmd(port, "ZRANGE", p + "users", "0", "199")
item_b = sum((cmd(port, "MEMORY", "USAGE", p + "item:" + i) or 0) + (cmd(port, "MEMORY", "USAGE", p + "doc:" + i) or 0) for i in items) / len(items)
user_b = sum(sum(cmd(port, "MEMORY", "USAGE", p + k + u) or 0 for k in ("user:", "recent:", "user-events:")) for u in users) / len(users)
info = cmd(port, "FT.INFO", p + "idx:items")
info = dict(zip(info[::2], info[1::2]))
n = int(info.get("num_docs", 1))
mb = sum(float(info.get(k, 0) or 0) for k in ("inverted_sz_mb", "vector_index_sz_mb", "offset_vectors_sz_mb", "doc_table_size_mb", "sortable_values_size_mb", "key_table_size_mb", "geoshapes_sz_mb", "tag_overhead_sz_mb", "text_overhead_sz_mb", "total_index_memory_sz_mb"))
used = cmd(port, "INFO", "memory")
used = dict(l.split(":", 1) for l in used.splitlines() if ":" in l)
print(json.dumps({"memory": {"items": n, "item_keys_bytes": round(item_b), "user_keys_bytes": round(user_b),
                             "fields_index_bytes_per_item": round(float(info.get("total_index_memory_sz_mb") or mb) * 1e6 / max(n, 1)),
                             "vector_index_bytes_per_item": round(float(info.get("vector_index_sz_mb") or 0) * 1e6 / max(n, 1)),
                             "used_memory": int(used.get("used_memory", "0"))}}))
PY
echo "{\"setup\":{\"items\":$ITEMS,\"users\":$USERS,\"masters\":$MASTERS,\"load_s\":$(( $(date +%s) - START )),\"date\":\"$(date -u +%FT%TZ)\"}}"

for round in $(seq "$ROUNDS"); do
    for scenario in recommend events; do
        for name in single cluster; do
            port_var=PORT_$name ports_var=PORTS_$name
            # shellcheck disable=SC2086
            cpu0=$(redis_cpu ${!ports_var})
            out=$("$RECD" bench --target "http://127.0.0.1:${!port_var}" --scenario "$scenario" \
                --no-cache --concurrency "$C" --duration "$DURATION" --warmup 1 \
                --users "$USERS" --items "$ITEMS" --json)
            # shellcheck disable=SC2086
            cpu1=$(redis_cpu ${!ports_var})
            python3 - "$name" "$scenario" "$out" "$cpu0" "$cpu1" "$(echo ${!ports_var} | wc -w)" \
                "$(cut -d' ' -f1 /proc/loadavg)" "$DURATION" <<'PY'
import json, sys
name, scenario, r, cpu0, cpu1, shards, load, dur = sys.argv[1:]
r = json.loads(r)
reqs = max(r["requests"], 1) * (float(dur) + 1.0) / float(dur)
cpu = (float(cpu1) - float(cpu0)) * 1e6 / reqs
print(json.dumps({"name": name, "scenario": scenario, "rps": round(r["rps"], 1),
                  "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                  "errors": r["errors"], "redis_cpu_us_per_req": round(cpu, 1),
                  "redis_cpu_us_per_req_per_shard": round(cpu / int(shards), 1),
                  "load_end": float(load)}))
PY
        done
    done
    echo "round $round done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
for name in single cluster; do
    url=$SINGLE
    [ "$name" = cluster ] && url=$CLUSTER
    echo "{\"recall\":\"$name\",\"result\":$("$RECALL" --url "$url" --k 50 --queries 200)}"
done
