-- The reply codes: a number means the same in every script that replies with one. Mirrored
-- by Code in taskstore_redis/_redis/contract.py (tests/test_lua_contract.py holds the two
-- together). Codes are never stored: only replies carry them.
local Code = {
  OK = 1, -- applied (or, for a read, found)
  NOT_FOUND = 0, -- no such task
  CONFLICT = -1, -- the task is not as the caller read it (core version, format or record)
  LEASE_REFUSED = -2, -- the lease named does not hold; the reply says why
  TOO_LARGE = -3, -- the variables would outgrow their limit; the reply gives the size
  OTHER_FORMAT = -4, -- stored in another major format; the reply gives it
  EXPIRED = -5, -- the task has expired
  EXISTS = -6, -- a task with this key exists already
  OVER_QUOTA = -7, -- the owner has as many live tasks as the quota allows
  DUPLICATE = -8, -- a live task holds the dedup key: nothing new was created
  NO_PARENT = -9, -- a parent named is no live queued task of the owner; the reply names it
  PARENT_ENDED = -10, -- created, and cancelled at once: a parent had ended without completing
}
