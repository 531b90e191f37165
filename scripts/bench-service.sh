#!/usr/bin/env bash
# The service benchmark of BENCHMARKS.md: the demo catalog scaled to N items x 64 dims, served
# by a release build, loaded by `recd bench` on the same machine (bench and server share it).
#
#   scripts/bench-service.sh [--items 100000] [--users 10000] [--duration 20] [--concurrency 32]
#                            [--backend embedded|redis] [--keep] [--raw] [--redis-url URL]
#
# Prints one JSON line per scenario (the `recd bench --json` shape, plus the load average at
# its start and end) and the server's setup. Scenarios: recommend without the cache, the same
# with a category + price filter, events (one per request).
#
# Redis backend: starts a Redis with scripts/redis.sh (or uses --redis-url), and after each
# scenario prints what Redis spent per command during it (INFO commandstats: calls, usec per
# call), which is where the time of a redis-backed request goes. --raw adds, in the same run
# and on the same Redis, the raw `FT.SEARCH ... KNN 50` figures without recd in between
# (examples/redis_knn_bench.rs on the shared 100k catalog under the prefix `bench:`; needs
# /tmp/catalog-100k from shared/bench/catalog_gen.py --jsonl-vectors, made here if missing).
#
# Environment: RECD_BIN / RECD_RAW_BIN use prebuilt binaries instead of `cargo build
# --release` (so a benchmark does not rebuild a tree others are editing); RECD_BENCH_DIR
# (data dir, default /tmp/recd-bench-N); CATALOG (default /tmp/catalog-100k); VENV (numpy
# venv for the catalog generator, default /tmp/bench-ann-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=100000 USERS=10000 DURATION=20 CONC=32 BACKEND=embedded KEEP=0 RAW=0 REDIS_URL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --raw) RAW=1; shift ;;
        --redis-url) REDIS_URL=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

TARGET_DIR=${CARGO_TARGET_DIR:-target}
RECD=$(recd_binary)
DATA=${RECD_BENCH_DIR:-/tmp/recd-bench-$ITEMS}
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
ARGS=(--data-dir "$DATA" --listen "127.0.0.1:$PORT")
CONFIG=$(mktemp)
STARTED_REDIS=""
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1; rm -f "$CONFIG"' EXIT

loadavg() { cut -d' ' -f1 /proc/loadavg; }

# INFO commandstats of the Redis at $REDIS_PORT as JSON {cmd: [calls, usec]}; `reset` first
# resets them.
redis_stats() {
    python3 - "$REDIS_PORT" "${1:-}" <<'EOF'
import json, socket, sys
port, reset = int(sys.argv[1]), sys.argv[2] == "reset"
def cmd(*args):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        f = s.makefile("rb")
        line = f.readline()
        if line.startswith(b"$"):
            return f.read(int(line[1:]) + 2)[:-2].decode()
        return line.decode()
if reset:
    cmd(b"CONFIG", b"RESETSTAT")
    sys.exit(0)
out = {}
for line in cmd(b"INFO", b"commandstats").splitlines():
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        kv = dict(p.split("=") for p in rest.split(","))
        if name not in ("info", "config|resetstat"):
            out[name] = [int(kv["calls"]), int(kv["usec"])]
for line in cmd(b"INFO", b"cpu").splitlines():
    if line.startswith("used_cpu_") and "_main_thread:" in line:
        k, v = line.split(":")
        out.setdefault("_cpu_main_thread_s", 0.0)
        out["_cpu_main_thread_s"] += float(v)
print(json.dumps(out))
EOF
}

# One line: what Redis spent per request of the last scenario: main-thread CPU (INFO cpu,
# difference over the scenario), and by command (INFO commandstats: commands a script runs
# are counted on their own and inside the EVALSHA too).
redis_report() {
    local scenario=$1 requests=$2 cpu_before=$3
    redis_stats | python3 -c '
import json, sys
stats, scenario, cpu0 = json.load(sys.stdin), sys.argv[1], float(sys.argv[3])
# recd bench warms up for 1 s before it counts: Redis served those requests too.
requests = max(int(sys.argv[2]), 1) * (float(sys.argv[4]) + 1.0) / float(sys.argv[4])
cpu = stats.pop("_cpu_main_thread_s") - cpu0
total = sum(u for _, u in stats.values())
per = {k: {"calls_per_req": round(c / requests, 2), "usec_per_call": round(u / max(c, 1), 1)}
       for k, (c, u) in sorted(stats.items(), key=lambda kv: -kv[1][1]) if u > 0.01 * total}
print(json.dumps({"redis": {"scenario": scenario, "main_thread_cpu_usec_per_request": round(cpu * 1e6 / requests, 1), "by_command": per}}))
' "$scenario" "$requests" "$cpu_before" "$DURATION"
}

# Main-thread CPU seconds Redis has used so far.
redis_cpu() {
    redis_stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["_cpu_main_thread_s"])'
}

if [ "$BACKEND" = redis ]; then
    if [ -z "$REDIS_URL" ]; then
        REDIS_URL=$(scripts/redis.sh start)
        STARTED_REDIS=${REDIS_URL##*:}
    fi
    REDIS_PORT=${REDIS_URL##*:}
    printf '[schema]\nvector = { dim = 64, metric = "cosine" }\n[schema.fields]\ncategory = "tag"\nbrand = "tag"\nprice = "numeric"\nin_stock = "bool"\npopularity = "numeric"\ntitle = "text"\n' > "$CONFIG"
    ARGS+=(--backend redis --redis-url "$REDIS_URL" --config "$CONFIG")
fi
if [ "$KEEP" = 0 ] && [ "$BACKEND" = embedded ]; then rm -rf "$DATA"; fi

START=$(date +%s)
if [ "$BACKEND" = redis ]; then
    # Load first with generous deadlines (the demo writes 1000 items per script, which may
    # take Redis more than the default 1 s on a loaded machine), then serve with the defaults.
    RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000 \
        "$RECD" demo "${ARGS[@]}" --items "$ITEMS" --users "$USERS" --seed 42 --load-only > /tmp/recd-bench-load.log 2>&1 ||
        { cat /tmp/recd-bench-load.log; exit 1; }
    grep "loaded" /tmp/recd-bench-load.log | tail -1 | tr '\r' '\n' | tail -1 >&2 || true
    "$RECD" serve "${ARGS[@]}" > /tmp/recd-bench-server.log 2>&1 &
else
    "$RECD" demo "${ARGS[@]}" --items "$ITEMS" --users "$USERS" --seed 42 > /tmp/recd-bench-server.log 2>&1 &
fi
SERVER=$!
wait_listening $SERVER /tmp/recd-bench-server.log
echo "{\"setup\":{\"backend\":\"$BACKEND\",\"items\":$ITEMS,\"users\":$USERS,\"load_and_start_s\":$(( $(date +%s) - START )),\"binary\":\"$RECD\",\"date\":\"$(date -u +%FT%TZ)\"}}"
grep "loaded" /tmp/recd-bench-server.log | tail -1 >&2 || true

CATEGORY=$(curl -s "$BASE/v1/items/sku-0" | python3 -c 'import json,sys; c=json.load(sys.stdin)["category"]; print(c if isinstance(c,str) else c[0])')
FILTER="{\"category\":{\"any\":[\"$CATEGORY\"]},\"price\":{\"gte\":10,\"lt\":200}}"
B=("$RECD" bench --target "$BASE" --concurrency "$CONC" --duration "$DURATION" --users "$USERS" --items "$ITEMS" --json)
run() {
    local name=$1
    shift
    local before out cpu=0
    if [ "$BACKEND" = redis ]; then
        redis_stats reset
        cpu=$(redis_cpu)
    fi
    before=$(loadavg)
    out=$("${B[@]}" "$@")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.pop("server",None); r["name"]=sys.argv[2]; r["loadavg"]=[float(sys.argv[3]),float(sys.argv[4])]; print(json.dumps(r))' "$out" "$name" "$before" "$(loadavg)"
    if [ "$BACKEND" = redis ]; then
        redis_report "$name" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$out")" "$cpu"
    fi
}
run recommend --scenario recommend --no-cache
run recommend_filtered --scenario recommend --no-cache --filter "$FILTER"
run events --scenario events

if [ "$RAW" = 1 ] && [ "$BACKEND" = redis ]; then
    CATALOG=${CATALOG:-/tmp/catalog-100k}
    if [ ! -f "$CATALOG/items.jsonl" ]; then
        VENV=${VENV:-/tmp/bench-ann-venv}
        [ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q numpy; }
        SHARED=../shared
        [ -f "$SHARED/bench/catalog_gen.py" ] || SHARED=/work/shared
        "$VENV/bin/python" "$SHARED/bench/catalog_gen.py" --n 100000 --users 1000 --out "$CATALOG" --jsonl-vectors >&2
    fi
    if [ -n "${RECD_RAW_BIN:-}" ]; then
        RAWB=$RECD_RAW_BIN
    else
        cargo build --release -q -p recd-store --example redis_knn_bench
        RAWB=$TARGET_DIR/release/examples/redis_knn_bench
    fi
    LOAD=()
    if ! python3 - "$REDIS_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"*2\r\n$6\r\nEXISTS\r\n$10\r\nbench:meta\r\n")
sys.exit(0 if s.recv(100).startswith(b":1") else 1)
EOF
    then LOAD=(--load); fi
    echo "raw FT.SEARCH KNN 50, same Redis, $(date -u +%T), load $(loadavg)" >&2
    "$RAWB" --url "$REDIS_URL" --catalog "$CATALOG" --seconds "$DURATION" --concurrency "$CONC" "${LOAD[@]}"
    echo "load $(loadavg)" >&2
fi
