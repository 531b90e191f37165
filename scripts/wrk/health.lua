-- wrk script: GET /health, the cheapest request a recd server answers: the latency floor of
-- the server and the machine at a concurrency (scripts/bench-events.sh --wrk). Prints the
-- same WRK line as events.lua.
wrk.method = "GET"
wrk.path = "/health"

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("WRK %d %d %.3f %d %d %d\n", summary.requests, errors,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max))
end
