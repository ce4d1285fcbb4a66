#!lua flags=
-- Delete the expired tasks of one shard, at most batch index entries per call.
-- @key due    the shard's due set, whose members are "<index key> <expiry index key> <task
--             key prefix>"
-- @arg now    now in ms
-- @arg batch  most index entries to visit
-- Returns {tasks deleted, 1 if more work is due now else 0}.
-- The expiry index scores an unfinished task by its expiry and a terminal one by minus its
-- expiry (+inf / -inf for none), so what expired scores between -now and now.
-- Tasks waiting for a task purged before it ended (submit with after=) are cancelled, as
-- when it fails (see lua/includes/deps.lua).
-- @include notify
-- @include deps
local now = ARGV[1]
local budget = tonumber(ARGV[2])
local deleted = 0
local owners = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, budget)
for _, owner in ipairs(owners) do
  local index, expiry, prefix = string.match(owner, '^(%S+) (%S+) (%S+)$')
  local members = redis.call('ZRANGEBYSCORE', expiry, '-' .. now, now, 'LIMIT', 0, budget)
  for _, member in ipairs(members) do
    local id = string.sub(member, string.find(member, ':', 1, true) + 1)
    local task = prefix .. id
    task_deleted(task, expiry, now)
    if redis.call('DEL', task) == 1 then
      deleted = deleted + 1
      notify(task, '') -- the task is gone
    end
    redis.call('ZREM', index, member)
    redis.call('ZREM', expiry, member)
  end
  if #members >= budget then
    -- maybe more expired entries here: the owner stays due now
    return {deleted, 1}
  end
  budget = budget - #members
  local nextup = nil
  local later = redis.call('ZRANGE', expiry, '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
    'WITHSCORES')
  if #later > 0 and later[2] ~= 'inf' then
    nextup = tonumber(later[2])
  end
  local ended = redis.call('ZRANGE', expiry, '(-' .. now, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1,
    'WITHSCORES')
  if #ended > 0 and ended[2] ~= '-inf' then
    local at = -tonumber(ended[2])
    if nextup == nil or at < nextup then
      nextup = at
    end
  end
  if nextup == nil then
    redis.call('ZREM', KEYS[1], owner)
  else
    redis.call('ZADD', KEYS[1], string.format('%d', nextup), owner)
  end
end
if #owners == 0 then
  return {deleted, 0}
end
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
return {deleted, due > 0 and 1 or 0}
