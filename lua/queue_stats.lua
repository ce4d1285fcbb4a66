#!lua flags=no-writes
-- The numbers of one shard of a queue.
-- @key ready     the shard's ready set (its waiting set is named from it)
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- @key base      the shard's task key base
-- Returns {ready now, queued in all, leased, age of the oldest ready ms or '', counters as a
-- flat name, value list, waiting for parents}; the counters hash also holds 'paused' while
-- the shard is paused.
-- The oldest ready is the earliest due of the waiting set and the next task to claim.
-- @include clock
-- @include queue
local now = server_ms()
local ready, queued, earliest = queued_counts(KEYS[1], KEYS[4], now)
local oldest = ''
if earliest then
  oldest = ms(math.max(0, now - earliest))
end
return {ready, queued, redis.call('ZCARD', KEYS[2]), oldest, redis.call('HGETALL', KEYS[3]),
  redis.call('ZCARD', blocked_key(KEYS[1]))}
