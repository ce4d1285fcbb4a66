-- Claiming: lease the ready tasks of one shard of a queue; see lua/claim.lua.
-- @include clock
-- @include queue
-- @include task

-- Claim up to count ready tasks of the shard (ready, leased, stats, base), after a bounded
-- recovery of up to batch expired leases; the parameters are claim.lua's KEYS and ARGV, in
-- order. The reply of claim.lua. A paused shard (is_paused) recovers but leases nothing.
local function claim_ready(ready, leased, stats, base, count, lease_ms, worker, batch, retry_ms)
  local now = server_ms()
  count = tonumber(count)
  if is_paused(stats) then
    count = 0
  end
  local retry = tonumber(retry_ms)
  local lost, recovered = recover_leases(ready, leased, stats, base, now, tonumber(batch), retry)
  local claimed = {}
  local budget = count + tonumber(batch)
  while #claimed < count and budget > 0 do
    local members = due_ready(ready, now, math.min(count - #claimed, budget))
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
          local deadline = ms(now + tonumber(lease_ms))
          redis.call('HSET', key, 'qs', 'l', 'qa', attempt + 1, 'qw', worker, 'qx', deadline)
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
  return {claimed, lost, next_due(ready, leased, stats, now), recovered}
end
