#!/usr/bin/env bash
# Memory per anonymous user: the RSS of an embedded `recd serve` after N distinct users each
# sent one event (security finding 8: state from anonymous writes must stay bounded).
#
#   scripts/bench-users.sh [--users 1000000] [--items 1000] [--batch 10000] [--ghosts]
#
# 1. serves a fresh embedded data dir (4-d vectors) holding --items items;
# 2. posts N events, one per new user ("anon-0", "anon-1", ...), --batch per request, each on
#    one of the items (or, with --ghosts, on an id that is not an item: one new id per event,
#    which must make no popularity entry);
# 3. prints one JSON line: users, events/s while posting, RSS before and after (from
#    /proc/PID/status VmRSS, after a checkpoint settled), the bytes per user, and the size
#    of /metrics and its median scrape time (5 scrapes) at that many users.
#
# RECD_BIN: a prebuilt recd (default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

USERS=1000000 ITEMS=1000 BATCH=10000 GHOSTS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --users) USERS=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        --ghosts) GHOSTS=1; shift ;;
        *) sed -n '2,14p' "$0" >&2; exit 2 ;;
    esac
done

BIN=$(recd_binary)
WORK=$(mktemp -d)
trap 'kill "${PID:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/recd.toml" <<'EOF'
[schema]
vector = { dim = 4, metric = "cosine" }
[schema.fields]
category = "tag"
EOF
PORT=$(free_port)
RECD_LOG=warn "$BIN" serve --config "$WORK/recd.toml" --data-dir "$WORK/data" \
    --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
PID=$!
wait_listening "$PID" "$WORK/serve.log"

python3 - "$PORT" "$PID" "$USERS" "$ITEMS" "$BATCH" "$GHOSTS" <<'EOF'
import json, sys, time, urllib.request

port, pid, users, items, batch, ghosts = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
base = f"http://127.0.0.1:{port}"

def post(path, body, method="POST"):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

for start in range(0, items, 1000):
    post("/v1/items", {"items": [
        {"id": f"i{i}", "vector": [1.0, (i % 7) / 7, (i % 11) / 11, (i % 13) / 13],
         "category": [f"c{i % 20}"]}
        for i in range(start, min(items, start + 1000))]}, method="PUT")
time.sleep(6)  # one checkpoint interval: the item writes settle into redb before the baseline
before = rss_kib()
t = time.time()
for start in range(0, users, batch):
    evs = []
    for u in range(start, min(users, start + batch)):
        item = f"ghost-{u}" if ghosts else f"i{u % items}"
        evs.append({"user_id": f"anon-{u}", "item_id": item, "type": "view"})
    post("/v1/events", {"events": evs})
secs = time.time() - t
time.sleep(6)  # a checkpoint absorbs the log; RSS is read after it
after = rss_kib()
with urllib.request.urlopen(base + "/health") as r:
    health = json.load(r)
# /metrics with that many users: its labels are bounded, so its size must not grow with them.
scrapes = []
for _ in range(5):
    t0 = time.time()
    with urllib.request.urlopen(base + "/metrics") as r:
        body = r.read()
    scrapes.append((time.time() - t0) * 1000)
print(json.dumps({
    "metrics_bytes": len(body), "metrics_scrape_ms_median": round(sorted(scrapes)[2], 2),
    "users": health["users"], "ghost_items": bool(ghosts), "events_per_s": round(users / secs),
    "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
    "bytes_per_user": round((after - before) * 1024 / max(users, 1)),
}))
EOF
