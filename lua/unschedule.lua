#!lua flags=
-- Delete a schedule from its owner's shard, and wake the schedulers.
-- @key schedule   the schedule's hash
-- @key schedules  the shard's schedules, by next fire time
-- @arg name       the encoded name (its member in schedules)
-- Returns 1 deleted, 0 there was none.
local gone = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if gone == 1 then
  redis.call('SPUBLISH', KEYS[2], '')
end
return gone
