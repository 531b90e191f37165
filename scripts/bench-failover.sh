#!/usr/bin/env bash
# A master killed under event load on a Redis Cluster (issue 17): seconds of 503s, and
# acknowledged events lost by the failover, without and with `[redis] wait_replicas = 1`;
# also the event rate before the kill (the cost of WAIT). Each run gets a fresh local cluster
# of 3 masters with 2 replicas each (with one replica, a promoted master has none left and
# WAIT 1 refuses its writes until one is added), and kills master 0 after --before seconds.
#
#   scripts/bench-failover.sh [--rounds 2] [--writers 16] [--before 10] [--after 15]
#
# Environment: RECD_FAILOVER_BIN (a release build of the cluster_failover example; else
# built). Prints one JSON line per run (crates/recd-store/examples/cluster_failover.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=2 WRITERS=16 BEFORE=10 AFTER=15
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --writers) WRITERS=$2; shift 2 ;;
        --before) BEFORE=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
if [ -n "${RECD_FAILOVER_BIN:-}" ]; then
    BIN=$RECD_FAILOVER_BIN
else
    cargo build --release -q -p recd-store --example cluster_failover >&2
    BIN="${CARGO_TARGET_DIR:-target}/release/examples/cluster_failover"
fi
CLUSTER=""
trap '[ -z "$CLUSTER" ] || scripts/redis.sh cluster stop "$CLUSTER" >/dev/null 2>&1 || true' EXIT
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')" >&2
for ((r = 1; r <= ROUNDS; r++)); do
    for wait in 0 1; do
        CLUSTER=$(scripts/redis.sh cluster start --masters 3 --replicas 2 --owner $$)
        first=${CLUSTER#redis+cluster://}
        first=${first%%,*}
        "$BIN" --url "$CLUSTER" --kill-port "${first##*:}" --wait "$wait" --writers "$WRITERS" \
            --before "$BEFORE" --after "$AFTER"
        scripts/redis.sh cluster stop "$CLUSTER" >/dev/null
        CLUSTER=""
    done
done
