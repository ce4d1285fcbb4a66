#!lua flags=
-- A worker's round on one shard of a queue: complete its finished tasks there, each a fenced
-- compare-and-set under its own lease (as compare_and_set.lua's holder writes), then claim up
-- to count ready tasks of the shard (as claim.lua), all in one atomic step.
-- @key ready     the shard's ready set
-- @key leased    the shard's leased set
-- @key counters  the shard's counters hash
-- @key base      the shard's task key base ("{P:S}:t:"; a queue member completes a task's key)
-- @arg count     most tasks to claim (0: complete only)
-- @arg lease_ms  how long a lease runs
-- @arg worker    the worker's id
-- @arg batch     most expired leases to recover first
-- @arg retry_ms  how long a lost task waits before it is handed out again
-- @arg queue     the queue's name
-- @arg writes... per completion 11 values: the task's queue member, its owner's expiry index
--                (a key of the shard), then compare_and_set.lua's expected, data, token, now,
--                member, major, minor, fence and status
-- Each completion is judged on its own: one refused (its lease lost, a conflict) writes
-- nothing and does not stop the others, nor the claim.
-- Returns {completions, claimed, lost, next due in ms or '', recovered}: completions holds
-- one compare_and_set.lua reply per completion, in order; the rest is claim.lua's reply.
-- @include core_write
-- @include claim_ready
local ready, leased, counters, base = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queue = ARGV[6]
local completions = {}
for i = 7, #ARGV, 11 do
  local job = ARGV[i]
  completions[#completions + 1] = core_write(base .. job, ARGV[i + 1], ready, leased, counters,
    ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8],
    ARGV[i + 9], 'h', job, queue, ARGV[i + 10])
end
local claimed = {}
if tonumber(ARGV[1]) > 0 then
  claimed = claim_ready(ready, leased, counters, base, ARGV[1], ARGV[2], ARGV[3], ARGV[4],
    ARGV[5])
else
  claimed = {{}, {}, next_due(ready, leased, server_ms()), 0}
end
return {completions, claimed[1], claimed[2], claimed[3], claimed[4]}
