#!/usr/bin/env bash
# A/B of two recd builds on one catalog: each serves the same data in turn (A B A B ...), and
# `recd bench` measures recommend without the cache, unfiltered and with a category + price
# filter, so the two builds see the same data and machine load as nearly as possible.
#
#   scripts/bench-ab.sh A_BIN B_BIN [--backend embedded|redis] [--rounds 2] [--duration 20]
#                       [--items 100000] [--users 10000] [--concurrency 32]
#                       [--scenario recommend|events|mixed]   (events/mixed: no filter pass)
#
# The catalog is the demo's (100k x 64, seed 42), loaded once by A (`demo --load-only`): into a
# temporary data dir, or into a Redis started by scripts/redis.sh. Prints a line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
A=$1 B=$2
shift 2
BACKEND=embedded ROUNDS=2 DURATION=20 ITEMS=100000 USERS=10000 CONC=32 SCENARIO=recommend
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --scenario) SCENARIO=$2; shift 2 ;;
        *) sed -n '2,11p' "$0" >&2; exit 2 ;;
    esac
done

W=$(mktemp -d)
STARTED_REDIS="" SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1; rm -rf "$W"' EXIT
export RECD_LOG=warn
CONFIG=$W/schema.toml
printf '[schema]\nvector = { dim = 64, metric = "cosine" }\n[schema.fields]\ncategory = "tag"\nbrand = "tag"\nprice = "numeric"\nin_stock = "bool"\npopularity = "numeric"\ntitle = "text"\n' > "$CONFIG"
STORE=(--data-dir "$W/data")
if [ "$BACKEND" = redis ]; then
    URL=$(scripts/redis.sh start)
    STARTED_REDIS=${URL##*:}
    STORE=(--backend redis --redis-url "$URL" --data-dir "$W/data")
    export RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000
fi
"$A" demo "${STORE[@]}" --config "$CONFIG" --items "$ITEMS" --users "$USERS" --seed 42 --load-only \
    > "$W/load.log" 2>&1 || { cat "$W/load.log"; exit 1; }
unset RECD_REDIS__OPERATION_TIMEOUT_MS RECD_REDIS__RESPONSE_TIMEOUT_MS
echo "loaded $(date -u +%T)" >&2

CATEGORY=""
for round in $(seq "$ROUNDS"); do
    for side in A B; do
        BIN=$A
        [ $side = B ] && BIN=$B
        PORT=$(free_port)
        "$BIN" serve "${STORE[@]}" --listen "127.0.0.1:$PORT" > "$W/server.log" 2>&1 &
        SERVER=$!
        wait_listening $SERVER "$W/server.log"
        [ -n "$CATEGORY" ] || CATEGORY=$(curl -s "http://127.0.0.1:$PORT/v1/items/sku-0" |
            python3 -c 'import json,sys; c=json.load(sys.stdin)["category"]; print(c if isinstance(c,str) else c[0])')
        FILTERS="none category+price"
        [ "$SCENARIO" = recommend ] || FILTERS=none
        for filter in $FILTERS; do
            FILTER=()
            [ $filter = none ] ||
                FILTER=(--filter "{\"category\":{\"any\":[\"$CATEGORY\"]},\"price\":{\"gte\":10,\"lt\":200}}")
            LOAD=$(cut -d' ' -f1 /proc/loadavg)
            "$A" bench --target "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --concurrency "$CONC" --duration "$DURATION" \
                --users "$USERS" --items "$ITEMS" --no-cache "${FILTER[@]}" --json 2>/dev/null | grep '^{' |
                python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print(sys.argv[1], round(r["rps"]), "req/s, p50", l["p50"], "p99", l["p99"], "ms, errors", r["errors"])' \
                    "round $round $side $SCENARIO $filter load $LOAD:"
        done
        kill $SERVER
        wait $SERVER 2>/dev/null || true
        SERVER=""
    done
done
