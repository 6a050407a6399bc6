-- running.lua: every lease with its account, start and deadline. Read-only.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW) is prepended at load.
--
-- ARGV: 1 seed (unused), 2 ttl (unused).
-- Returns flat {generation, account, started ms, deadline ms, ...}.
-- Invariant: changes nothing; one atomic read of leases, holder and started.

local out = {}
local flat = redis.call('ZRANGE', K_LEASES, 0, -1, 'WITHSCORES')
for i = 1, #flat, 2 do
  local g = flat[i]
  out[#out + 1] = g
  out[#out + 1] = redis.call('HGET', K_HOLDER, g) or ''
  out[#out + 1] = redis.call('HGET', K_STARTED, g) or ''
  out[#out + 1] = flat[i + 1]
end
return out
