#!/usr/bin/env bash
# Recommend for users who have seen a lot: two builds side by side, each a `recd demo` whose
# users were first given PER_USER events each (their recent lists full, at the default
# `recent_capacity` of 200, and `exclude_seen` hiding all of it), then POST /v1/recommend
# (10 items, uncached, a random one of those users) at c = 32 with wrk, the builds
# alternated for ROUNDS rounds of DURATION seconds.
#
#   A_BIN=old/recd B_BIN=new/recd scripts/bench-recommend-seen.sh \
#       [--items 100000] [--users 2000] [--per-user 250] [--rounds 3] [--duration 10]
#
# A fresh demo's users have seen a handful of items; a shop's regulars have seen hundreds,
# and every one of them is a candidate the recommender must skip. Prints, per build, the
# users' median recent-list length and exclusion count after the warm-up, then one line per
# round: `ROUND BUILD WRK ...` (report.lua's summary). Only the warmed users are asked for.
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=100000 USERS=2000 PER_USER=250 ROUNDS=3 DURATION=10
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --per-user) PER_USER=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
: "${A_BIN:?A_BIN: the first build's recd binary}" "${B_BIN:?B_BIN: the second build's}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

W=$(mktemp -d)
trap 'kill ${PID_A:-} ${PID_B:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
# The demo creates 10,000 users; only the first $USERS get the warm-up and the requests.
USERS_DEMO=10000
for build in A B; do
    bin_var=${build}_BIN
    BIN=${!bin_var} USERS=$USERS_DEMO RECD_LOG=warn start_demo "$build"
done

# PER_USER events for each of the first USERS users, random items, the events.lua mix,
# posted in batches of 500 from two connections per server.
warm() {
    python3 - "$1" "$USERS" "$ITEMS" "$PER_USER" <<'PY'
import http.client, json, random, sys, threading
port, users, items, per_user = map(int, sys.argv[1:])
kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"]
events = [(u, random.randrange(items)) for u in range(users) for _ in range(per_user)]
random.shuffle(events)
batches = [events[i:i + 500] for i in range(0, len(events), 500)]
def send(part):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for b in part:
        body = json.dumps({"events": [{"user_id": f"user-{u}", "item_id": f"sku-{i}",
                                       "type": random.choice(kinds)} for u, i in b]})
        c.request("POST", "/v1/events", body, {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200:
            sys.exit(f"events: HTTP {r.status}")
threads = [threading.Thread(target=send, args=(batches[k::2],)) for k in range(2)]
for t in threads: t.start()
for t in threads: t.join()
PY
}

# Waits until the server's log has nothing left to replay (its checkpoints are done, so
# they do not run during the measurement), at most 5 minutes.
settle() {
    local i
    for ((i = 0; i < 300; i++)); do
        curl -sf "http://127.0.0.1:$1/metrics" | grep -q '^recd_replay_records 0$' && return 0
        sleep 1
    done
    echo "port $1: still replaying after 5 minutes" >&2
}

# The median recent-list length and exclusion count of 50 of the warmed users.
describe() {
    python3 - "$1" "$USERS" <<'PY'
import json, statistics, sys, urllib.request
port, users = int(sys.argv[1]), int(sys.argv[2])
recent, excluded = [], []
for u in range(0, users, max(1, users // 50)):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/users/user-{u}") as r:
        v = json.load(r)
    recent.append(len(v["recent_items"])); excluded.append(v["excluded_items"])
print(f"recent {statistics.median(recent)} excluded {statistics.median(excluded)}")
PY
}

for build in A B; do
    port_var=PORT_$build
    warm "${!port_var}"
    settle "${!port_var}"
    echo "$build after warm-up: $(describe "${!port_var}")"
done

export USERS
for build in A B; do
    port_var=PORT_$build
    wrk -t2 -c32 -d3s -s scripts/wrk/recommend.lua "http://127.0.0.1:${!port_var}" > /dev/null
done
for ((r = 1; r <= ROUNDS; r++)); do
    for build in A B; do
        port_var=PORT_$build
        echo "$r $build $(wrk -t2 -c32 -d"${DURATION}"s -s scripts/wrk/recommend.lua \
            "http://127.0.0.1:${!port_var}" | grep '^WRK')"
    done
done
