-- Work queues: a shard of a queue is a ready set, a leased set and a counters hash.
-- @include clock
-- @include notify

-- Priorities share the ready set: a task of priority p (0 to 9) is scored by its ready-at ms
-- less p bands, so each priority has a band of scores of its own, higher ones lower, and
-- priority 0 scores its ready-at ms. A band spans 2^44 ms (557 years).
local BAND = 17592186044416
local TOP_PRIORITY = 9

-- A ready set score: the ready-at ms in the task's priority band (priority: text or nil).
local function ready_score(ready_at, priority)
  return ms(ready_at - (tonumber(priority) or 0) * BAND)
end

-- The highest priority band holding an entry of the ready set, or nil when it is empty.
local function top_band(ready)
  local first = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return nil
  end
  return math.min(TOP_PRIORITY, math.max(0, math.ceil(-tonumber(first[2]) / BAND)))
end

-- Up to limit members of the ready set claimable at now: highest priority first, oldest
-- first within a priority.
local function due_ready(ready, now, limit)
  local found = {}
  local band = top_band(ready)
  while band and band >= 0 and #found < limit do
    local low = -band * BAND
    local members = redis.call('ZRANGEBYSCORE', ready, ms(low), ms(low + now), 'LIMIT', 0,
      limit - #found)
    for _, member in ipairs(members) do
      found[#found + 1] = member
    end
    band = band - 1
  end
  return found
end

-- The ready set's claimable count at now, and the earliest ready-at ms among all of its
-- entries (nil when empty) and among the claimable ones (nil when none).
local function ready_times(ready, now)
  local count, earliest, earliest_due = 0, nil, nil
  local band = top_band(ready)
  while band and band >= 0 do
    local low = -band * BAND
    local first = redis.call('ZRANGEBYSCORE', ready, ms(low), '(' .. ms(low + BAND), 'LIMIT', 0,
      1, 'WITHSCORES')
    if #first > 0 then
      local at = tonumber(first[2]) - low
      if earliest == nil or at < earliest then
        earliest = at
      end
      if at <= now then
        count = count + redis.call('ZCOUNT', ready, ms(low), ms(low + now))
        if earliest_due == nil or at < earliest_due then
          earliest_due = at
        end
      end
    end
    band = band - 1
  end
  return count, earliest, earliest_due
end

-- Whether the queue is paused on this shard (pause_queue): it leases nothing.
local function is_paused(stats)
  return redis.call('HGET', stats, 'paused') ~= false
end

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
    local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'qt', 'z', 'qo', 'qp')
    local state = s[1]
    if not state or s[5] or state == 'd' or state == 'r' then
      redis.call('ZREM', leased, member)
    elseif state == 'l' and tonumber(s[2]) < tonumber(s[3]) then
      redis.call('HSET', key, 'qs', 'r', 'qr', ms(now))
      redis.call('HDEL', key, 'qx')
      redis.call('ZREM', leased, member)
      redis.call('ZADD', ready, ready_score(now, s[7]), member)
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

-- How long until the shard of a queue next needs a visit (ms, as text), or '' if never. A
-- paused shard needs one only for its leases.
local function next_due(ready, leased, stats, now)
  local best = nil
  if not is_paused(stats) then
    local _, earliest = ready_times(ready, now)
    best = earliest
  end
  local first = redis.call('ZRANGE', leased, 0, 0, 'WITHSCORES')
  if #first > 0 and (best == nil or tonumber(first[2]) < best) then
    best = tonumber(first[2])
  end
  if best == nil then
    return ''
  end
  return ms(math.max(0, best - now))
end
