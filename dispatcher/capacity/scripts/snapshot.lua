-- snapshot.lua: one consistent read of the provider's capacity. Read-only.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW) is prepended at load.
--
-- ARGV: 1 seed (unused), 2 ttl (unused).
-- Returns {now, cap flat, used flat, cooldown flat, usable flat, waiting length (every
--          common sub-line), pinned flat {account, length, ...}, common sub-lines flat
--          {"<priority>:<tenant>", length, ...} (the default line as "5:"), tenants' held
--          slots flat {tenant, slots, ...}}.
-- Invariant: changes nothing; taken atomically, so used <= maxJobs can be
-- checked on it (monitoring, tests).

local pinned = {}
for _, a in ipairs(redis.call('SMEMBERS', K_LINES)) do
  pinned[#pinned + 1] = a
  pinned[#pinned + 1] = redis.call('LLEN', K_PINNED .. a)
end
local common, total = {}, redis.call('LLEN', K_WAITING)
if total > 0 then
  common[1], common[2] = DEFAULT_PRIORITY .. ':', total
end
for _, n in ipairs(redis.call('SMEMBERS', K_QLINES)) do
  local len = redis.call('LLEN', K_QLINE .. n)
  if len > 0 then
    common[#common + 1] = n
    common[#common + 1] = len
    total = total + len
  end
end
return {NOW, redis.call('HGETALL', K_CAP), redis.call('HGETALL', K_USED),
        redis.call('HGETALL', K_COOLDOWN), redis.call('HGETALL', K_USABLE),
        total, pinned, common, redis.call('HGETALL', K_TRUN)}
