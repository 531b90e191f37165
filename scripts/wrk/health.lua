-- wrk script: GET /health, the cheapest request a recd server answers: the latency floor of
-- the server and the machine at a concurrency (scripts/bench-events.sh --wrk). Prints the
-- same WRK line as events.lua.
wrk.method = "GET"
wrk.path = "/health"

-- The WRK summary line (report.lua, beside this script).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
