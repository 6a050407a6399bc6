-- configure.lua: change one account's capacity settings, then pump.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms, 3 op, 4 account, 5 value:
--   'max'      value = maxJobs (integer >= 0): add the account or change its limit
--   'disable'  error flag: out of cap; its pinned line keeps waiting; no pump
--   'remove'   out of cap, cooldown and usable_until; its pinned line is deleted
--   'cooldown' value = ms until which it is ineligible, '' to clear
--   'usable'   value = ms from which it is ineligible, '' to clear
--   'quarantine' value = ms until which the account takes no generation of operation ARGV 6
--              ('' to clear)
--   'pace'     value = "<per minute>,<per day>" (each a whole number >= 1, or empty for none):
--              at most that many admissions in any 60 s / 24 h (sliding windows)
--   'policy'   account and value unused; ARGV 6.. = the `policy` hash's new fields, flat
--              (field, value, ...; none: the default policy): it replaces the hash, and every
--              parked sub-line is unparked (caps may have risen; the pump parks again)
-- Returns {admissions flat {g, a, e, ...}, removed pinned waiters (op 'remove')}.
-- Invariant: running leases are never touched. After lowering maxJobs, used may
-- exceed it; the account then admits nothing until used < maxJobs. Removed or
-- disabled accounts admit nothing; removed ones leave `used` when their last
-- lease ends (release deletes entries at 0; here it is dropped if already 0).

local op, a, value = ARGV[3], ARGV[4], ARGV[5]
local failed = {}

if op == 'max' then
  local n = tonumber(value)
  if not n or n < 0 or n ~= math.floor(n) then
    return redis.error_reply('maxJobs must be an integer >= 0, got ' .. tostring(value))
  end
  redis.call('HSET', K_CAP, a, value)
elseif op == 'disable' then
  redis.call('HDEL', K_CAP, a)
  return {ADMITTED, failed}
elseif op == 'remove' then
  redis.call('HDEL', K_CAP, a)
  redis.call('HDEL', K_COOLDOWN, a)
  redis.call('HDEL', K_USABLE, a)
  redis.call('HDEL', K_PACE, 'm:' .. a, 'd:' .. a)
  for _, field in ipairs(redis.call('HKEYS', K_QUAR)) do
    if string.sub(field, 1, #a + 1) == a .. '\t' then redis.call('HDEL', K_QUAR, field) end
  end
  redis.call('DEL', K_STARTS .. a)
  local line = K_PINNED .. a
  failed = redis.call('LRANGE', line, 0, -1)
  for _, g in ipairs(failed) do
    redis.call('HDEL', K_ENQ, g)
    redis.call('HDEL', K_GTEN, g)
    redis.call('HDEL', K_GOP, g)
  end
  redis.call('DEL', line)
  redis.call('SREM', K_LINES, a)
  if (tonumber(redis.call('HGET', K_USED, a)) or 0) <= 0 then redis.call('HDEL', K_USED, a) end
elseif op == 'quarantine' then
  local field = a .. '\t' .. (ARGV[6] or '')
  if value == '' then
    redis.call('HDEL', K_QUAR, field)
  else
    if not tonumber(value) then return redis.error_reply('not a time in ms: ' .. tostring(value)) end
    redis.call('HSET', K_QUAR, field, value)
  end
elseif op == 'pace' then
  local m, d = string.match(value, '^(%d*),(%d*)$')
  if not m or (m ~= '' and tonumber(m) < 1) or (d ~= '' and tonumber(d) < 1) then
    return redis.error_reply('pace must be "<per minute>,<per day>", got ' .. tostring(value))
  end
  if m == '' then redis.call('HDEL', K_PACE, 'm:' .. a) else redis.call('HSET', K_PACE, 'm:' .. a, m) end
  if d == '' then redis.call('HDEL', K_PACE, 'd:' .. a) else redis.call('HSET', K_PACE, 'd:' .. a, d) end
  if m == '' and d == '' then redis.call('DEL', K_STARTS .. a) end
elseif op == 'policy' then
  redis.call('DEL', K_POLICY, K_PLINES)
  if #ARGV >= 7 then redis.call('HSET', K_POLICY, unpack(ARGV, 6)) end
elseif op == 'cooldown' or op == 'usable' then
  local key = (op == 'cooldown') and K_COOLDOWN or K_USABLE
  if value == '' then
    redis.call('HDEL', key, a)
  else
    if not tonumber(value) then return redis.error_reply('not a time in ms: ' .. tostring(value)) end
    redis.call('HSET', key, a, value)
  end
else
  return redis.error_reply('unknown configure op ' .. tostring(op))
end

pump()
return {ADMITTED, failed}
