# Helpers the benchmark scripts share (sourced: `. scripts/lib/bench-common.sh`).

# A TCP port free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening PID LOG: waits for the "recd listening" line of a server started in the
# background with its output in LOG; if the server exits first, prints LOG and exits 1.
wait_listening() {
    until grep -qs "recd listening" "$2"; do
        kill -0 "$1" 2>/dev/null || { cat "$2" >&2; exit 1; }
        sleep 0.2
    done
}

# The recd binary to benchmark: $RECD_BIN if set (a prebuilt binary, so a benchmark does not
# rebuild a tree others are editing), else a release build of this tree.
recd_binary() {
    if [ -n "${RECD_BIN:-}" ]; then
        echo "$RECD_BIN"
    else
        cargo build --release -q -p recd >&2
        echo "${CARGO_TARGET_DIR:-target}/release/recd"
    fi
}

# start_demo NAME [DEMO ARGS...]: a `recd demo` of $ITEMS items and $USERS users (seed 42) in
# $W/NAME, listening on a free port, logging to $W/NAME.log; waits until it listens and sets
# PORT_NAME and PID_NAME. Environment given before the call reaches the server.
start_demo() {
    local name=$1 port pid
    shift
    port=$(free_port)
    "$BIN" demo "$@" --data-dir "$W/$name" --items "$ITEMS" --users "$USERS" --seed 42 \
        --listen "127.0.0.1:$port" > "$W/$name.log" 2>&1 &
    pid=$!
    wait_listening $pid "$W/$name.log"
    eval "PORT_$name=$port PID_$name=$pid"
}

# bench_summary LABEL: one line (req/s, p50, p99, errors) from `recd bench --json` on stdin.
bench_summary() {
    grep '^{' | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print(sys.argv[1], round(r["rps"]), "req/s, p50", l["p50"], "p99", l["p99"], "ms, errors", r["errors"])' "$1"
}

# cpu_seconds PID: CPU seconds (user + system) process PID has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

# arg FLAG: the last value FLAG has in the PARAMS array (defaults first, then the caller's
# flags), empty if it has none.
arg() {
    local want=$1 v="" i
    for ((i = 0; i < ${#PARAMS[@]}; i++)); do [ "${PARAMS[$i]}" = "$want" ] && v=${PARAMS[$((i + 1))]}; done
    echo "$v"
}

# implicit_venv: the throwaway venv $VENV with the `implicit` peer (version
# $IMPLICIT_VERSION, default 0.7.2), created on first use; never the project's runtime.
implicit_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        # scipy < 1.14: implicit 0.7.2's ranking_metrics_at_k indexes with a memoryview, which newer scipy rejects
        "$VENV/bin/pip" install -q "implicit==${IMPLICIT_VERSION:-0.7.2}" numpy "scipy<1.14" threadpoolctl
    fi
}

# visible_p99 METRICS [BEFORE]: the p99 of recd_event_visible_duration_seconds in the /metrics
# text in file METRICS (less what file BEFORE, an earlier scrape, had counted: the window
# between them), as the upper bound of the bucket that holds it, in ms (">2500" past the last
# bucket, "n/a" with no events).
visible_p99() {
    python3 -c '
import sys
def buckets(path):
    b = {}
    for l in open(path):
        if l.startswith("recd_event_visible_duration_seconds_bucket"):
            le = l.split("le=\"")[1].split("\"")[0]
            b[float("inf") if le == "+Inf" else float(le)] = float(l.split()[-1])
    return b
b = buckets(sys.argv[1])
if len(sys.argv) > 2:
    before = buckets(sys.argv[2])
    b = {le: n - before.get(le, 0) for le, n in b.items()}
b = sorted(b.items())
if not b or b[-1][1] == 0:
    print("n/a"); sys.exit()
total = b[-1][1]
for le, n in b:
    if n >= 0.99 * total:
        print(">2500" if le == float("inf") else "<=%g" % (le * 1000)); break
' "$@"
}
