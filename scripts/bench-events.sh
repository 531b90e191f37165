#!/usr/bin/env bash
# The event write path (issue 18), measured side by side in one run: `POST /v1/events` with one
# event per request at c = 32 against three demos of the same data (100k x 64, 10k users, seed
# 42): embedded with fsync = everysec, embedded with fsync = always, and the Redis backend
# (scripts/redis.sh). Rounds alternate the order. Then recommend (c = 32, uncached) on the
# everysec demo alone vs under a background load of --event-rate events/s (a second
# `recd bench --rate`), alternating: at saturation (with the server's CPU per recommend, the
# side events' CPU taken out) and at a fixed rate of half the saturated throughput (latency).
# Prints req/s, p50, p99 per run, the event-visibility p99 the server measured
# (recd_event_visible_duration_seconds), and the ratios.
#
#   scripts/bench-events.sh [--rounds 3] [--duration 15] [--items 100000] [--users 10000]
#                           [--concurrency 32] [--event-rate 2000] [--no-redis] [--decayed]
#                           [--cholesky] [--wrk] [--workers N]
#
# --wrk also measures each server's events with wrk (2 threads, c = --concurrency,
# scripts/wrk/events.lua: the same requests), right after its `recd bench` run: the client the
# issue's figures were taken with, which is lighter than `recd bench` (reqwest + serde per
# request), so more of the two cores serve; and, once per round, GET /health on the everysec
# server the same way (scripts/wrk/health.lua): the latency floor of any request at this
# concurrency on this machine; and recommend alone vs beside --event-rate events/s with wrk as
# both clients (scripts/wrk/recommend.lua; the events paced by scripts/wrk/pace.lua), at
# saturation and paced to half of it. `apt-get install wrk`.
#
# --decayed adds an embedded everysec demo whose events update the session by the decayed
# average instead of the default fold-in (what the fold-in's solve costs an event).
# --cholesky adds an embedded everysec demo whose fold-in solves exactly
# ([model.session.fold_in] solver = "cholesky") instead of the default CG steps, and measures
# the server CPU per event at --event-rate on it too (CG vs Cholesky in one run).
# --workers N adds an embedded everysec demo whose runtime has N worker threads
# (TOKIO_WORKER_THREADS; the default is one per core) to the event runs: how much of the tail at
# c = 32 is the server's workers and the load generator's threads contending for the cores.
# RECD_BIN: the recd to serve and bench with (default: cargo build --release). BASE_BIN: an
# older recd served as a fourth demo (embedded, everysec) in the same rotation: before/after in
# one run (the client is always RECD_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 DURATION=15 ITEMS=100000 USERS=10000 CONC=32 RATE=2000 REDIS=1 DECAYED=0 CHOLESKY=0 WRK=0
WORKERS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --event-rate) RATE=$2; shift 2 ;;
        --no-redis) REDIS=0; shift ;;
        --decayed) DECAYED=1; shift ;;
        --cholesky) CHOLESKY=1; shift ;;
        --wrk) WRK=1; shift ;;
        --workers) WORKERS=$2; shift 2 ;;
        *) sed -n '2,33p' "$0" >&2; exit 2 ;;
    esac
done
if [ "$WRK" = 1 ] && ! command -v wrk > /dev/null; then
    echo "--wrk needs wrk (apt-get install wrk)" >&2
    exit 2
fi
BIN=$(recd_binary)
CLIENT=$BIN
W=$(mktemp -d)
PIDS="" REDIS_PORT=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    # Wait for them to exit: a server still flushing its data dir made the rm below fail
    # ("Directory not empty") and the script exit 1 after printing every figure.
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
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
if [ "$DECAYED" = 1 ]; then
    RECD_EMBEDDED__FSYNC=everysec RECD_MODEL__SESSION__UPDATE=decayed_average start_demo decayed
    PIDS="$PIDS $PID_decayed"
    SERVERS="$SERVERS decayed"
fi
if [ "$CHOLESKY" = 1 ]; then
    RECD_EMBEDDED__FSYNC=everysec RECD_MODEL__SESSION__FOLD_IN__SOLVER=cholesky \
        start_demo cholesky
    PIDS="$PIDS $PID_cholesky"
    SERVERS="$SERVERS cholesky"
fi
if [ -n "$WORKERS" ]; then
    RECD_EMBEDDED__FSYNC=everysec TOKIO_WORKER_THREADS=$WORKERS start_demo workers
    PIDS="$PIDS $PID_workers"
    SERVERS="$SERVERS workers"
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

# bench LABEL PORT SCENARIO [EXTRA...]: one measured run; appends "LABEL rps p50 p99 errors
# requests cpu_s" to $W/results, cpu_s being the CPU seconds the server (SERVER_PID, if set) used
# during the run.
bench() {
    local label=$1 port=$2 scenario=$3 before=0 after=0
    shift 3
    [ -n "${SERVER_PID:-}" ] && before=$(cpu_seconds "$SERVER_PID")
    "$CLIENT" bench --target "http://127.0.0.1:$port" --scenario "$scenario" --ids range \
        --concurrency "$CONC" --duration "$DURATION" --users "$USERS" --items "$ITEMS" \
        --no-cache --json "$@" 2>/dev/null | grep '^{' > "$W/run.json"
    [ -n "${SERVER_PID:-}" ] && after=$(cpu_seconds "$SERVER_PID")
    python3 -c 'import json,sys; r=json.load(open(sys.argv[2])); l=r["latency_ms"]; print(sys.argv[1], r["rps"], l["p50"], l["p99"], r["errors"], r["requests"], float(sys.argv[4]) - float(sys.argv[3]))' \
        "$label" "$W/run.json" "$before" "$after" >> "$W/results"
    tail -1 "$W/results" | awk -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        '{printf "  %-26s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %d  server CPU %.2f s  load %s\n", $1, $2, $3, $4, $5, $7, load}'
}

port_of() { eval "echo \$PORT_$1"; }
pid_of() { eval "echo \$PID_$1"; }

# wrk_bench LABEL PORT [SCRIPT]: the events of `bench LABEL PORT events` sent by wrk instead
# (2 s of warm-up first, not counted); appends the same fields to $W/results. SCRIPT: another
# wrk script of scripts/wrk (health.lua: GET /health, the floor any request of this server and
# machine has at this concurrency).
wrk_bench() {
    local label=$1 port=$2 script=scripts/wrk/${3:-events.lua} before=0 after=0
    USERS=$USERS ITEMS=$ITEMS wrk -t2 -c"$CONC" -d2s -s "$script" \
        "http://127.0.0.1:$port" > /dev/null
    [ -n "${SERVER_PID:-}" ] && before=$(cpu_seconds "$SERVER_PID")
    USERS=$USERS ITEMS=$ITEMS wrk -t2 -c"$CONC" -d"${DURATION}s" -s "$script" \
        "http://127.0.0.1:$port" | grep '^WRK ' > "$W/wrk.txt"
    [ -n "${SERVER_PID:-}" ] && after=$(cpu_seconds "$SERVER_PID")
    # WRK requests errors seconds p50_us p99_us max_us
    awk -v l="$label" -v b="$before" -v a="$after" \
        '{ printf "%s %.1f %.3f %.3f %d %d %.2f\n", l, $2 / $4, $5 / 1000, $6 / 1000, $3, $2, a - b }' \
        "$W/wrk.txt" >> "$W/results"
    tail -1 "$W/results" | awk -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        '{printf "  %-26s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %d  server CPU %.2f s  load %s\n", $1, $2, $3, $4, $5, $7, load}'
}

echo "== events, one per request, c = $CONC, ${DURATION}s per run"
set -- $SERVERS
N=$#
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    # Rotate the order each round, so that a load trend favours no server.
    for i in $(seq 0 $((N - 1))); do
        idx=$(( (i + round - 1) % N + 1 ))
        name=${!idx}
        # The server's CPU per event at saturation, beside the one at --event-rate below.
        SERVER_PID=$(pid_of "$name") bench "events-$name" "$(port_of "$name")" events
        if [ "$WRK" = 1 ]; then
            SERVER_PID=$(pid_of "$name") wrk_bench "wrk-events-$name" "$(port_of "$name")"
        fi
    done
    if [ "$WRK" = 1 ]; then
        SERVER_PID=$PID_everysec wrk_bench "wrk-health-everysec" "$PORT_everysec" health.lua
    fi
done
for name in $SERVERS; do
    curl -s "http://127.0.0.1:$(port_of "$name")/metrics" > "$W/metrics-$name.txt"
    echo "  $name: event visible p99 (server, over every event run) $(visible_p99 "$W/metrics-$name.txt") ms"
    # The background checkpoints since the server started (the demo's load included):
    # recd_checkpoint_duration_seconds, absent on the redis backend.
    awk -v n="$name" '/^recd_checkpoint_duration_seconds_sum/ { s = $2 }
        /^recd_checkpoint_duration_seconds_count/ { c = $2 }
        END { if (c > 0) printf "  %s: %d checkpoints, %.2f s in all (%.0f ms each)\n", n, c, s, 1000 * s / c }' \
        "$W/metrics-$name.txt"
done

echo "== recommend (uncached, c = $CONC) on the everysec demo, alone vs with $RATE events/s beside it"
# On two shared cores a saturating recommend load cannot keep its throughput while the events
# take their share of the CPU, so three things are measured per round: the server CPU one side
# event costs (the events alone at the side rate), recommend at saturation alone and loaded (the
# server CPU per recommend, the side events' share taken out: what interference would raise),
# and then recommend at a fixed rate below saturation, alone and loaded (the latency a user sees).
PORT=$PORT_everysec
SERVER_PID=$PID_everysec
touch "$W/side-counts"
# side SECONDS: $RATE events/s in the background for SECONDS; its summary lands in $W/side.json.
side() {
    "$CLIENT" bench --target "http://127.0.0.1:$PORT" --scenario events --ids range \
        --concurrency 32 --rate "$RATE" --warmup 0 --duration "$1" \
        --users "$USERS" --items "$ITEMS" --json 2>/dev/null | grep '^{' > "$W/side.json" &
    SIDE=$!
}
# side_note LABEL: prints the side load's summary and counts its events for LABEL's run.
side_note() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("    (beside it: %.0f events/s, p99 %.2f ms, errors %d)" % (r["rps"], r["latency_ms"]["p99"], r["errors"]))' "$W/side.json"
    python3 -c 'import json,sys; print(sys.argv[2], json.load(open(sys.argv[1]))["requests"])' "$W/side.json" "$1" >> "$W/side-counts"
}
# loaded_or_alone LABEL ORDER [EXTRA...]: the recommend run alone and beside the side load, in ORDER.
loaded_or_alone() {
    local label=$1 order=$2 r
    shift 2
    for r in $order; do
        if [ "$r" = loaded ]; then
            side "$(python3 -c "print($DURATION + 2)")"
            bench "$label+events" "$PORT" recommend "$@"
            wait $SIDE
            side_note "$label+events"
        else
            bench "$label-alone" "$PORT" recommend "$@"
        fi
    done
}
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    bench "events-side-rate" "$PORT" events --rate "$RATE" --warmup 0
    if [ "$CHOLESKY" = 1 ]; then
        SERVER_PID=$PID_cholesky bench "events-side-rate-cholesky" "$PORT_cholesky" events \
            --rate "$RATE" --warmup 0
    fi
    order="alone loaded"
    [ $((round % 2)) -eq 0 ] && order="loaded alone"
    loaded_or_alone recommend "$order"
done
# Half of what recommend reached alone: below saturation, so latency is what can change.
FIXED=$(awk '$1 == "recommend-alone" { s += $2; n++ } END { printf "%d", s / n / 2 }' "$W/results")
echo "== recommend at a fixed $FIXED req/s (half of saturation), alone vs with $RATE events/s beside it"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    order="loaded alone"
    [ $((round % 2)) -eq 0 ] && order="alone loaded"
    loaded_or_alone fixed-recommend "$order" --rate "$FIXED"
done

if [ "$WRK" = 1 ]; then
    # The same comparison with wrk as both clients (scripts/wrk/recommend.lua; the side load
    # scripts/wrk/events.lua paced to $RATE/s on 64 connections: on 8, the events waited out
    # the saturated server's ~4 ms and reached only ~1,150/s): `recd bench`'s own client
    # adds milliseconds of scheduling delay to its latencies when a second load shares the two
    # cores (session 23: its fixed-rate p50 went from 0.3 to 2-3 ms in some runs beside any
    # second load, the server's own request time staying under 0.5 ms), which wrk does not.
    echo "== wrk as both clients: recommend (c = $CONC) alone vs with $RATE events/s (wrk, paced) beside it"
    # wrk_side SECONDS: the paced events in the background; its WRK line lands in $W/wrk-side.txt.
    wrk_side() {
        RATE=$RATE CONNECTIONS=64 USERS=$USERS ITEMS=$ITEMS wrk -t1 -c64 -d"${1}s" \
            -s scripts/wrk/events.lua "http://127.0.0.1:$PORT" | grep '^WRK ' > "$W/wrk-side.txt" &
        SIDE=$!
    }
    # wrk_loaded_or_alone LABEL ORDER [RATE]: wrk's recommend alone and beside the side load
    # (paced to RATE over $CONC connections if given).
    wrk_loaded_or_alone() {
        local label=$1 order=$2 pace=${3:-} r
        for r in $order; do
            if [ "$r" = loaded ]; then
                wrk_side $((DURATION + 4))
                RATE=$pace CONNECTIONS=$CONC wrk_bench "$label+events" "$PORT" recommend.lua
                wait $SIDE
                awk '{ printf "    (beside it: %.0f events/s, p99 %.2f ms, errors %d)\n", $2 / $4, $6 / 1000, $3 }' "$W/wrk-side.txt"
                # The side's events during the measured run (wrk_bench warms up for 2 s first).
                awk -v l="$label+events" -v d="$DURATION" '{ printf "%s %d\n", l, $2 / $4 * d }' \
                    "$W/wrk-side.txt" >> "$W/side-counts"
            else
                RATE=$pace CONNECTIONS=$CONC wrk_bench "$label-alone" "$PORT" recommend.lua
            fi
        done
    }
    for round in $(seq "$ROUNDS"); do
        echo "round $round"
        order="alone loaded"
        [ $((round % 2)) -eq 0 ] && order="loaded alone"
        wrk_loaded_or_alone wrk-recommend "$order"
    done
    WRK_FIXED=$(awk '$1 == "wrk-recommend-alone" { s += $2; n++ } END { printf "%d", s / n / 2 }' "$W/results")
    echo "== wrk: recommend paced to $WRK_FIXED req/s (half of saturation), alone vs with $RATE events/s beside it"
    for round in $(seq "$ROUNDS"); do
        echo "round $round"
        order="loaded alone"
        [ $((round % 2)) -eq 0 ] && order="alone loaded"
        wrk_loaded_or_alone wrk-fixed-recommend "$order" "$WRK_FIXED"
    done
fi

echo "== summary (means over rounds)"
python3 - "$W/results" "$W/side-counts" "$RATE" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    label, rps, p50, p99, errors, requests, cpu = line.split()
    runs[label].append((float(rps), float(p50), float(p99), int(requests), float(cpu)))
side = defaultdict(list)
for line in open(sys.argv[2]):
    label, n = line.split()
    side[label].append(int(n))
mean = {k: tuple(sum(x[i] for x in v) / len(v) for i in range(3)) for k, v in runs.items()}
for k, (rps, p50, p99) in mean.items():
    print(f"  {k:<26} {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  ({len(runs[k])} runs)")
def ratio(a, b, what):
    if a in mean and b in mean:
        print(f"  {what}: {mean[a][0] / mean[b][0]:.2f}x throughput, "
              f"p50 {mean[a][1] / mean[b][1]:.2f}x, p99 {mean[a][2] / mean[b][2]:.2f}x")
ratio("events-everysec", "events-redis", "embedded everysec / redis")
ratio("wrk-events-everysec", "wrk-events-redis", "wrk: embedded everysec / redis")
ratio("wrk-events-always", "wrk-events-everysec", "wrk: embedded always / everysec")
ratio("wrk-events-everysec", "wrk-events-base", "wrk: embedded everysec / BASE_BIN")
ratio("wrk-events-everysec", "events-everysec", "embedded everysec, wrk / recd bench")
ratio("wrk-events-workers", "wrk-events-everysec", "wrk: embedded everysec, --workers / default")
ratio("wrk-events-workers", "wrk-events-redis", "wrk: embedded everysec, --workers / redis")
ratio("wrk-events-everysec", "wrk-health-everysec", "wrk: embedded everysec events / GET /health")
ratio("events-always", "events-everysec", "embedded always / everysec")
ratio("events-everysec", "events-base", "embedded everysec / BASE_BIN")
ratio("events-decayed", "events-everysec", "embedded decayed average / fold-in")
ratio("events-decayed", "events-redis", "embedded decayed average / redis")
ratio("events-everysec", "events-cholesky", "embedded fold-in cg (default) / cholesky")
ratio("events-cholesky", "events-redis", "embedded fold-in cholesky / redis")
ratio("recommend+events", "recommend-alone", "recommend at saturation, with events / alone")
ratio("fixed-recommend+events", "fixed-recommend-alone", "recommend at a fixed rate, with events / alone")
ratio("wrk-recommend+events", "wrk-recommend-alone", "wrk: recommend at saturation, with events / alone")
ratio("wrk-fixed-recommend+events", "wrk-fixed-recommend-alone", "wrk: recommend paced, with events / alone")
# Server CPU per recommend: alone, and loaded with the side events' CPU (at the per-event cost
# measured alone in the same rounds) taken out. Equal figures mean the events slow recommend
# only by the CPU they take, not by contention.
def cpu_per_request(label):
    return sum(r[4] for r in runs[label]) / max(sum(r[3] for r in runs[label]), 1)
# Server CPU per event by load and client: at saturation (recd bench, wrk) and at the side
# rate. An event costs the server more CPU the less loaded it is (session 18: 58 us under
# wrk, 103 us under recd bench, 144-185 us at 2,000/s), so the side rate's figure, not the
# saturated one, is what the events take from recommend beside them.
# On the redis demo this is recd's process only: Redis's own CPU is not counted.
per_event = [(k, cpu_per_request(k)) for k in runs
             if k.startswith(("events-", "wrk-events-", "wrk-health-")) and sum(r[4] for r in runs[k]) > 0]
if per_event:
    print("  server CPU per request: " + ", ".join(f"{k} {c * 1e6:.1f} us" for k, c in per_event))
if all(k in runs for k in ("events-side-rate", "events-side-rate-cholesky")):
    cg, chol = cpu_per_request("events-side-rate"), cpu_per_request("events-side-rate-cholesky")
    print(f"  server CPU per event at {sys.argv[3]}/s: cg {cg * 1e6:.1f} us, cholesky {chol * 1e6:.1f} us"
          f" ({cg / chol:.2f}x)")
def per_recommend(prefix, per_event):
    """Server CPU per recommend alone and beside the events (their share taken out)."""
    alone = cpu_per_request(f"{prefix}-alone")
    loaded = runs[f"{prefix}+events"]
    rest = sum(r[4] for r in loaded) - sum(side[f"{prefix}+events"]) * per_event
    return alone, rest / max(sum(r[3] for r in loaded), 1)
if "events-side-rate" in runs:
    per_event = cpu_per_request("events-side-rate")
    for prefix, what in (("recommend", ""), ("wrk-recommend", "wrk: ")):
        if all(f"{prefix}{s}" in runs for s in ("-alone", "+events")):
            alone, with_events = per_recommend(prefix, per_event)
            print(f"  {what}server CPU per event {per_event * 1e6:.1f} us; per recommend alone"
                  f" {alone * 1e6:.1f} us, beside the events {with_events * 1e6:.1f} us"
                  f" ({with_events / alone:.2f}x)")
EOF
