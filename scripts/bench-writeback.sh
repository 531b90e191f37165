#!/usr/bin/env bash
# Training write-back on MovieLens while the server serves: what serving suffers.
#
#   scripts/bench-writeback.sh [--backend embedded|redis] [--via target|direct]
#                              [--concurrency 16] [--window 1] [--no-cache] [--iterations 15]
#
# 1. imports shared/data/ml-latest-small (timed) into a fresh data dir (embedded) or a fresh
#    Redis from scripts/redis.sh (redis), trains once, and serves it with `recd serve`;
# 2. `recd bench` recommend for MovieLens users ("1".."610") in back-to-back windows of
#    --window seconds: 5 before, then for as long as a retrain runs (`recd train --target URL`
#    through the server, or with --via direct and redis, `recd train --backend redis` on the
#    shared Redis), then 3 after;
# 3. prints one JSON line: import and retrain wall time, and per phase the requests, errors,
#    req/s and p99 of every window.
#
# RECD_BIN: a prebuilt recd (default: cargo build --release). SHARED_DATA: where
# ml-latest-small is (default: ../shared/data from the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

BACKEND=embedded VIA=target CONCURRENCY=16 WINDOW=1 NO_CACHE="" ITERATIONS=15
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=$2; shift 2 ;;
        --via) VIA=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --no-cache) NO_CACHE=--no-cache; shift ;;
        --iterations) ITERATIONS=$2; shift 2 ;;
        *) sed -n '2,17p' "$0" >&2; exit 2 ;;
    esac
done
[ "$BACKEND" = embedded ] || [ "$BACKEND" = redis ] || { echo "--backend embedded|redis" >&2; exit 2; }
[ "$VIA" = target ] || [ "$VIA" = direct ] || { echo "--via target|direct" >&2; exit 2; }
[ "$BACKEND/$VIA" != embedded/direct ] || {
    echo "--via direct needs --backend redis (an embedded data dir has one writer: the server)" >&2
    exit 2
}

ML=${SHARED_DATA:-$(cd .. && pwd)/shared/data}/ml-latest-small
[ -f "$ML/ratings.csv" ] || { echo "no MovieLens at $ML (see the README's Data section)" >&2; exit 1; }
RECD=$(recd_binary)

WORK=$(mktemp -d)
STARTED_REDIS="" SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$STARTED_REDIS" ] && scripts/redis.sh stop "$STARTED_REDIS" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
STORE=(--data-dir "$WORK/ml")
if [ "$BACKEND" = redis ]; then
    REDIS_URL=$(scripts/redis.sh start)
    STARTED_REDIS=${REDIS_URL##*:}
    STORE=(--backend redis --redis-url "$REDIS_URL" --data-dir "$WORK/ml")
fi

export RECD_LOG=${RECD_LOG:-warn}
now() { date +%s.%N; }
T=$(now)
"$RECD" import movielens "$ML" "${STORE[@]}" > "$WORK/import.log" 2>&1 || { cat "$WORK/import.log"; exit 1; }
IMPORT_S=$(python3 -c "print(round($(now) - $T, 1))")
"$RECD" train "${STORE[@]}" --iterations "$ITERATIONS" > "$WORK/train0.log" 2>&1 || { cat "$WORK/train0.log"; exit 1; }

PORT=$(free_port)
"$RECD" serve "${STORE[@]}" --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
wait_listening $SERVER "$WORK/server.log"
URL="http://127.0.0.1:$PORT"

window() {
    "$RECD" bench --target "$URL" --concurrency "$CONCURRENCY" --duration "$WINDOW" --warmup 0 \
        --users 611 --user-prefix "" --items 193610 --item-prefix "" $NO_CACHE --json \
        2>/dev/null | grep '^{' >> "$WORK/$1" || true
}

for _ in 1 2 3 4 5; do window before; done
if [ "$VIA" = target ]; then
    "$RECD" train --target "$URL" --iterations "$ITERATIONS" > "$WORK/writer.log" 2>&1 &
else
    "$RECD" train "${STORE[@]}" --iterations "$ITERATIONS" > "$WORK/writer.log" 2>&1 &
fi
WRITER=$!
T=$(now)
while kill -0 $WRITER 2>/dev/null; do window during; done
RC=0
wait $WRITER || RC=$?
WRITER_S=$(python3 -c "print(round($(now) - $T, 1))")
[ "$RC" = 0 ] || cat "$WORK/writer.log" >&2
for _ in 1 2 3; do window after; done

python3 - "$BACKEND" "$VIA" "$CONCURRENCY" "${NO_CACHE:-cache}" "$IMPORT_S" "$WRITER_S" "$RC" "$WORK" \
    "$(grep -v "^\s*$" "$WORK/writer.log" | tail -6 | tr "\n" "|")" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, os, sys
backend, via, c, cache, import_s, writer_s, rc, work, last, load = sys.argv[1:]
def phase(name):
    path = os.path.join(work, name)
    w = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    return {"windows": len(w), "requests": sum(x["requests"] for x in w),
            "errors": sum(x["errors"] for x in w),
            "rps": [round(x["rps"]) for x in w],
            "p99_ms": [round(x["latency_ms"]["p99"], 1) for x in w],
            "max_ms": max((x["latency_ms"]["max"] for x in w), default=0)}
print(json.dumps({"backend": backend, "via": via, "concurrency": int(c), "cache": cache,
                  "import_s": float(import_s), "retrain_s": float(writer_s), "retrain_exit": int(rc),
                  "retrain_said": last, "before": phase("before"), "during": phase("during"),
                  "after": phase("after"), "loadavg": load}))
EOF
