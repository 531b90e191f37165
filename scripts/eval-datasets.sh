#!/usr/bin/env bash
# The evaluation table of issue 15 in one run: `recd eval --json` on MovieLens latest-small
# (ratings) and on the synthetic shop (purchases: examples/shop_sessions, seed 1), each on the
# random, time and leave-last-out splits; offline metrics of popularity, item-kNN, ALS,
# item-to-item transitions and the pipeline (without and with its transitions candidate
# source), and the online replay (batch-only, real-time fold-in and decayed average,
# transitions, the real-time pipeline with the transitions source, ...), rendered as the
# Markdown tables of BENCHMARKS.md ("Evaluation table"). The fold-in's session mix is chosen
# per data set and split on a validation split of the train half (`--session-mix auto`). Each
# split is written (`--write-split`, under $OUT/split) and scripts/eval-implicit.sh runs the
# `implicit` library's ALS on exactly it: the `implicit ALS` rows (skip: --no-implicit).
# --keep reuses the reports already in $OUT/json (an interrupted run goes on where it was).
# A benchmark, not a CI test. Usage:
#   scripts/eval-datasets.sh [--splits "random time leave-last-out"] [--no-implicit] [--parallel]
#                            [--keep] [-- EXTRA recd eval FLAGS]
# Env: RECD_BIN (default: target/release/recd, built here), DATA (default ../shared/data/
#      ml-latest-small from the repo root), OUT (default /tmp/recd-eval-datasets: the JSON
#      reports, the logs and table.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${DATA:-$ROOT/../shared/data/ml-latest-small}
OUT=${OUT:-/tmp/recd-eval-datasets}
SPLITS="random time leave-last-out"
EXTRA=()
IMPLICIT=1
PARALLEL=0
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --splits) SPLITS=$2; shift 2 ;;
    --no-implicit) IMPLICIT=0; shift ;;
    --parallel) PARALLEL=1; shift ;;
    --keep) KEEP=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "eval-datasets: unknown flag $1" >&2; exit 2 ;;
  esac
done
[ -f "$DATA/ratings.csv" ] || { echo "eval-datasets: no MovieLens data at $DATA (set DATA=...)" >&2; exit 2; }
BIN=${RECD_BIN:-}
if [ -z "$BIN" ]; then
  cargo build -q --release -p recd
  BIN=$ROOT/target/release/recd
fi
mkdir -p "$OUT/json"
[ -f "$OUT/shop.csv" ] || cargo run -q --release -p recd-train --example shop_sessions -- --out "$OUT/shop.csv"

START="$(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$BIN" --version 2>/dev/null || echo recd)"
echo "# $START" >&2
run_dataset() {
  local dataset=$1 name split
  name=$(basename "$dataset" .csv)
  for split in $SPLITS; do
    if [ "$KEEP" = 1 ] && [ -s "$OUT/json/$name-$split.json" ]; then continue; fi
    echo "eval-datasets: $name, $split split" >&2
    "$BIN" eval --interactions "$dataset" --split "$split" --json \
      --session-mix auto --write-split "$OUT/split/$name-$split" "${EXTRA[@]}" \
      2> "$OUT/json/$name-$split.log" > "$OUT/json/$name-$split.json"
  done
}
# The two data sets side by side with --parallel (the replays are single-threaded; the
# figures are seeded and do not depend on the load, only the wall times do).
PIDS=()
for dataset in "$DATA" "$OUT/shop.csv"; do
  if [ "$PARALLEL" = 1 ]; then run_dataset "$dataset" & PIDS+=($!); else run_dataset "$dataset"; fi
done
for p in "${PIDS[@]}"; do wait "$p"; done
if [ "$IMPLICIT" = 1 ]; then
  # same ALS settings as recd eval's (its defaults; pass the same flags in EXTRA to both by hand)
  OUT="$OUT" scripts/eval-implicit.sh "$OUT/split"
fi
END="load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$OUT/json" "$START" "$END" "$SPLITS" "$OUT/implicit" > "$OUT/table.md" <<'PY'
import json, os, sys
folder, start, end, splits = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
implicit_dir = sys.argv[5]
def implicit_of(name, split):
    path = os.path.join(implicit_dir, f"{name}-{split}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)
reports = {}
for f in sorted(os.listdir(folder)):
    if f.endswith(".json"):
        with open(os.path.join(folder, f)) as fh:
            r = json.load(fh)
        name, split = f[:-5].rsplit("-", 1) if not f.endswith("leave-last-out.json") else (f[: -len("-leave-last-out.json")], "leave-last-out")
        reports[(name, split)] = r
print(f"Run {start}; at the end {end}.\n")
for name in sorted({n for n, _ in reports}):
    have = [s for s in splits if (name, s) in reports]
    first = reports[(name, have[0])]
    print(f"**{name}** ({first['items']} items; " + ", ".join(
        f"{s}: {reports[(name, s)]['users']} users, {reports[(name, s)]['train_events']} / {reports[(name, s)]['test_events']} events"
        for s in have) + ")\n")
    models = ["popularity", "item_knn", "als", "transitions", "pipeline"]
    models += ["pipeline_transitions"]  # the pipeline with its transitions candidate source
    head = "| model | " + " | ".join(f"{s} NDCG@10 | R@10 | cov." for s in have) + " |"
    print(head)
    print("|---|" + "---:|" * (3 * len(have)))
    for m in models:
        cells = []
        for s in have:
            x = reports[(name, s)]["models"].get(m)
            cells += ["–"] * 3 if x is None else [f"{x['ndcg']:.4f}", f"{x['recall']:.4f}", f"{x['coverage']:.3f}"]
        print(f"| {m} | " + " | ".join(cells) + " |")
    imp = {s: implicit_of(name, s) for s in have}
    if any(imp.values()):
        # implicit and recd's ALS trained by als_compare on the written split (same run)
        for label, key in [("implicit ALS", "implicit"), ("recd ALS (same files)", "recd_als")]:
            cells = []
            for s in have:
                x = imp[s] and imp[s][key]
                cells += ["–"] * 3 if not x else [f"{x['ndcg']:.4f}", f"{x['recall']:.4f}", f"{x['coverage']:.3f}"]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print("| recd ALS / implicit NDCG | " + " | ".join(
            f"{imp[s]['recd_als']['ndcg'] / imp[s]['implicit']['ndcg']:.3f}× | | " if imp[s] and imp[s]["implicit"]["ndcg"] > 0 else "– | | "
            for s in have) + "|")
    pop = {s: reports[(name, s)]["models"]["popularity"]["ndcg"] for s in have}
    for a, b in [("pipeline_transitions", "pipeline")]:
        ms = {s: reports[(name, s)]["models"] for s in have}
        print(f"| {a} / {b} | " + " | ".join(
            f"{ms[s][a]['ndcg'] / ms[s][b]['ndcg']:.2f}× | | " if a in ms[s] and b in ms[s] and ms[s][b]["ndcg"] > 0 else "– | | " for s in have) + "|")
    print("| ALS / popularity | " + " | ".join(
        f"{reports[(name, s)]['models']['als']['ndcg'] / pop[s]:.2f}× | | " if pop[s] > 0 else "– | | " for s in have) + "|")
    print()
    arms = ["popularity", "batch", "batch_pipeline", "realtime_fold_in", "realtime_decayed_average",
            "als_fold_in", "als_realtime", "transitions"]
    arms += ["realtime", "realtime_transitions"]  # the configured rule without / with the transitions source
    print("| replay arm | " + " | ".join(f"{s} HR@10" for s in have) + " |")
    print("|---|" + "---:|" * len(have))
    for a in arms:
        cells = []
        for s in have:
            r = reports[(name, s)]["replay"].get(a)
            cells.append("–" if r is None else f"{r['hit_rate']:.4f}")
        print(f"| {a} | " + " | ".join(cells) + " |")
    pairs = [("realtime_fold_in", "batch"), ("realtime_decayed_average", "batch"), ("transitions", "batch")]
    pairs += [("realtime_transitions", "realtime")]
    for a, b in pairs:
        cells = []
        for s in have:
            rep = reports[(name, s)]["replay"]
            cells.append(f"{rep[a]['hit_rate'] / rep[b]['hit_rate']:.2f}×" if a in rep and b in rep and rep[b]["hit_rate"] > 0 else "–")
        print(f"| {a} / {b} | " + " | ".join(cells) + " |")
    mixes = [reports[(name, s)].get("session_mix") for s in have]
    if any(mixes):
        print("| session mix (validation) | " + " | ".join(
            "–" if m is None else f"{m['chosen']} (" + ", ".join(f"{t['mix']}: {t['hit_rate']:.4f}" for t in m["trials"]) + ")"
            for m in mixes) + " |")
    print()
PY
cat "$OUT/table.md"
