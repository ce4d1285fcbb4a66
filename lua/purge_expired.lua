#!lua flags=
-- Delete the expired tasks of one shard, at most ARGV[2] index entries per call.
-- KEYS[1] shard due set
-- ARGV[1] now_ms, ARGV[2] batch size
-- Returns {tasks deleted, 1 if more work is due now else 0}.
local now = ARGV[1]
local budget = tonumber(ARGV[2])
local deleted = 0
local owners = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, budget)
for _, owner in ipairs(owners) do
  local space = string.find(owner, ' ', 1, true)
  local index = string.sub(owner, 1, space - 1)
  local expiry = string.sub(owner, space + 1)
  local members = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, budget)
  for _, member in ipairs(members) do
    local task = string.sub(member, 17)
    if redis.call('DEL', task) == 1 then
      deleted = deleted + 1
      redis.call('SPUBLISH', task, '') -- wake the task's waiters: it is gone
    end
    redis.call('ZREM', index, member)
    redis.call('ZREM', expiry, member)
  end
  budget = budget - #members
  local nextup = redis.call('ZRANGE', expiry, 0, 0, 'WITHSCORES')
  if #nextup == 0 or nextup[2] == 'inf' then
    redis.call('ZREM', KEYS[1], owner)
  else
    redis.call('ZADD', KEYS[1], nextup[2], owner)
  end
  if budget <= 0 then
    return {deleted, 1}
  end
end
if #owners == 0 then
  return {deleted, 0}
end
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
return {deleted, due > 0 and 1 or 0}
