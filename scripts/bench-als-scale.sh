#!/usr/bin/env bash
# ALS at scale, recd vs the `implicit` library (issue 15: "ALS speed lead vanishes at scale").
# For each size, a deterministic synthetic power-law matrix (recd_train::synthetic, written by
# the als_scale example) is fitted by both, alternately, with the same confidences, factors,
# regularization, iterations, CG steps and threads; both final losses are computed by
# implicit's own `calculate_loss` on the same matrix. A benchmark, not a CI test. Usage:
#   scripts/bench-als-scale.sh [--sizes "100000 1000000 10000000"] [--runs 3] [--iterations 15]
#                              [--factors 64] [--regularization 20] [--threads 2]
# Env: OUT (default /tmp/recd-als-scale), VENV (default /tmp/recd-bench-venv),
#      ALS_SCALE_BIN (a prebuilt als_scale example; otherwise built here in release).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh
ROOT=$(pwd)
OUT=${OUT:-/tmp/recd-als-scale}
VENV=${VENV:-/tmp/recd-bench-venv}
SIZES="100000 1000000 10000000"
RUNS=3 ITERATIONS=15 FACTORS=64 REG=20 THREADS=2 CG=3
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) SIZES=$2 ;; --runs) RUNS=$2 ;; --iterations) ITERATIONS=$2 ;;
    --factors) FACTORS=$2 ;; --regularization) REG=$2 ;; --threads) THREADS=$2 ;;
    --cg-steps) CG=$2 ;;
    *) echo "bench-als-scale: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done

implicit_venv
BIN=${ALS_SCALE_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -q -p recd-train --example als_scale
  BIN=$ROOT/target/release/examples/als_scale
fi

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# factors $FACTORS, iterations $ITERATIONS, regularization $REG, cg_steps $CG, threads $THREADS, runs $RUNS"
printf '%-10s %-18s %-10s %-10s %-8s %-14s %-14s %s\n' pairs "users x items" implicit_s recd_s ratio implicit_loss recd_loss loss_ratio
for n in $SIZES; do
  dir=$OUT/$n
  [ -f "$dir/meta.json" ] || "$BIN" write --interactions "$n" --out "$dir" --seed 1 2>/dev/null
  RECD_FIT="$BIN fit --dir $dir --factors $FACTORS --iterations $ITERATIONS --regularization $REG --cg-steps $CG --threads $THREADS --seed 42" \
  OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1 \
  "$VENV/bin/python" - "$dir" "$FACTORS" "$ITERATIONS" "$REG" "$THREADS" "$RUNS" "$CG" <<'PY'
import json, os, shlex, subprocess, sys, time
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.cpu._als import calculate_loss

d, factors, iterations, reg, threads, runs, cg = sys.argv[1:]
factors, iterations, threads, runs, cg = map(int, (factors, iterations, threads, runs, cg))
reg = float(reg)
meta = json.load(open(f"{d}/meta.json"))
rows, cols = meta["rows"], meta["cols"]
indptr = np.fromfile(f"{d}/indptr.u64", dtype="<u8").astype(np.int64)
indices = np.fromfile(f"{d}/indices.u32", dtype="<u4").astype(np.int32)
data = np.fromfile(f"{d}/data.f32", dtype="<f4")
# The stored values are the confidences c = 1 + alpha*w; implicit multiplies by its alpha.
cui = sp.csr_matrix((data, indices, indptr), shape=(rows, cols))

imp_t, recd_t = [], []
model = None
for _ in range(runs):
    m = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0,
                                iterations=iterations, use_cg=True,
                                calculate_training_loss=False, num_threads=threads,
                                random_state=42, dtype=np.float32)
    m.cg_steps = cg  # an attribute in implicit 0.7 (default 3), not a constructor argument
    t = time.perf_counter()
    m.fit(cui, show_progress=False)
    imp_t.append(time.perf_counter() - t)
    model = m
    out = subprocess.run(shlex.split(os.environ["RECD_FIT"]), check=True,
                         capture_output=True, text=True).stdout
    recd_t.append(json.loads(out)["seconds"])
imp_loss = calculate_loss(cui, model.user_factors, model.item_factors, reg, num_threads=threads)
x = np.fromfile(f"{d}/recd_user_factors.f32", dtype="<f4").reshape(rows, factors)
y = np.fromfile(f"{d}/recd_item_factors.f32", dtype="<f4").reshape(cols, factors)
recd_loss = calculate_loss(cui, x, y, reg, num_threads=threads)
mi, mr = float(np.median(imp_t)), float(np.median(recd_t))
print(f"{cui.nnz:<10} {f'{rows} x {cols}':<18} {mi:<10.2f} {mr:<10.2f} {mr / mi:<8.3f} "
      f"{imp_loss:<14.6g} {recd_loss:<14.6g} {recd_loss / imp_loss:.4f}", flush=True)
print(f"#   implicit runs {[round(t, 2) for t in imp_t]}, recd runs {[round(t, 2) for t in recd_t]}", flush=True)
PY
done
echo "# done, load $(cut -d' ' -f1-3 /proc/loadavg)"
