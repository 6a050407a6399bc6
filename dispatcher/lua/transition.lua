-- transition.lua: move a generation record from one state to another, atomically.
--
-- KEYS[1]  the generation hash (dsp:{provider}:gen:<id>)
-- ARGV[1]  allowed current states, comma separated (e.g. "waiting,admitted")
-- ARGV[2]  the new state
-- ARGV[3]  ttl in seconds to set on the record after the move (0: keep)
-- ARGV[4…] field, value pairs to write together with the state
--
-- Returns {1, new_state} when moved, {0, current_state or ""} when not.
-- Invariant: a record only ever moves along an allowed edge of
-- waiting → admitted → submitted → completed | failed | canceled, and the
-- writes of a move happen together with it or not at all; so two workers
-- racing to finish the same generation cannot both succeed.
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then return {0, current} end
-- one HSET for the state and every field (a field list is a few dozen values at most)
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return {1, ARGV[2]}
