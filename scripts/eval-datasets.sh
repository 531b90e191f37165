#!/usr/bin/env bash
# The evaluation table of issue 15 in one run: `recd eval` on MovieLens latest-small (ratings)
# and on the synthetic shop (purchases: examples/shop_sessions, seed 1), each on the random,
# time and leave-last-out splits; offline metrics of popularity, item-kNN, ALS and the
# pipeline, and the online replay (batch-only, frozen and real-time arms).
# A benchmark, not a CI test. Usage:
#   scripts/eval-datasets.sh [--splits "random time leave-last-out"] [--json DIR]
# Env: RECD_BIN (default: target/debug/recd, built here), DATA (default ../shared/data/
#      ml-latest-small from the repo root), OUT (default /tmp/recd-eval-datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${DATA:-$ROOT/../shared/data/ml-latest-small}
OUT=${OUT:-/tmp/recd-eval-datasets}
SPLITS="random time leave-last-out"
JSON=""
while [ $# -gt 0 ]; do
  case $1 in
    --splits) SPLITS=$2 ;; --json) JSON=$2 ;;
    *) echo "eval-datasets: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -f "$DATA/ratings.csv" ] || { echo "eval-datasets: no MovieLens data at $DATA (set DATA=...)" >&2; exit 2; }
BIN=${RECD_BIN:-}
if [ -z "$BIN" ]; then
  cargo build -q -p recd
  BIN=$ROOT/target/debug/recd
fi
mkdir -p "$OUT"
cargo run -q --release -p recd-train --example shop_sessions -- --out "$OUT/shop.csv"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$BIN" --version 2>/dev/null || echo recd)"
for dataset in "$DATA" "$OUT/shop.csv"; do
  for split in $SPLITS; do
    echo
    echo "## $(basename "$dataset"), $split split"
    if [ -n "$JSON" ]; then
      mkdir -p "$JSON"
      "$BIN" eval --interactions "$dataset" --split "$split" --json 2>/dev/null \
        > "$JSON/$(basename "$dataset" .csv)-$split.json"
    fi
    "$BIN" eval --interactions "$dataset" --split "$split" 2>/dev/null
  done
done
echo
echo "# done, load $(cut -d' ' -f1-3 /proc/loadavg)"
