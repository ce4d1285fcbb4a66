#!lua flags=
-- Claim or give up a schedule name for an owner: names are unique per key prefix.
-- @key names    the hash of every schedule name and its owner
-- @arg name     the encoded name
-- @arg owner    the owner id
-- @arg remove   1 gives the name up (if the owner holds it), 0 claims it (if free)
-- Returns the owner holding the name after the call, or '' for none.
if ARGV[3] == '1' then
  if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
else
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('HGET', KEYS[1], ARGV[1]) or ''
