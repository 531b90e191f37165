#!/usr/bin/env bash
# New items (issue 15): items first seen in the test period of a time cutoff, ranked with the
# item fold-in, the content map, both, or neither (`recd eval --new-items`), on
# ml-latest-small (content: genres and titles) and on the synthetic shop (content: category).
#
#   scripts/bench-newitems.sh [--out DIR]
#
# RECD_BIN (default target/release/recd), DATA (default ../shared/data/ml-latest-small),
# SHOP_BIN (the shop_sessions example, default target/release/examples/shop_sessions).
set -euo pipefail
RECD_BIN=${RECD_BIN:-target/release/recd}
SHOP_BIN=${SHOP_BIN:-target/release/examples/shop_sessions}
DATA=${DATA:-../shared/data/ml-latest-small}
OUT=/tmp/bench-newitems
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) bin: $RECD_BIN"
"$SHOP_BIN" --out "$OUT/shop.csv" --items-out "$OUT/shop-items.jsonl"
"$RECD_BIN" eval --new-items --interactions "$DATA" --json > "$OUT/ml.json"
"$RECD_BIN" eval --new-items --interactions "$OUT/shop.csv" --items "$OUT/shop-items.jsonl" \
  --json > "$OUT/shop.json"
python3 - "$OUT/ml.json" "$OUT/shop.json" <<'PY'
import json, sys
print("| data | new items (with content) | new-item events | arm | new HR@10 | new NDCG@10 | trained HR@10 | placed |")
print("|---|---|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    d = json.load(open(f)); r = d['new_items']
    for arm, a in r['arms']:
        print("| %s | %d (%d) | %d | %s | %.4f | %.4f | %.4f | %d |" % (
            d['dataset'], r['new_items'], r['new_items_with_content'],
            a['new_items']['events'], arm, a['new_items']['hit_rate'], a['new_items']['ndcg'],
            a['trained_items']['hit_rate'], a['placed']))
PY
echo "# done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
