-- The compare-and-set of a task's core record (all but its variables); see
-- lua/compare_and_set.lua, whose KEYS and ARGV are its parameters, in order.
-- @include codes
-- @include task
-- @include history
-- @include clock
-- @include lease
-- @include queue
-- @include deps

-- Replace the core record at key if its core version is expected; the reply of
-- compare_and_set.lua. The queue keys and arguments (ready .. counters, fence .. status) are
-- nil for a task written without its queue. brief: an applied write replies {OK} alone.
local function core_write(key, expiry, ready, leased, counters, expected, data, token, now,
    member, major, minor, fence, writer, job, queue, status, brief)
  local state = redis.call('HMGET', key, 'k', 'w', 'f')
  local current = state[1]
  if not current then
    return {Code.NOT_FOUND}
  end
  local history = state[2] or ''
  if resent(key, history, token) then
    if brief then
      return {Code.OK}
    end
    return {Code.OK, record(key)}
  end
  if fence and fence ~= '' then
    local fenced = tonumber(fence)
    if writer == 'f' then
      if not finalizable(key, queue, fenced) then
        return {Code.LEASE_REFUSED, 'finalized', record(key)}
      end
    else
      local why = lease_refusal(key, queue, fenced, server_ms())
      if why then
        return {Code.LEASE_REFUSED, why, record(key)}
      end
    end
  end
  -- a task stored in another major or a newer minor format is not the caller's to rewrite:
  -- a conflict, whose reply lets the caller see why
  local stored_major, stored_minor = string.match(state[3] or '', '^(%d+)%.(%d+)$')
  if current ~= expected or stored_major ~= major or tonumber(stored_minor) > tonumber(minor) then
    return {Code.CONFLICT, record(key)}
  end
  commit_write(key, history, token, 'k', tonumber(current) + 1, 'd', data, 'u', now)
  if member ~= '' then
    -- a terminal task no longer counts against the quota: its expiry score turns negative
    local expires = redis.call('HGET', key, 'e')
    redis.call('ZADD', expiry, 'XX', expires and ('-' .. expires) or '-inf', member)
    if ready and redis.call('HGET', key, 'q') == queue then
      if job_done(key, job, ready, leased, counters, status, writer == 'f') then
        parent_ended(key, job, status, expiry, token, now)
      end
    end
  end
  if brief then
    return {Code.OK}
  end
  return {Code.OK, record(key)}
end
