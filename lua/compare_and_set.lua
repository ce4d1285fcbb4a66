#!lua flags=
-- Replace a task's core record (all but its variables) if its core version is the expected one.
-- KEYS[1] task hash, KEYS[2] owner expiry index
-- ARGV[1] expected core version, ARGV[2] new core record, ARGV[3] write token (unique per
-- logical write), ARGV[4] now_ms, ARGV[5] the task's index member if the new record is
-- terminal, else ""
-- Returns {1, core, variables} applied, {0} no such task, {-1, core, variables} conflict:
-- the task as record() (lua/_task.lua) gives it (after the write when applied).
-- Field v (the task version) goes up with every write, k (the core version) with this
-- script only, so variable merges never make it conflict. Field w keeps the tokens of the
-- last writes with the versions they made ("token:version ...", newest first): a call
-- resent after a lost reply finds its token there and reports the write as applied, so a
-- write is never applied twice nor reported failed after it landed.
local key = KEYS[1]
local state = redis.call('HMGET', key, 'k', 'w', 'f')
local current = state[1]
if not current then
  return {0}
end
local history = state[2] or ''
if resent(key, history, ARGV[3]) then
  return {1, record(key)}
end
-- a task stored in another major or a newer minor format is not the caller's to rewrite:
-- a conflict, whose reply lets the caller see why
local major, minor = string.match(state[3] or '', '^(%d+)%.(%d+)$')
if current ~= ARGV[1] or major ~= ARGV[6] or tonumber(minor) > tonumber(ARGV[7]) then
  return {-1, record(key)}
end
local version = redis.call('HINCRBY', key, 'v', 1)
local kept = remember(history, ARGV[3], version)
redis.call('HSET', key, 'k', tonumber(current) + 1, 'd', ARGV[2], 'u', ARGV[4],
  'w', kept)
if ARGV[5] ~= '' then
  -- a terminal task no longer counts against the quota: its expiry score turns negative
  local expires = redis.call('HGET', key, 'e')
  redis.call('ZADD', KEYS[2], 'XX', expires and ('-' .. expires) or '-inf', ARGV[5])
end
notify(key, version)
return {1, record(key)}
