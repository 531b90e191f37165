#!/usr/bin/env bash
# KNN filtered on a few categories through the server, with and without per-category graphs
# (schema `vector.partition_by = "category"`, issue 16): two copies of one `recd demo` catalog
# (--items x 64, seed 42; its categories correlate with the vectors, like shared/bench's
# generator), one served as is, one partitioned. wrk (2 threads, c = --concurrency) sends
# `POST /v1/items/sku-<n>/similar` (scripts/wrk/similar.lua, 10 items) unfiltered and within
# five random categories of fifty (~10 % of the items), alternating servers and filters each
# round. Prints req/s, p50, p99 per run with the machine's load, the medians, the ratios
# (partitioned / one graph for the filter; filtered / unfiltered per server), each server's
# plan counts from /metrics, and the partitioned dir's start times: building the graphs at the
# first start, loading them at the second (seconds to /ready).
#
#   scripts/bench-partitions.sh [--rounds 3] [--duration 8] [--items 100000]
#                               [--concurrency 16] [--quant none|int8] [--recall 200]
#
# --recall N (default 200, 0 = off): recall@10 of both servers' filtered answers for N random
# items against an exact search (numpy in a throwaway venv, over the filter's vectors fetched
# one by one with `GET /v1/items/{id}?include_vector=true`: ~12k requests at 100k, ~120k at 1M).
#
# `apt-get install wrk`. RECD_BIN: a prebuilt binary (else a release build of this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ROUNDS=3 DURATION=8 ITEMS=100000 USERS=1000 CONC=16 QUANT=none RECALL=200
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --quant) QUANT=$2; shift 2 ;;
        --recall) RECALL=$2; shift 2 ;;
        *) sed -n '2,21p' "$0" >&2; exit 2 ;;
    esac
done
command -v wrk > /dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
BIN=$(recd_binary)
W=$(mktemp -d)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null || true; done; rm -rf "$W"' EXIT
export RECD_LOG=info

# The demo's schema, with the quantization asked for and (for `part`) the partitioning.
config() {
    local extra=""
    [ "$QUANT" != none ] && extra=", quantization = \"$QUANT\""
    [ "$1" = part ] && extra="$extra, partition_by = \"category\""
    cat <<EOF
[schema]
vector = { dim = 64, metric = "cosine"$extra }
[schema.fields]
brand = "tag"
category = "tag"
in_stock = "bool"
popularity = "numeric"
price = "numeric"
title = "text"
EOF
}
config plain > "$W/plain.toml"
config part > "$W/part.toml"

t0=$(date +%s.%N)
"$BIN" demo --load-only --config "$W/plain.toml" --data-dir "$W/plain" --items "$ITEMS" \
    --users "$USERS" --seed 42 > "$W/load.log" 2>&1
echo "loaded $ITEMS items in $(echo "$(date +%s.%N) - $t0" | bc) s (load $(cut -d' ' -f1 /proc/loadavg))"
cp -a "$W/plain" "$W/part"

# serve NAME: starts `recd serve` on $W/NAME with $W/NAME.toml; sets PORT_NAME, PID_NAME and
# STARTED (seconds from spawn to the first 200 from /ready).
serve() {
    local name=$1 port pid t
    port=$(free_port)
    t=$(date +%s.%N)
    "$BIN" serve --config "$W/$name.toml" --data-dir "$W/$name" --listen "127.0.0.1:$port" \
        >> "$W/$name.log" 2>&1 &
    pid=$!
    PIDS="$PIDS $pid"
    until curl -sf -o /dev/null "http://127.0.0.1:$port/ready"; do
        kill -0 $pid 2>/dev/null || { cat "$W/$name.log" >&2; exit 1; }
        sleep 0.02
    done
    STARTED=$(echo "$(date +%s.%N) - $t" | bc)
    eval "PORT_$name=$port PID_$name=$pid"
}
stop() {
    local pid
    pid=$(eval "echo \$PID_$1")
    kill -TERM "$pid"
    wait "$pid" || true
}

serve part
echo "partitioned dir, first start (graphs built): $STARTED s to /ready"
grep -h "partition graphs ready" "$W/part.log" | tail -1 | sed 's/^/  /'
stop part
serve part
echo "partitioned dir, second start (graphs loaded): $STARTED s to /ready"
grep -h "partition graphs ready" "$W/part.log" | tail -1 | sed 's/^/  /'
serve plain
echo "plain dir start: $STARTED s to /ready"
du -sh "$W/part/index/partitions" "$W/part/index/hnsw.snapshot" | sed 's/^/  /'

# Five random categories of the catalog (seeded), as one filter, and the share they hold.
FILTER=$(python3 - "$PORT_plain" <<'EOF'
import collections, json, random, sys, urllib.request
port = sys.argv[1]
counts, cursor, seen = collections.Counter(), None, 0
while seen < 20000:
    url = f"http://127.0.0.1:{port}/v1/items?limit=1000" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    for item in page["items"]:
        for c in item.get("category", []):
            counts[c] += 1
    seen += len(page["items"])
    cursor = page.get("next_cursor")
    if not cursor:
        break
cats = sorted(random.Random(16).sample(sorted(counts), 5))
share = sum(counts[c] for c in cats) / seen
print(json.dumps({"category": {"any": cats}}))
print(f"share of the items in the filter: {share:.3f} (sample of {seen})", file=sys.stderr)
EOF
)
echo "filter: $FILTER"

if [ "$RECALL" -gt 0 ]; then
    VENV=${VENV:-/tmp/bench-partitions-venv}
    [ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" -q install numpy; }
    "$VENV/bin/python" - "$PORT_plain" "$PORT_part" "$FILTER" "$ITEMS" "$RECALL" <<'EOF'
import json, random, sys, urllib.parse, urllib.request
import numpy as np
plain, part, flt, items, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def get(port, path):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}"))
def vector(item_id):
    return get(plain, f"/v1/items/{urllib.parse.quote(item_id)}?include_vector=true")["vector"]
ids, cursor, q = [], None, urllib.parse.quote(json.dumps(flt))
while True:
    page = get(plain, f"/v1/items?limit=1000&filter={q}" + (f"&cursor={cursor}" if cursor else ""))
    ids += [it["id"] for it in page["items"]]
    cursor = page.get("next_cursor")
    if not cursor:
        break
m = np.array([vector(i) for i in ids], dtype=np.float32)
m /= np.linalg.norm(m, axis=1, keepdims=True)
found = {plain: 0, part: 0}
wanted = 0
for j in random.Random(24).sample(range(items), n):
    src = f"sku-{j}"
    v = np.array(vector(src), dtype=np.float32)
    order = np.argsort(-(m @ (v / np.linalg.norm(v))))
    truth = [ids[i] for i in order[:11] if ids[i] != src][:10]
    wanted += len(truth)
    for port in found:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/items/{src}/similar",
            data=json.dumps({"count": 10, "filter": flt}).encode(),
            headers={"Content-Type": "application/json"})
        got = {it["id"] for it in json.load(urllib.request.urlopen(req))["items"]}
        found[port] += len(got & set(truth))
print(f"recall@10 against an exact search ({n} items, {len(ids)} in the filter): "
      f"per-category graphs {found[part] / wanted:.4f}, one graph {found[plain] / wanted:.4f}")
EOF
fi

# run LABEL PORT FILTER: 2 s of warm-up, then $DURATION s; appends "LABEL req/s p50 p99".
run() {
    local label=$1 port=$2
    FILTER=$3 ITEMS=$ITEMS wrk -t2 -c"$CONC" -d2s -s scripts/wrk/similar.lua \
        "http://127.0.0.1:$port" > /dev/null
    FILTER=$3 ITEMS=$ITEMS wrk -t2 -c"$CONC" -d"${DURATION}s" -s scripts/wrk/similar.lua \
        "http://127.0.0.1:$port" | grep '^WRK ' > "$W/wrk.txt"
    # WRK requests errors seconds p50_us p99_us max_us
    awk -v l="$label" '$3 > 0 { print "ERRORS", l, $3 > "/dev/stderr" }
        { printf "%s %.1f %.3f %.3f\n", l, $2 / $4, $5 / 1000, $6 / 1000 }' "$W/wrk.txt" \
        >> "$W/results"
    tail -1 "$W/results" | awk -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        '{printf "  %-18s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  load %s\n", $1, $2, $3, $4, load}'
}

echo "== POST /v1/items/{id}/similar, 10 items, c = $CONC, ${DURATION}s per run, quantization $QUANT"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then order="part plain"; else order="plain part"; fi
    for name in $order; do
        port=$(eval "echo \$PORT_$name")
        run "$name-cat5" "$port" "$FILTER"
        run "$name-none" "$port" ""
    done
done

median() { grep "^$1 " "$W/results" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "== medians (req/s)"
for l in part-cat5 part-none plain-cat5 plain-none; do
    eval "M_${l//-/_}=$(median $l)"
    printf "  %-12s %8.0f\n" "$l" "$(eval "echo \$M_${l//-/_}")"
done
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "== ratios"
echo "  filtered, partitioned / one graph:   $(ratio "$M_part_cat5" "$M_plain_cat5")x"
echo "  partitioned: filtered / unfiltered:  $(ratio "$M_part_cat5" "$M_part_none")x"
echo "  one graph:   filtered / unfiltered:  $(ratio "$M_plain_cat5" "$M_plain_none")x"
echo "  unfiltered, partitioned / one graph: $(ratio "$M_part_none" "$M_plain_none")x"
echo "== plans (recd_index_plan_total)"
for name in part plain; do
    port=$(eval "echo \$PORT_$name")
    curl -s "http://127.0.0.1:$port/metrics" | grep '^recd_index_plan_total' | sed "s/^/  $name: /"
done
