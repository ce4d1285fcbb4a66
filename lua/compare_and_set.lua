#!lua flags=
-- Replace a task's data if its version is the expected one.
-- KEYS[1] task hash
-- ARGV[1] expected version, ARGV[2] new data, ARGV[3] write token (unique per logical write)
-- Returns {1, new version} applied, {0} no such task, {-1, version, data} conflict.
-- Field w keeps the tokens of the last writes with the versions they made
-- ("token:version ...", newest first). A call resent after a lost reply finds its
-- token there and reports the version it made, so a write is never applied twice
-- nor reported failed after it landed, even if other writes came in between.
local HISTORY = 6
local current = redis.call('HGET', KEYS[1], 'v')
if not current then
  return {0}
end
local history = redis.call('HGET', KEYS[1], 'w') or ''
for token, made in string.gmatch(history, '(%x+):(%d+)') do
  if token == ARGV[3] then
    -- w written back unchanged: this call replicates, so a WAIT after it also covers the
    -- earlier write (Redis >= 7.2 and Valkey WAIT only for a client's own replicated writes).
    redis.call('HSET', KEYS[1], 'w', history)
    return {1, tonumber(made)}
  end
end
if current ~= ARGV[1] then
  return {-1, tonumber(current), redis.call('HGET', KEYS[1], 'd')}
end
local version = tonumber(current) + 1
local kept = {ARGV[3] .. ':' .. version}
for entry in string.gmatch(history, '%S+') do
  if #kept == HISTORY then
    break
  end
  kept[#kept + 1] = entry
end
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2], 'w', table.concat(kept, ' '))
redis.call('SPUBLISH', KEYS[1], version) -- wake the task's waiters (channel named like the key)
return {1, version}
