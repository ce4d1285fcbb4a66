#!lua flags=
-- Claim up to count ready tasks of one shard of a queue, oldest first, after a bounded
-- recovery of its expired leases (recover_leases in lua/includes/queue.lua).
-- @key ready     the shard's ready set (score: ready-at ms by the server clock; delayed too)
-- @key leased    the shard's leased set (score: lease deadline)
-- @key counters  the shard's counters hash
-- @key base      the shard's task key base ("{P:S}:t:"; a task's key is it and its member
--                "<owner part>:<task part>")
-- @arg count     most tasks to claim
-- @arg lease_ms  how long a lease runs
-- @arg worker    the worker's id
-- @arg batch     most expired leases to recover first
-- @arg retry_ms  how long a lost task waits before it is handed out again
-- Entries whose task is gone, ended, expired or not queued are dropped on the way. A task
-- released after its last attempt is marked lost ('y') and handed out like a lost lease.
-- Returns {claimed, lost, next due in ms or '', recovered}: claimed is a list of {member,
-- token, attempt, deadline ms, core fields, variables, owner id} (record() gives the task).
-- @include claim_ready
return claim_ready(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
