#!/usr/bin/env bash
# The web console idle vs no page (BENCHMARKS.md "Web console"): recd bench with no page, the
# playground open (idle), the metrics view open (2 s scrapes), no page again. Needs a debug build
# (cargo build -p recd) and chromium; serves on 127.0.0.1:18431 only.
set -u
BIN="$(dirname "$0")/../target/debug/recd"
DIR=/tmp/console-bench-data; rm -rf $DIR
PORT=18431
$BIN demo --data-dir $DIR --listen 127.0.0.1:$PORT --items 3000 --users 200 --seed 7 > /tmp/console-bench-server.log 2>&1 &
SERVER=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/ready >/dev/null && break; sleep 0.5; done
run() { echo "== $1 (load $(cut -d' ' -f1 /proc/loadavg))"; $BIN bench --target http://127.0.0.1:$PORT --concurrency 8 --duration 15 --scenario recommend --json; echo; }
run "no page"
chromium --headless=new --no-sandbox --disable-gpu --user-data-dir=/tmp/console-bench-chrome1 --remote-debugging-port=9333 "http://127.0.0.1:$PORT/#/playground" >/dev/null 2>&1 &
C1=$!
sleep 5
run "playground open, idle"
kill $C1; wait $C1 2>/dev/null
chromium --headless=new --no-sandbox --disable-gpu --user-data-dir=/tmp/console-bench-chrome2 --remote-debugging-port=9334 "http://127.0.0.1:$PORT/#/metrics" >/dev/null 2>&1 &
C2=$!
sleep 5
run "metrics view open (scrape every 2 s)"
kill $C2; wait $C2 2>/dev/null
run "no page again"
curl -s http://127.0.0.1:$PORT/metrics | grep -E '^recd_http_requests_total\{method="GET",path="(/metrics|/|/console/\{\*path\})"' 
kill $SERVER; wait $SERVER 2>/dev/null
rm -rf $DIR /tmp/console-bench-chrome1 /tmp/console-bench-chrome2
