-- wrk script: POST /v1/recommend uncached, as `recd bench --scenario recommend --no-cache
-- --ids range` sends it: a random user of user-0..user-$USERS-1 (`recd demo`'s ids;
-- USER_PREFIX for other data), 10 items. RATE and CONNECTIONS pace it (pace.lua). Used by
-- scripts/bench-events.sh --wrk for recommend beside events: wrk's event loop adds less
-- of its own scheduling delay to a latency than `recd bench` does when another load shares
-- the two cores.
local users = tonumber(os.getenv("USERS") or "10000")
local user_prefix = os.getenv("USER_PREFIX") or "user-"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")

request = function()
  local body = string.format('{"user_id":"%s%d","count":10,"use_cache":false}', user_prefix,
    math.random(0, users - 1))
  return wrk.format(nil, "/v1/recommend", nil, body)
end

dofile(here .. "pace.lua")
-- The WRK summary line.
dofile(here .. "report.lua")
