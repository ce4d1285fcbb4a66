-- Fencing: whether a lease still holds where the write happens.

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
