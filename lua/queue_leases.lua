#!lua flags=no-writes
-- The leases of one shard of a queue, soonest deadline first, at most limit of them.
-- @key leased  the shard's leased set
-- @key base    the shard's task key base
-- @arg limit   most leases to list
-- Returns per lease {member, owner id, worker id or '', attempt, deadline ms, state}.
local leases = {}
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #members, 2 do
  local member = members[i]
  local s = redis.call('HMGET', KEYS[2] .. member, 'qo', 'qw', 'qa', 'qs')
  if s[1] then
    leases[#leases + 1] = {member, s[1], s[2] or '', s[3] or '0', members[i + 1], s[4] or ''}
  end
end
return leases
