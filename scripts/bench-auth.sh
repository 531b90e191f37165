#!/usr/bin/env bash
# Recommend throughput with access control on (an API key checked on every request, rate
# limits per key and per client address evaluated — set high enough never to refuse) vs off
# (no keys, loopback): two demo servers on the same generated data (same seed), benchmarked
# alternately: on, off, off, on, ... (the order flips each round).
#
#   scripts/bench-auth.sh [--rounds 3] [--duration 15] [--items 100000]
#                         [--users 10000] [--concurrency 32]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 DURATION=15 ITEMS=100000 USERS=10000 CONC=32
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
"$BIN" keys create --name bench --scopes read,write,admin --json > "$W/key.json"
KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$W/key.json")
HASH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' "$W/key.json")
cat > "$W/on.toml" <<TOML
[[auth.keys]]
name = "bench"
hash = "$HASH"
scopes = ["read", "write", "admin"]

[limits]
per_key = { rps = 1000000, burst = 1000000 }
per_ip  = { rps = 1000000, burst = 1000000 }
TOML
start_demo on --config "$W/on.toml"; ON=$PID_on
start_demo off; OFF=$PID_off
# The server with keys refuses a request without one (auth is really on).
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d '{"user_id":"user-1"}' "http://127.0.0.1:$PORT_on/v1/recommend")
[ "$code" = 401 ] || { echo "auth is not on: $code" >&2; exit 1; }
run() { # label port [key]
    LOAD=$(cut -d' ' -f1 /proc/loadavg)
    local key=()
    [ -n "${3:-}" ] && key=(--api-key "$3")
    "$BIN" bench "${key[@]}" --target "http://127.0.0.1:$2" --concurrency "$CONC" \
        --duration "$DURATION" --users "$USERS" --items "$ITEMS" --no-cache --json 2>/dev/null |
        bench_summary "$1 load $LOAD:"
}
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        run "round $round auth on :" "$PORT_on" "$KEY"
        run "round $round auth off:" "$PORT_off"
    else
        run "round $round auth off:" "$PORT_off"
        run "round $round auth on :" "$PORT_on" "$KEY"
    fi
done
