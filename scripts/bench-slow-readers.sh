#!/usr/bin/env bash
# Memory of a server while slow clients read the whole event log (GET /v1/admin/events):
# N readers at a few KB/s each, against a demo data set, with the server's RSS sampled every
# second, and /health's latency measured meanwhile. The log is streamed a page at a time, so
# RSS must stay near where it started whatever N is (the adversarial finding: 288 → 2,272 MiB
# with 16 readers when the whole log was loaded per reader).
#
#   scripts/bench-slow-readers.sh [--readers 16] [--seconds 30] [--rate 20k] [--users 10000]
#                                 [--items 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

READERS=16 SECONDS_=30 RATE=20k USERS=10000 ITEMS=20000
while [ $# -gt 0 ]; do
    case "$1" in
        --readers) READERS=$2; shift 2 ;;
        --seconds) SECONDS_=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        *) sed -n '2,10p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
W=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; jobs -p | xargs -r kill 2>/dev/null; rm -rf "$W"' EXIT
export RECD_LOG=warn
PORT=$(free_port)
"$BIN" demo --data-dir "$W/data" --items "$ITEMS" --users "$USERS" --seed 42 \
    --listen "127.0.0.1:$PORT" > "$W/log" 2>&1 &
PID=$!
wait_listening $PID "$W/log"
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
LEN=$(curl -s -D - -o "$W/events.ndjson" "http://127.0.0.1:$PORT/v1/admin/events" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-recd-log-length" {print $2}')
echo "event log: $LEN events, $(wc -c < "$W/events.ndjson") bytes as NDJSON"
echo "RSS before the readers: $(rss) MiB"
for _ in $(seq "$READERS"); do
    curl -s --limit-rate "$RATE" -o /dev/null "http://127.0.0.1:$PORT/v1/admin/events" &
done
MAX=0
for s in $(seq "$SECONDS_"); do
    sleep 1
    r=$(rss)
    MAX=$(python3 -c "print(max($MAX, $r))")
    [ $((s % 10)) -eq 0 ] && echo "t=${s}s RSS $r MiB"
done
H=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/health"; done |
    sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int(NR/2)+1]*1000}')
echo "with $READERS readers at $RATE/s each: RSS peak $MAX MiB; /health p50 $H ms"
