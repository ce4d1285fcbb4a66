#!lua flags=
-- Replace a task's core record (all but its variables) if its core version is the expected one.
-- @key task          the task hash
-- @key expiry        the owner's expiry index
-- @key [ready]       with a queue: its ready set on the owner's shard
-- @key [leased]      with a queue: its leased set
-- @key [counters]    with a queue: its counters hash
-- @arg expected      the expected core version
-- @arg data          the new core record
-- @arg token         the write token (unique per logical write)
-- @arg now           now in ms
-- @arg member        the task's index member if the new record is terminal, else ""
-- @arg major         the writer's format major
-- @arg minor         the writer's format minor
-- @arg [fence]       a lease's fencing token, or "" (no fence)
-- @arg [writer]      "f" for the store's write that fails a task lost for good, else "h" (a
--                    holder's write)
-- @arg [job]         the task's queue member
-- @arg [queue]       its queue name
-- @arg [status]      the new status
-- A terminal write on a queued task also takes it off the queue (job_done in
-- lua/includes/queue.lua). A fenced write applies only while the lease holds (lease_refusal
-- in lua/includes/lease.lua), else returns {LEASE_REFUSED, why, core, variables}, writing
-- nothing.
-- Returns {OK, core, variables} applied, {NOT_FOUND}, {CONFLICT, core, variables}:
-- the task as record() (lua/includes/task.lua) gives it (after the write when applied).
-- Field v (the task version) goes up with every write, k (the core version) with this
-- script only, so variable merges never make it conflict. Field w keeps the tokens of the
-- last writes with the versions they made ("token:version ...", newest first): a call
-- resent after a lost reply finds its token there and reports the write as applied, so a
-- write is never applied twice nor reported failed after it landed.
-- @include codes
-- @include task
-- @include history
-- @include clock
-- @include lease
-- @include queue
local key = KEYS[1]
local state = redis.call('HMGET', key, 'k', 'w', 'f')
local current = state[1]
if not current then
  return {Code.NOT_FOUND}
end
local history = state[2] or ''
if resent(key, history, ARGV[3]) then
  return {Code.OK, record(key)}
end
if ARGV[8] and ARGV[8] ~= '' then
  local token = tonumber(ARGV[8])
  if ARGV[9] == 'f' then
    if not finalizable(key, ARGV[11], token) then
      return {Code.LEASE_REFUSED, 'finalized', record(key)}
    end
  else
    local why = lease_refusal(key, ARGV[11], token, server_ms())
    if why then
      return {Code.LEASE_REFUSED, why, record(key)}
    end
  end
end
-- a task stored in another major or a newer minor format is not the caller's to rewrite:
-- a conflict, whose reply lets the caller see why
local major, minor = string.match(state[3] or '', '^(%d+)%.(%d+)$')
if current ~= ARGV[1] or major ~= ARGV[6] or tonumber(minor) > tonumber(ARGV[7]) then
  return {Code.CONFLICT, record(key)}
end
commit_write(key, history, ARGV[3], 'k', tonumber(current) + 1, 'd', ARGV[2], 'u', ARGV[4])
if ARGV[5] ~= '' then
  -- a terminal task no longer counts against the quota: its expiry score turns negative
  local expires = redis.call('HGET', key, 'e')
  redis.call('ZADD', KEYS[2], 'XX', expires and ('-' .. expires) or '-inf', ARGV[5])
  if #KEYS > 2 and redis.call('HGET', key, 'q') == ARGV[11] then
    job_done(key, ARGV[10], KEYS[3], KEYS[4], KEYS[5], ARGV[12], ARGV[9] == 'f')
  end
end
return {Code.OK, record(key)}
