#!/usr/bin/env bash
# Recommend throughput with online-quality monitoring and drift detection on
# ([monitoring] enabled = true, the default) vs off (enabled = false): two servers on the
# same generated data (same seed), benchmarked alternately: on, off, on, off, ...
# Also prints the size of /metrics and the time to scrape it.
#
#   scripts/bench-monitoring.sh [--rounds 3] [--duration 20] [--items 100000]
#                               [--users 10000] [--concurrency 32]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 DURATION=20 ITEMS=100000 USERS=10000 CONC=32
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        *) sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
W=$(mktemp -d)
ON="" OFF=""
trap '[ -n "$ON" ] && kill $ON 2>/dev/null; [ -n "$OFF" ] && kill $OFF 2>/dev/null; rm -rf "$W"' EXIT
export RECD_LOG=warn
RECD_MONITORING__ENABLED=true start_demo on; ON=$PID_on
RECD_MONITORING__ENABLED=false start_demo off; OFF=$PID_off
run() { # label port pid
    LOAD=$(cut -d' ' -f1 /proc/loadavg)
    local before
    before=$(cpu_seconds "$3")
    "$BIN" bench --target "http://127.0.0.1:$2" --concurrency "$CONC" --duration "$DURATION" \
        --warmup 0 --users "$USERS" --items "$ITEMS" --no-cache --json 2>/dev/null | grep '^{' > "$W/run.json"
    # The server's CPU per request: less sensitive than req/s to what else runs on the
    # machine (a shared 2-core box), since other processes' time is not counted.
    python3 -c 'import json,sys; r=json.load(open(sys.argv[2])); l=r["latency_ms"]; cpu=float(sys.argv[4])-float(sys.argv[3]); print(sys.argv[1], round(r["rps"]), "req/s, p50", l["p50"], "p99", l["p99"], "ms, errors", r["errors"], ", server CPU", round(cpu / max(r["requests"], 1) * 1e6, 1), "us/request")' \
        "$1 load $LOAD:" "$W/run.json" "$before" "$(cpu_seconds "$3")"
}
for round in $(seq "$ROUNDS"); do
    # Alternate which goes first, so that a load trend does not favour one side.
    if [ $((round % 2)) -eq 1 ]; then
        run "round $round monitoring on :" "$PORT_on" "$ON"
        run "round $round monitoring off:" "$PORT_off" "$OFF"
    else
        run "round $round monitoring off:" "$PORT_off" "$OFF"
        run "round $round monitoring on :" "$PORT_on" "$ON"
    fi
done
for i in 1 2 3; do
    curl -s -o "$W/metrics.txt" -w "/metrics: %{size_download} bytes in %{time_total} s\n" \
        "http://127.0.0.1:$PORT_on/metrics"
done
echo "/metrics series: $(grep -vc '^#' "$W/metrics.txt")"
