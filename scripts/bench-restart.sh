#!/usr/bin/env bash
# Restart time to /ready of the embedded backend: loading the vector index's snapshot vs
# rebuilding the index, on one data dir (a `recd demo --load-only` catalog), alternately:
# load, rebuild, rebuild, load, ... (the order flips each round). Prints each start's
# seconds to /ready with the machine's load, the medians and their ratio, and the
# snapshot's size per vector.
#
#   scripts/bench-restart.sh [--rounds 3] [--items 100000] [--users 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 ITEMS=100000 USERS=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        *) sed -n '2,8p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
W=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$W"' EXIT
export RECD_LOG=info
printf '[embedded.index_snapshot]\nenabled = false\n' > "$W/rebuild.toml"
: > "$W/load.toml"

t0=$(date +%s.%N)
"$BIN" demo --load-only --data-dir "$W/data" --items "$ITEMS" --users "$USERS" --seed 42 \
    > "$W/demo.log" 2>&1
echo "loaded $ITEMS items in $(echo "$(date +%s.%N) - $t0" | bc) s"
SNAP="$W/data/index/hnsw.snapshot"
[ -f "$SNAP" ] || { echo "no snapshot after the load" >&2; tail "$W/demo.log" >&2; exit 1; }
BYTES=$(stat -c %s "$SNAP")
echo "snapshot: $BYTES bytes, $(echo "scale=1; $BYTES / $ITEMS" | bc) bytes per vector"

# start MODE: seconds from spawn to the first 200 from /ready, then a graceful stop.
start() {
    local mode=$1 port start end
    port=$(free_port)
    start=$(date +%s.%N)
    "$BIN" serve --config "$W/$mode.toml" --data-dir "$W/data" --listen "127.0.0.1:$port" \
        > "$W/$mode.log" 2>&1 &
    PID=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$port/ready"; do
        kill -0 $PID 2>/dev/null || { cat "$W/$mode.log" >&2; exit 1; }
        sleep 0.02
    done
    end=$(date +%s.%N)
    kill -TERM $PID
    wait $PID || true
    PID=""
    case $mode in
        load) grep -q "loaded from its snapshot" "$W/load.log" ||
            { echo "the index was not loaded" >&2; cat "$W/load.log" >&2; exit 1; } ;;
        rebuild) grep -q "vector index rebuilt" "$W/rebuild.log" ||
            { echo "the index was not rebuilt" >&2; exit 1; } ;;
    esac
    echo "$end - $start" | bc
}
LOADS=() REBUILDS=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="load rebuild"; else order="rebuild load"; fi
    for mode in $order; do
        LOAD=$(cut -d' ' -f1 /proc/loadavg)
        s=$(start "$mode")
        printf 'round %s %-7s load %s: %.2f s to /ready\n' "$round" "$mode" "$LOAD" "$s"
        if [ "$mode" = load ]; then LOADS+=("$s"); else REBUILDS+=("$s"); fi
    done
done
python3 - "${LOADS[*]}" "${REBUILDS[*]}" <<'PY'
import statistics, sys
load = [float(x) for x in sys.argv[1].split()]
rebuild = [float(x) for x in sys.argv[2].split()]
ml, mr = statistics.median(load), statistics.median(rebuild)
print(f"median to /ready: snapshot load {ml:.2f} s, rebuild {mr:.2f} s, ratio {mr / ml:.1f}x")
PY
