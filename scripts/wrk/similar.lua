-- wrk script: POST /v1/items/sku-<n>/similar for a random n of 0..$ITEMS-1 (`recd demo`'s
-- ids; ITEM_PREFIX for other data), 10 items, within $FILTER (a JSON filter; none when
-- unset). Used by scripts/bench-partitions.sh: a KNN request with little else around it.
local items = tonumber(os.getenv("ITEMS") or "100000")
local item_prefix = os.getenv("ITEM_PREFIX") or "sku-"
local filter = os.getenv("FILTER")
local body = '{"count":10}'
if filter and filter ~= "" then
  body = '{"count":10,"filter":' .. filter .. '}'
end

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")

request = function()
  local path = string.format("/v1/items/%s%d/similar", item_prefix, math.random(0, items - 1))
  return wrk.format(nil, path, nil, body)
end

dofile(here .. "report.lua")
