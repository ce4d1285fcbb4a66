#!lua flags=
-- Replace a task's data if its version is the expected one.
-- KEYS[1] task hash
-- ARGV[1] expected version, ARGV[2] new data, ARGV[3] write token (unique per logical write)
-- Returns {1, new version} applied, {0} no such task, {-1, version, data} conflict.
-- A call resent after a lost reply finds its own token and reports the write as applied,
-- so a write is never applied twice nor reported failed after it landed.
local current = redis.call('HGET', KEYS[1], 'v')
if not current then
  return {0}
end
if current ~= ARGV[1] then
  if tonumber(current) == tonumber(ARGV[1]) + 1 and redis.call('HGET', KEYS[1], 'w') == ARGV[3] then
    return {1, tonumber(current)}
  end
  return {-1, tonumber(current), redis.call('HGET', KEYS[1], 'd')}
end
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2], 'w', ARGV[3])
return {1, version}
