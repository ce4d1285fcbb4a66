#!lua flags=no-writes
-- The numbers of one shard of a queue.
-- @key ready     the shard's ready set
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- Returns {ready now, queued in all, leased, age of the oldest ready ms or '', counters as a
-- flat name, value list}; the counters hash also holds 'paused' while the shard is paused.
-- @include clock
-- @include queue
local now = server_ms()
local ready, _, earliest_due = ready_times(KEYS[1], now)
local oldest = ''
if earliest_due then
  oldest = ms(math.max(0, now - earliest_due))
end
return {ready, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), oldest,
  redis.call('HGETALL', KEYS[3])}
