#!/usr/bin/env bash
# Soak: a long mixed load on one server — recommend and events from an endless stream of
# new users (`recd bench --scenario mixed --ids range` over 10 million user ids), plus item
# upserts (a batch of 20 every second over a pool of 6,000 soak items: new ones for the
# first five minutes, then updates, so that the catalogue stops growing as a real one
# would; a catalogue that grows without end grows RSS by design) — with the server's RSS and each minute's
# throughput and p99 recorded, then plotted (RSS and p99 over time). User state expires
# after `--ttl` seconds without a write (`model.session.ttl_seconds`, 30 days by default;
# shortened here so that the run covers several expiry cycles): RSS must flatten once
# users expire as fast as they arrive, and p99 must not drift upward.
#
#   scripts/soak.sh [--minutes 30] [--concurrency 8] [--ttl 300] [--out docs/soak.png]
#
# The concurrency sets the load: measure the peak first (`recd bench --concurrency 32`) and
# pick a closed-loop concurrency that gives about 70 % of it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

MINUTES=30 CONC=8 TTL=300 OUT=docs/soak.png ITEMS=100000 USERS=10000
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --ttl) TTL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) sed -n '2,14p' "$0" >&2; exit 2 ;;
    esac
done
BIN=$(recd_binary)
W=$(mktemp -d)
PID="" UPS=""
trap '[ -n "$UPS" ] && kill $UPS 2>/dev/null; [ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$W"' EXIT
export RECD_LOG=warn
PORT=$(free_port)
RECD_MODEL__SESSION__TTL_SECONDS=$TTL "$BIN" demo --data-dir "$W/data" --items "$ITEMS" \
    --users "$USERS" --seed 42 --listen "127.0.0.1:$PORT" > "$W/log" 2>&1 &
PID=$!
wait_listening $PID "$W/log"
# Item upserts: 20 new items a second, in one batch.
python3 - "$PORT" > "$W/upserts.log" 2>&1 <<'PY' &
import json, random, sys, time, urllib.request
port, n = sys.argv[1], 0
rnd = random.Random(7)
while True:
    items = []
    for _ in range(20):
        items.append({"id": f"soak-{n % 6000}", "category": [f"c{rnd.randrange(20)}"], "brand": ["soak"],
                      "price": round(rnd.uniform(1, 500), 2), "in_stock": True, "popularity": 0,
                      "title": f"soak item {n % 6000} v{n // 6000}", "vector": [rnd.gauss(0, 1) for _ in range(64)]})
        n += 1
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/items", method="PUT",
                                 data=json.dumps({"items": items}).encode(),
                                 headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except Exception as e:  # counted, not fatal: the soak measures the server
        print("upsert failed:", e, flush=True)
    time.sleep(1)
PY
UPS=$!
# The peak of the same mix (c = 32, 20 s, upserts running): each minute's share of it is
# recorded, so the run shows how close to the intended ~70 % the chosen concurrency came.
PEAK=$("$BIN" bench --target "http://127.0.0.1:$PORT" --scenario mixed --ids range \
    --users 10000000 --items "$ITEMS" --concurrency 32 --duration 20 --no-cache --seed 999 \
    --json 2>/dev/null | grep '^{' | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"]))')
echo "peak (c = 32): $PEAK req/s; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "minute,rss_mib,rps,share_of_peak,p50_ms,p99_ms,errors,load1" > "$W/soak.csv"
for m in $(seq "$MINUTES"); do
    "$BIN" bench --target "http://127.0.0.1:$PORT" --scenario mixed --ids range \
        --users 10000000 --items "$ITEMS" --concurrency "$CONC" --duration 59 --warmup 0 \
        --no-cache --seed "$m" --json 2>/dev/null | grep '^{' > "$W/m.json" || true
    RSS=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
    LOAD=$(cut -d' ' -f1 /proc/loadavg)
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
row = [sys.argv[2], sys.argv[3], "%.0f" % r["rps"], "%.2f" % (r["rps"] / float(sys.argv[4])),
       l["p50"], l["p99"], r["errors"], sys.argv[5]]
print(",".join(str(v) for v in row))' "$W/m.json" "$m" "$RSS" "$PEAK" "$LOAD" | tee -a "$W/soak.csv"
done
echo "upsert failures: $(grep -c 'upsert failed' "$W/upserts.log" || true)"
cp "$W/soak.csv" "${OUT%.png}.csv"
python3 -m venv "$W/venv" && "$W/venv/bin/pip" install -q matplotlib==3.9.2
"$W/venv/bin/python" - "${OUT%.png}.csv" "$OUT" "$TTL" "$CONC" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
m = [int(r["minute"]) for r in rows]
fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
a.plot(m, [float(r["rss_mib"]) for r in rows], marker="o")
a.set_ylabel("RSS (MiB)")
a.set_ylim(bottom=0)
a.set_title(f"recd soak: mixed load from new users, c = {sys.argv[4]}, user TTL {sys.argv[3]} s")
b.plot(m, [float(r["p99_ms"]) for r in rows], marker="o", label="p99")
b.plot(m, [float(r["p50_ms"]) for r in rows], marker=".", label="p50")
b.set_ylabel("latency (ms)")
b.set_ylim(bottom=0)
b.set_xlabel("minute")
b.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=80)
PY
echo "plot: $OUT, data: ${OUT%.png}.csv"
