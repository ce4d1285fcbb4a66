#!lua flags=
-- Renew leases of one shard of a queue: each held lease runs lease_ms from now.
-- @key leased     the shard's leased set
-- @key base       the shard's task key base
-- @arg lease_ms   how long each lease runs from now
-- @arg queue      the queue name
-- @arg leases...  (queue member, fencing token) pairs
-- Returns per pair {OK, new deadline ms} or {LEASE_REFUSED, why the lease does not hold}.
-- @include codes
-- @include clock
-- @include lease
-- @include queue
local now = server_ms()
local deadline = ms(now + tonumber(ARGV[1]))
local outcomes = {}
for i = 3, #ARGV, 2 do
  local member = ARGV[i]
  local key = KEYS[2] .. member
  local why = lease_refusal(key, ARGV[2], tonumber(ARGV[i + 1]), now)
  if why then
    outcomes[#outcomes + 1] = {Code.LEASE_REFUSED, why}
  else
    redis.call('HSET', key, 'qx', deadline)
    redis.call('ZADD', KEYS[1], deadline, member)
    job_changed(key)
    outcomes[#outcomes + 1] = {Code.OK, deadline}
  end
end
return outcomes
