#!/usr/bin/env bash
# The fold-in's solver and quality (issue 18): `recd eval` on ml-latest-small per split with
# `[model.session.fold_in] solver` = cholesky (exact) and cg at some step counts, one binary,
# one run; prints the replay HR@10 and NDCG@10 of the two fold-in arms (`realtime_fold_in`:
# the serving store and pipeline, `UserState::refold` warm-started per event; `als_fold_in`:
# the fold-in on the model alone) and of `batch` for scale. Everything but the fold-in arms
# is the same in every run of a split (seeded ALS, split and pipeline).
#
#   scripts/bench-foldin-solver.sh [--solvers "cholesky cg:3"] [--splits "random time leave-last-out"]
#                                  [--out DIR]
#
# RECD_BIN (default target/release/recd), DATA (default ../shared/data/ml-latest-small).
# A solver is `cholesky` or `cg:STEPS`; each run sets RECD_MODEL__SESSION__FOLD_IN__SOLVER and
# RECD_MODEL__SESSION__FOLD_IN__CG_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
RECD_BIN=${RECD_BIN:-target/release/recd}
DATA=${DATA:-../shared/data/ml-latest-small}
SOLVERS="cholesky cg:3"
SPLITS="random time leave-last-out"
OUT=/tmp/bench-foldin-solver
while [ $# -gt 0 ]; do
    case "$1" in
        --solvers) SOLVERS=$2; shift 2 ;;
        --splits) SPLITS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) sed -n '2,14p' "$0" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) bin: $RECD_BIN"
for sp in $SPLITS; do
    for s in $SOLVERS; do
        solver=${s%%:*} steps=3
        [ "$solver" != "$s" ] && steps=${s#*:}
        start=$(date +%s)
        RECD_MODEL__SESSION__FOLD_IN__SOLVER=$solver RECD_MODEL__SESSION__FOLD_IN__CG_STEPS=$steps \
            "$RECD_BIN" eval --interactions "$DATA" --split "$sp" --json \
            > "$OUT/$sp-$s.json" 2> "$OUT/$sp-$s.err"
        echo "  $sp $s: $(($(date +%s) - start)) s, load $(cut -d' ' -f1 /proc/loadavg)"
    done
done
python3 - "$OUT" "$SPLITS" "$SOLVERS" <<'EOF'
import json, sys
out, splits, solvers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
arms = ["realtime_fold_in", "als_fold_in"]
print("| split | solver | events | batch HR@10 | " + " | ".join(
    f"{a} HR@10 | {a} NDCG@10" for a in arms) + " |")
print("|---" * (4 + 2 * len(arms)) + "|")
for sp in splits:
    base = None
    for s in solvers:
        r = json.load(open(f"{out}/{sp}-{s}.json"))["replay"]
        row = [sp, s, str(r["realtime_fold_in"]["events"]), "%.4f" % r["batch"]["hit_rate"]]
        for a in arms:
            hr, nd = r[a]["hit_rate"], r[a]["ndcg"]
            cell = "%.4f" % hr
            if base is not None:
                cell += " (%+d hits)" % round((hr - base[a][0]) * r[a]["events"])
            row += [cell, "%.4f" % nd]
        if base is None:
            base = {a: (r[a]["hit_rate"], r[a]["ndcg"]) for a in arms}
        print("| " + " | ".join(row) + " |")
EOF
