#!lua flags=
-- Hand a held lease back: the task is claimable again ARGV[4] ms from now (attempt kept).
-- KEYS[1] ready set, KEYS[2] leased set, KEYS[3] counters hash, KEYS[4] task hash
-- ARGV[1] queue name, ARGV[2] member, ARGV[3] fencing token, ARGV[4] delay ms, ARGV[5] write
-- token
-- Returns {1, core, variables} (as record() gives them) or {0, why the lease does not hold}.
local key = KEYS[4]
local history = redis.call('HGET', key, 'w') or ''
if resent(key, history, ARGV[5]) then
  return {1, record(key)}
end
local now = server_ms()
local why = lease_refusal(key, ARGV[1], tonumber(ARGV[3]), now)
if why then
  return {0, why}
end
local ready_at = ms(now + tonumber(ARGV[4]))
redis.call('HSET', key, 'qs', 'r', 'qr', ready_at)
redis.call('HDEL', key, 'qx')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ready_at, ARGV[2])
redis.call('HINCRBY', KEYS[3], 'released', 1)
local version = redis.call('HINCRBY', key, 'v', 1)
redis.call('HSET', key, 'w', remember(history, ARGV[5], version))
notify(key, version)
redis.call('SPUBLISH', KEYS[1], '')
return {1, record(key)}
