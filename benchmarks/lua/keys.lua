-- Many keys: wrk ... -s keys.lua URL -- PREFIX COUNT MODE SALT
--   MODE random: a uniformly random key in [0, COUNT) per request (hit-spread, outage)
--   MODE unique: a key never used before, SALT-THREAD-N (miss; SALT differs per run)
--   MODE seq:    keys 0..COUNT-1 in turn, threads interleaved (warming)
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local counter = 0
function init(args)
  prefix = args[1] or "/api/items/"
  count = tonumber(args[2]) or 10000
  mode = args[3] or "random"
  salt = args[4] or "0"
  nthreads = tonumber(args[5]) or 1
  math.randomseed(os.time() * 1000 + (tid or 1) * 7919)
end

function request()
  counter = counter + 1
  local key
  if mode == "unique" then
    key = salt .. "-" .. tid .. "-" .. counter
  elseif mode == "seq" then
    key = tostring(((counter - 1) * nthreads + tid - 1) % count)
  else
    key = tostring(math.random(0, count - 1))
  end
  return wrk.format(nil, prefix .. key)
end
