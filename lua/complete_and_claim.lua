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
-- @arg now       now in ms (the writer's clock: each task's update time)
-- @arg major     the writer's format major
-- @arg minor     the writer's format minor
-- @arg writes... per completion 8 values: the task's queue member, its owner's expiry index
--                (a key of the shard), then as compare_and_set.lua: expected, data, token,
--                member, fence and status
-- Each completion is judged on its own: one refused (its lease lost, a conflict) writes
-- nothing and does not stop the others, nor the claim.
-- Returns {completions, claimed, lost, next due in ms or '', recovered}: completions holds
-- one reply per completion, in order: {OK} applied, else compare_and_set.lua's reply; the
-- rest is claim.lua's reply.
-- @include core_write
-- @include claim_ready
local ready, leased, counters, base = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queue, now, major, minor = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local completions = {}
for i = 10, #ARGV, 8 do
  local job = ARGV[i]
  completions[#completions + 1] = core_write(base .. job, ARGV[i + 1], ready, leased, counters,
    ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now, ARGV[i + 5], major, minor, ARGV[i + 6], 'h',
    job, queue, ARGV[i + 7], true)
end
local claimed = {}
if tonumber(ARGV[1]) > 0 then
  claimed = claim_ready(ready, leased, counters, base, ARGV[1], ARGV[2], ARGV[3], ARGV[4],
    ARGV[5])
else
  claimed = {{}, {}, next_due(ready, leased, counters, server_ms()), 0}
end
return {completions, claimed[1], claimed[2], claimed[3], claimed[4]}
