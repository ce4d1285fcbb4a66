#!lua flags=no-writes
-- One page of an owner's tasks, newest first.
-- KEYS[1] owner index, KEYS[2] the owner's task key prefix (a task's key is it followed by
-- the id after the first ':' of its index member)
-- ARGV[1] exclusive upper bound ("+" or "(<member>"), ARGV[2] page size,
-- ARGV[3] most index members to visit (skipping entries of vanished tasks)
-- Returns {core1, variables1, id1, core2, variables2, id2, ..., next}: each task as record()
-- (lua/_task.lua) gives it and its id, then the member the next page starts below, or ""
-- when the listing is complete.
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local bound = ARGV[1]
local prefix = KEYS[2]
local out = {}
local found = 0
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
    local core, variables = record(prefix .. id)
    if #core > 0 then
      out[#out + 1] = core
      out[#out + 1] = variables
      out[#out + 1] = id
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
