#!/usr/bin/env bash
# The redis request path (issue 19): a whole recd recommend (`recd bench --no-cache`) against
# the raw `FT.SEARCH ... KNN 50` it is built on (examples/redis_raw_knn.rs, varied query
# vectors, one connection per client), on ONE Redis loaded by `recd demo --backend redis`,
# interleaved, at several concurrencies. For each run: req/s, p50/p99, and what Redis's one
# thread spent (INFO cpu: used_cpu_user + used_cpu_sys of the main thread; `redis_cores` is
# that over wall time, 1.0 = saturated) and, for recd, the server's own CPU per request.
#
#   scripts/bench-redis-path.sh [--items 100000] [--users 10000] [--duration 15] [--rounds 2]
#                               [--concurrency "8 32 128"] [--redis-url URL [--loaded]]
#
# --loaded: the Redis at --redis-url already holds this demo (an earlier run's), skip loading.
# Environment: RECD_BIN (release recd; else `cargo build --release`), RECD_BIN_B (optional:
# a second recd served next to the first on the same Redis and data, measured in the same
# rounds: before/after in one run; it must read the same key layout), RECD_RAW_BIN (the
# redis_raw_knn example; else built), RECD_BENCH_ARGS (extra `recd serve` flags for both),
# RECD_ENV_A / RECD_ENV_B (`VAR=value ...` in the environment of server a / b only: e.g.
# RECD_BIN_B=$RECD_BIN RECD_ENV_B=RECD_REDIS__CONNECTIONS=1 compares one setting).
# Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=100000 USERS=10000 DURATION=15 ROUNDS=2 CONCS="8 32 128" REDIS_URL="" LOADED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --concurrency) CONCS=$2; shift 2 ;;
        --redis-url) REDIS_URL=$2; shift 2 ;;
        --loaded) LOADED=1; shift ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

RECD=$(recd_binary)
if [ -n "${RECD_RAW_BIN:-}" ]; then
    RAW=$RECD_RAW_BIN
else
    cargo build --release -q -p recd-store --example redis_raw_knn
    RAW=${CARGO_TARGET_DIR:-target}/release/examples/redis_raw_knn
fi
W=$(mktemp -d /tmp/bench-redis-path.XXXXXX)
STARTED_REDIS="" PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT

if [ -z "$REDIS_URL" ]; then
    REDIS_URL=$(scripts/redis.sh start)
    STARTED_REDIS=${REDIS_URL##*:}
fi
REDIS_PORT=${REDIS_URL##*:}
printf '[schema]\nvector = { dim = 64, metric = "cosine" }\n[schema.fields]\ncategory = "tag"\nbrand = "tag"\nprice = "numeric"\nin_stock = "bool"\npopularity = "numeric"\ntitle = "text"\n' > "$W/config.toml"
ARGS=(--backend redis --redis-url "$REDIS_URL" --config "$W/config.toml")

# Redis main-thread CPU seconds so far (user + sys).
redis_cpu() {
    python3 - "$REDIS_PORT" <<'EOF'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    s.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n")
    f = s.makefile("rb")
    n = int(f.readline()[1:])
    text = f.read(n).decode()
cpu = sum(float(l.split(":")[1]) for l in text.splitlines()
          if l.startswith("used_cpu_") and "_main_thread:" in l)
print(cpu)
EOF
}

# CPU seconds process PID has used so far (utime + stime).
proc_cpu() {
    python3 -c 'import os,sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK"))' "$1"
}

START=$(date +%s)
if [ "$LOADED" = 0 ]; then
    RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000 \
        "$RECD" demo "${ARGS[@]}" --data-dir "$W/load" --items "$ITEMS" --users "$USERS" \
        --seed 42 --load-only > "$W/load.log" 2>&1 || { cat "$W/load.log" >&2; exit 1; }
fi
echo "{\"setup\":{\"items\":$ITEMS,\"users\":$USERS,\"load_s\":$(( $(date +%s) - START )),\"recd\":\"$RECD\",\"recd_b\":\"${RECD_BIN_B:-}\",\"env_a\":\"${RECD_ENV_A:-}\",\"env_b\":\"${RECD_ENV_B:-}\",\"date\":\"$(date -u +%FT%TZ)\"}}"

# serve NAME BIN [VAR=value ...]: a `recd serve` on the loaded Redis; sets PORT_NAME and PID_NAME.
serve() {
    local name=$1 bin=$2 port pid
    shift 2
    port=$(free_port)
    # shellcheck disable=SC2086
    env "$@" "$bin" serve "${ARGS[@]}" --data-dir "$W/$name" --listen "127.0.0.1:$port" \
        ${RECD_BENCH_ARGS:-} > "$W/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listening $pid "$W/$name.log"
    eval "PORT_$name=$port PID_$name=$pid"
}
# shellcheck disable=SC2086
serve a "$RECD" ${RECD_ENV_A:-}
SERVERS=(a)
if [ -n "${RECD_BIN_B:-}" ]; then
    # shellcheck disable=SC2086
    serve b "$RECD_BIN_B" ${RECD_ENV_B:-}
    SERVERS+=(b)
fi

# report NAME C JSON REDIS_CPU0 T0 [SERVER_PID SERVER_CPU0]: one line.
report() {
    python3 - "$@" "$(redis_cpu)" "$(date +%s.%N)" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$( [ -n "${6:-}" ] && proc_cpu "$6" || echo 0)" <<'EOF'
import json, sys
a = sys.argv[1:]
name, c, r, cpu0, t0 = a[0], int(a[1]), json.loads(a[2]), float(a[3]), float(a[4])
server_cpu0 = float(a[6]) if len(a) > 9 else 0.0
cpu1, t1, load, server_cpu1 = float(a[-4]), float(a[-3]), a[-2], float(a[-1])
dur = float(__import__("os").environ["DURATION"])
# Both load generators warm up for 1 s before they count: Redis served those requests too.
reqs = max(r["requests"], 1) * (dur + 1.0) / dur
out = {"name": name, "concurrency": c, "rps": round(r["rps"], 1),
       "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "errors": r["errors"],
       "first_errors": r.get("first_errors") or None,
       "redis_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
       "redis_cpu_us_per_req": round((cpu1 - cpu0) * 1e6 / reqs, 1), "load_end": float(load)}
if server_cpu0:
    out["server_cpu_us_per_req"] = round((server_cpu1 - server_cpu0) * 1e6 / reqs, 1)
print(json.dumps(out))
EOF
}
export DURATION

for round in $(seq "$ROUNDS"); do
    for c in $CONCS; do
        cpu0=$(redis_cpu) t0=$(date +%s.%N)
        out=$("$RAW" --url "$REDIS_URL" --concurrency "$c" --seconds "$DURATION" --warmup 1)
        report raw "$c" "$out" "$cpu0" "$t0"
        for s in "${SERVERS[@]}"; do
            port_var=PORT_$s pid_var=PID_$s
            scpu0=$(proc_cpu "${!pid_var}") cpu0=$(redis_cpu) t0=$(date +%s.%N)
            out=$("$RECD" bench --target "http://127.0.0.1:${!port_var}" --scenario recommend \
                --no-cache --concurrency "$c" --duration "$DURATION" --warmup 1 \
                --users "$USERS" --items "$ITEMS" --json)
            report "recd_$s" "$c" "$out" "$cpu0" "$t0" "${!pid_var}" "$scpu0"
        done
    done
    echo "round $round done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
