-- reap.lua: release leases whose deadline has passed, then pump.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms (for the pump's admissions), 3 limit (max leases reaped).
-- Returns {reaped generations (earliest deadline first), admissions flat {g, a, e, ...}}.
-- Invariant: a lease is expired when its deadline <= now (Redis TIME); at most
-- `limit` are released, all before the single pump, exactly as release would.

local limit = tonumber(ARGV[3]) or 100
local due = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', NOW, 'LIMIT', 0, limit)
for _, g in ipairs(due) do release_lease(g) end
pump()
return {due, ADMITTED}
