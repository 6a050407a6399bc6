-- expired.lua: list lease holders whose deadline has passed. Read-only.
-- KEYS: the ten capacity keys, in the order listed in _pump.lua (cap, used,
--   leases, holder, cooldown, usable_until, waiting, pinned_lines, started,
--   pinned-line prefix), all under the provider's hash tag.
-- Prelude: _pump.lua (KEYS 1-10, NOW) is prepended at load.
--
-- ARGV: 1 seed (unused), 2 ttl (unused), 3 limit.
-- Returns generations with deadline <= now (Redis TIME), earliest first.
-- Invariant: changes nothing (the caller renews what it resumes, then reaps).

return redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[3]) or 100)
