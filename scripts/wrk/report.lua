-- Shared by the wrk scripts here: their `done` prints one line scripts/bench-events.sh
-- parses: "WRK requests errors seconds p50_us p99_us max_us" (errors: non-2xx + socket).
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("WRK %d %d %.3f %d %d %d\n", summary.requests, errors,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max))
end
