-- _pump.lua: shared prelude, prepended by the Lua loader (dispatcher/lua) to every
-- capacity script (see dispatcher/capacity/semaphore.py). It is never run on its own.
--
-- KEYS: one, the same for every capacity script: the provider's `cap` hash,
-- "dsp:{p}:cap". The other keys are named from its prefix "dsp:{p}:" (the names of
-- dispatcher/keys.py, which semaphore.py checks against these suffixes at start-up):
--   cap           hash  account -> maxJobs (eligible, unflagged accounts only)
--   used          hash  account -> leases held (entries at 0 are deleted)
--   leases        zset  generation -> lease deadline ms (Redis TIME)
--   holder        hash  generation -> account
--   cooldown      hash  account -> ms until which it is ineligible
--   usable        hash  account -> ms from which it is ineligible (usable_until)
--   waiting       list  FIFO of generations waiting for any account
--   pinned_lines  set   accounts whose pinned line is non-empty
--   started       hash  generation -> ms its lease was taken
--   pinned:<a>    list  the pinned line of account a
--   gen:<g>       hash  generation g's record (read and moved only by admit, below)
--   lines         set   names "<priority>:<tenant>" of the non-empty common sub-lines other
--                       than `waiting`, which is the sub-line of priority 5 and no tenant
--   line:<p>:<t>  list  FIFO of generations of priority p (0..9) and tenant t waiting for any account
--   enq           hash  generation -> ms it joined its line (waiting generations only; for aging)
--   gten          hash  generation -> tenant (generations with a tenant, waiting or holding a slot)
--   trun          hash  tenant -> slots its generations hold (entries at 0 are deleted)
--   tpass         hash  tenant ('' none) -> its pass (stride scheduling); '~vt' -> the virtual time
--   policy        hash  aging_ms (ms per priority level gained by waiting; 0 none; absent: 60000), w:<tenant>
--                       (weight, default 1), c:<tenant> (cap on slots held); written by configure.lua
--                       (op 'policy', from semaphore.py's set_policy)
--   plines        set   parked sub-lines: names in `lines` whose tenant was found at its cap (see unpark)
--   pace          hash  m:<a> / d:<a> -> at most this many admissions to a in any 60 s / 24 h
--   starts:<a>    zset  generation -> ms it was admitted to a (accounts with a pace only; 24 h kept)
--   quar          hash  "<account>\t<operation>" -> ms until which the account takes no generation
--                       of that operation (it keeps serving the others)
--   gop           hash  waiting generation -> its operation (when the caller gave one)
--
-- One declared key instead of ten: every call encodes and sends nine arguments
-- fewer (the capacity calls sit on every step's path). Every derived name carries
-- the declared key's hash tag, so it hashes to the same slot: the script stays
-- single-slot, and the one declared key routes it on Redis Cluster, where it runs
-- unchanged (strictly, cluster scripts should declare every key; the pinned lines,
-- whose set is only known inside the script, always needed this exception, and
-- the other names follow the same documented, deliberate rule).
--
-- ARGV common to the mutating scripts: 1 seed (MINSTD state, 1..2^31-2),
-- 2 lease ttl ms for admissions made by the call; script arguments follow.
--
-- Eligible(a) = a in cap and cooldown[a] absent or <= now and usable_until[a]
-- absent or > now, now being Redis TIME in ms, read once per call. So time-based
-- eligibility needs no event: every call evaluates it afresh.
--
-- Invariant kept by admit/pump: used[a] == #{g : holder[g] == a}
-- == leases and started entries of those g; a generation is admitted only
-- to an eligible account whose used < maxJobs; pinned lines are served for
-- their account before the common line; lines are served head first.
-- plines is a subset of lines, and every parked line's tenant is at its cap.

-- Effects replication, so that TIME may precede writes (the default since Redis 5;
-- explicit for older servers, a no-op on 7).
if redis.replicate_commands then redis.replicate_commands() end

local K_CAP = KEYS[1]
local P = string.sub(K_CAP, 1, -4) -- "dsp:{p}:" (K_CAP ends in "cap")
local K_USED, K_LEASES, K_HOLDER = P .. 'used', P .. 'leases', P .. 'holder'
local K_COOLDOWN, K_USABLE, K_WAITING, K_LINES = P .. 'cooldown', P .. 'usable', P .. 'waiting', P .. 'pinned_lines'
local K_STARTED, K_PINNED, K_GEN = P .. 'started', P .. 'pinned:', P .. 'gen:'
local K_QLINES, K_QLINE, K_ENQ, K_GTEN = P .. 'lines', P .. 'line:', P .. 'enq', P .. 'gten'
local K_TRUN, K_TPASS, K_POLICY = P .. 'trun', P .. 'tpass', P .. 'policy'
local K_PACE, K_STARTS, MINUTE_MS, DAY_MS = P .. 'pace', P .. 'starts:', 60000, 86400000
local K_QUAR, K_GOP, K_PLINES = P .. 'quar', P .. 'gop', P .. 'plines'
local DEFAULT_PRIORITY, STRIDE, DEFAULT_AGING_MS = 5, 1000000, 60000
-- RQ's key names: job hash prefix, queue list prefix, deferred registry prefix, set of queues.
-- Filled in when the scripts are loaded (dispatcher/lua), with the names dispatcher/rq_glue.py
-- reads from the installed RQ (LUA_NAMES), so no call sends them.
local RQ_JOB, RQ_QUEUE = '{{RQ_JOB_PREFIX}}', '{{RQ_QUEUE_PREFIX}}'
local RQ_DEFERRED, RQ_QUEUES = '{{RQ_DEFERRED_PREFIX}}', '{{RQ_QUEUES_KEY}}'
-- How a parked job's description ends (rq_glue.PARKED_SUFFIX): its admission names the account there.
local PARKED = '{{PARKED_SUFFIX}}'

local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TTL = tonumber(ARGV[2]) or 0

-- MINSTD (Park-Miller, a = 48271, m = 2^31 - 1): exact in doubles. Twin of
-- dispatcher/capacity/prng.py. Seeded on first use from ARGV[1]; two warm-up
-- steps decorrelate adjacent seeds.
local M = 2147483647
local rng
local function next_rand()
  if not rng then
    rng = math.floor(tonumber(ARGV[1]) or 1)
    if rng < 1 or rng >= M then rng = math.fmod(math.abs(rng), M - 1) + 1 end
    rng = math.fmod(math.fmod(rng * 48271, M) * 48271, M)
  end
  rng = math.fmod(rng * 48271, M)
  return rng
end
-- 1-based index in 1..n from the high bits: floor(x * n / m) is exact for n < 2^20.
local function pick(n)
  return math.floor(next_rand() * n / M) + 1
end

-- State, loaded lazily once per call and kept in step with every write.
local CAP, USED, COOL, USABLE, PACE, QUAR
local function hash_table(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = tonumber(flat[i + 1]) end
  return t
end
-- Paced accounts: {minute limit, day limit, admissions in the last 60 s, in the last 24 h}.
-- Sliding windows: however the upstream cuts its minutes and days, it never sees more.
local function load_pace()
  PACE = {}
  local flat = redis.call('HGETALL', K_PACE)
  for i = 1, #flat, 2 do
    local a = string.sub(flat[i], 3)
    local p = PACE[a] or {}
    if string.sub(flat[i], 1, 2) == 'm:' then p.m = tonumber(flat[i + 1]) else p.d = tonumber(flat[i + 1]) end
    PACE[a] = p
  end
  for a, p in pairs(PACE) do
    p.in_m = redis.call('ZCOUNT', K_STARTS .. a, '(' .. (NOW - MINUTE_MS), '+inf')
    p.in_d = redis.call('ZCOUNT', K_STARTS .. a, '(' .. (NOW - DAY_MS), '+inf')
  end
end
local function load_state()
  if CAP then return end
  CAP, USED = hash_table(K_CAP), hash_table(K_USED)
  COOL, USABLE = hash_table(K_COOLDOWN), hash_table(K_USABLE)
  load_pace()
  QUAR = hash_table(K_QUAR)
end
-- Is account a quarantined for operation op ('' or nil: no operation, never)?
local function quarantined(a, op)
  if not op or op == '' then return false end
  local u = QUAR[a .. '\t' .. op]
  return u ~= nil and u > NOW
end
-- The accounts of `free` that may take a generation of operation op.
local function for_op(free, op)
  if not op or op == '' then return free end
  local out = {}
  for _, a in ipairs(free) do
    if not quarantined(a, op) then out[#out + 1] = a end
  end
  return out
end
local function paced_out(a)
  local p = PACE[a]
  return p ~= nil and ((p.m and p.in_m >= p.m) or (p.d and p.in_d >= p.d))
end
local function eligible(a)
  if not CAP[a] then return false end
  local c = COOL[a]
  if c and c > NOW then return false end
  local u = USABLE[a]
  if u and u <= NOW then return false end
  if paced_out(a) then return false end
  return true
end
local function has_room(a)
  return eligible(a) and (USED[a] or 0) < CAP[a]
end
-- Accounts with room, in sorted order so that a seed picks deterministically.
local function free_accounts()
  local list = {}
  for a in pairs(CAP) do
    if has_room(a) then list[#list + 1] = a end
  end
  table.sort(list)
  return list
end

-- The admission policy (priorities, tenants). Read as little as a call needs: the whole hash
-- (policy(): aging, weights, caps) only when a common sub-line is served; one tenant's cap
-- (tenant_cap: HGET) and slots held (tenant_room: HGET) otherwise, each once per call.
local POLICY
local CAPS, TRUN = {}, {} -- tenant -> cap (false: none) / slots held, kept in step with every write
local function policy()
  if POLICY then return POLICY end
  POLICY = {aging = DEFAULT_AGING_MS, weight = {}, cap = {}}
  local flat = redis.call('HGETALL', K_POLICY)
  for i = 1, #flat, 2 do
    local k, v = flat[i], tonumber(flat[i + 1])
    if k == 'aging_ms' then POLICY.aging = v or 0
    elseif string.sub(k, 1, 2) == 'w:' then POLICY.weight[string.sub(k, 3)] = v
    elseif string.sub(k, 1, 2) == 'c:' then POLICY.cap[string.sub(k, 3)] = v end
  end
  return POLICY
end
local function tenant_cap(t)
  if POLICY then return POLICY.cap[t] end
  local c = CAPS[t]
  if c == nil then
    c = tonumber(redis.call('HGET', K_POLICY, 'c:' .. t)) or false
    CAPS[t] = c
  end
  return c or nil
end
-- May a generation of tenant t take a slot (its cap, if any, not reached)?
local function tenant_room(t)
  if not t or t == '' then return true end
  local c = tenant_cap(t)
  if not c then return true end
  local n = TRUN[t]
  if n == nil then
    n = tonumber(redis.call('HGET', K_TRUN, t)) or 0
    TRUN[t] = n
  end
  return n < c
end
-- Parked sub-lines (`plines`, a subset of `lines`): lines of a tenant at its cap, left out of
-- next_line's scan, so that a backlog behind a cap costs a pump nothing. A line is parked
-- when a scan finds its tenant without room; its tenant's lines are unparked when one of its
-- slots is freed below the cap (release_lease), and all are when the policy is replaced
-- (configure.lua 'policy') or checked by the periodic pump (pump.lua).
-- Invariant: every parked line's tenant is at its cap, so leaving it out changes no choice.
local function unpark(t)
  local out = {}
  for _, n in ipairs(redis.call('SMEMBERS', K_PLINES)) do
    if string.sub(n, 3) == t then out[#out + 1] = n end
  end
  if #out > 0 then redis.call('SREM', K_PLINES, unpack(out)) end
end
-- A sub-line's key from its name "<priority>:<tenant>" ('' is the default line, `waiting`).
local function line_key(name)
  if name == '' then return K_WAITING end
  return K_QLINE .. name
end
local function line_name(priority, tenant)
  if priority == DEFAULT_PRIORITY and tenant == '' then return '' end
  return priority .. ':' .. tenant
end
local function parse_line(name)
  if name == '' then return DEFAULT_PRIORITY, '' end
  return string.byte(name, 1) - 48, string.sub(name, 3) -- "<digit>:<tenant>"
end
-- A tenant's pass for the next choice: never behind the virtual time, so a tenant that
-- comes back after a pause starts level with the others instead of with a saved-up credit.
local TPASS -- the passes, read once per call (hash_table) and kept in step by take_head
local function tenant_pass(t)
  if not TPASS then TPASS = hash_table(K_TPASS) end
  local vt = TPASS['~vt'] or 0
  local own = TPASS[t]
  if own and own > vt then return own end
  return vt
end
-- The common sub-line whose head goes next: highest effective priority (its priority plus
-- one level per aging_ms waited), then the tenant with the lowest pass (weighted round
-- robin), then the oldest, then the name. Sub-lines of a tenant at its cap are passed over
-- and parked (see unpark), so later calls skip them without a look.
-- Cost: one look at each unparked non-empty sub-line's head (tenants x priorities), whatever
-- the lengths.
local function next_line(free)
  local names = redis.call('SDIFF', K_QLINES, K_PLINES)
  if redis.call('LLEN', K_WAITING) > 0 then names[#names + 1] = '' end
  local aging = policy().aging
  local best
  for _, n in ipairs(names) do
    local priority, tenant = parse_line(n)
    if not tenant_room(tenant) then -- a tenant at its cap: its lines are parked without a read
      redis.call('SADD', K_PLINES, n)
    else
      local key = line_key(n)
      local head = redis.call('LINDEX', key, 0)
      if not head then
        if n ~= '' then redis.call('SREM', K_QLINES, n) end -- emptied by a cancel
      else
        local cands = for_op(free, redis.call('HGET', K_GOP, head))
        local t = tonumber(redis.call('HGET', K_ENQ, head)) or NOW
        local eff = priority
        if aging > 0 then eff = priority + math.floor((NOW - t) / aging) end
        local pass = tenant_pass(tenant)
        if #cands > 0 and (not best or eff > best.eff or (eff == best.eff and (pass < best.pass
            or (pass == best.pass and (t < best.t or (t == best.t and n < best.n)))))) then
          best = {eff = eff, pass = pass, t = t, n = n, key = key, tenant = tenant, cands = cands}
        end
      end
    end
  end
  return best
end
-- Take the head of the chosen sub-line, and advance its tenant's pass by 1/weight.
local function take_head(best)
  local g = redis.call('LPOP', best.key)
  if best.n ~= '' and redis.call('LLEN', best.key) == 0 then redis.call('SREM', K_QLINES, best.n) end
  redis.call('HDEL', K_ENQ, g)
  redis.call('HDEL', K_GOP, g)
  -- the pass grows by STRIDE / weight: whole numbers, so the Python model computes the same
  local w = policy().weight[best.tenant] or 1
  if w <= 0 then w = 1 end
  local pass = best.pass + math.floor(STRIDE / w)
  redis.call('HSET', K_TPASS, best.tenant, pass, '~vt', best.pass)
  if TPASS then TPASS[best.tenant], TPASS['~vt'] = pass, best.pass end
  return g
end

-- Admissions made by this call, flat: g1, a1, e1, g2, a2, e2, ... (e: 1 when the
-- generation's parked start job was enqueued by this call, its id when this call
-- claimed it for the caller, 0 otherwise; see enqueue_parked)
local ADMITTED = {}
-- A flat reply (cheaper for the client to parse than nested arrays): the
-- script's own fields, then the admissions.
local function reply(...)
  local out = {...}
  for i = 1, #ADMITTED do out[#out + 1] = ADMITTED[i] end
  return out
end
-- RQ's timestamp format (utcformat: '%Y-%m-%dT%H:%M:%S.%fZ') of ms since the epoch;
-- the date from days since the epoch by H. Hinnant's civil_from_days.
local function rq_time(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, math.floor(rem / 3600),
                       math.floor(rem % 3600 / 60), rem % 60, (ms % 1000) * 1000)
end

-- A release may claim one admission for its caller (release.lua, ARGV 4): the first
-- generation it admits with a parked start job gets that job handed to the caller, whose
-- RQ job runs it as soon as the step that freed the slot returns, instead of pushed onto
-- RQ's queue (workers/chain.py).
-- CLAIM_TTL (s): how long the claimed job's hash lives if the caller never reports back.
local CLAIM, CLAIM_TTL = false, 0

-- Admission and enqueue in one atomic step: a generation submitted (or requeued) with
-- its RQ start job parked (written by dispatcher/rq_glue.py with status 'deferred', its id
-- in the record's `parked` field) has that job pushed onto its RQ queue here, and its
-- record moved waiting -> admitted with the job as its current `step`, as
-- Queue.enqueue_job would (status, enqueued_at, off the deferred registry, pushed). RQ's
-- job-hash fields are written here by name; its statuses ('deferred', 'queued', 'started')
-- are checked against the installed RQ at start-up (LUA_STATUSES in dispatcher/rq_glue.py).
-- Returns 1 when it did, or the job's id when the call claimed it (CLAIM: the job is
-- marked started, off the deferred registry, not pushed); 0 leaves the enqueue to the
-- caller (Core.dispatch): no
-- record, a record no longer waiting (canceled meanwhile), no parked job (one written
-- by an older version) or a parked job deleted by hand. These keys are outside the
-- provider's hash slot (RQ's names cannot carry a hash tag), which is fine on the one
-- Redis RQ needs; RQ itself does not run on Redis Cluster.
local function enqueue_parked(g, a)
  local gk = K_GEN .. g
  local rec = redis.call('HMGET', gk, 'state', 'parked', 'created')
  local job = rec[2]
  if rec[1] ~= 'waiting' or not job or job == '' then return 0 end
  redis.call('HDEL', gk, 'parked') -- a parked job is pushed at most once
  local jk = RQ_JOB .. job
  local job_state = redis.call('HMGET', jk, 'origin', 'status', 'description')
  local origin, desc = job_state[1], job_state[3] or ''
  if not origin or job_state[2] ~= 'deferred' then return 0 end
  -- NOW is whole ms and `created` the submitter's clock: never admitted before created
  local t = string.format('%.3f', NOW / 1000)
  if tonumber(rec[3]) and tonumber(rec[3]) > NOW / 1000 then t = rec[3] end
  redis.call('HSET', gk, 'state', 'admitted', 'account', a, 'admitted_at', t, 'step', job, 'due', t)
  redis.call('ZREM', RQ_DEFERRED .. origin, job)
  -- "<provider> start <public id>, waiting for a slot": the account is known now (dispatcher/steps.py);
  -- "… on -" is how a job parked by an older version ends
  if string.sub(desc, -#PARKED) == PARKED then desc = string.sub(desc, 1, -#PARKED - 1) .. ' on ' .. a
  elseif string.sub(desc, -5) == ' on -' then desc = string.sub(desc, 1, -2) .. a end
  if CLAIM then
    CLAIM = false -- one per call: the caller runs it right after this script
    redis.call('HSET', jk, 'status', 'started', 'enqueued_at', rq_time(NOW), 'started_at', rq_time(NOW),
               'description', desc)
    redis.call('EXPIRE', jk, CLAIM_TTL)
    return job
  end
  redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', rq_time(NOW), 'description', desc)
  redis.call('RPUSH', RQ_QUEUE .. origin, job)
  redis.call('SADD', RQ_QUEUES, RQ_QUEUE .. origin)
  return 1
end

-- tenant: the generation's tenant when the caller knows it ('' or nil: read from gten).
local function admit(g, a, tenant)
  -- HSETNX: a generation never holds two slots (a stale duplicate is dropped).
  if redis.call('HSETNX', K_HOLDER, g, a) == 0 then return false end
  if tenant and tenant ~= '' then
    redis.call('HSET', K_GTEN, g, tenant)
  else
    tenant = redis.call('HGET', K_GTEN, g)
  end
  if tenant then TRUN[tenant] = redis.call('HINCRBY', K_TRUN, tenant, 1) end
  USED[a] = (USED[a] or 0) + 1
  redis.call('HINCRBY', K_USED, a, 1)
  local p = PACE[a]
  if p then -- a start in its windows (a generation admitted again counts once: same member)
    local key = K_STARTS .. a
    local before = tonumber(redis.call('ZSCORE', key, g))
    if not before or before <= NOW - MINUTE_MS then p.in_m = p.in_m + 1 end
    if not before or before <= NOW - DAY_MS then p.in_d = p.in_d + 1 end
    redis.call('ZADD', key, NOW, g)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', NOW - DAY_MS)
  end
  redis.call('ZADD', K_LEASES, NOW + TTL, g)
  redis.call('HSET', K_STARTED, g, NOW)
  ADMITTED[#ADMITTED + 1] = g
  ADMITTED[#ADMITTED + 1] = a
  ADMITTED[#ADMITTED + 1] = enqueue_parked(g, a)
  return true
end

-- Drop g's lease; true when it held one. used entries reaching 0 are deleted.
local function release_lease(g)
  local a = redis.call('HGET', K_HOLDER, g)
  if not a then return false end
  redis.call('HDEL', K_HOLDER, g)
  redis.call('ZREM', K_LEASES, g)
  redis.call('HDEL', K_STARTED, g)
  local tenant = redis.call('HGET', K_GTEN, g)
  if tenant then
    redis.call('HDEL', K_GTEN, g)
    local left = redis.call('HINCRBY', K_TRUN, tenant, -1)
    if left <= 0 then redis.call('HDEL', K_TRUN, tenant) end
    TRUN[tenant] = (left > 0) and left or 0
    local c = tenant_cap(tenant)
    if c and left < c then unpark(tenant) end -- room again: its parked lines are scanned again
  end
  local n = redis.call('HINCRBY', K_USED, a, -1)
  if n <= 0 then redis.call('HDEL', K_USED, a) end
  if USED then USED[a] = (n > 0) and n or nil end
  return true
end

-- The pump: pinned lines first (each for its own account), then the common
-- line to uniformly random accounts with room. Admissions only consume room,
-- so one pass reaches the fixed point "no line head can be admitted".
-- Returns true when every line was empty (nothing to do).
local function pump()
  local nlines = redis.call('SCARD', K_LINES)
  local nwait, nsub = redis.call('LLEN', K_WAITING), redis.call('SCARD', K_QLINES)
  if nlines == 0 and nwait + nsub == 0 then return true end
  -- common heads to look at: the default line's, or a sub-line that is not parked (see unpark)
  local common = nwait > 0 or (nsub > 0 and nsub > redis.call('SCARD', K_PLINES))
  if nlines == 0 and not common then return false end
  load_state()
  if nlines > 0 then
    local accounts = redis.call('SMEMBERS', K_LINES)
    table.sort(accounts) -- a reply order that does not depend on the set's layout
    for _, a in ipairs(accounts) do
      local line = K_PINNED .. a
      while has_room(a) do
        local g = redis.call('LINDEX', line, 0)
        -- FIFO: a head whose tenant is at its cap, or whose operation the account is quarantined for, blocks
        if not g or not tenant_room(redis.call('HGET', K_GTEN, g))
            or quarantined(a, redis.call('HGET', K_GOP, g)) then break end
        redis.call('LPOP', line)
        redis.call('HDEL', K_ENQ, g)
        redis.call('HDEL', K_GOP, g)
        admit(g, a)
      end
      if redis.call('LLEN', line) == 0 then redis.call('SREM', K_LINES, a) end
    end
  end
  if common then
    local free = free_accounts()
    while #free > 0 do
      local best = next_line(free)
      if not best then break end
      local g = take_head(best)
      local a = best.cands[pick(#best.cands)]
      if admit(g, a) and not has_room(a) then
        for i, x in ipairs(free) do
          if x == a then table.remove(free, i) break end
        end
      end
    end
  end
  return false
end

-- 1-based position of g in a line, or nil.
local function position(line, g)
  local p = redis.call('LPOS', line, g)
  if p then return p + 1 end
  return nil
end

-- ---------------------------------------------------------------------------
