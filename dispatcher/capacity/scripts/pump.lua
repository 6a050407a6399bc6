-- pump.lua: admit line heads while some eligible account has room.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms.
-- Returns admissions flat {g, a, e, ...} (see _pump.lua).
-- Invariant: after it, no line head can be admitted (fixed point). It is the
-- safety net for capacity that appears with no event (a cooldown ending), and for
-- parked sub-lines whose tenant has room again without one (a policy edited by hand):
-- those are unparked first.

-- Unpark every parked line whose tenant has room, or that is no longer a non-empty sub-line.
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', K_PLINES)) do
  if tenant_room(string.sub(n, 3)) or redis.call('SISMEMBER', K_QLINES, n) == 0 then out[#out + 1] = n end
end
if #out > 0 then redis.call('SREM', K_PLINES, unpack(out)) end
pump()
return ADMITTED
