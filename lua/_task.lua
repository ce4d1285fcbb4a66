-- Shared by the scripts that include it (the loader puts it after their first line).
local HISTORY = 6

-- The task hash as {core fields (flat name, value list), variables joined as "k:v,k:v"}.
local function record(key)
  local flat = redis.call('HGETALL', key)
  local core, vars = {}, {}
  for i = 1, #flat, 2 do
    local name = flat[i]
    if string.byte(name, 1) == 34 then
      vars[#vars + 1] = name .. ':' .. flat[i + 1]
    else
      core[#core + 1] = name
      core[#core + 1] = flat[i + 1]
    end
  end
  return core, table.concat(vars, ',')
end

-- Whether the write token is in the history field w ("token:version ...", newest first).
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

-- Tell the task's waiters to look again: its shard channel is named like its key, so it
-- lies in the key's slot. The message is only a hint; waiters read the version.
local function notify(key, version)
  redis.call('SPUBLISH', key, version)
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
