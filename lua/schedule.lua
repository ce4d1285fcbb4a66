#!lua flags=
-- Create or update a schedule in its owner's shard, and wake the schedulers.
-- @key schedule   the schedule's hash
-- @key schedules  the shard's schedules, by next fire time
-- @arg name       the encoded name (its member in schedules)
-- @arg spec       the spec, canonical JSON
-- @arg next       its first fire time in ms, if the spec is new or changed
-- The same spec again changes nothing (a deploy that repeats itself keeps the next fire
-- time); another spec takes the given next fire time and a new version; the last fire
-- time and task are kept. Publishes on the shard channel named like schedules.
-- Returns the hash after the call, as HGETALL would.
if redis.call('HGET', KEYS[1], 's') ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 's', ARGV[2], 'n', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('SPUBLISH', KEYS[2], '')
end
return redis.call('HGETALL', KEYS[1])
