-- Dependencies between tasks (submit with after=): a task waits, in queue state 'b', off
-- its queue, until every parent has completed; the write that ends a parent releases its
-- waiting children, or cancels them (and theirs in turn), in the same script.
--
-- A child's fields: qe its parents' encoded ids (space separated), qi their ids as JSON
-- string contents ('\n' separated, same order), qn how many have not completed yet, qk 'r'
-- to run whatever they end as, qb its queue's ready set, qy its index member, qj its core
-- record cancelled by a parent: the canonical JSON before the parent's id, '\n', and after
-- it. A parent's field qc holds its waiting children's queue members (space separated).
-- Children share their parents' owner, so the whole graph lives under one hash tag.
-- @include history
-- @include queue

-- A waiting child's parents are all done: it joins its queue, ready now.
local function release_child(key, member)
  local s = redis.call('HMGET', key, 'qb', 'qg', 'qp')
  local ready = s[1]
  local at = server_ms()
  redis.call('ZREM', blocked_key(ready), member)
  redis.call('HSET', key, 'qs', 'r', 'qr', ms(at))
  redis.call('HDEL', key, 'qn')
  enqueue(ready, member, group_of(member, s[2]), s[3], at, at)
  job_changed(key)
  redis.call('SPUBLISH', ready, '')
end

-- Cancel the waiting child at key because its parent parent (encoded id) ended without
-- completing: its core record becomes the cancelled one its submit prepared, naming the
-- parent, it leaves its queue's waiting set and the owner's quota (expiry: the owner's
-- expiry index), and its waiters hear of it. token: the write that ended the parent.
local function cancel_child(key, member, parent, expiry, token, now)
  local s = redis.call('HMGET', key, 'qe', 'qi', 'qj', 'qb', 'qy', 'e', 'w', 'k')
  local ids = {}
  for id in string.gmatch(s[2], '[^\n]+') do
    ids[#ids + 1] = id
  end
  local named = ids[1]
  local i = 0
  for id in string.gmatch(s[1], '%S+') do
    i = i + 1
    if id == parent then
      named = ids[i]
    end
  end
  local cut = string.find(s[3], '\n', 1, true)
  local data = string.sub(s[3], 1, cut - 1) .. named .. string.sub(s[3], cut + 1)
  commit_write(key, s[7] or '', token, 'k', tonumber(s[8]) + 1, 'd', data, 'u', now,
    'qs', 'd', 'z', 'cancelled')
  redis.call('HDEL', key, 'qn')
  redis.call('ZADD', expiry, 'XX', s[6] and ('-' .. s[6]) or '-inf', s[5])
  redis.call('ZREM', blocked_key(s[4]), member)
  redis.call('HINCRBY', string.sub(s[4], 1, -2) .. 's', 'cancelled', 1)
end

-- The task at key (queue member member) ended with status: each waiting child is released
-- once its last parent is done (completed, or any end with qk 'r'), or cancelled when this
-- parent did not complete, and then its own children in turn. Children whose last parent is
-- still running stay waiting.
local function parent_ended(key, member, status, expiry, token, now)
  local base = string.sub(key, 1, #key - #member)
  local work = {{key, member, status}}
  local i = 0
  while i < #work do
    i = i + 1
    local ended_key, ended_member, ended_status = work[i][1], work[i][2], work[i][3]
    local children = redis.call('HGET', ended_key, 'qc')
    if children then
      redis.call('HDEL', ended_key, 'qc')
      local parent = string.sub(ended_member, string.find(ended_member, ':', 1, true) + 1)
      for child in string.gmatch(children, '%S+') do
        local child_key = base .. child
        local s = redis.call('HMGET', child_key, 'qs', 'qk')
        if s[1] == 'b' then
          if ended_status == 'completed' or s[2] == 'r' then
            if redis.call('HINCRBY', child_key, 'qn', -1) <= 0 then
              release_child(child_key, child)
            end
          else
            cancel_child(child_key, child, parent, expiry, token, now)
            work[#work + 1] = {child_key, child, 'cancelled'}
          end
        end
      end
    end
  end
end

-- The task at key is about to be deleted (delete.lua, or purge_expired.lua once it expired):
-- if it was waiting, it leaves its queue's waiting set; if it had not ended, the tasks
-- waiting for it are cancelled, as if it had failed, or released when they run anyway and
-- it was their last. expiry: the owner's expiry index; now: in ms.
local function task_deleted(key, expiry, now)
  local s = redis.call('HMGET', key, 'qc', 'qs', 'qb')
  local member = string.sub(key, string.find(key, '}:t:', 1, true) + 4)
  if s[2] == 'b' then
    redis.call('ZREM', blocked_key(s[3]), member)
  end
  if s[1] then
    parent_ended(key, member, 'gone', expiry, '0', now)
  end
end
