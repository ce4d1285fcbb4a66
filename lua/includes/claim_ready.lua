-- Claiming: lease the ready tasks of one shard of a queue; see lua/claim.lua.
-- @include clock
-- @include queue
-- @include task

-- Claim up to count ready tasks of the shard (ready, leased, stats, base), after a bounded
-- recovery of up to batch expired leases; the parameters are claim.lua's KEYS and ARGV, in
-- order. The reply of claim.lua. A paused shard (is_paused) recovers but leases nothing.
-- Under limits (limits_of) a claim takes no more than the queue's concurrency and bucket
-- allow, and holds the tasks it meets of a group at its limit (hold).
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
  local limits = nil
  local tokens = {}
  if count > 0 then
    promote(ready, base, now, budget)
    unhold(ready, now, budget)
    limits = limits_of(ready)
  end
  local leases = leases_key(ready)
  if limits then
    if limits['c'] then
      count = math.min(count, limits['c'] - (tonumber(redis.call('HGET', leases, '')) or 0))
    end
    if limits['r'] then
      tokens[''] = bucket_tokens(ready, '', limits['r'], limits['b'] or 1, now)
      count = math.min(count, math.floor(tokens['']))
    end
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
      local member, score = members[i], members[i + 1]
      local key = base .. member
      local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'e', 'z', 'qt', 'qo', 'qg')
      local group = group_of(member, s[8])
      local wait = nil
      if limits and s[1] == 'r' then
        local most, rate = limits['c:' .. group], limits['r:' .. group]
        local field = 'g' .. group
        if most and (tonumber(redis.call('HGET', leases, field)) or 0) >= most then
          wait = '+inf'
        elseif rate then
          if tokens[field] == nil then
            tokens[field] = bucket_tokens(ready, field, rate, limits['b:' .. group] or 1, now)
          end
          if tokens[field] < 1 then
            wait = ms(token_due(tokens[field], rate, now))
          end
        end
      end
      if wait then
        hold(ready, group, member, score, wait)
      else
        local tag = tag_of(score)
        redis.call('ZREM', ready, member)
        top = math.max(top, tag)
        if tonumber(redis.call('HGET', vtimes, 'g' .. group)) == tag then
          redis.call('HDEL', vtimes, 'g' .. group)  -- its last tag: nothing more of it ready
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
            if limits then
              redis.call('HINCRBY', leases, '', 1)
              redis.call('HINCRBY', leases, 'g' .. group, 1)
              for _, field in ipairs({'', 'g' .. group}) do
                if tokens[field] then
                  tokens[field] = tokens[field] - 1
                end
              end
            end
          end
        end
      end
    end
  end
  for field, left in pairs(tokens) do
    bucket_save(ready, field, left, now)
  end
  if top > 0 then
    claimed_up_to(ready, top)
  end
  if #claimed > 0 then
    redis.call('HINCRBY', stats, 'claimed', #claimed)
  end
  return {claimed, lost, next_due(ready, leased, stats, now), recovered}
end
