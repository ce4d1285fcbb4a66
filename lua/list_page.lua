#!lua flags=no-writes
-- One page of an owner's tasks, newest first.
-- KEYS[1] owner index
-- ARGV[1] exclusive upper bound ("+" or "(<member>"), ARGV[2] page size,
-- ARGV[3] most index members to visit (skipping entries of vanished tasks)
-- Returns {version1, data1, version2, data2, ..., next} where next is the member the
-- next page starts below, or "" when the listing is complete.
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local bound = ARGV[1]
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
    local record = redis.call('HMGET', string.sub(member, 17), 'v', 'd')
    if record[1] then
      out[#out + 1] = tonumber(record[1])
      out[#out + 1] = record[2]
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
