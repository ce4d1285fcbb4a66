#!lua flags=no-writes
-- The schedules of one shard due by a time, and when its next one is due.
-- @key schedules  the shard's schedules, by next fire time
-- @key base       the shard's schedule key base (a member completes a schedule's key)
-- @arg until      the time in ms (or +inf)
-- @arg limit      most schedules to return
-- Returns {earliest next fire time in ms or '', {member, hash as HGETALL}...}: the
-- schedules whose next fire time is at or before until, soonest first.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local found = {first[2] or ''}
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0,
  tonumber(ARGV[2]))
for _, member in ipairs(members) do
  found[#found + 1] = {member, redis.call('HGETALL', KEYS[2] .. member)}
end
return found
