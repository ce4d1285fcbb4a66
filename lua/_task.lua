-- Shared by the scripts that include it (the loader puts it after their first line).
local HISTORY = 6

-- The task hash as {core fields (flat name, value list), variables joined as "k:v,k:v"}.
local function record(key)
  local flat = redis.call('HGETALL', key)
  local core, vars = {}, {}
  for i = 1, #flat, 2 do
    local name = flat[i]
    if string.byte(name, 1) == 34 then
      vars[#vars + 1] = name .. ':' .. flat[i + 1]
    else
      core[#core + 1] = name
      core[#core + 1] = flat[i + 1]
    end
  end
  return core, table.concat(vars, ',')
end

-- Whether the write token is in the history field w ("token:version ...", newest first).
local function wrote_before(history, token)
  for seen in string.gmatch(history, '(%x+):%d+') do
    if seen == token then
      return true
    end
  end
  return false
end

-- Whether this call was sent before and applied (its token is in w): a call resent after a
-- lost reply. Then w is written back unchanged, so the call replicates and a WAIT after it
-- also covers the earlier write (Redis >= 7.2 and Valkey count only a client's own
-- replicated writes).
local function resent(key, history, token)
  if wrote_before(history, token) then
    redis.call('HSET', key, 'w', history)
    return true
  end
  return false
end

-- Tell the task's waiters to look again: its shard channel is named like its key, so it
-- lies in the key's slot. The message is only a hint; waiters read the version.
local function notify(key, version)
  redis.call('SPUBLISH', key, version)
end

-- The history field after a write of token that made version: the last HISTORY writes.
local function remember(history, token, version)
  local kept = {token .. ':' .. version}
  for entry in string.gmatch(history, '%S+') do
    if #kept == HISTORY then
      break
    end
    kept[#kept + 1] = entry
  end
  return table.concat(kept, ' ')
end

-- --- work queues (see lua/claim.lua) ---------------------------------------------------------

-- The server's clock in milliseconds, with microseconds as the fraction: queue times never
-- depend on a client's clock.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- A time as a score or field: Lua would print only 14 significant digits.
local function ms(value)
  return string.format('%.3f', value)
end

-- Why the lease with this token on the task at key (of queue) does not hold now, or nil.
local function lease_refusal(key, queue, token, now)
  local s = redis.call('HMGET', key, 'q', 'qs', 'qt', 'qx', 'z')
  if s[1] ~= queue then
    return 'missing'
  end
  local current = tonumber(s[3])
  if token > current then
    return 'forged'
  end
  if s[5] then
    return s[5]
  end
  if token < current then
    return 'reclaimed'
  end
  if s[2] ~= 'l' or tonumber(s[4]) <= now then
    return 'expired'
  end
  return nil
end

-- Whether the task at key is still lost for good (attempts used up) under this token.
local function finalizable(key, queue, token)
  local s = redis.call('HMGET', key, 'q', 'qs', 'qt')
  return s[1] == queue and (s[2] == 'x' or s[2] == 'y') and tonumber(s[3]) == token
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
