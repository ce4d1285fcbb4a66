-- Work queues: a shard of a queue is a ready set, a leased set and a counters hash.
-- @include clock
-- @include notify

-- A shard of a queue keeps its tasks that may be claimed now in its ready set, in claim
-- order, and those claimable later in its waiting set, by ready-at ms; a claim first moves
-- the waiting tasks that have come due (promote). Both sets' keys, and the virtual times
-- hash, are named from the ready set's ({P:S}:q:<queue>:r, see the key schema).
--
-- Claim order is priority first, then start-time fair queuing among the task groups (the
-- owner unless the submit named one): a task entering the ready set is tagged one past its
-- group's last tag, or one past the last claimed tag if that is later; claims take the
-- lowest tag. A group with 10,000 tasks queued and one with 10 that come after them so
-- alternate; within a group, tasks keep their order. A ready set score is the tag less the
-- task's priority (0 to 9) times 2^44, so every priority has a band of its own.
local BAND = 17592186044416

local function waiting_key(ready)
  return string.sub(ready, 1, -2) .. 'w'
end

-- The virtual times hash: field '' the last claimed tag, 'g<group>' a group's last tag.
local function vtimes_key(ready)
  return string.sub(ready, 1, -2) .. 'v'
end

-- A task's group: its qg field (a submit that named one), else its owner (its member's
-- part before the ':').
local function group_of(member, qg)
  if qg and qg ~= '' then
    return qg
  end
  return string.sub(member, 1, string.find(member, ':', 1, true) - 1)
end

-- The ready set score of a task of group entering it now (priority: text or nil).
local function fair_score(ready, group, priority)
  local vtimes = vtimes_key(ready)
  local field = 'g' .. group
  local last = redis.call('HMGET', vtimes, '', field)
  local tag = math.max(tonumber(last[1]) or 0, tonumber(last[2]) or 0) + 1
  redis.call('HSET', vtimes, field, tag)
  return string.format('%d', tag - (tonumber(priority) or 0) * BAND)
end

-- The tag of a ready set score.
local function tag_of(score)
  local tag = tonumber(score) % BAND
  return tag
end

-- Queue a task: ready now (tagged), or waiting until ready_at.
local function enqueue(ready, member, group, priority, ready_at, now)
  if ready_at > now then
    redis.call('ZADD', waiting_key(ready), ms(ready_at), member)
  else
    redis.call('ZADD', ready, fair_score(ready, group, priority), member)
  end
end

-- Take a task off both sets. When it held its group's last tag, the group's entry goes too
-- (a later task of the group is tagged from the last claimed tag, as without it).
local function dequeue(ready, member, group)
  local score = redis.call('ZSCORE', ready, member)
  if score then
    redis.call('ZREM', ready, member)
    local vtimes = vtimes_key(ready)
    local field = 'g' .. group
    if tonumber(redis.call('HGET', vtimes, field)) == tag_of(score) then
      redis.call('HDEL', vtimes, field)
    end
  else
    redis.call('ZREM', waiting_key(ready), member)
  end
end

-- Move up to batch waiting tasks that are due at now into the ready set (base: the shard's
-- task key base).
local function promote(ready, base, now, batch)
  local waiting = waiting_key(ready)
  local due = redis.call('ZRANGEBYSCORE', waiting, '-inf', ms(now), 'LIMIT', 0, batch)
  for _, member in ipairs(due) do
    local s = redis.call('HMGET', base .. member, 'qg', 'qp')
    redis.call('ZREM', waiting, member)
    redis.call('ZADD', ready, fair_score(ready, group_of(member, s[1]), s[2]), member)
  end
end

-- The claimed tags of a claim: the last claimed tag moves on to the highest of them.
local function claimed_up_to(ready, tag)
  local vtimes = vtimes_key(ready)
  if tag > (tonumber(redis.call('HGET', vtimes, '')) or 0) then
    redis.call('HSET', vtimes, '', string.format('%d', tag))
  end
end

-- The shard's queued tasks claimable at now, all of them, and the earliest ready-at ms of
-- those claimable (nil when none; the next to claim stands for the ready set's).
local function queued_counts(ready, base, now)
  local waiting = waiting_key(ready)
  local in_ready = redis.call('ZCARD', ready)
  local due = redis.call('ZRANGEBYSCORE', waiting, '-inf', ms(now), 'LIMIT', 0, 1, 'WITHSCORES')
  local earliest = nil
  if #due > 0 then
    earliest = tonumber(due[2])
  end
  if in_ready > 0 then
    local head = redis.call('ZRANGE', ready, 0, 0)
    local at = tonumber(redis.call('HGET', base .. head[1], 'qr'))
    if at and (earliest == nil or at < earliest) then
      earliest = at
    end
  end
  local claimable = in_ready + redis.call('ZCOUNT', waiting, '-inf', ms(now))
  return claimable, in_ready + redis.call('ZCARD', waiting), earliest
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
  dequeue(ready, member, group_of(member, redis.call('HGET', key, 'qg')))
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
    local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'qt', 'z', 'qo', 'qp', 'qg')
    local state = s[1]
    if not state or s[5] or state == 'd' or state == 'r' then
      redis.call('ZREM', leased, member)
    elseif state == 'l' and tonumber(s[2]) < tonumber(s[3]) then
      redis.call('HSET', key, 'qs', 'r', 'qr', ms(now))
      redis.call('HDEL', key, 'qx')
      redis.call('ZREM', leased, member)
      enqueue(ready, member, group_of(member, s[8]), s[7], now, now)
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
    if redis.call('ZCARD', ready) > 0 then
      return '0'
    end
    local first = redis.call('ZRANGE', waiting_key(ready), 0, 0, 'WITHSCORES')
    if #first > 0 then
      best = tonumber(first[2])
    end
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
