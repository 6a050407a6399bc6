-- cancel.lua: take a waiting generation out of its line(s).
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG) is prepended at load; no pump.
--
-- ARGV: 1 seed (unused), 2 ttl (unused), 3 generation id, 4 pinned account ('' none),
--       5 its common sub-line's name ("<priority>:<tenant>", '' or absent: the default line).
-- Returns 1 when the generation was removed from a line, 0 otherwise.
-- Invariant: removing a waiter never creates room, so no pump is needed; an
-- emptied pinned line leaves pinned_lines, an emptied common sub-line `lines` and
-- `plines`. A lease is never touched.

local g, a = ARGV[3], ARGV[4]
local removed = redis.call('LREM', K_WAITING, 0, g)
local sub = ARGV[5] or ''
if sub ~= '' then
  removed = removed + redis.call('LREM', K_QLINE .. sub, 0, g)
  if redis.call('LLEN', K_QLINE .. sub) == 0 then
    redis.call('SREM', K_QLINES, sub)
    redis.call('SREM', K_PLINES, sub) -- parked lines are non-empty lines (_pump.lua, unpark)
  end
end
if removed > 0 then
  redis.call('HDEL', K_ENQ, g)
  redis.call('HDEL', K_GOP, g)
  if redis.call('HEXISTS', K_HOLDER, g) == 0 then redis.call('HDEL', K_GTEN, g) end
end
if a ~= '' then
  local line = K_PINNED .. a
  local n = redis.call('LREM', line, 0, g)
  removed = removed + n
  if redis.call('LLEN', line) == 0 then redis.call('SREM', K_LINES, a) end
  if n > 0 then
    redis.call('HDEL', K_ENQ, g)
    redis.call('HDEL', K_GOP, g)
    if redis.call('HEXISTS', K_HOLDER, g) == 0 then redis.call('HDEL', K_GTEN, g) end
  end
end
return (removed > 0) and 1 or 0
