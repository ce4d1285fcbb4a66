#!lua flags=no-writes
-- How long until one shard of a queue needs a claim: 0 when a task is ready or a lease has
-- run out now, '' when the shard holds nothing (next_due in lua/includes/queue.lua; a paused
-- shard's ready tasks do not count).
-- @key ready     the shard's ready set
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- @include clock
-- @include queue
return next_due(KEYS[1], KEYS[2], KEYS[3], server_ms())
