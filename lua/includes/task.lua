-- A task as the scripts reply with it.

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
