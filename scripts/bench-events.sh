#!/usr/bin/env bash
# The event write path (issue 18), measured side by side in one run: `POST /v1/events` with one
# event per request at c = 32 against three demos of the same data (100k x 64, 10k users, seed
# 42): embedded with fsync = everysec, embedded with fsync = always, and the Redis backend
# (scripts/redis.sh). Rounds alternate the order. Then recommend (c = 32, uncached) on the
# everysec demo alone vs under a background load of --event-rate events/s (a second
# `recd bench --rate`), alternating. Prints req/s, p50, p99 per run, the event-visibility p99
# the server measured (recd_event_visible_duration_seconds), and the ratios.
#
#   scripts/bench-events.sh [--rounds 3] [--duration 15] [--items 100000] [--users 10000]
#                           [--concurrency 32] [--event-rate 2000] [--no-redis]
#
# RECD_BIN: the recd to serve and bench with (default: cargo build --release). BASE_BIN: an
# older recd served as a fourth demo (embedded, everysec) in the same rotation: before/after in
# one run (the client is always RECD_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 DURATION=15 ITEMS=100000 USERS=10000 CONC=32 RATE=2000 REDIS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --event-rate) RATE=$2; shift 2 ;;
        --no-redis) REDIS=0; shift ;;
        *) sed -n '2,15p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
CLIENT=$BIN
W=$(mktemp -d)
PIDS="" REDIS_PORT=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    [ -n "$REDIS_PORT" ] && scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
export RECD_LOG=warn

SERVERS="everysec always"
RECD_EMBEDDED__FSYNC=everysec start_demo everysec; PIDS="$PIDS $PID_everysec"
RECD_EMBEDDED__FSYNC=always start_demo always; PIDS="$PIDS $PID_always"
if [ -n "${BASE_BIN:-}" ]; then
    NEW=$BIN BIN=$BASE_BIN
    RECD_EMBEDDED__FSYNC=everysec start_demo base; PIDS="$PIDS $PID_base"
    BIN=$NEW
    SERVERS="$SERVERS base"
fi
if [ "$REDIS" = 1 ]; then
    URL=$(scripts/redis.sh start)
    REDIS_PORT=${URL##*:}
    # Loading 100k items into Redis takes minutes on a busy machine: generous timeouts.
    RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000 \
        start_demo redis --backend redis --redis-url "$URL"
    PIDS="$PIDS $PID_redis"
    SERVERS="$SERVERS redis"
fi
echo "servers up: $SERVERS ($(date -u +%H:%M:%S) UTC)"

# p99 of recd_event_visible_duration_seconds from a /metrics text: the upper bound of the
# bucket that holds the 99th percentile, in ms (">2500" past the last bucket).
visible_p99() {
    python3 -c '
import sys
b = []
for l in open(sys.argv[1]):
    if l.startswith("recd_event_visible_duration_seconds_bucket"):
        le = l.split("le=\"")[1].split("\"")[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(l.split()[-1])))
b.sort()
if not b or b[-1][1] == 0:
    print("n/a"); sys.exit()
total = b[-1][1]
for le, n in b:
    if n >= 0.99 * total:
        print(">2500" if le == float("inf") else "<=%g" % (le * 1000)); break
' "$1"
}

# bench LABEL PORT SCENARIO [EXTRA...]: one measured run; appends "LABEL rps p50 p99" to $W/results.
bench() {
    local label=$1 port=$2 scenario=$3
    shift 3
    "$CLIENT" bench --target "http://127.0.0.1:$port" --scenario "$scenario" --ids range \
        --concurrency "$CONC" --duration "$DURATION" --users "$USERS" --items "$ITEMS" \
        --no-cache --json "$@" 2>/dev/null | grep '^{' > "$W/run.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[2])); l=r["latency_ms"]; print(sys.argv[1], r["rps"], l["p50"], l["p99"], r["errors"])' \
        "$label" "$W/run.json" >> "$W/results"
    tail -1 "$W/results" | awk -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        '{printf "  %-22s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %d  load %s\n", $1, $2, $3, $4, $5, load}'
}

port_of() { eval "echo \$PORT_$1"; }

echo "== events, one per request, c = $CONC, ${DURATION}s per run"
set -- $SERVERS
N=$#
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    # Rotate the order each round, so that a load trend favours no server.
    for i in $(seq 0 $((N - 1))); do
        idx=$(( (i + round - 1) % N + 1 ))
        name=${!idx}
        bench "events-$name" "$(port_of "$name")" events
    done
done
for name in $SERVERS; do
    curl -s "http://127.0.0.1:$(port_of "$name")/metrics" > "$W/metrics-$name.txt"
    echo "  $name: event visible p99 (server, over every event run) $(visible_p99 "$W/metrics-$name.txt") ms"
done

echo "== recommend (uncached, c = $CONC) on the everysec demo, alone vs with $RATE events/s beside it"
PORT=$PORT_everysec
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    runs="alone loaded"
    [ $((round % 2)) -eq 0 ] && runs="loaded alone"
    for r in $runs; do
        if [ "$r" = loaded ]; then
            "$CLIENT" bench --target "http://127.0.0.1:$PORT" --scenario events --ids range \
                --concurrency 32 --rate "$RATE" --warmup 0 --duration "$(python3 -c "print($DURATION + 2)")" \
                --users "$USERS" --items "$ITEMS" --json 2>/dev/null | grep '^{' > "$W/side.json" &
            SIDE=$!
            bench "recommend+events" "$PORT" recommend
            wait $SIDE
            python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("    (beside it: %.0f events/s, p99 %.2f ms, errors %d)" % (r["rps"], r["latency_ms"]["p99"], r["errors"]))' "$W/side.json"
        else
            bench "recommend-alone" "$PORT" recommend
        fi
    done
done

echo "== summary (means over rounds)"
python3 - "$W/results" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    label, rps, p50, p99, errors = line.split()
    runs[label].append((float(rps), float(p50), float(p99)))
mean = {k: tuple(sum(x[i] for x in v) / len(v) for i in range(3)) for k, v in runs.items()}
for k, (rps, p50, p99) in mean.items():
    print(f"  {k:<22} {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  ({len(runs[k])} runs)")
def ratio(a, b, what):
    if a in mean and b in mean:
        print(f"  {what}: {mean[a][0] / mean[b][0]:.2f}x throughput, p99 {mean[a][2] / mean[b][2]:.2f}x")
ratio("events-everysec", "events-redis", "embedded everysec / redis")
ratio("events-always", "events-everysec", "embedded always / everysec")
ratio("events-everysec", "events-base", "embedded everysec / BASE_BIN")
ratio("recommend+events", "recommend-alone", "recommend with events / alone")
EOF
