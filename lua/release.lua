#!lua flags=
-- Hand a held lease back: the task is claimable again delay_ms from now. The attempt is
-- kept (counted), unless give_back is '1': then it is handed back (qa - 1, never below 0).
-- @key ready      the shard's ready set
-- @key leased     the shard's leased set
-- @key counters   the shard's counters hash
-- @key task       the task hash
-- @arg queue      the queue name
-- @arg job        the task's queue member
-- @arg fence      the lease's fencing token
-- @arg delay_ms   how long until the task is ready again
-- @arg token      the write token
-- @arg give_back  '1': hand the attempt back ('0': it counts)
-- A resend of an applied release (its write token remembered) changes nothing, so an attempt
-- is handed back once.
-- Returns {OK, core, variables} (as record() gives them) or {LEASE_REFUSED, why the lease
-- does not hold}.
-- @include codes
-- @include task
-- @include history
-- @include clock
-- @include lease
-- @include queue
local key = KEYS[4]
local history = redis.call('HGET', key, 'w') or ''
if resent(key, history, ARGV[5]) then
  return {Code.OK, record(key)}
end
local now = server_ms()
local why = lease_refusal(key, ARGV[1], tonumber(ARGV[3]), now)
if why then
  return {Code.LEASE_REFUSED, why}
end
local ready_at = ms(now + tonumber(ARGV[4]))
redis.call('HSET', key, 'qs', 'r', 'qr', ready_at)
redis.call('HDEL', key, 'qx')
if ARGV[6] == '1' then
  local attempt = tonumber(redis.call('HGET', key, 'qa') or '0') or 0
  if attempt > 0 then
    redis.call('HSET', key, 'qa', attempt - 1)
  end
end
redis.call('ZREM', KEYS[2], ARGV[2])
local s = redis.call('HMGET', key, 'qp', 'qg')
local group = group_of(ARGV[2], s[2])
enqueue(KEYS[1], ARGV[2], group, s[1], now + tonumber(ARGV[4]), now)
lease_ended(KEYS[1], group)
redis.call('HINCRBY', KEYS[3], 'released', 1)
commit_write(key, history, ARGV[5])
redis.call('SPUBLISH', KEYS[1], '')
return {Code.OK, record(key)}
