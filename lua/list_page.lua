#!lua flags=no-writes
-- One page of an owner's tasks, newest first.
-- @key index   the owner's index
-- @key prefix  the owner's task key prefix (a task's key is it followed by the id after the
--              first ':' of its index member)
-- @arg bound   exclusive upper bound ("+" or "(<member>")
-- @arg limit   page size
-- @arg budget  most index members to visit (skipping entries of vanished tasks)
-- Returns {v1, k1, u1, f1, d1, variables1, id1, job1, v2, ..., next}: for each task its
-- version, core version, last update time, format and core record (fields v, k, u, f, d; nil
-- when missing), its variables joined as "k:v,k:v", its id as its key spells it, and its
-- queue fields (q..., p, z) as a flat name, value list (empty unless submitted); then the
-- member the next page starts below, or "" when the listing is complete. Fixed places, so
-- that reading a page takes no search for field names; the write history is not sent.
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local bound = ARGV[1]
local prefix = KEYS[2]
local out = {}
local found = 0

-- Append the task at key to out, in its fixed places; false if there is no such hash.
local function add(key, id)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return false
  end
  local v, k, u, f, d = false, false, false, false, false
  local vars, job = {}, {}
  for i = 1, #flat, 2 do
    local name = flat[i]
    local first = string.byte(name, 1)
    if first == 34 then
      vars[#vars + 1] = name .. ':' .. flat[i + 1]
    elseif first == 113 or name == 'p' or name == 'z' then
      job[#job + 1] = name
      job[#job + 1] = flat[i + 1]
    elseif name == 'd' then
      d = flat[i + 1]
    elseif name == 'v' then
      v = flat[i + 1]
    elseif name == 'k' then
      k = flat[i + 1]
    elseif name == 'u' then
      u = flat[i + 1]
    elseif name == 'f' then
      f = flat[i + 1]
    end
  end
  local n = #out
  out[n + 1] = v
  out[n + 2] = k
  out[n + 3] = u
  out[n + 4] = f
  out[n + 5] = d
  out[n + 6] = table.concat(vars, ',')
  out[n + 7] = id
  out[n + 8] = job
  return true
end

local last = ''
while true do
  local want = limit - found + 1
  local members = redis.call('ZRANGE', KEYS[1], bound, '-', 'BYLEX', 'REV', 'LIMIT', 0, want)
  for _, member in ipairs(members) do
    if found == limit then
      out[#out + 1] = last
      return out
    end
    local id = string.sub(member, string.find(member, ':', 1, true) + 1)
    if add(prefix .. id, id) then
      found = found + 1
      last = member
    end
    bound = '(' .. member
    budget = budget - 1
    if budget <= 0 then
      out[#out + 1] = member
      return out
    end
  end
  if #members < want then
    out[#out + 1] = ''
    return out
  end
end
