-- The soak workload (scripts/soak): every wrk thread is one sequential client (one connection)
-- mixing reads and writes whose expected answer is always `code` "OK", so that any other answer
-- is an unexpected error. Writes keep the directory's size steady: groups created are deleted again,
-- members added to a group are removed again, one group moves back and forth. Deleted groups
-- stay as tombstones (`include_invalid=true` lists them, about 250 bytes of memory each), so
-- creates are kept to one request in a thousand: the soak measures the server, not the
-- directory's growth.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function split(text)
  local items = {}
  for item in string.gmatch(text or "", "[^,]+") do table.insert(items, item) end
  return items
end

function init(args)
  team = os.getenv("SOAK_TEAM")
  query = os.getenv("SOAK_QUERY")
  parent = os.getenv("SOAK_PARENT")
  base = os.getenv("SOAK_BASE")
  move_me = os.getenv("SOAK_MOVE_ME")
  move_to = split(os.getenv("SOAK_MOVE_TO"))
  extra = split(os.getenv("SOAK_EXTRA"))
  local all_users = split(os.getenv("SOAK_USERS"))
  users = {}
  for i = 1, 4 do users[i] = all_users[tid * 4 + i] end
  placed = {}       -- users of this thread currently in their extra group
  created = {}      -- groups created and not deleted yet
  n = 0
  total, five_xx, unexpected = 0, 0, 0
  last = nil
  prefix = "/api/contacts/teams/" .. team
  json = { ["content-type"] = "application/json" }
end

local function get(path, sep)
  return wrk.format("GET", prefix .. path .. (sep or "?") .. query)
end

local function post(path, body)
  return wrk.format("POST", prefix .. path .. "?" .. query, json, body)
end

function request()
  n = n + 1
  local slot = n % 20
  last = "read"
  if slot == 14 and n % 1000 == 14 then
    last = "create"
    return post("/groups", string.format('{"name":"soak %d %d","parent_id":%s}', tid, n, parent))
  elseif slot == 15 and n % 1000 == 15 and #created > 0 then
    last = "delete"
    local batch = {}
    while #created > 0 and #batch < 5 do table.insert(batch, table.remove(created)) end
    return post("/groups/batch_delete", '{"group_ids":[' .. table.concat(batch, ",") .. ']}')
  elseif slot == 16 and tid == 0 then
    last = "move"
    return post("/groups/" .. move_me, '{"name":"Mover","to_id":' .. move_to[math.floor(n / 20) % 2 + 1] .. '}')
  elseif slot == 17 or slot == 18 then
    local u = math.floor(n / 20) % 4 + 1
    local user = users[u]
    local group = extra[(tid * 4 + u) % #extra + 1]
    if placed[u] then
      last = "remove"
      last_user = u
      return wrk.format("DELETE", prefix .. "/groups/" .. group .. "/users/" .. user .. "?" .. query)
    else
      last = "add"
      last_user = u
      return post("/groups/" .. group .. "/users/" .. user, '{"role":4}')
    end
  elseif slot == 19 then
    last = "rename member"
    return post("/users/" .. users[1], string.format('{"nickname":"soak %d"}', n))
  elseif slot < 5 then
    return get("/groups")
  elseif slot < 8 then
    return get("/groups", "?page=" .. (n % 50 + 1) .. "&per_page=10&")
  elseif slot < 10 then
    return get("/groups/" .. base)
  elseif slot < 12 then
    return get("/groups/" .. base .. "/users")
  else
    return get("/groups/" .. parent .. "/users", "?recursive=true&")
  end
end

-- Answers are judged by the envelope's `code` (the body starts with {"code":"OK"), not by the
-- HTTP status, which may be 200 for a failure too; internal errors are counted apart (a 5xx
-- status or the code InternalServerError / Internal).
function response(status, headers, body)
  total = total + 1
  body = body or ""
  if status >= 500 or string.find(body, '^%s*{%s*"code"%s*:%s*"Internal') then
    five_xx = five_xx + 1
  end
  if not string.find(body, '^%s*{%s*"code"%s*:%s*"OK"') then
    unexpected = unexpected + 1
    if unexpected <= 5 then
      io.stderr:write(string.format("soak: %s answered %d: %s\n", last, status, body))
    end
    return
  end
  if last == "create" then
    local id = string.match(body, '"group_id":(%d+)')
    if id then table.insert(created, id) end
  elseif last == "add" then
    placed[last_user] = true
  elseif last == "remove" then
    placed[last_user] = false
  end
end

function done(summary, latency, requests)
  local sum_total, sum_5xx, sum_unexpected = 0, 0, 0
  for _, thread in ipairs(threads) do
    sum_total = sum_total + thread:get("total")
    sum_5xx = sum_5xx + thread:get("five_xx")
    sum_unexpected = sum_unexpected + thread:get("unexpected")
  end
  io.write(string.format("soak-result requests=%d five_xx=%d unexpected=%d socket_errors=%d\n",
    sum_total, sum_5xx, sum_unexpected,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
