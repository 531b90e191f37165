#!/usr/bin/env bash
# The learned ranker's serving cost: recommend req/s and p99 with a strategy that scores
# with the learned ranker vs the fixed blend, on one server, interleaved rounds, the same
# candidates (ranking.candidates = 100, plus 50 popular), caches bypassed.
#
#   scripts/bench-ranker.sh [RECD_BINARY] [ROUNDS] [SECONDS]
#
# Builds a simulated shop (recd features simulate), trains a ranker on its impression log
# (recd train-ranker), serves it, and prints one line per round and strategy.
set -euo pipefail
. "$(dirname "$0")/lib/bench-common.sh"
RECD=${1:-target/release/recd}
ROUNDS=${2:-3}
SECS=${3:-10}
DIR=$(mktemp -d /tmp/recd-bench-ranker.XXXXXX)
SERVER=""
# Set before anything can fail, so that a failed start leaves no temp dir behind.
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=${PORT:-18431}
cat > "$DIR/recd.toml" <<TOML
data_dir = "$DIR/data"
listen = "127.0.0.1:$PORT"
[ranking]
candidates = 100
[features]
enabled = true
impression_log = "impressions.jsonl"
[cache]
enabled = false
[strategies.learned]
ranking = { ranker = "latest" }
TOML
# Its summary line; all of its output when it fails (a grep alone hid the error).
if ! "$RECD" features simulate --config "$DIR/recd.toml" --users 2000 --items 5000 --days 3 \
    > "$DIR/simulate.log" 2>&1; then
  cat "$DIR/simulate.log" >&2
  exit 1
fi
grep '^recd:' "$DIR/simulate.log"
"$RECD" train-ranker --config "$DIR/recd.toml" 2>/dev/null | head -4
"$RECD" serve --config "$DIR/recd.toml" > "$DIR/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do grep -q 'recd listening' "$DIR/serve.log" && break; sleep 0.2; done
# The learned strategy must really score with the ranker (a missing ranker falls back to the
# blend, which would make the comparison meaningless).
SCORER=$(curl -s "127.0.0.1:$PORT/v1/recommend" -H 'content-type: application/json' \
  -d '{"user_id":"u1","count":10,"strategy":"learned","explain":true,"use_cache":false}' |
  grep -o '"scorer":"[a-z]*"' | head -1)
echo "learned strategy: $SCORER"
[ "$SCORER" = '"scorer":"learned"' ] || { echo "the learned strategy does not score with the ranker" >&2; exit 1; }
echo "uptime: $(uptime)"
# The recommend requests the server counted so far.
recommends() {
  curl -s "127.0.0.1:$PORT/metrics" |
    awk '/^recd_http_requests_total\{/ && /path="\/v1\/recommend"/ { n += $NF } END { print n + 0 }'
}
for round in $(seq "$ROUNDS"); do
  for strategy in default learned; do
    cpu0=$(cpu_seconds "$SERVER"); req0=$(recommends)
    out=$("$RECD" bench --target "127.0.0.1:$PORT" --concurrency 16 --duration "$SECS" --warmup 2 \
      --users 2000 --user-prefix u --items 5000 --item-prefix i --ids range --no-cache \
      --strategy "$strategy" --json)
    cpu1=$(cpu_seconds "$SERVER"); req1=$(recommends)
    per=$(awk -v c="$cpu0" -v C="$cpu1" -v r="$req0" -v R="$req1" \
      'BEGIN { if (R > r) printf "%.1f", (C - c) * 1e6 / (R - r); else print "n/a" }')
    echo "round $round $strategy server_cpu_us_per_request=$per load=$(cut -d' ' -f1-3 /proc/loadavg) $out"
  done
done
