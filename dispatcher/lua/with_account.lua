-- with_account.lua: what a step reads before it acts, in one call: the generation's
-- record and the record of the account it holds (for the token check), which is
-- only known once the record is read.
--
-- KEYS[1]  the generation hash (dsp:{provider}:gen:<id>)
-- ARGV[1]  the provider's account key prefix (dsp:{provider}:acct:); the account's
--          key carries the same hash tag, so the call stays in one slot
-- Returns {record, account}: each a flat field/value list, empty when the record is
-- missing, names no account, or the account is gone.
-- Invariant: read-only.
local record = redis.call('HGETALL', KEYS[1])
local account = {}
local a = redis.call('HGET', KEYS[1], 'account')
if a and a ~= '' then account = redis.call('HGETALL', ARGV[1] .. a) end
return {record, account}
