-- Work queues: a shard of a queue is a ready set, a leased set and a counters hash.
-- @include clock
-- @include notify

-- A terminal write landed on a queued task: the job is done, off its queue, counted.
local function job_done(key, member, ready, leased, stats, status, given_up)
  if redis.call('HGET', key, 'qs') == 'd' then
    return
  end
  redis.call('HSET', key, 'qs', 'd', 'z', status)
  redis.call('HDEL', key, 'qx')
  redis.call('ZREM', ready, member)
  redis.call('ZREM', leased, member)
  redis.call('HINCRBY', stats, status, 1)
  if given_up then
    redis.call('HINCRBY', stats, 'given_up', 1)
  end
end

-- A queue state change is a write of the task: its version goes up and waiters hear of it.
local function job_changed(key)
  notify(key, redis.call('HINCRBY', key, 'v', 1))
end

-- Recover up to batch expired leases of one shard of a queue: back to ready (attempt kept)
-- while attempts are left, else marked lost and handed out ({member, token, attempt, max,
-- 1 if the lease expired else 0}) for the store to fail; a lost entry stays in the leased set,
-- due again retry_ms later, until a store has failed it. Returns the lost and the count
-- put back. (Each lost entry also carries the task's owner id, last.)
local function recover_leases(ready, leased, stats, base, now, batch, retry_ms)
  local lost = {}
  local recovered = 0
  local due = redis.call('ZRANGEBYSCORE', leased, '-inf', ms(now), 'LIMIT', 0, batch)
  for _, member in ipairs(due) do
    local key = base .. member
    local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'qt', 'z', 'qo')
    local state = s[1]
    if not state or s[5] or state == 'd' or state == 'r' then
      redis.call('ZREM', leased, member)
    elseif state == 'l' and tonumber(s[2]) < tonumber(s[3]) then
      redis.call('HSET', key, 'qs', 'r', 'qr', ms(now))
      redis.call('HDEL', key, 'qx')
      redis.call('ZREM', leased, member)
      redis.call('ZADD', ready, ms(now), member)
      job_changed(key)
      recovered = recovered + 1
    else
      if state == 'l' then
        redis.call('HSET', key, 'qs', 'x')
        job_changed(key)
        state = 'x'
      end
      redis.call('ZADD', leased, ms(now + retry_ms), member)
      lost[#lost + 1] = {member, s[4], s[2], s[3], state == 'x' and 1 or 0, s[6]}
    end
  end
  if recovered > 0 then
    redis.call('HINCRBY', stats, 'recovered', recovered)
    redis.call('SPUBLISH', ready, '')
  end
  return lost, recovered
end

-- How long until the shard of a queue next needs a visit (ms, as text), or '' if never.
local function next_due(ready, leased, now)
  local best = nil
  for _, set in ipairs({ready, leased}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if #first > 0 then
      local at = tonumber(first[2])
      if best == nil or at < best then
        best = at
      end
    end
  end
  if best == nil then
    return ''
  end
  return ms(math.max(0, best - now))
end
