#!lua flags=
-- Merge variables into a task with no version check: merges of distinct keys commute.
-- Each variable is its own hash field, named by the canonical JSON of its key (so it starts
-- with a double quote) and holding the canonical JSON of its value; field n holds the sum
-- of (#name + 1 + #value + 1) over the variables, so the canonical JSON of the merged
-- object ({"k1":v1,"k2":v2}) is n + 1 bytes long (2 when empty).
-- @key task        the task hash
-- @arg major       the caller's format major
-- @arg now         now in ms
-- @arg max_bytes   most bytes of the merged variables' JSON
-- @arg token       the write token
-- @arg fence       a lease's fencing token, or "" (no fence)
-- @arg queue       its queue name, or ""
-- @arg sets        how many variables are set
-- @arg changes...  that many (name, value) pairs, then the names of the variables to delete
-- A fenced merge applies only while the lease holds, else returns {LEASE_REFUSED, why}.
-- Returns {OK, core, variables} applied (as record() (lua/includes/task.lua) gives them),
-- {NOT_FOUND}, {EXPIRED}, {TOO_LARGE, size}, {OTHER_FORMAT, format} (another major format).
-- Writes nothing unless applied.
-- @include codes
-- @include task
-- @include history
-- @include clock
-- @include lease
local key = KEYS[1]
local state = redis.call('HMGET', key, 'f', 'e', 'n', 'w')
if not state[1] then
  if redis.call('EXISTS', key) == 1 then
    return {Code.OTHER_FORMAT, ''}
  end
  return {Code.NOT_FOUND}
end
local history = state[4] or ''
if resent(key, history, ARGV[4]) then
  return {Code.OK, record(key)}
end
if string.match(state[1], '^%d+') ~= ARGV[1] then
  return {Code.OTHER_FORMAT, state[1]}
end
if state[2] and tonumber(state[2]) <= tonumber(ARGV[2]) then
  return {Code.EXPIRED}
end
if ARGV[5] ~= '' then
  local why = lease_refusal(key, ARGV[6], tonumber(ARGV[5]), server_ms())
  if why then
    return {Code.LEASE_REFUSED, why}
  end
end
local n = tonumber(state[3] or '0')
local sets = tonumber(ARGV[7])
local last_set = 7 + 2 * sets
for i = 8, last_set, 2 do
  local name = ARGV[i]
  local old = redis.call('HSTRLEN', key, name)
  if old > 0 then
    n = n - (#name + old + 2)
  end
  n = n + #name + #ARGV[i + 1] + 2
end
for i = last_set + 1, #ARGV do
  local old = redis.call('HSTRLEN', key, ARGV[i])
  if old > 0 then
    n = n - (#ARGV[i] + old + 2)
  end
end
local size = 2
if n > 0 then
  size = n + 1
end
if size > tonumber(ARGV[3]) then
  return {Code.TOO_LARGE, size}
end
for i = 8, last_set, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
for i = last_set + 1, #ARGV do
  redis.call('HDEL', key, ARGV[i])
end
commit_write(key, history, ARGV[4], 'n', n, 'u', ARGV[2])
return {Code.OK, record(key)}
