-- update_existing.lua: write fields into a hash only if the hash still exists.
--
-- KEYS[1]  the hash (an account record)
-- ARGV[1]  field to increment by 1 ('' for none)
-- ARGV[2…] field, value pairs to write
--
-- Returns 1 when written, 0 when the hash is gone.
-- Invariant: a late writer (a token refresh or a flag racing a DELETE of the
-- account) never resurrects a deleted record as a partial hash.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
if ARGV[1] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end
return 1
