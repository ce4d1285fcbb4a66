#!lua flags=no-writes
-- The numbers of one shard of a queue.
-- @key ready     the shard's ready set
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- Returns {ready now, queued in all, leased, age of the oldest ready ms or '', counters as a
-- flat name, value list}.
-- @include clock
local now = server_ms()
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', ms(now))
local oldest = ''
if ready > 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  oldest = ms(math.max(0, now - tonumber(first[2])))
end
return {ready, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), oldest,
  redis.call('HGETALL', KEYS[3])}
