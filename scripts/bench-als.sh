#!/usr/bin/env bash
# Peer comparison: recd's implicit ALS vs the `implicit` library on MovieLens latest-small.
# Same split (exported by the Rust example), same confidence matrix, same hyper-parameters,
# same thread count, and implicit's recommendations are scored by recd's metric code.
# A benchmark, not a CI test. Usage:
#   scripts/bench-als.sh [--factors 64 --iterations 15 --regularization R --alpha A --threads 2 ...]
# Env: DATA (default ../shared/data/ml-latest-small from the repo root), OUT (default
# /tmp/recd-als-compare), VENV (default /tmp/recd-bench-venv), IMPLICIT_VERSION (0.7.2).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh
ROOT=$(pwd)
DATA=${DATA:-$ROOT/../shared/data/ml-latest-small}
OUT=${OUT:-/tmp/recd-als-compare}
VENV=${VENV:-/tmp/recd-bench-venv}
IMPLICIT_VERSION=${IMPLICIT_VERSION:-0.7.2}
[ -f "$DATA/ratings.csv" ] || { echo "bench-als: no MovieLens data at $DATA (set DATA=...)" >&2; exit 2; }

# recd's defaults for this comparison; any flag given on the command line overrides them.
PARAMS=(--factors 64 --iterations 15 --regularization 20 --alpha 0.5 --threads 2 --seed 42 --k 10 --runs 5)
PARAMS+=("$@")

implicit_venv

cargo build --release -q -p recd-train --example als_compare
BIN=$ROOT/target/release/examples/als_compare
mkdir -p "$OUT"
"$BIN" export --data "$DATA" --out "$OUT" "${PARAMS[@]}"

# implicit: single-threaded BLAS (implicit parallelises itself), alpha = 1 because the
# exported values are already the confidences c = 1 + alpha * w.
# The fits alternate (implicit, recd, implicit, recd, ...) so that both see the same load
# on a shared machine; each side reports the median of its runs.
RECD_FIT="$BIN fit --data $DATA ${PARAMS[*]} --runs 1" \
OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1 \
"$VENV/bin/python" - "$OUT" "$(arg --factors)" "$(arg --iterations)" "$(arg --regularization)" \
  "$(arg --threads)" "$(arg --seed)" "$(arg --k)" "$(arg --runs)" <<'PY'
import json, os, shlex, subprocess, sys, time
import numpy as np
import scipy.sparse as sp
import implicit
from implicit.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k

out, factors, iterations, reg, threads, seed, k, runs = sys.argv[1:]
factors, iterations, threads, seed, k, runs = map(int, (factors, iterations, threads, seed, k, runs))
reg = float(reg)
with open(f"{out}/train.tsv") as f:
    head = f.readline().split()
    n_users, n_items = int(head[2]), int(head[4])
tr = np.loadtxt(f"{out}/train.tsv", comments="#", dtype=np.float64, ndmin=2)
te = np.loadtxt(f"{out}/test.tsv", dtype=np.int64, ndmin=2)
train = sp.csr_matrix((tr[:, 2].astype(np.float32), (tr[:, 0].astype(np.int64), tr[:, 1].astype(np.int64))), shape=(n_users, n_items))
test = sp.csr_matrix((np.ones(len(te), dtype=np.float32), (te[:, 0], te[:, 1])), shape=(n_users, n_items))
def make():
    return AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0, iterations=iterations,
                                   num_threads=threads, random_state=seed, calculate_training_loss=False)
make().fit(train, show_progress=False)  # warm-up (imports, thread pool)
times, recd_times = [], []
for _ in range(runs):
    model = make()
    t = time.perf_counter()
    model.fit(train, show_progress=False)
    times.append(time.perf_counter() - t)
    out_rs = subprocess.run(shlex.split(os.environ["RECD_FIT"]), check=True, capture_output=True, text=True).stdout
    recd_times.append(float(out_rs.split()[1]))
users = np.unique(te[:, 0])
ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
with open(f"{out}/implicit_recs.tsv", "w") as f:
    for u, row in zip(users, ids):
        f.write("\t".join([str(u)] + [str(i) for i in row if i >= 0]) + "\n")
ev = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
meta = {"implicit_version": implicit.__version__, "fit_seconds": times,
        "fit_seconds_median": sorted(times)[len(times) // 2],
        "recd_fit_seconds": recd_times, "recd_fit_seconds_median": sorted(recd_times)[len(recd_times) // 2],
        "implicit_eval": {key: float(v) for key, v in ev.items()}}
json.dump(meta, open(f"{out}/implicit.json", "w"), indent=1)
print(f"implicit {implicit.__version__}: fit seconds {['%.3f' % t for t in times]}")
print(f"recd (interleaved):  fit seconds {['%.3f' % t for t in recd_times]}")
PY

"$BIN" score --data "$DATA" --out "$OUT" "${PARAMS[@]}"
