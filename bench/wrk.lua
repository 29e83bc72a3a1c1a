-- wrk script for bench/run. One script for every scenario; the scenario comes from the
-- arguments after `--`:
--   get PATH                          GET PATH (query string included)
--   create PATH PARENT_ID             POST PATH {"name":"bench-<thread>-<n>","parent_id":PARENT_ID}
--   move PATH A B                     POST PATH {"name":"Bench moved","to_id":A|B}, alternating
--   add PATH_PREFIX QUERY USERS GROUPS
--                                     POST PREFIX/<group>/users/<user>?QUERY {"role":4}: each
--                                     request adds one of this thread's users (USERS is a
--                                     comma list, split between threads) to the next group of
--                                     GROUPS (a comma list), so no (user, group) pair repeats
--                                     until users/threads x groups requests per thread.
-- done() prints one machine-readable line: BENCH requests duration_us errors p50_us p99_us.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local mode, a1, a2, a3, a4
local counter = 0
local my_users = {}
local groups = {}
local query = ""

local function split(s)
  local out = {}
  for part in string.gmatch(s or "", "[^,]+") do table.insert(out, part) end
  return out
end

function init(args)
  mode, a1, a2, a3, a4 = args[1], args[2], args[3], args[4], args[5]
  tid = tid or 0
  if mode == "add" then
    query = a2
    local users = split(a3)
    local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
    for i, u in ipairs(users) do
      if (i - 1) % nthreads == tid then table.insert(my_users, u) end
    end
    groups = split(a4)
  end
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  if mode == "get" then
    return wrk.format("GET", a1)
  elseif mode == "create" then
    local body = string.format('{"name":"bench-%d-%d","parent_id":%s}', tid, counter, a2)
    return wrk.format("POST", a1, nil, body)
  elseif mode == "move" then
    local to = (counter % 2 == 0) and a2 or a3
    local body = string.format('{"name":"Bench moved","to_id":%s}', to)
    return wrk.format("POST", a1, nil, body)
  elseif mode == "add" then
    local n = counter - 1
    local nu = #my_users
    local user = my_users[(n % nu) + 1]
    local group = groups[(math.floor(n / nu) % #groups) + 1]
    local path = a1 .. "/" .. group .. "/users/" .. user .. "?" .. query
    return wrk.format("POST", path, nil, '{"role":4}')
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    errors, e.status, latency:percentile(50), latency:percentile(99)))
end
