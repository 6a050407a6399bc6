-- pump.lua: admit line heads while some eligible account has room.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms.
-- Returns admissions flat {g, a, e, ...} (see _pump.lua).
-- Invariant: after it, no line head can be admitted (fixed point). It is the
-- safety net for capacity that appears with no event (a cooldown ending).

pump()
return ADMITTED
