-- pump.lua: admit line heads while some eligible account has room.
-- KEYS: the ten capacity keys, in the order listed in _pump.lua (cap, used,
--   leases, holder, cooldown, usable_until, waiting, pinned_lines, started,
--   pinned-line prefix), all under the provider's hash tag.
-- Prelude: _pump.lua (KEYS 1-10, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms.
-- Returns admissions flat {g, a, ...}.
-- Invariant: after it, no line head can be admitted (fixed point). It is the
-- safety net for capacity that appears with no event (a cooldown ending).

pump()
return ADMITTED
