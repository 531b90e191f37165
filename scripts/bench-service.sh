#!/usr/bin/env bash
# The service benchmark of BENCHMARKS.md: the demo catalog scaled to N items x 64 dims, served
# by a release build, loaded by `recd bench` on the same machine (bench and server share it).
#
#   scripts/bench-service.sh [--items 100000] [--users 10000] [--duration 20] [--concurrency 32]
#                            [--backend embedded|redis] [--keep]
#
# Prints one JSON line per scenario (the `recd bench --json` shape) plus the server's setup.
set -euo pipefail
cd "$(dirname "$0")/.."

ITEMS=100000 USERS=10000 DURATION=20 CONC=32 BACKEND=embedded KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p recd
RECD=target/release/recd
DATA=${RECD_BENCH_DIR:-/tmp/recd-bench-$ITEMS}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
ARGS=(--data-dir "$DATA" --listen "127.0.0.1:$PORT")
CONFIG=$(mktemp)
trap 'kill $SERVER 2>/dev/null || true; [ -n "${REDIS_PORT:-}" ] && scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1 || true; rm -f "$CONFIG"' EXIT
if [ "$BACKEND" = redis ]; then
    REDIS_URL=$(scripts/redis.sh start)
    REDIS_PORT=${REDIS_URL##*:}
    printf '[schema]\nvector = { dim = 64, metric = "cosine" }\n[schema.fields]\ncategory = "tag"\nbrand = "tag"\nprice = "numeric"\nin_stock = "bool"\npopularity = "numeric"\ntitle = "text"\n' > "$CONFIG"
    ARGS+=(--backend redis --redis-url "$REDIS_URL" --config "$CONFIG")
fi
if [ "$KEEP" = 0 ] && [ "$BACKEND" = embedded ]; then rm -rf "$DATA"; fi

START=$(date +%s)
"$RECD" demo "${ARGS[@]}" --items "$ITEMS" --users "$USERS" --seed 42 > /tmp/recd-bench-server.log 2>&1 &
SERVER=$!
until grep -q "recd listening" /tmp/recd-bench-server.log; do
    kill -0 $SERVER 2>/dev/null || { cat /tmp/recd-bench-server.log; exit 1; }
    sleep 1
done
echo "{\"setup\":{\"backend\":\"$BACKEND\",\"items\":$ITEMS,\"users\":$USERS,\"load_and_start_s\":$(( $(date +%s) - START ))}}"
grep "loaded" /tmp/recd-bench-server.log | tail -1 >&2 || true

CATEGORY=$(curl -s "$BASE/v1/items/sku-0" | python3 -c 'import json,sys; c=json.load(sys.stdin)["category"]; print(c if isinstance(c,str) else c[0])')
FILTER="{\"category\":{\"any\":[\"$CATEGORY\"]},\"price\":{\"gte\":10,\"lt\":200}}"
B=("$RECD" bench --target "$BASE" --concurrency "$CONC" --duration "$DURATION" --users "$USERS" --items "$ITEMS" --json)
"${B[@]}" --scenario recommend --no-cache
"${B[@]}" --scenario recommend --no-cache --filter "$FILTER"
"${B[@]}" --scenario events
