-- renew.lua: push one lease's deadline to now + ttl.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG) is prepended at load; no pump.
--
-- ARGV: 1 seed (unused), 2 ttl ms, 3 generation id.
-- Returns 1 when the generation holds a lease (renewed), 0 otherwise.
-- Invariant: only an existing lease is touched (ZADD XX), so renew never
-- creates a slot. ttl <= 0 sets a deadline <= now: the lease counts as
-- expired at once and the next reap releases it.

if not redis.call('ZSCORE', K_LEASES, ARGV[3]) then return 0 end
redis.call('ZADD', K_LEASES, 'XX', NOW + TTL, ARGV[3])
return 1
