#!lua flags=no-writes
-- How long until one shard of a queue needs a claim: 0 when a task is ready or a lease has
-- run out now, '' when the shard holds nothing (next_due in lua/includes/queue.lua).
-- @key ready   the shard's ready set
-- @key leased  the shard's leased set
-- @include clock
-- @include queue
return next_due(KEYS[1], KEYS[2], server_ms())
