#!lua flags=
-- Fire one step of a schedule: exactly once across processes, on the server's clock.
-- @key schedule       the schedule's hash
-- @key schedules      the shard's schedules, by next fire time
-- @key [task]         the new task's keys, as lua/create.lua takes them (the owner's shard)
-- @key [index]
-- @key [expiry]
-- @key [due]
-- @key [prefix]
-- @key [ready]
-- @key [counters]
-- @key [queues]
-- @arg name           the encoded name (its member in schedules)
-- @arg expected       the next fire time the caller read (ms)
-- @arg version        the spec version the caller read
-- @arg due_at         the latest tick the step covers: refused before the server's clock
-- @arg next           the next fire time after this step (ms)
-- @arg tick           the new task's tick (its job.scheduled_for), or '' for none
-- @arg [format]       the new task's arguments, as lua/create.lua takes them
-- @arg [data]
-- @arg [member]
-- @arg [expires_at]
-- @arg [purge_at]
-- @arg [quota]
-- @arg [now]
-- @arg [due_member]
-- @arg [prune_batch]
-- @arg [token]
-- @arg [queue]
-- @arg [job]
-- @arg [params]
-- @arg [max_attempts]
-- @arg [delay_ms]
-- @arg [owner]
-- @arg [priority]
-- @arg [from]
-- @arg [dedup]
-- @arg [debounce_ms]
-- @arg [group]
-- @arg [parents]
-- @arg [parent_ids]
-- @arg [run_anyway]
-- @arg [cancelled]
-- The step applies only if the schedule still has the next fire time and version read
-- (a compare-and-set: of the processes firing the same tick, one wins) and due_at has
-- come on the server's clock. It moves the next fire time on, and with the task part
-- creates and enqueues the task as create.lua does, its hash's field qd the tick, and
-- records the tick and task id as the schedule's last.
-- Returns CONFLICT (nothing written), or {OK, create's reply, or OK without a task}.
-- Whatever create replies (OVER_QUOTA), the step is taken: a tick is never fired twice.
-- @include codes
-- @include clock
-- @include create
local s = redis.call('HMGET', KEYS[1], 'n', 'v')
if s[1] ~= ARGV[2] or s[2] ~= ARGV[3] or tonumber(ARGV[4]) > server_ms() then
  return Code.CONFLICT
end
redis.call('HSET', KEYS[1], 'n', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if #KEYS == 2 then
  return {Code.OK, Code.OK}
end
local k = {KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
local a = {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14],
  ARGV[15], ARGV[16], ARGV[17], ARGV[18], ARGV[19], ARGV[20], ARGV[21], ARGV[22], ARGV[23],
  ARGV[24], ARGV[25], ARGV[26], ARGV[27], ARGV[28], ARGV[29], ARGV[30], ARGV[31]}
local created = create_task(k, a)
if created == Code.OK then
  redis.call('HSET', KEYS[3], 'qd', ARGV[6])
  local id = string.sub(ARGV[18], string.find(ARGV[18], ':', 1, true) + 1)
  redis.call('HSET', KEYS[1], 'l', ARGV[6], 't', id)
end
return {Code.OK, created}
