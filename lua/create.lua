#!lua flags=
-- Create a task record with version 1 and index it, within the owner's live-task quota.
-- KEYS[1] task hash, KEYS[2] owner index, KEYS[3] owner expiry index, KEYS[4] shard due set
-- ARGV[1] data, ARGV[2] index member, ARGV[3] expires_at_ms or "", ARGV[4] purge_at_ms or "",
-- ARGV[5] max live tasks or "", ARGV[6] now_ms, ARGV[7] due member, ARGV[8] prune batch,
-- ARGV[9] write token
-- Returns 1 created, 0 quota exceeded, -1 key exists. Writes nothing unless it returns 1.
-- A call resent after a lost reply finds its own token (field w, as compare_and_set
-- keeps it) and reports 1 again.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local history = redis.call('HGET', KEYS[1], 'w') or ''
  for token in string.gmatch(history, '(%x+):%d+') do
    if token == ARGV[9] then
      -- w written back unchanged, so that a WAIT after this call covers the earlier write
      -- (see compare_and_set.lua).
      redis.call('HSET', KEYS[1], 'w', history)
      return 1
    end
  end
  return -1
end
local now = ARGV[6]
-- Lazily drop index entries of expired tasks that Redis has already removed.
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, member in ipairs(stale) do
  if redis.call('EXISTS', string.sub(member, 17)) == 0 then
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZREM', KEYS[3], member)
  end
end
if ARGV[5] ~= '' then
  local live = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
  if live >= tonumber(ARGV[5]) then
    return 0
  end
end
local expires = ARGV[3]
redis.call('HSET', KEYS[1], 'v', 1, 'd', ARGV[1], 'e', expires, 'w', ARGV[9] .. ':1')
redis.call('SPUBLISH', KEYS[1], 1) -- wake the task's waiters (channel named like the key)
if ARGV[4] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if expires == '' then
  redis.call('ZADD', KEYS[3], '+inf', ARGV[2])
else
  redis.call('ZADD', KEYS[3], expires, ARGV[2])
  redis.call('ZADD', KEYS[4], 'LT', expires, ARGV[7])
end
return 1
