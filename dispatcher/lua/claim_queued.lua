-- claim_queued.lua: take start jobs from the head of an RQ queue, for the RQ job that asks to
-- run them itself right after its own step (workers/chain.py), as a release's CLAIM does.
--
-- KEYS[1]  the RQ queue's list (rq:queue:dispatcher.<provider>)
-- ARGV[1]  RQ's job key prefix (rq:job:)
-- ARGV[2]  now, as RQ writes timestamps (started_at)
-- ARGV[3]  seconds a claimed job's hash lives if its outcome is never written (CLAIM_TTL)
-- ARGV[4]  at most this many jobs
-- Returns the claimed job ids, in queue order: each is off the queue, its hash marked started.
-- Invariant: only start jobs (ids "<generation>_start_<hex>") with status queued are taken, and
-- only from the head: the first other job (a poll batch, which goes ahead of starts) ends the
-- claim, so nothing jumps the queue. A claimed job is run by the caller or, if it dies, resumed
-- with its generation once the lease runs out (maintenance), as for any step that dies. The job
-- hashes are outside the queue's slot: RQ runs on one Redis, never on Redis Cluster.
local out = {}
for _ = 1, tonumber(ARGV[4]) do
  local job = redis.call('LINDEX', KEYS[1], 0)
  if not job or not string.find(job, '_start_', 1, true) then break end
  redis.call('LPOP', KEYS[1])
  local jk = ARGV[1] .. job
  if redis.call('HGET', jk, 'status') == 'queued' then
    redis.call('HSET', jk, 'status', 'started', 'started_at', ARGV[2])
    redis.call('EXPIRE', jk, tonumber(ARGV[3]))
    out[#out + 1] = job
  end
end
return out
