-- Claiming: lease the ready tasks of one shard of a queue; see lua/claim.lua.
-- @include clock
-- @include queue
-- @include task

-- Claim up to count ready tasks of the shard (ready, leased, stats, base), after a bounded
-- recovery of up to batch expired leases; the parameters are claim.lua's KEYS and ARGV, in
-- order. The reply of claim.lua. A paused shard (is_paused) recovers but leases nothing.
-- Under limits (limits_of) a claim takes no more than the queue's concurrency and bucket
-- allow, and holds the tasks it meets of a group at its limit (hold).
local function claim_ready(ready, leased, stats, base, count, lease_ms, worker, batch, retry_ms)
  local now = server_ms()
  count = tonumber(count)
  if is_paused(stats) then
    count = 0
  end
  local retry = tonumber(retry_ms)
  local lost, recovered = recover_leases(ready, leased, stats, base, now, tonumber(batch), retry)
  local claimed = {}
  local budget = count + tonumber(batch)
  local limits = nil
  local flows = {}  -- the flow states read (flow_read), by field, with .now: tokens at now
  if count > 0 then
    promote(ready, base, now, budget)
    unhold(ready, now, budget)
    limits = limits_of(ready)
  end
  if limits then
    local queue = flow_read(ready, '')
    flows[''] = queue
    if limits.c then
      count = math.min(count, limits.c - queue.leases)
    end
    if limits.r then
      queue.now = flow_tokens(queue, limits.r, limits.b or 1, now)
      count = math.min(count, math.floor(queue.now))
    end
  end
  local vtimes = vtimes_key(ready)
  local top = 0
  while #claimed < count and budget > 0 do
    local members = redis.call('ZRANGE', ready, 0, math.min(count - #claimed, budget) - 1,
      'WITHSCORES')
    if #members == 0 then
      break
    end
    budget = budget - #members / 2
    for i = 1, #members, 2 do
      local member, score = members[i], members[i + 1]
      local key = base .. member
      local s = redis.call('HMGET', key, 'qs', 'qa', 'qm', 'e', 'z', 'qt', 'qo', 'qg')
      local group = group_of(member, s[8])
      local wait = nil
      if limits and s[1] == 'r' then
        local set_for = group_limits(limits, group)
        local most, rate = set_for[1], set_for[2]
        local field = 'g' .. group
        local flow = flows[field]
        if flow == nil and (most or rate) then
          flow = flow_read(ready, field)
          if rate then
            flow.now = flow_tokens(flow, rate, set_for[3] or 1, now)
          end
          flows[field] = flow
        end
        if most and flow.leases >= most then
          wait = '+inf'
        elseif rate and flow.now < 1 then
          wait = ms(token_due(flow.now, rate, now))
        end
      end
      if wait then
        hold(ready, group, member, score, wait)
      else
        local tag = tag_of(score)
        redis.call('ZREM', ready, member)
        top = math.max(top, tag)
        if tonumber(redis.call('HGET', vtimes, 'g' .. group)) == tag then
          redis.call('HDEL', vtimes, 'g' .. group)  -- its last tag: nothing more of it ready
        end
        if s[1] == 'r' and not s[5] and not (s[4] and tonumber(s[4]) <= now) then
          local attempt = tonumber(s[2])
          if attempt >= tonumber(s[3]) then
            redis.call('HSET', key, 'qs', 'y')
            job_changed(key)
            redis.call('ZADD', leased, ms(now + retry), member)
            lost[#lost + 1] = {member, s[6], s[2], s[3], 0, s[7]}
          else
            local token = redis.call('HINCRBY', key, 'qt', 1)
            local deadline = ms(now + tonumber(lease_ms))
            redis.call('HSET', key, 'qs', 'l', 'qa', attempt + 1, 'qw', worker, 'qx', deadline)
            redis.call('ZADD', leased, deadline, member)
            job_changed(key)
            local core, vars = record(key)
            claimed[#claimed + 1] = {member, token, attempt + 1, deadline, core, vars, s[7]}
            if limits then
              local fields = {''}
              if limits.grouped then
                fields[2] = 'g' .. group
              end
              for _, field in ipairs(fields) do
                local flow = flows[field]
                if flow == nil then  -- a task of a group met without checking (not queued)
                  flow = flow_read(ready, field)
                  flows[field] = flow
                end
                flow.leases = flow.leases + 1
                flow.changed = true
                if flow.now then
                  flow.now = flow.now - 1
                end
              end
            end
          end
        end
      end
    end
  end
  for field, flow in pairs(flows) do
    if flow.changed then
      if flow.now then
        flow.tokens, flow.at = flow.now, now
      end
      flow_write(ready, field, flow)
    end
  end
  if top > 0 then
    claimed_up_to(ready, top)
  end
  if #claimed > 0 then
    redis.call('HINCRBY', stats, 'claimed', #claimed)
  end
  return {claimed, lost, next_due(ready, leased, stats, now), recovered}
end
