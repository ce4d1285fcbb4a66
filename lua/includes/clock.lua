-- Queue times.

-- The server's clock in milliseconds, with microseconds as the fraction: queue times never
-- depend on a client's clock.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- A time as a score or field: Lua would print only 14 significant digits.
local function ms(value)
  return string.format('%.3f', value)
end
