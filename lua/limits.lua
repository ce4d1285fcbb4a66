#!lua flags=
-- Set or remove the limits of a queue, or of one of its groups, on one shard of the queue
-- (set_limits; see the limits in lua/includes/queue.lua). Every held group of the shard is
-- looked at again at the next claim, and the shard's workers are told.
-- @key ready     the shard's ready set (its other keys are named from it)
-- @key leased    the shard's leased set
-- @key base      the shard's task key base
-- @arg group     the group (encoded), or '' for the whole queue
-- @arg most      the most leases held at once, or '' for no limit
-- @arg rate      the most claims per second (a token bucket on the server's clock), or ''
-- @arg burst     the bucket's size (with a rate), or ''
-- The shard counts its leases held again from its leased set (a limit that was not may
-- count now); one left without any limit stops counting. Returns OK.
-- @include codes
-- @include queue
local limits = limits_key(KEYS[1])
local suffix = ''
if ARGV[1] ~= '' then
  suffix = ':' .. ARGV[1]
end
for name, value in pairs({c = ARGV[2], r = ARGV[3], b = ARGV[4]}) do
  if value == '' then
    redis.call('HDEL', limits, name .. suffix)
  else
    redis.call('HSET', limits, name .. suffix, value)
  end
end
local groups = 0
for _, name in ipairs(redis.call('HKEYS', limits)) do
  if string.find(name, ':', 1, true) then
    groups = groups + 1
  end
end
if groups > 0 then
  redis.call('HSET', limits, 'n', groups)  -- fields of group limits: none, no group lookups
else
  redis.call('HDEL', limits, 'n')
end
local has = redis.call('EXISTS', limits) == 1
if has then
  count_leases(KEYS[1], KEYS[2], KEYS[3])
else
  redis.call('DEL', leases_key(KEYS[1]))
end
local held = held_key(KEYS[1])
for _, group in ipairs(redis.call('ZRANGE', held, 0, -1)) do
  redis.call('ZADD', held, 0, group)
end
redis.call('SPUBLISH', KEYS[1], '')
return Code.OK
