-- snapshot.lua: one consistent read of the provider's capacity. Read-only.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW) is prepended at load.
--
-- ARGV: 1 seed (unused), 2 ttl (unused).
-- Returns {now, cap flat, used flat, cooldown flat, usable flat, waiting length,
--          pinned flat {account, length, ...}}.
-- Invariant: changes nothing; taken atomically, so used <= maxJobs can be
-- checked on it (monitoring, tests).

local pinned = {}
for _, a in ipairs(redis.call('SMEMBERS', K_LINES)) do
  pinned[#pinned + 1] = a
  pinned[#pinned + 1] = redis.call('LLEN', K_PINNED .. a)
end
return {NOW, redis.call('HGETALL', K_CAP), redis.call('HGETALL', K_USED),
        redis.call('HGETALL', K_COOLDOWN), redis.call('HGETALL', K_USABLE),
        redis.call('LLEN', K_WAITING), pinned}
