#!lua flags=
-- Delete one task and its entries in the owner's indexes, if its core record is still the one
-- the caller read.
-- @key task      the task hash
-- @key index     the owner's index
-- @key expiry    the owner's expiry index
-- @arg member    the task's index member
-- @arg core_sha  SHA-1 (hex) of the core record the caller read
-- Returns OK deleted, NOT_FOUND, CONFLICT: the core record is another (the task changed, or
-- another task with the same id took its place): then nothing is touched.
-- The task's waiters are told, as when a purge deletes it (an empty message: it is gone).
-- No write token: once the hash is gone there is nowhere to keep one, so the caller never
-- resends this script after a lost reply.
-- Tasks waiting for it (submit with after=) are cancelled, as when it fails (see
-- lua/includes/deps.lua).
-- @include codes
-- @include notify
-- @include deps
local core = redis.call('HGET', KEYS[1], 'd')
if not core then
  return Code.NOT_FOUND
end
if redis.sha1hex(core) ~= ARGV[2] then
  return Code.CONFLICT
end
task_deleted(KEYS[1], KEYS[3], string.format('%d', server_ms()))
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
notify(KEYS[1], '')
return Code.OK
