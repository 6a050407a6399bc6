-- claim_due.lua: take the generations whose next poll is due, for one poll batch.
--
-- KEYS[1]  the provider's due index (dsp:{provider}:due: generation -> ms its poll is due)
-- ARGV[1]  now, ms (the caller's clock: the same clock wrote the due times)
-- ARGV[2]  at most this many generations
-- ARGV[3]  ms a claim lasts: each claimed generation is pushed that far ahead
-- Returns the claimed generation ids, the most overdue first.
-- Invariant: a generation is claimed by one caller at a time: its score moves past now in
-- the same atomic step, so no other claim sees it due until its claim runs out; the batch
-- that claimed it writes its next due time (or removes it), and one that dies leaves it to
-- be claimed again once the claim runs out.
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return ids end
local until_ms = now + tonumber(ARGV[3])
local args = {}
for i, id in ipairs(ids) do
  args[2 * i - 1] = until_ms
  args[2 * i] = id
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
return ids
