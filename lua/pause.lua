#!lua flags=
-- Pause or resume one shard of a queue (pause_queue, resume_queue): a paused shard leases
-- nothing (claim_ready); leases held go on, and expired ones are still recovered.
-- @key ready     the shard's ready set (its channel: a resume tells the workers)
-- @key counters  the shard's counters hash ('paused' is there while paused)
-- @key queues    the shard's set of queue names (a queue paused before any submit is named)
-- @arg queue     the queue's name
-- @arg paused    '1' to pause, '0' to resume
-- Returns 1 if the shard changed, 0 if it already was so.
local changed
if ARGV[2] == '1' then
  changed = 0
  if not redis.call('HGET', KEYS[2], 'paused') then
    changed = redis.call('HSET', KEYS[2], 'paused', 1)
  end
  redis.call('SADD', KEYS[3], ARGV[1])
else
  changed = redis.call('HDEL', KEYS[2], 'paused')
  if changed == 1 then
    redis.call('SPUBLISH', KEYS[1], '')
  end
end
return changed
