-- Change notices.

-- Tell the task's waiters to look again: its shard channel is named like its key, so it
-- lies in the key's slot. The message is only a hint; waiters read the version.
local function notify(key, version)
  redis.call('SPUBLISH', key, version)
end
