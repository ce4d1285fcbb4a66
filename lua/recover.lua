#!lua flags=
-- Recover up to batch expired leases of one shard of a queue (recover_leases in
-- lua/includes/queue.lua), claiming nothing: the sweep of GenericTaskStore.recover_leases.
-- @key ready     the shard's ready set
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- @key base      the shard's task key base
-- @arg batch     most expired leases to recover
-- @arg retry_ms  how long a lost task waits before it is handed out again
-- Returns {{}, lost, next due in ms or '', recovered}, as lua/claim.lua does.
-- @include clock
-- @include queue
local now = server_ms()
local lost, recovered = recover_leases(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now,
  tonumber(ARGV[1]), tonumber(ARGV[2]))
return {{}, lost, next_due(KEYS[1], KEYS[2], KEYS[3], now), recovered}
