-- Creating a task: the body of create.lua, shared with the scripts that create a task as
-- one of their steps. k and a are create.lua's KEYS and ARGV (see lua/create.lua).
-- @include codes
-- @include history
-- @include notify
-- @include clock
-- @include queue
-- @include deps

-- Create the task of create.lua's KEYS k and ARGV a; its reply (see lua/create.lua).
local function create_task(k, a)
  if redis.call('EXISTS', k[1]) == 1 then
    local history = redis.call('HGET', k[1], 'w') or ''
    if resent(k[1], history, a[10]) then
      if redis.call('HGET', k[1], 'qe') and redis.call('HGET', k[1], 'z') then
        return Code.PARENT_ENDED -- (or ended since: either way the caller reads it again)
      end
      return Code.OK
    end
    return Code.EXISTS
  end
  local now = a[7]
  -- Lazily drop index entries of expired tasks that Redis has already removed.
  local stale = redis.call('ZRANGEBYSCORE', k[3], '-' .. now, now, 'LIMIT', 0, tonumber(a[9]))
  for _, member in ipairs(stale) do
    local id = string.sub(member, string.find(member, ':', 1, true) + 1)
    if redis.call('EXISTS', k[5] .. id) == 0 then
      redis.call('ZREM', k[2], member)
      redis.call('ZREM', k[3], member)
    end
  end
  -- the parents (submit with after=): each a live queued task of the owner
  local parents, waiting_for, ended = {}, 0, nil
  if #k > 5 and a[22] ~= '' then
    for parent in string.gmatch(a[22], '%S+') do
      local s = redis.call('HMGET', k[5] .. parent, 'q', 'qs', 'z', 'e')
      if not s[1] or (s[4] and tonumber(s[4]) <= tonumber(now)) then
        return {Code.NO_PARENT, parent}
      end
      if s[2] ~= 'd' then
        waiting_for = waiting_for + 1
        parents[#parents + 1] = parent
      elseif s[3] ~= 'completed' and a[24] ~= 'r' then
        ended = ended or parent
      end
    end
  end
  if #k > 5 and a[19] ~= '' then
    local holder = redis.call('GET', a[19])
    if holder then
      local held = k[5] .. holder
      local s = redis.call('HMGET', held, 'qs', 'z', 'e', 'qp', 'q', 'qg')
      local expired = s[3] and tonumber(s[3]) <= tonumber(now)
      local live = s[1] and s[1] ~= 'd' and not s[2] and not expired and s[5] == a[11]
      if live and a[20] == '' then
        return {Code.DUPLICATE, holder, 0}
      end
      if live and s[1] == 'r' then
        local at = server_ms()
        local ready_at = at + tonumber(a[20])
        local member = string.sub(a[12], 1, string.find(a[12], ':', 1, true)) .. holder
        redis.call('HSET', held, 'p', a[13], 'qr', ms(ready_at))
        local group = group_of(member, s[6])
        dequeue(k[6], member, group)
        enqueue(k[6], member, group, s[4], ready_at, at)
        redis.call('HINCRBY', k[7], 'debounced', 1)
        job_changed(held)
        return {Code.DUPLICATE, holder, 1}
      end
    end
  end
  if a[6] ~= '' then
    local active = redis.call('ZCOUNT', k[3], '(' .. now, '+inf')
    if active >= tonumber(a[6]) then
      return Code.OVER_QUOTA
    end
  end
  local expires = a[4]
  if expires == '' then
    redis.call('HSET', k[1], 'f', a[1], 'v', 1, 'k', 1, 'd', a[2], 'w', a[10] .. ':1')
  else
    redis.call('HSET', k[1], 'f', a[1], 'v', 1, 'k', 1, 'd', a[2], 'e', expires,
      'w', a[10] .. ':1')
  end
  if a[5] ~= '' then
    redis.call('PEXPIREAT', k[1], a[5])
  end
  notify(k[1], 1)
  redis.call('ZADD', k[2], 0, a[3])
  if expires == '' then
    redis.call('ZADD', k[3], '+inf', a[3])
  else
    redis.call('ZADD', k[3], expires, a[3])
    redis.call('ZADD', k[4], 'LT', expires, a[8])
  end
  if #k > 5 then
    local at = server_ms()
    local ready_at = at + tonumber(a[15])
    redis.call('HSET', k[1], 'q', a[11], 'qo', a[16], 'qs', 'r', 'qa', 0, 'qm', a[14],
      'qt', 0, 'qr', ms(ready_at), 'p', a[13])
    if a[17] ~= '0' then
      redis.call('HSET', k[1], 'qp', a[17])
    end
    if a[18] ~= '' then
      redis.call('HSET', k[1], 'qf', a[18])
    end
    if a[21] ~= '' then
      redis.call('HSET', k[1], 'qg', a[21])
    end
    if waiting_for > 0 or ended then
      redis.call('HSET', k[1], 'qs', 'b', 'qn', waiting_for, 'qe', a[22], 'qi', a[23], 'qb', k[6],
        'qy', a[3], 'qj', a[25])
      if a[24] == 'r' then
        redis.call('HSET', k[1], 'qk', 'r')
      end
      redis.call('ZADD', blocked_key(k[6]), ms(at), a[12])
      for _, parent in ipairs(parents) do
        local parent_key = k[5] .. parent
        local children = redis.call('HGET', parent_key, 'qc')
        redis.call('HSET', parent_key, 'qc', children and (children .. ' ' .. a[12]) or a[12])
      end
    else
      enqueue(k[6], a[12], group_of(a[12], a[21]), a[17], ready_at, at)
    end
    if a[19] ~= '' then
      local id = string.sub(a[12], string.find(a[12], ':', 1, true) + 1)
      if a[5] ~= '' then
        redis.call('SET', a[19], id, 'PXAT', a[5])
      else
        redis.call('SET', a[19], id)
      end
    end
    redis.call('HINCRBY', k[7], 'submitted', 1)
    redis.call('SADD', k[8], a[11])
    if ended then
      cancel_child(k[1], a[12], ended, k[3], a[10], now)
      return Code.PARENT_ENDED
    end
    if waiting_for == 0 then
      redis.call('SPUBLISH', k[6], '')
    end
  end
  return Code.OK
end
