-- Shared by the wrk scripts here that POST JSON (events.lua, recommend.lua): each wrk thread
-- has its own Lua state, seeded differently so that the threads draw different ids; method
-- and content type.
function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init(args)
  math.randomseed(seed or os.time())
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
