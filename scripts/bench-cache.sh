#!/usr/bin/env bash
# The caching benchmark of BENCHMARKS.md (issue 5), on one machine (server and load share it).
#
#   scripts/bench-cache.sh [--items 100000] [--users 10000] [--zipf 1.1] [--duration 20]
#                          [--concurrency 32] [--backend embedded|redis|both] [--no-catalog]
#
# 1. Recommendations with a Zipf-distributed user mix (a hot set), caching on vs off
#    (`recd bench --zipf S` vs `--no-cache`), per backend: req/s, p99, hit ratio, and the
#    server's own took_ms of cache hits.
# 2. Item details read through a PostgreSQL catalog source (scripts/postgres.sh; a products
#    table with one row per item and ~5 reviews per item, the query joins and aggregates):
#    cold (`--no-cache`: every read queries the source) vs warm (through the cache), with
#    the source's queries per second under the same load.
# With the cache on, two runs follow each other on the same server: the first from a cold
# cache, the second (another seed, same distribution) in steady state.
# Prints one `recd bench --json` line per run, prefixed by its label and the load average.
#
# Environment: RECD_BIN (a prebuilt release binary; otherwise cargo build --release),
# RECD_BENCH_DIR (data dir, default /tmp/recd-bench-cache-N).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=100000 USERS=10000 ZIPF=1.1 DURATION=20 CONC=32 BACKEND=both CATALOG=1
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --zipf) ZIPF=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --no-catalog) CATALOG=0; shift ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

RECD=$(recd_binary)
DATA=${RECD_BENCH_DIR:-/tmp/recd-bench-cache-$ITEMS}
CONFIG=$(mktemp --suffix .toml)
SERVER="" REDIS_PORT="" PG_PORT=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
    [ -n "$REDIS_PORT" ] && scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1
    [ -n "$PG_PORT" ] && scripts/postgres.sh stop "$PG_PORT" >/dev/null 2>&1
    rm -f "$CONFIG"
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1 /proc/loadavg; }

# Starts `recd serve` with the given extra args; sets SERVER and BASE.
serve() {
    local port
    port=$(free_port)
    BASE=http://127.0.0.1:$port
    "$RECD" serve --listen "127.0.0.1:$port" "$@" >/tmp/bench-cache-server.log 2>&1 &
    SERVER=$!
    for _ in $(seq 1 600); do
        curl -sf "$BASE/ready" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "server did not become ready; see /tmp/bench-cache-server.log" >&2
    exit 1
}

stop_server() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; SERVER=""; }

bench() {
    local label=$1
    shift
    local before
    before=$(loadavg)
    local out
    out=$("$RECD" bench --target "$BASE" --json --concurrency "$CONC" --duration "$DURATION" \
        --users "$USERS" --items "$ITEMS" --zipf "$ZIPF" "$@")
    echo "$label load=$before..$(loadavg) $out"
}

recommend_runs() {
    local backend=$1
    # Caching off first, then on: the on-run starts cold (no earlier run filled the cache).
    bench "$backend recommend zipf=$ZIPF cache=off" --scenario recommend --no-cache
    stop_server
    serve "${SERVE_ARGS[@]}"
    bench "$backend recommend zipf=$ZIPF cache=on (first run, from cold)" --scenario recommend
    bench "$backend recommend zipf=$ZIPF cache=on (second run, steady state)" --scenario recommend --seed 2
}

# The catalog: the demo's schema and a generated catalog + histories, loaded once.
if [ ! -d "$DATA" ]; then
    "$RECD" demo --load-only --data-dir "$DATA" --items "$ITEMS" --users "$USERS" --seed 1 >&2
fi

if [ "$BACKEND" = embedded ] || [ "$BACKEND" = both ]; then
    SERVE_ARGS=(--data-dir "$DATA")
    serve "${SERVE_ARGS[@]}"
    recommend_runs embedded
    stop_server
fi

if [ "$BACKEND" = redis ] || [ "$BACKEND" = both ]; then
    REDIS_URL=$(scripts/redis.sh start)
    REDIS_PORT=${REDIS_URL##*:}
    # The demo schema, written as config (the redis backend takes its schema from config).
    cat >"$CONFIG" <<TOML
[schema]
vector = { dim = 64, metric = "cosine" }
[schema.fields]
category = "tag"
brand = "tag"
price = "numeric"
in_stock = "bool"
popularity = "numeric"
title = "text"
TOML
    # Loading batches of 1000 items makes RediSearch index for longer than a serving deadline.
    RECD_REDIS__RESPONSE_TIMEOUT_MS=30000 RECD_REDIS__OPERATION_TIMEOUT_MS=60000 \
    "$RECD" demo --load-only --backend redis --redis-url "$REDIS_URL" --config "$CONFIG" \
        --items "$ITEMS" --users "$USERS" --seed 1 >&2
    SERVE_ARGS=(--backend redis --redis-url "$REDIS_URL" --config "$CONFIG")
    serve "${SERVE_ARGS[@]}"
    recommend_runs redis
    stop_server
fi

if [ "$CATALOG" = 1 ]; then
    PG_URL=$(scripts/postgres.sh start)
    PG_PORT=${PG_URL##*:}
    PG_PORT=${PG_PORT%%/*}
    PSQL="$(scripts/postgres.sh bin)/psql"
    "$PSQL" "$PG_URL" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE products (id text PRIMARY KEY, vendor text, description text);
CREATE TABLE reviews (item_id text, rating float8);
INSERT INTO products SELECT 'sku-' || i, 'vendor-' || (i % 500), md5(i::text) FROM generate_series(0, $ITEMS - 1) i;
INSERT INTO reviews SELECT 'sku-' || (i % $ITEMS), 1 + (i % 5) FROM generate_series(0, $ITEMS * 5 - 1) i;
CREATE INDEX ON reviews (item_id);
ANALYZE;
SQL
    cat >"$CONFIG" <<TOML
[catalog]
source = "$PG_URL"
query = """
SELECT p.vendor, p.description, avg(r.rating) AS avg_rating, count(r.*) AS review_count
FROM products p LEFT JOIN reviews r ON r.item_id = p.id
WHERE p.id = \$1 GROUP BY p.id"""
TOML
    SERVE_ARGS=(--data-dir "$DATA" --config "$CONFIG")
    serve "${SERVE_ARGS[@]}"
    bench "items via postgres zipf=$ZIPF cache=off (source)" --scenario items --no-cache
    stop_server
    serve "${SERVE_ARGS[@]}"
    bench "items via postgres zipf=$ZIPF cache=on (first run, from cold)" --scenario items
    bench "items via postgres zipf=$ZIPF cache=on (second run, steady state)" --scenario items --seed 2
    stop_server
fi
