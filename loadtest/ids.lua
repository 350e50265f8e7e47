-- wrk script: GET <prefix><id> with id drawn uniformly from 1 to <count> per request, so that a
-- hit path is measured over many keys rather than one (loadtest/bench-cache uses it for both
-- Marquee and the floor server).
--
--   wrk -s loadtest/ids.lua http://127.0.0.1:8080 -- /api/v1/concerts/ 50
local prefix, count = "/", 1

function init(args)
  prefix = args[1] or prefix
  count = tonumber(args[2]) or count
  math.randomseed(os.time())
end

function request()
  return wrk.format(nil, prefix .. math.random(1, count))
end
