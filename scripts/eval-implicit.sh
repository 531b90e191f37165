#!/usr/bin/env bash
# The `implicit` library's ALS on exactly the splits `recd eval` evaluated: each folder
# SPLITS/NAME holding the train.csv and test.csv of `recd eval --write-split` (what
# scripts/eval-datasets.sh writes under $OUT/split) is read by the als_compare example,
# which exports the train half's confidence matrix c = 1 + alpha·w (recd's event weights,
# summed per user and item); implicit trains on it with the same factors, λ, iterations, CG
# steps and threads (its own alpha = 1: the values are already confidences), and its top-k
# lists are scored by recd's metric code next to recd's ALS trained on the same files.
# One JSON per split: $OUT/implicit/NAME.json (read by eval-datasets.sh's table).
# A benchmark, not a CI test. Usage:
#   scripts/eval-implicit.sh SPLITS_DIR [--factors 64 --iterations 15 --regularization 20 --alpha 0.5 ...]
# Env: OUT (default: the parent of SPLITS_DIR), VENV (default /tmp/recd-bench-venv, shared
#      with bench-als.sh), IMPLICIT_VERSION (0.7.2), ALS_COMPARE (the example's binary;
#      default: built here in release).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh
ROOT=$(pwd)
SPLITS=${1:?usage: scripts/eval-implicit.sh SPLITS_DIR [ALS flags]}
shift
OUT=${OUT:-$(dirname "$SPLITS")}
VENV=${VENV:-/tmp/recd-bench-venv}
IMPLICIT_VERSION=${IMPLICIT_VERSION:-0.7.2}
# recd eval's defaults (recd train's); flags given override them.
PARAMS=(--factors 64 --iterations 15 --regularization 20 --alpha 0.5 --threads 2 --seed 42 --k 10 --runs 1)
PARAMS+=("$@")
implicit_venv
BIN=${ALS_COMPARE:-}
if [ -z "$BIN" ]; then
  cargo build --release -q -p recd-train --example als_compare
  BIN=$ROOT/target/release/examples/als_compare
fi
mkdir -p "$OUT/implicit"
for dir in "$SPLITS"/*/; do
  name=$(basename "$dir")
  [ -f "$dir/train.csv" ] && [ -f "$dir/test.csv" ] || continue
  work="$OUT/implicit/$name"
  mkdir -p "$work"
  echo "eval-implicit: $name" >&2
  "$BIN" export --train "$dir/train.csv" --test "$dir/test.csv" --out "$work" "${PARAMS[@]}" >&2
  OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1 \
  "$VENV/bin/python" - "$work" "$(arg --factors)" "$(arg --iterations)" "$(arg --regularization)" \
    "$(arg --threads)" "$(arg --seed)" "$(arg --k)" <<'PY'
import json, sys, time
import numpy as np
import scipy.sparse as sp
import implicit
from implicit.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k

out, factors, iterations, reg, threads, seed, k = sys.argv[1:]
factors, iterations, threads, seed, k = map(int, (factors, iterations, threads, seed, k))
reg = float(reg)
with open(f"{out}/train.tsv") as f:
    head = f.readline().split()
    n_users, n_items = int(head[2]), int(head[4])
tr = np.loadtxt(f"{out}/train.tsv", comments="#", dtype=np.float64, ndmin=2)
te = np.loadtxt(f"{out}/test.tsv", dtype=np.int64, ndmin=2)
train = sp.csr_matrix((tr[:, 2].astype(np.float32), (tr[:, 0].astype(np.int64), tr[:, 1].astype(np.int64))), shape=(n_users, n_items))
test = sp.csr_matrix((np.ones(len(te), dtype=np.float32), (te[:, 0], te[:, 1])), shape=(n_users, n_items))
# alpha = 1: the exported values are already c = 1 + alpha·w
model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0, iterations=iterations,
                                num_threads=threads, random_state=seed, calculate_training_loss=False)
t = time.perf_counter()
model.fit(train, show_progress=False)
seconds = time.perf_counter() - t
users = np.unique(te[:, 0])
ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
with open(f"{out}/implicit_recs.tsv", "w") as f:
    for u, row in zip(users, ids):
        f.write("\t".join([str(u)] + [str(i) for i in row if i >= 0]) + "\n")
ev = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
json.dump({"implicit_version": implicit.__version__, "fit_seconds": [seconds], "fit_seconds_median": seconds,
           "implicit_eval": {key: float(v) for key, v in ev.items()}}, open(f"{out}/implicit.json", "w"), indent=1)
print(f"implicit {implicit.__version__}: fit {seconds:.3f} s", file=sys.stderr)
PY
  "$BIN" score --train "$dir/train.csv" --test "$dir/test.csv" --out "$work" --json "${PARAMS[@]}" > "$OUT/implicit/$name.json"
  rm -f "$work/train.tsv" "$work/test.tsv" "$work/implicit_recs.tsv"
done
