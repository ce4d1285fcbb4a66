-- Write tokens: field w keeps the tokens of a task's last writes with the versions they
-- made ("token:version ...", newest first), so a call resent after a lost reply is
-- recognised and never applied twice.
-- @include notify
local HISTORY = 6

-- Whether the write token is in the history field w.
local function wrote_before(history, token)
  for seen in string.gmatch(history, '(%x+):%d+') do
    if seen == token then
      return true
    end
  end
  return false
end

-- Whether this call was sent before and applied (its token is in w): a call resent after a
-- lost reply. Then w is written back unchanged, so the call replicates and a WAIT after it
-- also covers the earlier write (Redis >= 7.2 and Valkey count only a client's own
-- replicated writes).
local function resent(key, history, token)
  if wrote_before(history, token) then
    redis.call('HSET', key, 'w', history)
    return true
  end
  return false
end

-- The history field after a write of token that made version: the last HISTORY writes.
local function remember(history, token, version)
  local kept = {token .. ':' .. version}
  for entry in string.gmatch(history, '%S+') do
    if #kept == HISTORY then
      break
    end
    kept[#kept + 1] = entry
  end
  return table.concat(kept, ' ')
end

-- Finish a write of token on the task at key: its version goes up, the token is remembered
-- with the version it made (history is field w as read before the write), the fields given
-- as name, value pairs are set with it, and the task's waiters hear of it. Returns the new
-- version.
local function commit_write(key, history, token, ...)
  local version = redis.call('HINCRBY', key, 'v', 1)
  redis.call('HSET', key, 'w', remember(history, token, version), ...)
  notify(key, version)
  return version
end
