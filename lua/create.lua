#!lua flags=
-- Create a task (version 1, core version 1) and index it, within the owner's quota of
-- unexpired, non-terminal tasks.
-- @key task            the task hash
-- @key index           the owner's index
-- @key expiry          the owner's expiry index
-- @key due             the shard's due set
-- @key prefix          the owner's task key prefix (a task's key is it and the id in its member)
-- @key [ready]         with a queue part (submit): the queue's ready set on the owner's shard
-- @key [counters]      with a queue part: its counters hash
-- @key [queues]        with a queue part: the shard's set of queue names
-- @arg format          the stored format
-- @arg data            the core record
-- @arg member          the task's index member
-- @arg expires_at      expiry in ms, or ""
-- @arg purge_at        when the hash is deleted, in ms, or ""
-- @arg quota           most live tasks of the owner, or ""
-- @arg now             now in ms
-- @arg due_member      the owner's member of the due set
-- @arg prune_batch     most index entries of vanished tasks to drop
-- @arg token           the write token
-- @arg [queue]         the queue name
-- @arg [job]           the task's queue member
-- @arg [params]        the job's params
-- @arg [max_attempts]  most attempts
-- @arg [delay_ms]      how long until it is ready
-- @arg [owner]         the owner id
-- @arg [priority]      0 to 9 (higher is claimed first)
-- @arg [from]          the id of the task it was resubmitted from, or ""
-- @arg [dedup]         the key of its dedup key (a string key of the owner's shard), or ""
-- @arg [debounce_ms]   with a dedup key: how far a later submit pushes a waiting task, or ""
-- @arg [group]         its flow-control group (encoded), or "" for its owner
-- With a queue part the task is enqueued in the same step (ready at the server's clock plus
-- the delay).
-- Returns OK created, OVER_QUOTA or EXISTS (a code of lua/includes/codes.lua), or
-- {DUPLICATE, the encoded id of the live task holding the dedup key, 1 if it was debounced
-- else 0}. Writes nothing unless it returns OK, or DUPLICATE debounced: then the waiting
-- task holding the key takes the new params and is ready debounce_ms from now.
-- A dedup key names the last task submitted with it; a task holds it while it is live (not
-- ended, not expired). With debounce_ms, a task already leased no longer holds it.
-- A call resent after a lost reply finds its own token (field w) and reports OK again.
-- The expiry index scores an unfinished task by its expiry (+inf for none) and a terminal
-- one by minus its expiry (-inf for none): the quota counts scores above now, and
-- everything expired scores between -now and now.
-- @include codes
-- @include history
-- @include notify
-- @include clock
-- @include queue
if redis.call('EXISTS', KEYS[1]) == 1 then
  local history = redis.call('HGET', KEYS[1], 'w') or ''
  if resent(KEYS[1], history, ARGV[10]) then
    return Code.OK
  end
  return Code.EXISTS
end
local now = ARGV[7]
-- Lazily drop index entries of expired tasks that Redis has already removed.
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-' .. now, now, 'LIMIT', 0, tonumber(ARGV[9]))
for _, member in ipairs(stale) do
  local id = string.sub(member, string.find(member, ':', 1, true) + 1)
  if redis.call('EXISTS', KEYS[5] .. id) == 0 then
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZREM', KEYS[3], member)
  end
end
if #KEYS > 5 and ARGV[19] ~= '' then
  local holder = redis.call('GET', ARGV[19])
  if holder then
    local held = KEYS[5] .. holder
    local s = redis.call('HMGET', held, 'qs', 'z', 'e', 'qp', 'q', 'qg')
    local expired = s[3] and tonumber(s[3]) <= tonumber(now)
    local live = s[1] and s[1] ~= 'd' and not s[2] and not expired and s[5] == ARGV[11]
    if live and ARGV[20] == '' then
      return {Code.DUPLICATE, holder, 0}
    end
    if live and s[1] == 'r' then
      local at = server_ms()
      local ready_at = at + tonumber(ARGV[20])
      local member = string.sub(ARGV[12], 1, string.find(ARGV[12], ':', 1, true)) .. holder
      redis.call('HSET', held, 'p', ARGV[13], 'qr', ms(ready_at))
      local group = group_of(member, s[6])
      dequeue(KEYS[6], member, group)
      enqueue(KEYS[6], member, group, s[4], ready_at, at)
      redis.call('HINCRBY', KEYS[7], 'debounced', 1)
      job_changed(held)
      return {Code.DUPLICATE, holder, 1}
    end
  end
end
if ARGV[6] ~= '' then
  local active = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
  if active >= tonumber(ARGV[6]) then
    return Code.OVER_QUOTA
  end
end
local expires = ARGV[4]
if expires == '' then
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'v', 1, 'k', 1, 'd', ARGV[2], 'w', ARGV[10] .. ':1')
else
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'v', 1, 'k', 1, 'd', ARGV[2], 'e', expires,
    'w', ARGV[10] .. ':1')
end
if ARGV[5] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
end
notify(KEYS[1], 1)
redis.call('ZADD', KEYS[2], 0, ARGV[3])
if expires == '' then
  redis.call('ZADD', KEYS[3], '+inf', ARGV[3])
else
  redis.call('ZADD', KEYS[3], expires, ARGV[3])
  redis.call('ZADD', KEYS[4], 'LT', expires, ARGV[8])
end
if #KEYS > 5 then
  local at = server_ms()
  local ready_at = at + tonumber(ARGV[15])
  redis.call('HSET', KEYS[1], 'q', ARGV[11], 'qo', ARGV[16], 'qs', 'r', 'qa', 0, 'qm', ARGV[14],
    'qt', 0, 'qr', ms(ready_at), 'p', ARGV[13])
  if ARGV[17] ~= '0' then
    redis.call('HSET', KEYS[1], 'qp', ARGV[17])
  end
  if ARGV[18] ~= '' then
    redis.call('HSET', KEYS[1], 'qf', ARGV[18])
  end
  if ARGV[21] ~= '' then
    redis.call('HSET', KEYS[1], 'qg', ARGV[21])
  end
  enqueue(KEYS[6], ARGV[12], group_of(ARGV[12], ARGV[21]), ARGV[17], ready_at, at)
  if ARGV[19] ~= '' then
    local id = string.sub(ARGV[12], string.find(ARGV[12], ':', 1, true) + 1)
    if ARGV[5] ~= '' then
      redis.call('SET', ARGV[19], id, 'PXAT', ARGV[5])
    else
      redis.call('SET', ARGV[19], id)
    end
  end
  redis.call('HINCRBY', KEYS[7], 'submitted', 1)
  redis.call('SADD', KEYS[8], ARGV[11])
  redis.call('SPUBLISH', KEYS[6], '')
end
return Code.OK
