#!/usr/bin/env bash
# Bulk writes against a serving redis backend: `recd bench` (recommend, c = 32, no cache) runs
# in back-to-back windows while a bulk writer runs next to the server on the same Redis, and
# the windows say what serving suffered (req/s, p99, errors) and how long the writer took.
#
#   scripts/bench-redis-writes.sh train  [--batch N] [--iterations 3] [--redis-url URL]
#       `recd train --backend redis` on the demo catalog (100k x 64, 10k users, 224k events):
#       ALS, then ~73k item vectors (each re-indexes its item in RediSearch) and 10k user
#       vectors written back.
#   scripts/bench-redis-writes.sh import [--batch N] [--redis-url URL]
#       `recd import movielens` of shared/data/ml-latest-small (9.7k items, 100k rating
#       events) into its own key prefix on the same Redis.
#
# Without --redis-url it starts a Redis (scripts/redis.sh) and loads the demo catalog first
# (~2 min); with one, it expects the demo catalog there (prefix recd:) and loads nothing.
# RECD_BIN: a prebuilt recd (default: cargo build --release). WRITER_BIN: another recd for
# the writer only (e.g. an older build, to compare write paths against the same server).
# The demo catalog's vectors are replaced by `train`: reload before comparing runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

MODE=${1:-}
[ "$MODE" = train ] || [ "$MODE" = import ] || { sed -n '2,22p' "$0" >&2; exit 2; }
shift
BATCH="" ITERATIONS=3 REDIS_URL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --batch) BATCH=$2; shift 2 ;;
        --iterations) ITERATIONS=$2; shift 2 ;;
        --redis-url) REDIS_URL=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

RECD=$(recd_binary)
WRITER=${WRITER_BIN:-$RECD}
WORK=$(mktemp -d)
CONFIG=$WORK/schema.toml
printf '[schema]\nvector = { dim = 64, metric = "cosine" }\n[schema.fields]\ncategory = "tag"\nbrand = "tag"\nprice = "numeric"\nin_stock = "bool"\npopularity = "numeric"\ntitle = "text"\n' > "$CONFIG"
STARTED_REDIS="" SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

if [ -z "$REDIS_URL" ]; then
    REDIS_URL=$(scripts/redis.sh start)
    STARTED_REDIS=${REDIS_URL##*:}
    RECD_REDIS__OPERATION_TIMEOUT_MS=120000 RECD_REDIS__RESPONSE_TIMEOUT_MS=60000 \
        "$RECD" demo --backend redis --redis-url "$REDIS_URL" --config "$CONFIG" --data-dir "$WORK/demo" \
        --items 100000 --users 10000 --seed 42 --load-only > "$WORK/load.log" 2>&1 ||
        { cat "$WORK/load.log"; exit 1; }
fi
PORT=$(free_port)
"$RECD" serve --backend redis --redis-url "$REDIS_URL" --config "$CONFIG" --data-dir "$WORK/serve" \
    --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
wait_listening $SERVER "$WORK/server.log"

BATCH_ARGS=()
[ -n "$BATCH" ] && BATCH_ARGS=(--batch "$BATCH")
if [ "$MODE" = train ]; then
    "$WRITER" train --backend redis --redis-url "$REDIS_URL" --config "$CONFIG" --data-dir "$WORK/train" \
        --iterations "$ITERATIONS" "${BATCH_ARGS[@]}" > "$WORK/writer.log" 2>&1 &
else
    RECD_REDIS__PREFIX="ml-$$:" "$WRITER" import movielens "${SHARED_DATA:-/work/shared/data}/ml-latest-small" \
        --backend redis --redis-url "$REDIS_URL" --data-dir "$WORK/import" "${BATCH_ARGS[@]}" > "$WORK/writer.log" 2>&1 &
fi
WRITER_PID=$!
START=$(date +%s.%N)
echo "$MODE ${BATCH_ARGS[*]} started $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg)" >&2
while kill -0 $WRITER_PID 2>/dev/null; do
    "$RECD" bench --target "http://127.0.0.1:$PORT" --concurrency 32 --duration 5 --warmup 0 \
        --users 10000 --items 100000 --no-cache --json >> "$WORK/windows" 2>/dev/null || true
done
RC=0
wait $WRITER_PID || RC=$?
END=$(date +%s.%N)
grep -E "wrote|imported|error" "$WORK/writer.log" | tail -2 >&2 || true
python3 - "$MODE" "$BATCH" "$RC" "$START" "$END" "$WORK/windows" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
mode, batch, rc, start, end, path, load = sys.argv[1:]
w = [json.loads(l) for l in open(path) if l.startswith("{")]
print(json.dumps({
    "writer": mode, "batch": batch or "default", "exit": int(rc),
    "writer_s_with_last_window": round(float(end) - float(start), 1),
    "windows": len(w), "requests": sum(x["requests"] for x in w), "errors": sum(x["errors"] for x in w),
    "rps": [round(x["rps"]) for x in w], "p99_ms": [round(x["latency_ms"]["p99"]) for x in w],
    "max_ms": max((x["latency_ms"]["max"] for x in w), default=0), "loadavg_end": float(load)}))
EOF
