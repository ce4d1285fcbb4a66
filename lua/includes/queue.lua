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

-- The limits' keys (see set_limits below).
local function limits_key(ready)
  return string.sub(ready, 1, -2) .. 'm'
end

local function leases_key(ready)
  return string.sub(ready, 1, -2) .. 'a'
end

local function held_key(ready)
  return string.sub(ready, 1, -2) .. 'h'
end

-- The queue's tasks waiting for parents (see lua/includes/deps.lua), by submit time.
local function blocked_key(ready)
  return string.sub(ready, 1, -2) .. 'b'
end

local function held_set(ready, group)
  return string.sub(ready, 1, -2) .. 'h:' .. group
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
  elseif redis.call('ZREM', waiting_key(ready), member) == 0 then
    redis.call('ZREM', held_set(ready, group), member)
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
  local held = 0
  for _, group in ipairs(redis.call('ZRANGE', held_key(ready), 0, -1)) do
    held = held + redis.call('ZCARD', held_set(ready, group))
  end
  local claimable = in_ready + held + redis.call('ZCOUNT', waiting, '-inf', ms(now))
  return claimable, in_ready + held + redis.call('ZCARD', waiting), earliest
end

-- Limits (set_limits) are kept per shard, in a hash named from the ready set ('m'):
-- 'c', 'r', 'b' (max concurrency, per second, burst) for the whole queue, 'c:<group>',
-- 'r:<group>', 'b:<group>' for a group, and 'n' the number of those group fields (absent:
-- no group has a limit, and a claim looks none up). While it has any, the shard keeps the
-- flow state of the queue and of each group (flow_read): leases held, from claim to end
-- (lost ones until they are failed), and a token bucket. A claim that meets a task of a
-- group at its limit moves it, with its score, to the group's held set ('h:<group>'), and
-- names the group in the held groups ('h'), scored by when to look again: +inf until one of
-- its leases ends, else when its bucket has a token. Held tasks go back to the ready set,
-- in their turn, once their group is due.

-- The shard's limits, or nil when it has none: the queue's (c, r, b: numbers or nil) at
-- once, a group's as group_limits asks for them (remembered for the call).
local function limits_of(ready)
  local key = limits_key(ready)
  if redis.call('EXISTS', key) == 0 then
    return nil
  end
  local queue = redis.call('HMGET', key, 'c', 'r', 'b', 'n')
  return {key = key, c = tonumber(queue[1]), r = tonumber(queue[2]), b = tonumber(queue[3]),
    grouped = queue[4] ~= false, groups = {}}
end

-- A group's limits: {most, rate, burst}, each a number or nil.
local function group_limits(limits, group)
  if not limits.grouped then
    return {}
  end
  local known = limits.groups[group]
  if known == nil then
    local s = redis.call('HMGET', limits.key, 'c:' .. group, 'r:' .. group, 'b:' .. group)
    known = {tonumber(s[1]), tonumber(s[2]), tonumber(s[3])}
    limits.groups[group] = known
  end
  return known
end

-- The flow state of the queue ('') or of a group ('g<group>') on a shard with limits: its
-- leases held and its token bucket, one field of the 'a' hash, "<leases>,<tokens>,<ms>"
-- (tokens and ms empty until it has a rate).
local function flow_read(ready, field)
  local s = redis.call('HGET', leases_key(ready), field)
  if not s then
    return {leases = 0}
  end
  local leases, tokens, at = string.match(s, '^(-?%d+),([^,]*),(.*)$')
  return {leases = tonumber(leases), tokens = tonumber(tokens), at = tonumber(at)}
end

local function flow_write(ready, field, state)
  local bucket = ','
  if state.tokens then
    bucket = string.format('%.6f,%.3f', state.tokens, state.at)
  end
  redis.call('HSET', leases_key(ready), field, state.leases .. ',' .. bucket)
end

-- A state's tokens at now, for a rate and a burst (full when its bucket was never used).
local function flow_tokens(state, rate, burst, now)
  if not state.tokens then
    return burst
  end
  return math.min(burst, state.tokens + math.max(0, now - state.at) * rate / 1000)
end

-- When a bucket with these tokens next has one (ms).
local function token_due(tokens, rate, now)
  return now + math.max(0, 1 - tokens) * 1000 / rate
end

-- Move a ready task of a group at its limit to the group's held set, keeping its score;
-- the group is looked at again at wake (ms, or '+inf': when one of its leases ends).
local function hold(ready, group, member, score, wake)
  redis.call('ZREM', ready, member)
  redis.call('ZADD', held_set(ready, group), score, member)
  redis.call('ZADD', held_key(ready), wake, group)
end

-- Put the held tasks of up to batch groups due at now back in the ready set (up to batch
-- tasks each; a group with more stays due).
local function unhold(ready, now, batch)
  local held = held_key(ready)
  for _, group in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', ms(now), 'LIMIT', 0, batch)) do
    local set = held_set(ready, group)
    local entries = redis.call('ZRANGE', set, 0, batch - 1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      redis.call('ZADD', ready, entries[i + 1], entries[i])
      redis.call('ZREM', set, entries[i])
    end
    if redis.call('EXISTS', set) == 0 then
      redis.call('ZREM', held, group)
    end
  end
end

-- A lease of group ended (completed, failed, released, recovered): while the shard has
-- limits, it stops counting; a group held until then is due, and when that or the queue's
-- own concurrency may let a claim through, waiting workers hear.
local function lease_ended(ready, group)
  local limits = limits_key(ready)
  if redis.call('EXISTS', limits) == 0 then
    return
  end
  local set_for = redis.call('HMGET', limits, 'n', 'c')
  local fields = {''}
  if set_for[1] then
    fields[2] = 'g' .. group
  end
  for _, field in ipairs(fields) do
    local state = flow_read(ready, field)
    state.leases = math.max(0, state.leases - 1)
    flow_write(ready, field, state)
  end
  local held = held_key(ready)
  local wake = set_for[2] ~= false
  if redis.call('ZSCORE', held, group) == 'inf' then
    redis.call('ZADD', held, 0, group)
    wake = true
  end
  if wake then
    redis.call('SPUBLISH', ready, '')
  end
end

-- Count the shard's leases held, the queue's and each group's, from its leased set (its
-- limits changed), keeping the token buckets.
local function count_leases(ready, leased, base)
  local counts = {[''] = 0}
  for _, member in ipairs(redis.call('ZRANGE', leased, 0, -1)) do
    local s = redis.call('HMGET', base .. member, 'qs', 'qg')
    if s[1] == 'l' or s[1] == 'x' then
      local field = 'g' .. group_of(member, s[2])
      counts[''] = counts[''] + 1
      counts[field] = (counts[field] or 0) + 1
    end
  end
  for _, field in ipairs(redis.call('HKEYS', leases_key(ready))) do
    if counts[field] == nil then
      counts[field] = 0
    end
  end
  for field, held in pairs(counts) do
    local state = flow_read(ready, field)
    state.leases = held
    flow_write(ready, field, state)
  end
end

-- Whether the queue is paused on this shard (pause_queue): it leases nothing.
local function is_paused(stats)
  return redis.call('HGET', stats, 'paused') ~= false
end

-- A terminal write landed on a queued task: the job is done, off its queue, counted.
-- Returns whether tasks wait for it (see lua/includes/deps.lua).
local function job_done(key, member, ready, leased, stats, status, given_up)
  local s = redis.call('HMGET', key, 'qs', 'qg', 'qc')
  if s[1] == 'd' then
    return false
  end
  redis.call('HSET', key, 'qs', 'd', 'z', status)
  redis.call('HDEL', key, 'qx')
  local group = group_of(member, s[2])
  if s[1] == 'b' then
    redis.call('ZREM', blocked_key(ready), member)
  elseif s[1] ~= 'l' and s[1] ~= 'x' then -- a leased task is in none of the queue's sets
    dequeue(ready, member, group)
  end
  if s[1] == 'l' or s[1] == 'x' then
    lease_ended(ready, group)
  end
  redis.call('ZREM', leased, member)
  redis.call('HINCRBY', stats, status, 1)
  if given_up then
    redis.call('HINCRBY', stats, 'given_up', 1)
  end
  return s[3] ~= false
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
      local group = group_of(member, s[8])
      enqueue(ready, member, group, s[7], now, now)
      lease_ended(ready, group)
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
  local function sooner(at)
    if at and (best == nil or at < best) then
      best = at
    end
  end
  if not is_paused(stats) then
    local limits = limits_of(ready)
    local blocked = false
    if limits then
      local rate = limits.r
      local state = flow_read(ready, '')
      if limits.c and state.leases >= limits.c then
        blocked = true  -- a lease's end tells the workers
      elseif rate then
        local tokens = flow_tokens(state, rate, limits.b or 1, now)
        if tokens < 1 then
          blocked = true
          sooner(token_due(tokens, rate, now))
        end
      end
    end
    local held = redis.call('ZRANGE', held_key(ready), 0, 0, 'WITHSCORES')
    if not blocked and #held > 0 and held[2] ~= 'inf' then
      sooner(tonumber(held[2]))
    end
    if not blocked then
      if redis.call('ZCARD', ready) > 0 then
        return '0'
      end
      local first = redis.call('ZRANGE', waiting_key(ready), 0, 0, 'WITHSCORES')
      if #first > 0 then
        sooner(tonumber(first[2]))
      end
    end
  end
  local first = redis.call('ZRANGE', leased, 0, 0, 'WITHSCORES')
  if #first > 0 then
    sooner(tonumber(first[2]))
  end
  if best == nil then
    return ''
  end
  return ms(math.max(0, best - now))
end
