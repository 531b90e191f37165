-- wrk script: POST /v1/events with one event per request, as `recd bench --scenario events
-- --ids range` sends them (a random user of u0..u$USERS-1, a random item of i0..i$ITEMS-1,
-- view x3 / click / add_to_cart / purchase). Used by scripts/bench-events.sh --wrk.
local users = tonumber(os.getenv("USERS") or "10000")
local items = tonumber(os.getenv("ITEMS") or "100000")
local kinds = {"view", "view", "view", "click", "add_to_cart", "purchase"}

-- Each wrk thread has its own Lua state: seed each differently.
function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init(args)
  math.randomseed(seed or os.time())
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local body = string.format('{"events":[{"user_id":"u%d","item_id":"i%d","type":"%s"}]}',
    math.random(0, users - 1), math.random(0, items - 1), kinds[math.random(1, #kinds)])
  return wrk.format(nil, "/v1/events", nil, body)
end

-- The WRK summary line (report.lua, beside this script).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
