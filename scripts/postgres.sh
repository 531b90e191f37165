#!/usr/bin/env bash
# scripts/postgres.sh — a throwaway local PostgreSQL, for tests, CI and dev (the catalog source).
#
# Uses Debian's postgresql (any major version; the newest under /usr/lib/postgresql wins),
# installing it with apt-get when it is missing. Every `start` makes a fresh cluster: trust
# authentication, TCP on 127.0.0.1 only, no fsync (a test instance, not a database to keep).
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` OS user
# (created by the Debian package) through runuser; any other user runs it as itself.
# Set RECD_PG_BIN to a directory holding initdb, pg_ctl and postgres to use your own build.
#
# Usage:
#   scripts/postgres.sh install              apt-get install postgresql if needed (idempotent)
#   scripts/postgres.sh start [PORT] [--owner PID]
#                                            fresh cluster on PORT (a free one when omitted),
#                                            wait until it accepts connections, print
#                                            postgres://recd@127.0.0.1:PORT/recd on stdout.
#                                            --owner: stop it when process PID exits.
#   scripts/postgres.sh stop PORT            stop an instance started by `start`, delete its data
#   scripts/postgres.sh bin                  print the directory of the server binaries
#
# Environment: RECD_PG_RUN, where instances live (default /tmp/recd-postgres-UID/PORT: a
# directory the `postgres` user can reach, which root's ~/.cache is not).
set -euo pipefail

PG_USER=recd
PG_DB=recd
RUN="${RECD_PG_RUN:-${TMPDIR:-/tmp}/recd-postgres-$(id -u)}"
PYTHON="${PYTHON:-python3}"

log() { echo "postgres.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The newest /usr/lib/postgresql/*/bin with the server binaries, or RECD_PG_BIN.
find_bin() {
    if [[ -n "${RECD_PG_BIN:-}" ]]; then
        [[ -x "$RECD_PG_BIN/initdb" && -x "$RECD_PG_BIN/pg_ctl" && -x "$RECD_PG_BIN/postgres" ]] ||
            return 1
        echo "$RECD_PG_BIN"
        return 0
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install() {
    if find_bin >/dev/null; then
        return 0
    fi
    [[ -z "${RECD_PG_BIN:-}" ]] ||
        die "RECD_PG_BIN=$RECD_PG_BIN does not hold initdb, pg_ctl and postgres"
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; run as root: apt-get install -y postgresql"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get"
    mkdir -p "$RUN"
    # One installer at a time (several test binaries may start at once).
    exec 9>"$RUN/.install.lock"
    flock 9
    if ! find_bin >/dev/null; then
        log "installing Debian's postgresql with apt-get"
        # The package's own main cluster is not needed; in a container its service does not
        # start anyway (and nothing here uses it).
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || {
            apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        } || die "apt-get install postgresql failed"
    fi
    flock -u 9
    find_bin >/dev/null || die "postgresql is installed but no /usr/lib/postgresql/*/bin has initdb, pg_ctl and postgres"
    log "using $(find_bin)"
}

# Runs a command as the OS user that owns the clusters (postgres when we are root).
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Whether PID is a live process (a zombie is not: where PID 1 does not reap orphans, a stopped
# postmaster lingers as one).
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The postmaster pid of the instance in DIR, if it is running.
running_pid() {
    local pidfile="$1/data/postmaster.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -1 "$pidfile" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q postgres || return 1
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
    local bin
    bin="$(find_bin)"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (Debian's package creates it)"
    fi
    [[ -n "$port" ]] || port="$(free_port)"
    local dir="$RUN/$port"
    if running_pid "$dir" >/dev/null; then
        die "an instance already runs on port $port (scripts/postgres.sh stop $port)"
    fi
    # A fresh cluster every time: whatever an earlier instance left here goes.
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 755 "$RUN"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U "$PG_USER" --auth=trust --no-locale -E UTF8 \
        --no-sync --no-instructions >"$dir/initdb.log" 2>&1 || {
        tail -20 "$dir/initdb.log" >&2 || true
        die "initdb failed; see $dir/initdb.log"
    }
    # Test settings: durability off (a crash loses a throwaway cluster), a unix socket inside
    # the instance's own directory (never /var/run/postgresql, which may not exist).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || {
        tail -20 "$dir/postgres.log" >&2 || true
        die "postgres did not start on port $port; see $dir/postgres.log"
    }
    as_owner "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres \
        -c "CREATE DATABASE $PG_DB" >/dev/null || {
        stop "$port"
        die "cannot create the database $PG_DB on port $port"
    }
    if [[ -n "$owner" ]]; then
        # A watchdog that stops this instance once the owner process is gone (a test binary
        # has no global teardown). SIGINT is PostgreSQL's fast shutdown. It holds no terminal
        # and outlives this script.
        local pid
        pid="$(running_pid "$dir")" || die "postgres exited; see $dir/postgres.log"
        nohup setsid bash -c "$(declare -f alive)"'
            while alive "$1" && alive "$2"; do sleep 1; done
            if alive "$2"; then
                kill -INT "$2" 2>/dev/null || true
                while alive "$2"; do sleep 0.2; done
                rm -rf "$3"
            fi' watchdog "$owner" "$pid" "$dir" \
            </dev/null >/dev/null 2>&1 &
    fi
    echo "postgres://$PG_USER@127.0.0.1:$port/$PG_DB"
}

stop() {
    local port="${1:-}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "usage: $0 stop PORT"
    local dir="$RUN/$port" pid
    if ! pid="$(running_pid "$dir")"; then
        log "nothing running on port $port"
        rm -rf "$dir"
        return 0
    fi
    local bin
    if bin="$(find_bin)"; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if alive "$pid"; then
        log "postgres $pid did not stop; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
    fi
    rm -rf "$dir"
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
bin)
    install
    find_bin
    ;;
*)
    sed -n '2,22p' "$0" >&2
    exit 2
    ;;
esac
