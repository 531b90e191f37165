#!/usr/bin/env bash
# The real-time update rules on ml-latest-small (issue 15): choose the fold-in's share of the
# query on validation splits cut from each train half, then replay the test halves.
#
#   scripts/bench-foldin.sh [--shares "0.25 0.5 0.75 1"] [--out DIR]
#
# RECD_BIN (default target/release/recd), DATA (default ../shared/data/ml-latest-small).
# Step 1 writes each split's train half (random / time / leave-last-out, seed 42); step 2
# evaluates every share on a split of that train half by the same method (the validation
# split: no test event is ever seen); step 3 runs `recd eval` on the full data set with
# the share given by SHARE (default: the last one passed; pick it from step 2's table).
# Every figure is a replay HR@10 from `recd eval --json`.
set -euo pipefail
RECD_BIN=${RECD_BIN:-target/release/recd}
DATA=${DATA:-../shared/data/ml-latest-small}
SHARES="0.25 0.5 0.75 1"
OUT=/tmp/bench-foldin
while [ $# -gt 0 ]; do
  case "$1" in
    --shares) SHARES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
SPLITS="random time leave-last-out"
mkdir -p "$OUT"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) bin: $RECD_BIN"
hr() { # file arm
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.4f' % d['replay'][sys.argv[2]]['hit_rate'])" "$1" "$2"
}
for sp in $SPLITS; do
  "$RECD_BIN" eval --interactions "$DATA" --split "$sp" --no-replay --json \
    --write-split "$OUT/split-$sp" > /dev/null 2> "$OUT/write-$sp.err"
done
echo "## validation (a $SPLITS split of each train half): replay HR@10"
echo "| split | share | batch | batch_pipeline | realtime_decayed_average | realtime_fold_in | als_fold_in |"
echo "|---|---|---|---|---|---|---|"
for sp in $SPLITS; do
  for share in $SHARES; do
    f="$OUT/val-$sp-$share.json"
    RECD_MODEL__SESSION__FOLD_IN__SHARE=$share "$RECD_BIN" eval \
      --interactions "$OUT/split-$sp/train.csv" --split "$sp" --json > "$f" 2> "$f.err"
    echo "| $sp | $share | $(hr "$f" batch) | $(hr "$f" batch_pipeline) | $(hr "$f" realtime_decayed_average) | $(hr "$f" realtime_fold_in) | $(hr "$f" als_fold_in) |"
  done
done
SHARE=${SHARE:-${SHARES##* }}
echo "## test (share $SHARE): replay HR@10"
echo "| split | batch | batch_pipeline | realtime_decayed_average | realtime_fold_in | als_fold_in | als_realtime | fold_in / batch | fold_in / batch_pipeline |"
echo "|---|---|---|---|---|---|---|---|---|"
for sp in $SPLITS; do
  f="$OUT/test-$sp.json"
  RECD_MODEL__SESSION__FOLD_IN__SHARE=$SHARE "$RECD_BIN" eval \
    --interactions "$DATA" --split "$sp" --json > "$f" 2> "$f.err"
  python3 - "$f" "$sp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r = d['replay']
h = lambda a: r[a]['hit_rate']
print("| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.2fx | %.2fx |" % (
    sys.argv[2], h('batch'), h('batch_pipeline'), h('realtime_decayed_average'),
    h('realtime_fold_in'), h('als_fold_in'), h('als_realtime'),
    h('realtime_fold_in') / h('batch'), h('realtime_fold_in') / h('batch_pipeline')))
PY
done
echo "# done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
