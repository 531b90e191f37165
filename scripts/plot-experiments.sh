#!/usr/bin/env bash
# Runs the experiment simulations (crates/recd-core/examples/experiment_sim.rs, a debug
# build: under a minute) and draws docs/bandit-regret.png and docs/interleaving-vs-ab.png
# (docs/experiments.md).
#
#   scripts/plot-experiments.sh
#
# The CSVs and the simulations' notes (stderr) go to target/experiments/. Env: VENV (default
# /tmp/plot-experiments-venv, a throwaway venv with matplotlib, made if missing), OUT (where
# the PNGs go, default docs/).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-/tmp/plot-experiments-venv}"
OUT="${OUT:-$ROOT/docs}"
DATA="${CARGO_TARGET_DIR:-$ROOT/target}/experiments"
mkdir -p "$DATA" "$OUT"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q matplotlib
fi

cd "$ROOT"
cargo build -q -p recd-core --example experiment_sim
for which in bandit interleaving; do
  cargo run -q -p recd-core --example experiment_sim -- --which "$which" \
    >"$DATA/$which.csv" 2>"$DATA/$which.log"
  cat "$DATA/$which.log" "$DATA/$which.csv"
  echo
done

"$VENV/bin/python" "$ROOT/scripts/plot-experiments.py" --bandit "$DATA/bandit.csv" \
  --interleaving "$DATA/interleaving.csv" --out "$OUT"
ls -l "$OUT/bandit-regret.png" "$OUT/interleaving-vs-ab.png"
