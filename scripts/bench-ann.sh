#!/usr/bin/env bash
# Peer comparison for recd-index: hnswlib (+ a numpy exact scan) and recd's knn_latency
# example on the SAME shared catalog files, one query at a time, in one run; prints a
# side-by-side table (QPS, p50, p99, recall).
#
#   scripts/bench-ann.sh                  # 100k x 64, 1000 queries, k 10 and 50
#   NQ=2000 EF=32,64,128 ROUNDS=3 scripts/bench-ann.sh
#   N=1000000 CATALOG=/tmp/catalog-1m EF=64,128,256,512 scripts/bench-ann.sh
#
# Env: SHARED (default: ../shared next to the repo, else /work/shared), CATALOG (default
# /tmp/catalog-100k), N (items generated when CATALOG has none; default 100000), VENV
# (default /tmp/bench-ann-venv), NQ, K, EF, ROUNDS (engines run alternately ROUNDS times;
# the table shows the median QPS/p50/p99 per row), QUANT (recd's quantization modes,
# default none,int8; `recd-int8` rows), STRATEGIES (recd's, default auto,graph,exact),
# FILTERS (default none,cat10,brand1), MIN_RECALL (for the ratio table, default 0.95),
# HNSW_CACHE (hnswlib's graph saved/loaded there, see bench-ann.py --index-cache), SNAPSHOT
# (recd's graph saved/loaded there, knn_latency --snapshot), EXAMPLE (a prebuilt knn_latency
# binary instead of building one), BUILD_THREADS (threads for each engine's build, default 2),
# BY_CATEGORY (1: recd's cat10 also through per-category graphs, see below).
#
# With both HNSW_CACHE and SNAPSHOT set and either graph missing, the two graphs are built
# first AT THE SAME TIME, each on BUILD_THREADS threads (e.g. BUILD_THREADS=1 on 2 cores), so
# that on a shared machine both builds see the same load; each build's time and the load
# average go to stdout, hnswlib's to HNSW_CACHE.build, both to SNAPSHOT.build. The query rounds load
# the saved graphs:
#   N=1000000 CATALOG=/tmp/catalog-1m BUILD_THREADS=1 HNSW_CACHE=/tmp/1m.hnsw SNAPSHOT=/tmp/1m.snap \
#     EF=64,128,256,512 scripts/bench-ann.sh
#
# After the full table it prints the ratio table: per filter and k, the best QPS each
# engine reaches at recall >= MIN_RECALL (any ef / plan), and recd's over hnswlib's; then
# each engine's filtered QPS over its own unfiltered QPS (issue 16's >= 0.5x at 10 %).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
[ -f "$SHARED/bench/catalog_gen.py" ] || SHARED=/work/shared
CATALOG="${CATALOG:-/tmp/catalog-100k}"
VENV="${VENV:-/tmp/bench-ann-venv}"
NQ="${NQ:-1000}"
K="${K:-10,50}"
EF="${EF:-32,64,128}"
ROUNDS="${ROUNDS:-1}"
N="${N:-100000}"
QUANT="${QUANT:-none,int8}"
STRATEGIES="${STRATEGIES:-auto,graph,exact}"
FILTERS="${FILTERS:-none,cat10,brand1}"
MIN_RECALL="${MIN_RECALL:-0.95}"
BUILD_THREADS="${BUILD_THREADS:-2}"
OUT="$(mktemp -d /tmp/bench-ann.XXXXXX)"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy hnswlib
fi
PY="$VENV/bin/python"

if [ ! -f "$CATALOG/item_vectors.npy" ]; then
  "$PY" "$SHARED/bench/catalog_gen.py" --n "$N" --users 10000 --out "$CATALOG"
fi
# The Rust example reads plain .npy columns (no zip), so split the two filter columns out.
"$PY" - "$CATALOG" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
m = np.load(f"{d}/item_meta.npz")
for col in ("category", "brand"):
    np.save(f"{d}/{col}.npy", m[col].astype("<i8"))
EOF

if [ -z "${EXAMPLE:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p recd-index --example knn_latency)
  EXAMPLE="$ROOT/target/release/examples/knn_latency"
fi
HNSW_ARGS=()
[ -n "${HNSW_CACHE:-}" ] && HNSW_ARGS=(--index-cache "$HNSW_CACHE")
RECD_ARGS=()
[ -n "${SNAPSHOT:-}" ] && RECD_ARGS=(--snapshot "$SNAPSHOT")
# BY_CATEGORY=1: recd also answers cat10 through one graph per category (`per_category` rows,
# what the server does with `vector.partition_by = "category"`); built each round.
[ "${BY_CATEGORY:-0}" = 1 ] && RECD_ARGS+=(--by-category)

echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${HNSW_CACHE:-}" ] && [ -n "${SNAPSHOT:-}" ] && { [ ! -f "$HNSW_CACHE.build" ] || [ ! -f "$SNAPSHOT" ]; }; then
  echo "# building both graphs at the same time, $BUILD_THREADS thread(s) each, load $(cut -d' ' -f1-3 /proc/loadavg)"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$PY" "$ROOT/scripts/bench-ann.py" --dir "$CATALOG" \
    --threads "$BUILD_THREADS" --build-only --index-cache "$HNSW_CACHE" >"$OUT/hnswlib.build" &
  hnsw_pid=$!
  RAYON_NUM_THREADS="$BUILD_THREADS" "$EXAMPLE" --items "$CATALOG/item_vectors.npy" \
    --queries "$CATALOG/user_vectors.npy" --build-only --snapshot "$SNAPSHOT" >"$OUT/recd.build" &
  recd_pid=$!
  wait "$hnsw_pid" "$recd_pid"
  grep -h '^#' "$OUT/hnswlib.build" "$OUT/recd.build" | tee -a "$SNAPSHOT.build"
  echo "# both built, load $(cut -d' ' -f1-3 /proc/loadavg)"
fi
for r in $(seq 1 "$ROUNDS"); do
  echo "# round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$PY" "$ROOT/scripts/bench-ann.py" --dir "$CATALOG" \
    --nq "$NQ" --k "$K" --ef "$EF" --filters "$FILTERS" --threads "$BUILD_THREADS" "${HNSW_ARGS[@]}" | tee "$OUT/hnswlib.$r.tsv" | grep '^#' || true
  RAYON_NUM_THREADS="$BUILD_THREADS" "$EXAMPLE" --items "$CATALOG/item_vectors.npy" \
    --queries "$CATALOG/user_vectors.npy" --category "$CATALOG/category.npy" \
    --brand "$CATALOG/brand.npy" --nq "$NQ" --k "$K" --ef "$EF" \
    --strategies "$STRATEGIES" --filters "$FILTERS" --quant "$QUANT" "${RECD_ARGS[@]}" | tee "$OUT/recd.$r.tsv" | grep '^#' || true
done

echo "# end, load $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$OUT" "$ROUNDS" "$MIN_RECALL" <<'EOF'
import csv, glob, statistics, sys
out, rounds, min_recall = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = {}
for path in sorted(glob.glob(f"{out}/*.tsv")):
    with open(path) as f:
        for r in csv.DictReader((l for l in f if not l.startswith("#")), delimiter="\t"):
            key = (r["filter"], int(r["k"]), r["engine"], r["strategy"], r["ef"])
            rows.setdefault(key, []).append(r)
print(f"\n{'filter':<7}{'k':>3}  {'engine':<10}{'strategy':<9}{'ef':>4}{'QPS':>8}{'p50 us':>9}{'p99 us':>9}{'recall':>8}")
order = {"none": 0, "cat10": 1, "rand10": 2, "brand1": 3}
for key in sorted(rows, key=lambda k: (order.get(k[0], 9), k[1], k[2], k[3], int(k[4]) if k[4] != "-" else 0)):
    rs = rows[key]
    med = lambda c: statistics.median(float(r[c]) for r in rs)
    f, k, eng, strat, ef = key
    print(f"{f:<7}{k:>3}  {eng:<10}{strat:<9}{ef:>4}{med('qps'):>8.0f}{med('p50_us'):>9.0f}{med('p99_us'):>9.0f}{med('recall'):>8.4f}")
print(f"\n(raw TSV in {out}; medians over {rounds} round(s))")

# Ratio table: the fastest row of each engine at recall >= min_recall, per filter and k.
best = {}
for (f, k, eng, strat, ef), rs in rows.items():
    qps = statistics.median(float(r["qps"]) for r in rs)
    rec = statistics.median(float(r["recall"]) for r in rs)
    if eng == "numpy" or rec < min_recall:
        continue
    cur = best.get((f, k, eng))
    if cur is None or qps > cur[0]:
        best[(f, k, eng)] = (qps, rec, f"{strat} ef {ef}")
print(f"\nbest QPS at recall >= {min_recall} (ratio = engine / hnswlib, same run):")
print(f"{'filter':<7}{'k':>3}  {'engine':<10}{'QPS':>8}{'recall':>8}  {'ratio':>6}  row")
for (f, k, eng) in sorted(best, key=lambda x: (order.get(x[0], 9), x[1], x[2])):
    qps, rec, row = best[(f, k, eng)]
    base = best.get((f, k, "hnswlib"))
    ratio = f"{qps / base[0]:.2f}x" if base else "-"
    print(f"{f:<7}{k:>3}  {eng:<10}{qps:>8.0f}{rec:>8.4f}  {ratio:>6}  {row}")

# Each engine against its own unfiltered search (issue 16: a 10 % filter should keep >= 0.5x
# of the engine's unfiltered QPS): best filtered QPS / best unfiltered QPS, same k, same run.
print(f"\nfiltered vs the same engine's unfiltered, best QPS at recall >= {min_recall}:")
print(f"{'filter':<7}{'k':>3}  {'engine':<10}{'QPS':>8}{'none QPS':>9}  {'ratio':>6}")
for (f, k, eng) in sorted(best, key=lambda x: (x[2], x[1], order.get(x[0], 9), x[0])):
    if f == "none":
        continue
    base = best.get(("none", k, eng))
    if base is None:
        continue
    qps = best[(f, k, eng)][0]
    print(f"{f:<7}{k:>3}  {eng:<10}{qps:>8.0f}{base[0]:>9.0f}  {qps / base[0]:>5.2f}x")
EOF
