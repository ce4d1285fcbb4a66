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
  if count > 0 then
    promote(ready, base, now, budget)
  end
  local vtimes = vtimes_key(ready)
  local top = 0
  while #claimed < count and budget > 0 do
    local members = redis.call('ZRANGE', ready, 0, math.min(count - #claimed, budget) - 1,
      'WITHSCORES')
    if #members == 0 then
      break
    end
    budget = budget - #members / 2
    for i = 1, #members, 2 do
      local member, tag = members[i], tag_of(members[i + 1])
      redis.call('ZREM', ready, member)
      top = math.max(top, tag)
      local key = base .. member
      local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'e', 'z', 'qt', 'qo', 'qg')
      local field = 'g' .. group_of(member, s[8])
      if tonumber(redis.call('HGET', vtimes, field)) == tag then
        redis.call('HDEL', vtimes, field)  -- the group's last tag: it has nothing more ready
      end
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
  if top > 0 then
    claimed_up_to(ready, top)
  end
  if #claimed > 0 then
    redis.call('HINCRBY', stats, 'claimed', #claimed)
  end
  return {claimed, lost, next_due(ready, leased, stats, now), recovered}
end
