#!/usr/bin/env bash
# Recommend throughput with and without an active experiment (impression logging and
# attribution on), same server, same data, alternating: off, on, off, on, ... Both variants
# of the experiment use the `default` strategy, so the lists are the same and the difference
# is the experiment machinery alone (assignment, impression log, per-user counts).
#
#   scripts/bench-experiments.sh [--backend embedded|redis] [--rounds 3] [--duration 20]
#                                [--items 100000] [--users 10000] [--concurrency 32]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

BACKEND=embedded ROUNDS=3 DURATION=20 ITEMS=100000 USERS=10000 CONC=32
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        *) sed -n '2,8p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
W=$(mktemp -d)
STARTED_REDIS="" SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1; rm -rf "$W"' EXIT
export RECD_LOG=warn
STORE=(--data-dir "$W/data")
if [ "$BACKEND" = redis ]; then
    URL=$(scripts/redis.sh start)
    STARTED_REDIS=${URL##*:}
    STORE=(--backend redis --redis-url "$URL" --data-dir "$W/data")
fi
PORT=$(free_port)
"$BIN" demo "${STORE[@]}" --items "$ITEMS" --users "$USERS" --seed 42 --listen "127.0.0.1:$PORT" \
    > "$W/server.log" 2>&1 &
SERVER=$!
wait_listening $SERVER "$W/server.log"
T=http://127.0.0.1:$PORT
run() {
    LOAD=$(cut -d' ' -f1 /proc/loadavg)
    "$BIN" bench --target "$T" --concurrency "$CONC" --duration "$DURATION" --users "$USERS" \
        --items "$ITEMS" --no-cache --json 2>/dev/null | bench_summary "$1 load $LOAD:"
}
for round in $(seq "$ROUNDS"); do
    run "round $round experiment off"
    curl -sf -X POST "$T/v1/experiments" -H 'content-type: application/json' \
        -d "{\"id\":\"bench-$round\",\"kind\":\"ab\",\"variants\":[{\"name\":\"a\",\"strategy\":\"default\"},{\"name\":\"b\",\"strategy\":\"default\"}]}" >/dev/null
    run "round $round experiment on "
    curl -sf -X POST "$T/v1/experiments/bench-$round/stop" >/dev/null
done
curl -s "$T/v1/experiments/bench-1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("bench-1 impressions logged:", sum(v["impressions"] for v in r["variants"]))'
