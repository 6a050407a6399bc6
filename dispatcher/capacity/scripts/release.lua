-- release.lua: give back one generation's slot, then pump.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms (for the pump's admissions), 3 generation id,
--       4 claim ttl s (optional; > 0: the caller runs the first admitted waiter's parked
--       start job itself, see CLAIM in _pump.lua; the job's hash expires after this long
--       unless the caller records its outcome).
-- Returns {released 1/0, g1, a1, e1, ...}: then the admissions, flat (see _pump.lua).
-- Invariant: idempotent; a generation without a lease changes nothing but
-- still pumps. used[a] drops with the lease and its entry is deleted at 0
-- (so accounts removed from cap vanish from used once their last lease ends).

CLAIM_TTL = tonumber(ARGV[4]) or 0
CLAIM = CLAIM_TTL > 0
local released = release_lease(ARGV[3]) and 1 or 0
pump()
return reply(released)
