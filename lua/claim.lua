#!lua flags=
-- Claim up to count ready tasks of one shard of a queue, oldest first, after a bounded
-- recovery of its expired leases (recover_leases in lua/includes/queue.lua).
-- @key ready     the shard's ready set (score: ready-at ms by the server clock; delayed too)
-- @key leased    the shard's leased set (score: lease deadline)
-- @key counters  the shard's counters hash
-- @key base      the shard's task key base ("{P:S}:t:"; a task's key is it and its member
--                "<owner part>:<task part>")
-- @arg count     most tasks to claim
-- @arg lease_ms  how long a lease runs
-- @arg worker    the worker's id
-- @arg batch     most expired leases to recover first
-- @arg retry_ms  how long a lost task waits before it is handed out again
-- Entries whose task is gone, ended, expired or not queued are dropped on the way. A task
-- released after its last attempt is marked lost ('y') and handed out like a lost lease.
-- Returns {claimed, lost, next due in ms or '', recovered}: claimed is a list of {member,
-- token, attempt, deadline ms, core fields, variables, owner id} (record() gives the task).
-- @include clock
-- @include queue
-- @include task
local now = server_ms()
local ready, leased, stats, base = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local count = tonumber(ARGV[1])
local retry = tonumber(ARGV[5])
local lost, recovered = recover_leases(ready, leased, stats, base, now, tonumber(ARGV[4]), retry)
local claimed = {}
local budget = count + tonumber(ARGV[4])
while #claimed < count and budget > 0 do
  local members = redis.call('ZRANGEBYSCORE', ready, '-inf', ms(now), 'LIMIT', 0,
    math.min(count - #claimed, budget))
  if #members == 0 then
    break
  end
  budget = budget - #members
  for _, member in ipairs(members) do
    redis.call('ZREM', ready, member)
    local key = base .. member
    local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'e', 'z', 'qt', 'qo')
    if s[1] == 'r' and not s[5] and not (s[4] and tonumber(s[4]) <= now) then
      local attempt = tonumber(s[2])
      if attempt >= tonumber(s[3]) then
        redis.call('HSET', key, 'qs', 'y')
        job_changed(key)
        redis.call('ZADD', leased, ms(now + retry), member)
        lost[#lost + 1] = {member, s[6], s[2], s[3], 0, s[7]}
      else
        local token = redis.call('HINCRBY', key, 'qt', 1)
        local deadline = ms(now + tonumber(ARGV[2]))
        redis.call('HSET', key, 'qs', 'l', 'qa', attempt + 1, 'qw', ARGV[3], 'qx', deadline)
        redis.call('ZADD', leased, deadline, member)
        job_changed(key)
        local core, vars = record(key)
        claimed[#claimed + 1] = {member, token, attempt + 1, deadline, core, vars, s[7]}
      end
    end
  end
end
if #claimed > 0 then
  redis.call('HINCRBY', stats, 'claimed', #claimed)
end
return {claimed, lost, next_due(ready, leased, now), recovered}
