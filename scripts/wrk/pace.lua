-- Shared by the wrk scripts here: optional pacing. With RATE (requests/s over all connections)
-- and CONNECTIONS (wrk's -c) in the environment, each connection waits about CONNECTIONS / RATE
-- seconds (drawn from half to one and a half of it, so that connections do not fall into step)
-- after each answer before its next request: a load at most RATE, what a fixed-rate client
-- offers (wrk prints the rate reached). Unset: as fast as the server answers.
local rate = tonumber(os.getenv("RATE") or "")
local connections = tonumber(os.getenv("CONNECTIONS") or "")
if rate and connections and rate > 0 and connections > 0 then
  local gap_ms = connections * 1000 / rate
  -- wrk: milliseconds to wait before the connection's next request.
  delay = function()
    return math.floor(gap_ms * (0.5 + math.random()) + 0.5)
  end
end
