-- acquire.lua: take a slot for one generation, or queue it.
-- KEYS: the provider's cap key (one; the other names derive from it, see _pump.lua).
-- Prelude: _pump.lua (key names, NOW, PRNG, admit, pump) is prepended at load.
--
-- ARGV: 1 seed, 2 ttl ms, 3 generation id, 4 pinned account ('' = any),
--       5 wait ('1' queue when busy / '0' refuse), 6 known ('1' the pinned
--       account exists but is flagged, so its pinned jobs may wait),
--       7 front ('1' queue at the head of the line: a generation coming back,
--       admitted earlier but not taken upstream before its account left rotation),
--       8 require ('' none): a key of the same hash tag that must exist (the pinned
--       account's record, or the provider's account set), checked before anything
--       else, so that a submission for a missing account is refused whole.
--       9 max waiting ('0' or absent = no cap): a new generation that would wait
--       is refused when this many already wait in the provider's lines (common
--       and pinned together); one coming back (front) is never refused.
--       10 priority (0..9, absent = 5), 11 tenant ('' or absent = none): an unpinned
--       generation waits in the common sub-line of its priority and tenant (see
--       next_line in _pump.lua); a tenant at its cap is admitted nothing.
--       12 operation ('' or absent = none): no account quarantined for it is chosen.
-- Returns {status, detail, g1, a1, e1, g2, ...}: after the first two fields,
-- the admissions made by this call (the pump's and its own), flat:
--   {'admitted', account, ...}  the generation holds a lease on account
--   {'waiting', position, ...}  queued; 1-based position in its line
--   {'busy', report, ...}       wait=0 and nothing free; nothing queued.
--                               report = {account, maxJobs, used, eligible 0/1, ...}
--   {'full', waiting, ...}      it would wait, but max waiting generations
--                               already do; nothing queued.
--   {'unknown', account}        pinned to an unconfigured account, or the
--                               required key is missing; nothing changed
-- Invariant: FIFO fairness (a returning generation keeps its turn: front). The pump runs first; afterwards a line is non-empty
-- only if its head cannot be admitted, so a new unpinned generation is admitted
-- directly only when the common line is empty, a pinned one only when its
-- pinned line is empty. Acquiring a generation that already holds a lease, or
-- already waits in the requested line, changes nothing for it (idempotent).

local g, acct = ARGV[3], ARGV[4]
local wait, known, front = ARGV[5] == '1', ARGV[6] == '1', ARGV[7] == '1'
local pinned = acct ~= ''
local required = ARGV[8] or ''

if required ~= '' and redis.call('EXISTS', required) == 0 then
  return {'unknown', acct}
end
local priority = tonumber(ARGV[10] or '') or DEFAULT_PRIORITY
local tenant = ARGV[11] or ''
local operation = ARGV[12] or ''
local sub = line_name(priority, tenant)
local line = pinned and (K_PINNED .. acct) or line_key(sub)

if pinned and not known and redis.call('HEXISTS', K_CAP, acct) == 0
    and redis.call('EXISTS', line) == 0 then
  return {'unknown', acct}
end

local idle = pump() -- true: every line was empty (pinned_lines lists the non-empty ones)

-- Fast path: after the pump, a free account means no waiting head could take it (every
-- common head left belongs to a tenant at its cap), so the generation is admitted directly
-- when its own tenant has room and, pinned, its pinned line is empty.
local queued = (idle or not pinned) and 0 or redis.call('LLEN', line) -- unpinned: read below if needed
if (queued == 0 or not pinned) and (tenant == '' or tenant_room(tenant)) then
  load_state()
  local a
  if pinned then
    if has_room(acct) and not quarantined(acct, operation) then a = acct end
  else
    local free = for_op(free_accounts(), operation)
    if #free > 0 then a = free[pick(#free)] end
  end
  if a then
    if admit(g, a, tenant) then return reply('admitted', a) end
    return reply('admitted', redis.call('HGET', K_HOLDER, g)) -- already held
  end
end

local held = redis.call('HGET', K_HOLDER, g)
if held then return reply('admitted', held) end
if not idle and not pinned then queued = redis.call('LLEN', line) end
if queued > 0 then
  local p = position(line, g)
  if p then return reply('waiting', p) end
end

if not wait then
  load_state()
  local busy, names = {}, {}
  if pinned then
    names[1] = acct
  else
    for a in pairs(CAP) do names[#names + 1] = a end
    table.sort(names)
  end
  for _, a in ipairs(names) do
    busy[#busy + 1] = a
    busy[#busy + 1] = CAP[a] or 0
    busy[#busy + 1] = USED[a] or 0
    busy[#busy + 1] = eligible(a) and 1 or 0
  end
  return reply('busy', busy)
end

local max_waiting = tonumber(ARGV[9] or '0') or 0
if max_waiting > 0 and not front then
  local total = redis.call('LLEN', K_WAITING)
  for _, a in ipairs(redis.call('SMEMBERS', K_LINES)) do
    total = total + redis.call('LLEN', K_PINNED .. a)
  end
  for _, n in ipairs(redis.call('SMEMBERS', K_QLINES)) do
    total = total + redis.call('LLEN', K_QLINE .. n)
  end
  if total >= max_waiting then return reply('full', total) end
end

local n = 1
if front then redis.call('LPUSH', line, g) else n = redis.call('RPUSH', line, g) end
if pinned then redis.call('SADD', K_LINES, acct) elseif sub ~= '' then redis.call('SADD', K_QLINES, sub) end
-- when it joined its line, for aging (a generation already listed keeps its time)
if redis.call('HEXISTS', K_ENQ, g) == 0 then redis.call('HSET', K_ENQ, g, NOW) end
if tenant ~= '' then redis.call('HSET', K_GTEN, g, tenant) end
if operation ~= '' then redis.call('HSET', K_GOP, g, operation) end
return reply('waiting', n)
