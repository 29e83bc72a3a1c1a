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
-- Every answer is judged by its envelope's `code` (the body starts with {"code":"OK"), not by
-- its HTTP status; BENCH_NO_ENVELOPE=1 turns that off (the ceiling's fixed body has none).
-- done() prints one machine-readable line:
--   BENCH requests duration_us errors not_ok p50_us p99_us socket_errors
-- errors = not_ok + socket_errors; not_ok = answers whose code is not "OK"; socket_errors =
-- connect, read and write errors and timeouts.

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
not_ok = 0  -- global: done() reads it from every thread
local check_code = os.getenv("BENCH_NO_ENVELOPE") ~= "1"

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

function response(status, headers, body)
  if check_code and not string.find(body or "", '^%s*{%s*"code"%s*:%s*"OK"') then
    not_ok = not_ok + 1
    if not_ok <= 3 then
      io.stderr:write(string.format("bench: %s answered %d: %s\n", mode, status,
        string.sub(body or "", 1, 300)))
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local sockets = e.connect + e.read + e.write + e.timeout
  local answers_not_ok = 0
  for _, thread in ipairs(threads) do
    answers_not_ok = answers_not_ok + thread:get("not_ok")
  end
  io.write(string.format("BENCH %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    answers_not_ok + sockets, answers_not_ok, latency:percentile(50), latency:percentile(99),
    sockets))
end
