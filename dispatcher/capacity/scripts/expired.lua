-- expired.lua: list lease holders whose deadline has passed. Read-only.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW) is prepended at load.
--
-- ARGV: 1 seed (unused), 2 ttl (unused), 3 limit.
-- Returns generations with deadline <= now (Redis TIME), earliest first.
-- Invariant: changes nothing (the caller renews what it resumes, then reaps).

return redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[3]) or 100)
