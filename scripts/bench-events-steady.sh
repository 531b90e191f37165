#!/usr/bin/env bash
# Events at steady state (issue 18): a `recd demo` (100k items, 10k users) given WARM seconds
# of saturating wrk events first (one event per request, c = 32: every user's recent list
# fills to `recent_capacity`, the checkpoints find a log to absorb), then DURATION seconds
# measured. Configurations alternate for ROUNDS rounds, each round a fresh demo per
# configuration:
#
#   RECD_BIN=target/release/recd scripts/bench-events-steady.sh \
#       [--warm 60] [--duration 20] [--rounds 2] [--recommend [RATE]] [--paced RECS]
#       [--burn CORES] [CONFIG...]
#
# A CONFIG is `label:VAR=value,VAR=value` (environment of the server, e.g. a config key as
# RECD_EMBEDDED__CHECKPOINT_SECONDS=100000), or `label:` for the defaults; with none, the
# defaults alone. Set `label:BIN=/path/to/recd` to give one configuration another build, and
# `label:REDIS=1` to serve it from the Redis backend (a fresh scripts/redis.sh instance per run:
# the issue's ratio against Redis, at the same steady state, in the same rotation).
# Prints one line per run: the measured window's wrk summary (report.lua: WRK requests errors
# seconds p50_us p99_us max_us), the p99 of the window's event -> visible time inside the server
# (recd_event_visible_duration_seconds, the issue's second target), then each thread's CPU over
# the window in % of a core (workers, checkpoint and catch-up, log, fsync), the checkpoints of
# the whole run, khugepaged's collapses during the window (machine-wide), and the server's
# memory in huge pages and its resident memory at the window's end.
# The first 40 s of a fresh demo are not a steady state (BENCHMARKS.md, session 32).
# With --recommend [RATE], each run then measures recommend too (wrk, c = 32, uncached,
# scripts/wrk/recommend.lua): DURATION seconds alone and DURATION seconds beside RATE events/s
# (default 2000; scripts/wrk/events.lua paced on 64 connections), the order alternating by
# round: what the users' steady state costs the reads, and the events beside them. --paced RECS
# offers recommend at RECS requests/s instead of as fast as it answers (pace.lua): below
# saturation, where "unchanged beside the events" can hold (at saturation the events' own CPU
# is taken from the reads).
# --burn CORES (with --recommend) adds a third recommend run each round, beside a process that
# burns CORES of one core in 100 us bursts and shares nothing else with recd: set to what the
# events beside recommend cost (server and client), it tells their CPU from any other effect.
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

ITEMS=100000 USERS=10000 WARM=60 DURATION=20 ROUNDS=2 RECOMMEND=0 PACED="" BURN=""
CONFIGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --recommend)
            RECOMMEND=2000
            shift
            case "${1:-}" in [0-9]*) RECOMMEND=$1; shift ;; esac ;;
        --paced) PACED=$2; shift 2 ;;
        --burn) BURN=$2; shift 2 ;;
        --warm) WARM=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --*) echo "unknown flag $1" >&2; exit 2 ;;
        *) CONFIGS+=("$1"); shift ;;
    esac
done
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=("default:")
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
DEFAULT_BIN=$(recd_binary)

W=$(mktemp -d)
REDIS_PORT=""
stop_redis() {
    [ -z "$REDIS_PORT" ] || scripts/redis.sh stop "$REDIS_PORT" > /dev/null 2>&1 || true
    REDIS_PORT=""
}
trap 'kill ${PID_run:-} 2>/dev/null || true; wait 2>/dev/null || true; stop_redis; rm -rf "$W"' EXIT

events() { # events SECONDS PORT
    USERS=$USERS ITEMS=$ITEMS wrk -t2 -c32 -d"$1"s -s scripts/wrk/events.lua --latency \
        "http://127.0.0.1:$2" | grep '^WRK'
}

recommends() { # recommends SECONDS PORT
    RATE=$PACED CONNECTIONS=32 USERS=$USERS ITEMS=$ITEMS wrk -t2 -c32 -d"$1"s \
        -s scripts/wrk/recommend.lua --latency "http://127.0.0.1:$2" | grep '^WRK'
}

# settle PORT: waits (at most 90 s) until the server's checkpoints have stopped, i.e. their
# count has not moved over three scrapes 2.5 s apart (checkpoint_seconds is 5): the
# saturating events leave a log behind for the checkpoints to absorb, which would otherwise
# land on whichever recommend window comes first (BENCHMARKS.md, session 38).
settle() {
    local last="" same=0 n i
    for ((i = 0; i < 36 && same < 3; i++)); do
        sleep 2.5
        n=$(curl -sf "127.0.0.1:$1/metrics" \
            | awk '/^recd_checkpoint_duration_seconds_count/ {print $2}') || n=unknown
        if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; last=$n; fi
    done
}

# python3 -c "$BURN_PY" FRACTION SECONDS: takes FRACTION of one core for SECONDS, in 100 us
# bursts, and shares nothing else with recd (the control for what the events' CPU alone costs
# recommend).
BURN_PY='
import sys, time
frac, secs = float(sys.argv[1]), float(sys.argv[2])
end, burst = time.perf_counter() + secs, 100e-6
while time.perf_counter() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < burst:
        pass
    time.sleep(burst * (1 - frac) / frac)
'

# recommend_runs ROUND PORT: recommend alone and beside $RECOMMEND events/s (and, with
# --burn, beside a CPU load of $BURN core), one line each.
recommend_runs() {
    local order="alone beside" r side line cpu0
    [ $(($1 % 2)) = 0 ] && order="beside alone"
    [ -z "$BURN" ] || order="$order burn"
    for r in $order; do
        case "$r" in
        alone)
            echo "  recommend alone: $(recommends "$DURATION" "$2")" ;;
        beside)
            RATE=$RECOMMEND CONNECTIONS=64 USERS=$USERS ITEMS=$ITEMS wrk -t1 -c64 \
                -d"$((DURATION + 2))"s -s scripts/wrk/events.lua "http://127.0.0.1:$2" \
                | grep '^WRK' > "$W/side" &
            side=$!
            line=$(recommends "$DURATION" "$2")
            wait $side
            echo "  recommend beside $RECOMMEND events/s: $line | events: $(cat "$W/side")" ;;
        burn)
            python3 -c "$BURN_PY" "$BURN" "$((DURATION + 2))" &
            side=$!
            cpu0=$(awk '{print $14 + $15}' "/proc/$side/stat")
            line=$(recommends "$DURATION" "$2")
            cpu0=$(awk -v c="$cpu0" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" \
                '{printf "%.2f", ($14 + $15 - c) / hz / d}' "/proc/$side/stat")
            wait $side
            echo "  recommend beside a CPU load of $BURN core: $line | the load took $cpu0 core" ;;
        esac
    done
}

# Each thread name's CPU ticks (user + system) so far, one `name ticks` per line.
thread_ticks() {
    for t in /proc/"$1"/task/*; do
        echo "$(tr ' ' _ < "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}

# khugepaged's collapses so far, machine-wide: each one holds the collapsed process's
# mmap_lock for writing, and the page faults of all its threads wait (BENCHMARKS, session 34).
thp_collapses() {
    awk '/^thp_collapse_alloc / {print $2}' /proc/vmstat
}

echo "# load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for ((round = 1; round <= ROUNDS; round++)); do
    for config in "${CONFIGS[@]}"; do
        label=${config%%:*}
        settings=${config#*:}
        BIN=$DEFAULT_BIN
        envs=(RECD_LOG=warn)
        demo_args=()
        IFS=, read -ra pairs <<< "$settings"
        for kv in "${pairs[@]}"; do
            case "$kv" in
                BIN=*) BIN=${kv#BIN=} ;;
                REDIS=1)
                    url=$(scripts/redis.sh start)
                    REDIS_PORT=${url##*:}
                    demo_args=(--backend redis --redis-url "$url")
                    # Loading 100k items into Redis takes a while on a busy machine.
                    envs+=(RECD_REDIS__OPERATION_TIMEOUT_MS=120000
                        RECD_REDIS__RESPONSE_TIMEOUT_MS=60000) ;;
                ?*) envs+=("$kv") ;;
            esac
        done
        rm -rf "$W/run" "$W/run.log"
        for kv in "${envs[@]}"; do export "${kv?}"; done
        start_demo run "${demo_args[@]}"
        for kv in "${envs[@]}"; do unset "${kv%%=*}"; done
        events "$WARM" "$PORT_run" > /dev/null
        thread_ticks "$PID_run" > "$W/before"
        curl -sf "127.0.0.1:$PORT_run/metrics" > "$W/metrics-before"
        collapses_before=$(thp_collapses)
        wrk_line=$(events "$DURATION" "$PORT_run")
        collapses=$(( $(thp_collapses) - collapses_before ))
        thread_ticks "$PID_run" > "$W/after"
        curl -sf "127.0.0.1:$PORT_run/metrics" > "$W/metrics-after"
        visible=$(visible_p99 "$W/metrics-after" "$W/metrics-before")
        huge_mb=$(awk '/^AnonHugePages/ {printf "%d", $2 / 1024}' "/proc/$PID_run/smaps_rollup")
        rss_mb=$(awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$PID_run/status")
        cpu=$(join "$W/before" "$W/after" | awk -v d="$DURATION" -v hz="$(getconf CLK_TCK)" \
            '$1 ~ /tokio|checkpoint|catchup|recd-log|fsync/ {printf "%s %.1f%%  ", $1, 100 * ($3 - $2) / hz / d}')
        checkpoints=$(awk '
            /^recd_checkpoint_duration_seconds_count/ {n = $2}
            /^recd_checkpoint_duration_seconds_sum/ {s = $2}
            /^recd_checkpoint_handovers_total\{kind="catch_up"\}/ {c = $2}
            END {printf "checkpoints %d (catch-up %d), %.1f s", n, c, s}' "$W/metrics-after")
        echo "round $round $label: $wrk_line | visible p99 $visible ms | $cpu| $checkpoints | thp: $collapses collapses (machine), $huge_mb MB huge | rss $rss_mb MB"
        [ "$RECOMMEND" = 0 ] || { settle "$PORT_run"; recommend_runs "$round" "$PORT_run"; }
        kill "$PID_run"
        wait "$PID_run" 2>/dev/null || true
        stop_redis
    done
done
