-- wrk script: POST /v1/events with one event per request, as `recd bench --scenario events
-- --ids range` sends them: a random user of user-0..user-$USERS-1 and a random item of
-- sku-0..sku-$ITEMS-1 (`recd demo`'s ids; USER_PREFIX / ITEM_PREFIX for other data),
-- view x3 / click / add_to_cart / purchase. Used by scripts/bench-events.sh --wrk.
--
-- Until 2026-12-05 this script sent `u<N>` / `i<N>`, ids the demo does not have: every event
-- was for an unknown user and item, which the server takes without a vector to fold in.
local users = tonumber(os.getenv("USERS") or "10000")
local items = tonumber(os.getenv("ITEMS") or "100000")
local user_prefix = os.getenv("USER_PREFIX") or "user-"
local item_prefix = os.getenv("ITEM_PREFIX") or "sku-"
local kinds = {"view", "view", "view", "click", "add_to_cart", "purchase"}

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")

request = function()
  local body = string.format('{"events":[{"user_id":"%s%d","item_id":"%s%d","type":"%s"}]}',
    user_prefix, math.random(0, users - 1), item_prefix, math.random(0, items - 1),
    kinds[math.random(1, #kinds)])
  return wrk.format(nil, "/v1/events", nil, body)
end

-- RATE and CONNECTIONS pace it (a side load beside recommend).
dofile(here .. "pace.lua")
-- The WRK summary line.
dofile(here .. "report.lua")
