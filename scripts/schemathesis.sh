#!/usr/bin/env bash
# scripts/schemathesis.sh — property-based tests of the HTTP API against its own OpenAPI
# document: schemathesis generates valid and invalid requests for every operation of
# /openapi.json and runs all of its checks on each answer (no 5xx, every status and body as
# documented, invalid input refused, valid input accepted, 405 + Allow for other methods...).
#
# Usage:
#   scripts/schemathesis.sh [embedded|redis|both]     (default: both)
# It runs a recd debug binary (`cargo build -p recd` first; `cargo test` builds it too) as
# `recd demo` on a small catalog in a temporary data dir, with API keys on (one key with every
# scope, which schemathesis sends; its auth checks send none or a wrong one and expect 401),
# and the redis backend on a Redis from scripts/redis.sh. schemathesis comes from PyPI, pinned, into
# a throwaway venv. Exits non-zero on any failure of any check.
#
# Environment: RECD_BIN (default target/debug/recd), ST_EXAMPLES (examples per operation and
# phase, default 25), ST_SEED (default 7): the run is deterministic for a given seed; ST_VENV:
# an existing venv with schemathesis to use instead of a new one (local runs).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
BIN="${RECD_BIN:-target/debug/recd}"
EXAMPLES="${ST_EXAMPLES:-25}"
SEED="${ST_SEED:-7}"
WHICH="${1:-both}"
# What the document cannot say (each entry says why).
CONFIG="$PWD/scripts/schemathesis.toml"

log() { echo "schemathesis.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[[ -x "$BIN" ]] || die "$BIN is missing: cargo build -p recd first"
case "$WHICH" in embedded | redis | both) ;; *) die "usage: $0 [embedded|redis|both]" ;; esac

WORK="$(mktemp -d)"
RECD_PID=""
REDIS_PORT=""
cleanup() {
    if [[ -n "$RECD_PID" ]]; then kill "$RECD_PID" 2>/dev/null || true; fi
    if [[ -n "$REDIS_PORT" ]]; then scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -n "${ST_VENV:-}" ]]; then
    # A venv kept between local runs (it must hold schemathesis $SCHEMATHESIS_VERSION).
    VENV="$ST_VENV"
else
    log "installing schemathesis $SCHEMATHESIS_VERSION into a throwaway venv"
    VENV="$WORK/venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# One key with every scope, in a config file.
KEY_JSON="$("$BIN" keys create --name schemathesis --scopes read,write,admin --json)"
KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$KEY_JSON")"
HASH="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["hash"])' "$KEY_JSON")"
cat >"$WORK/recd.toml" <<TOML
[auth]
keys = [{ name = "schemathesis", hash = "$HASH", scopes = ["read", "write", "admin"] }]
TOML

# Starts `recd demo` with the extra arguments given; sets BASE to its URL.
start_recd() {
    local name="$1"
    shift
    local out="$WORK/$name.out"
    "$BIN" demo --config "$WORK/recd.toml" --data-dir "$WORK/$name-data" --items 1000 \
        --users 100 --seed 7 --listen 127.0.0.1:0 "$@" >"$out" 2>"$WORK/$name.log" &
    RECD_PID=$!
    BASE=""
    for _ in $(seq 1 600); do
        BASE="$(sed -n 's/^recd listening on //p' "$out" | head -n 1)"
        [[ -n "$BASE" ]] && return 0
        kill -0 "$RECD_PID" 2>/dev/null || {
            cat "$WORK/$name.log" >&2
            die "recd ($name) exited before listening"
        }
        sleep 0.5
    done
    die "recd ($name) did not start listening"
}

# Runs schemathesis against the server at BASE.
run_st() {
    local name="$1"
    log "$name: schemathesis on $BASE/openapi.json, $EXAMPLES examples per operation, seed $SEED"
    (
        cd "$WORK"
        "$VENV/bin/st" --config-file "$CONFIG" run "$BASE/openapi.json" \
            --checks all \
            --header "Authorization: Bearer $KEY" \
            --max-examples "$EXAMPLES" \
            --seed "$SEED" \
            --workers 2 \
            --request-timeout 30 \
            --suppress-health-check too_slow,filter_too_much \
            --no-color
    ) || {
        log "$name: schemathesis found failures (recd's log: below)"
        tail -n 50 "$WORK/$name.log" >&2
        return 1
    }
}

stop_recd() {
    kill "$RECD_PID" 2>/dev/null || true
    wait "$RECD_PID" 2>/dev/null || true
    RECD_PID=""
}

status=0
if [[ "$WHICH" == embedded || "$WHICH" == both ]]; then
    start_recd embedded
    run_st embedded || status=1
    stop_recd
fi
if [[ "$WHICH" == redis || "$WHICH" == both ]]; then
    scripts/redis.sh install
    REDIS_URL="$(scripts/redis.sh start --owner $$)"
    REDIS_PORT="${REDIS_URL##*:}"
    RECD_REDIS__PREFIX="st$$:" start_recd redis --backend redis --redis-url "$REDIS_URL"
    run_st redis || status=1
    stop_recd
fi
exit "$status"
