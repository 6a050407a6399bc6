-- release.lua: give back one generation's slot, then pump.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms (for the pump's admissions), 3 generation id.
-- Returns {released 1/0, g1, a1, e1, ...}: then the admissions, flat (see _pump.lua).
-- Invariant: idempotent; a generation without a lease changes nothing but
-- still pumps. used[a] drops with the lease and its entry is deleted at 0
-- (so accounts removed from cap vanish from used once their last lease ends).

local released = release_lease(ARGV[3]) and 1 or 0
pump()
return reply(released)
