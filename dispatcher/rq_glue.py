"""RQ glue: the one module that knows how RQ keeps its data in Redis.

RQ keeps a job as a hash `rq:job:<id>` (status, origin queue, timestamps, description, …),
a queue as a list `rq:queue:<name>` listed in the set `rq:queues`, and a registry (a sorted
set) per job state and queue: deferred, scheduled, started, finished, failed. Here is every
place the dispatcher reads or writes that model itself rather than through RQ's enqueue and
worker API, because doing it RQ's way would cost round trips or processes:

- enqueueing step and callback jobs on a caller's pipeline (`enqueue_in`, `enqueue_callback`);
- parking (`park_in`, `unpark_in`, `parked_window`, `drop_parked_in`): a generation's start job
  is written at submit with status *deferred*, and the capacity script that admits the
  generation pushes it onto its queue itself (`enqueue_parked` in capacity/scripts/_pump.lua);
  that script gets RQ's key names as `LUA_NAMES`, substituted by the Lua loader at load time;
- claims (`claim_queued`, `record_claimed_in`): start jobs a release claimed, or the head of a
  queue held (`claim_queued.lua`), that an RQ job ran itself
  (workers/chain.py) are marked finished or failed, with RQ's result records (one that ended its
  generation kept as the worker's `StepHistory`, installed here by `install_history`, says);
- poll batches' endings (`record_ended_in`): a generation a batch of polls ended gets a job record
  of its own, finished or failed with the reason, as if a poll job of its own had ended it;
- ended jobs (`clean_ended`): the finished and failed registries' expired entries removed, as
  RQ's own `count` does, before rq-dashboard (which counts without cleaning) reads them;
- promotion (`promote_due`): delayed jobs whose time came, moved onto their queues by the
  maintenance tick rather than RQ's scheduler (workers/maintenance.py says why);
- pending steps (`steps_pending`) and queue lengths, worker counts (`queue_lengths`, `worker_count`);
- callback take-over (`started_entries`, `execution_facts`, `take_over`): a job whose worker
  died mid-run, retried or failed as RQ's own cleanup would; and one whose worker died between
  taking it and starting it, put back on its queue (`requeue_stuck_dequeues`).

Callers decide when (workers/chain.py, workers/maintenance.py, `dispatcher.steps`); this
module only knows where RQ keeps things. `check_rq_names` runs at import: an RQ whose key
names no longer have the shape the Lua relies on stops every process at start-up.
"""

from __future__ import annotations

import random
from datetime import timedelta

from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import (DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry,
                         StartedJobRegistry)
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat
from rq.worker import Worker

from . import lua

# -- names ------------------------------------------------------------------------------------
JOB_PREFIX = Job.redis_job_namespace_prefix  # + job id: the job's hash
QUEUE_PREFIX = Queue.redis_queue_namespace_prefix  # + queue name: the queue's list
QUEUES_KEY = Queue.redis_queues_keys  # the set of every queue's key
DEFERRED_PREFIX = DeferredJobRegistry.key_template.format("")  # + queue name: its deferred registry
WORKER_PREFIX = Worker.redis_worker_namespace_prefix  # + worker name: the worker's hash

FINISHED_TEMPLATE, FAILED_TEMPLATE = FinishedJobRegistry.key_template, FailedJobRegistry.key_template
# A parked job's description ends so (`park_in`); the script that admits its generation replaces
# it with " on <account>" (`enqueue_parked` in capacity/scripts/_pump.lua)
PARKED_SUFFIX = ", waiting for a slot"

# What capacity/scripts/_pump.lua names `{{…}}` (filled in once, when the scripts are loaded)
LUA_NAMES = {"RQ_JOB_PREFIX": JOB_PREFIX, "RQ_QUEUE_PREFIX": QUEUE_PREFIX,
             "RQ_DEFERRED_PREFIX": DEFERRED_PREFIX, "RQ_QUEUES_KEY": QUEUES_KEY,
             "PARKED_SUFFIX": PARKED_SUFFIX}
# The job statuses the Lua reads and writes as plain strings ('deferred', 'queued', 'started')
LUA_STATUSES = {JobStatus.DEFERRED: "deferred", JobStatus.QUEUED: "queued", JobStatus.STARTED: "started"}


def check_rq_names() -> None:
    """The Lua appends a job id or a queue name to RQ's prefixes and writes RQ's status strings:
    fail loudly at start-up if the installed RQ builds its names or statuses otherwise."""
    shapes = {JOB_PREFIX + "x": Job.key_for("x"), DEFERRED_PREFIX + "x": DeferredJobRegistry.key_template.format("x"),
              **{value: status.value for status, value in LUA_STATUSES.items()}}
    for ours, rq_name in shapes.items():
        if ours != rq_name:
            raise RuntimeError(f"capacity/scripts/_pump.lua would use {ours!r} where RQ names {rq_name!r}: "
                               "update dispatcher/rq_glue.py for this RQ version")


check_rq_names()


def job_key(job_id: str) -> str:
    return Job.key_for(job_id)


def deferred_key(queue_name: str) -> str:
    return DeferredJobRegistry.key_template.format(queue_name)


def worker_key(worker_name: str) -> str:
    return WORKER_PREFIX + worker_name


# -- enqueueing -------------------------------------------------------------------------------
def queue(connection, name: str) -> Queue:
    return Queue(name, connection=connection)


def enqueue_in(pipe, queue: Queue, func: str, args: tuple, *, job_id: str, description: str, delay: float,
               at_front: bool, timeout: int, result_ttl: int, failure_ttl: int) -> Job:
    """Enqueue `func(*args)` on `pipe` (its commands run when the caller executes it), or
    schedule it `delay` seconds ahead (`promote_due` moves it onto its queue then)."""
    options = dict(job_id=job_id, pipeline=pipe, description=description, result_ttl=result_ttl,
                   failure_ttl=failure_ttl, job_timeout=timeout, at_front=at_front)
    if delay > 0:
        return queue.enqueue_in(timedelta(seconds=delay), func, *args, **options)
    return queue.enqueue(func, *args, **options)


def enqueue_callback(queue: Queue, func: str, arg: str, *, job_id: str, description: str, retries: int,
                     intervals: list[int], result_ttl: int, timeout: int) -> Job:
    """Enqueue a job RQ retries itself (`retries` times, after `intervals`) when it raises."""
    return queue.enqueue(func, arg, job_id=job_id, description=description,
                         retry=Retry(max=retries, interval=intervals) if retries else None,
                         result_ttl=result_ttl, job_timeout=timeout)


# -- parking ----------------------------------------------------------------------------------
def park_in(pipe, queue: Queue, func: str, args: tuple, *, job_id: str, description: str, timeout: int,
            result_ttl: int, failure_ttl: int) -> None:
    """Write a job on `pipe` without putting it on its queue: status deferred, listed in the
    queue's deferred registry (rq-dashboard shows it there, described `description` + PARKED_SUFFIX).
    `enqueue_parked` in capacity/scripts/_pump.lua pushes it onto the queue when its generation is
    admitted, and names the account in its description."""
    job = queue.create_job(func, args=args, job_id=job_id, timeout=timeout, description=description + PARKED_SUFFIX,
                           result_ttl=result_ttl, failure_ttl=failure_ttl, status=JobStatus.DEFERRED)
    job.origin = queue.name
    job.save(pipeline=pipe)
    queue.deferred_job_registry.add(job, pipeline=pipe)


def unpark_in(pipe, queue_name: str, job_id: str) -> None:
    """Delete a parked job that will never run, on `pipe`."""
    pipe.zrem(deferred_key(queue_name), job_id)
    pipe.delete(job_key(job_id))


def parked_window(connection, queue_name: str, limit: int) -> list[str]:
    """Up to `limit` parked job ids, from a random place in the queue's deferred registry."""
    key = deferred_key(queue_name)
    total = connection.zcard(key)
    if not total:
        return []
    first = random.randrange(max(total - limit, 0) + 1)
    return [_text(j) for j in connection.zrange(key, first, first + limit - 1)]


def job_status_in(pipe, job_id: str) -> None:
    """Queue a read of the job's status on `pipe` (None when the job is gone)."""
    pipe.hget(job_key(job_id), "status")


def drop_parked_in(pipe, queue_name: str, job_id: str, status) -> None:
    """Take a parked job off the deferred registry; delete it unless somebody queued it by hand
    meanwhile (`status`, as `job_status_in` read it)."""
    pipe.zrem(deferred_key(queue_name), job_id)
    if status in (None, b"deferred", "deferred"):
        pipe.delete(job_key(job_id))


# -- claimed jobs -----------------------------------------------------------------------------
# The worker's `dispatcher.steps.StepHistory` (workers/pool.py installs it at start-up): which
# claimed jobs ended their generation. None (a process that is no worker): each is kept as RQ would.
_history = None


def install_history(history) -> None:
    global _history
    _history = history


def record_claimed_in(pipe, connection, done, *, result_ttl: int, failure_ttl: int) -> None:
    """Mark claimed jobs (marked started by the admitting script, never on a queue) finished or
    failed as RQ would, with its result records, on `pipe`. `done`: (queue name, job id,
    return value, traceback or None) each. A job that ended its generation is kept for the
    installed history's TTL, and one that failed it is recorded failed with the reason; so is
    one that raised. A failure fetches its job (RQ's failed registry saves the whole job); one
    that expired or was deleted meanwhile is skipped."""
    ended = now()
    history, endings = _history, [None] * len(done)
    if history is not None:
        try:
            endings = history.judge([(job_id, outcome) for _, job_id, outcome, _ in done])
        except Exception:  # the records could not be read: each is kept as RQ would, as before
            pass
    for (queue_name, job_id, outcome, error), ending in zip(done, endings):
        registry_args = dict(name=queue_name, connection=connection)
        if error is None and (ending is None or ending.failed is None):
            ttl = ending.ttl if ending is not None else result_ttl
            job = Job(job_id, connection=connection)
            pipe.hset(job.key, mapping={"status": JobStatus.FINISHED.value, "ended_at": utcformat(ended)})
            pipe.expire(job.key, ttl)
            FinishedJobRegistry(**registry_args).add(job, ttl, pipeline=pipe)
            Result.create(job, Result.Type.SUCCESSFUL, ttl, return_value=outcome, pipeline=pipe)
            continue
        try:
            job = Job.fetch(job_id, connection=connection)
        except Exception:  # expired or deleted meanwhile: nothing to show it on
            continue
        ttl = history.ttl if history is not None else failure_ttl
        exc_string = error if error is not None else ending.reason(job.description)
        job.ended_at = ended
        job.failure_ttl = ttl
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(**registry_args).add(job, ttl=ttl, exc_string=exc_string, pipeline=pipe)
        Result.create_failure(job, ttl, exc_string=exc_string, pipeline=pipe)  # the text RQ shows


def claim_queued(connection, queue_name: str, limit: int, ttl: int) -> list[str]:
    """Take up to `limit` start jobs from the head of a queue, marked started, for the calling
    RQ job to run itself (`claim_queued.lua`; workers/chain.py); their outcomes are written
    with `record_claimed_in`, as for the starts a release claims."""
    script = lua.CORE.registered(connection)["claim_queued"]
    ids = script(keys=[QUEUE_PREFIX + queue_name], args=[JOB_PREFIX, utcformat(now()), int(ttl), int(limit)])
    return [_text(job_id) for job_id in ids]


def record_ended_in(pipe, connection, queue_name: str, func: str, ended: list[tuple]) -> None:
    """Write, on `pipe`, one finished or failed job per generation a poll batch ended, as RQ
    records a job it ran: `ended` holds (job id, args, description, return value, reason or None
    when it did not fail, ttl) each. The batch ran them; these records show each ending under
    its generation's name (rq-dashboard's Finished and Failed lists), as a poll job of its own would."""
    at = now()
    for job_id, args, description, outcome, reason, ttl in ended:
        status = JobStatus.FAILED if reason is not None else JobStatus.FINISHED
        job = Job.create(func, args=args, connection=connection, id=job_id, description=description,
                         result_ttl=ttl, failure_ttl=ttl, origin=queue_name, status=status)
        job.enqueued_at = job.started_at = job.ended_at = at
        job.save(pipeline=pipe)
        pipe.expire(job.key, ttl)
        if reason is None:
            FinishedJobRegistry(name=queue_name, connection=connection).add(job, ttl, pipeline=pipe)
            Result.create(job, Result.Type.SUCCESSFUL, ttl, return_value=outcome, pipeline=pipe)
        else:
            FailedJobRegistry(name=queue_name, connection=connection).add(job, ttl=ttl, exc_string=reason,
                                                                          pipeline=pipe)
            Result.create_failure(job, ttl, exc_string=reason, pipeline=pipe)


# -- ended jobs ---------------------------------------------------------------------------------
def clean_ended(connection) -> None:
    """Drop the expired entries of every queue's finished and failed registries (their jobs'
    hashes expire with them), as RQ's `count` does before it counts: rq-dashboard 0.9 counts and
    lists them without cleaning, so its counts would include jobs its lists no longer show.
    Two round trips, whatever the number of queues."""
    names = [_text(q)[len(QUEUE_PREFIX):] for q in connection.smembers(QUEUES_KEY)]
    if not names:
        return
    cutoff = current_timestamp()
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.zremrangebyscore(FINISHED_TEMPLATE.format(name), 0, cutoff)
        pipe.zremrangebyscore(FAILED_TEMPLATE.format(name), 0, cutoff)
    pipe.execute()


# -- delayed jobs -----------------------------------------------------------------------------
def promote_due(connection, queue_names: list[str], limit: int = 1000) -> int:
    """Move scheduled jobs whose time has come onto their queues; returns how many. Each job is
    claimed with ZREM before it is enqueued, so two callers that overlap never enqueue it twice."""
    promoted = 0
    for name in queue_names:
        registry = ScheduledJobRegistry(name, connection=connection)
        due = registry.get_jobs_to_schedule(chunk_size=limit)
        if not due:
            continue
        pipe = connection.pipeline(transaction=False)
        for job_id in due:
            pipe.zrem(registry.key, job_id)
        claimed = [job_id for job_id, won in zip(due, pipe.execute()) if won]
        queue = Queue(name, connection=connection)
        with connection.pipeline() as pipe:
            for job in Job.fetch_many(claimed, connection=connection):
                if job is not None:
                    queue.enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                    promoted += 1
            pipe.execute()
    return promoted


def steps_pending(connection, queue_name: str, job_ids: list[str | None]) -> list[bool]:
    """For each job id: is it still in its queue or among the scheduled (delayed) jobs?"""
    queued, scheduled = QUEUE_PREFIX + queue_name, ScheduledJobRegistry(queue_name, connection=connection).key
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        if job_id:
            pipe.zscore(scheduled, job_id)
            pipe.lpos(queued, job_id)
    found = iter(pipe.execute())
    out = []
    for job_id in job_ids:
        in_scheduled, in_queue = (next(found), next(found)) if job_id else (None, None)
        out.append(in_scheduled is not None or in_queue is not None)
    return out


# -- reading ------------------------------------------------------------------------------------
def queue_lengths(connection, queue_names: list[str]) -> dict[str, int]:
    """Jobs ready in each queue."""
    pipe = connection.pipeline(transaction=False)
    for name in queue_names:
        pipe.llen(QUEUE_PREFIX + name)
    return dict(zip(queue_names, (int(n) for n in pipe.execute())))


def worker_count(connection) -> int:
    return Worker.count(connection=connection)


# -- jobs whose worker died -------------------------------------------------------------------
def started_entries(connection, queue_name: str, limit: int) -> list[str]:
    """The first `limit` entries of the queue's started registry (`<job id>:<execution id>`)."""
    key = StartedJobRegistry(queue_name, connection=connection).key
    return [_text(e) for e in connection.zrange(key, 0, limit - 1)]


def execution_facts(connection, entries: list[str]) -> list[tuple]:
    """(worker name, created at) of each started entry's execution record, None where it is gone."""
    pipe = connection.pipeline(transaction=False)
    for entry in entries:
        pipe.hmget(Execution.from_composite_key(entry, connection).key, "worker_name", "created_at")
    return pipe.execute()


def claim_started(connection, queue_name: str, entry: str) -> bool:
    """Take an entry off the started registry; False when another caller took it first."""
    return bool(connection.zrem(StartedJobRegistry(queue_name, connection=connection).key, entry))


def job_id_of(entry: str) -> str:
    return entry.rpartition(":")[0]


def requeue_stuck_dequeues(connection, queue_name: str, older_than: float, limit: int = 200) -> list[str]:
    """Put back on its queue each job a worker took (RQ moves it to the queue's intermediate list,
    `<queue key>:intermediate`, when a worker serves one queue) and died with before marking it
    started: still there and still queued `older_than` seconds after this was first seen (a live
    worker marks it started within milliseconds). RQ itself only fails such a job, after a minute,
    at a worker's start or its 10-minute maintenance pass. Returns the job ids put back."""
    stuck = IntermediateQueue(QUEUE_PREFIX + queue_name, connection)
    put_back = []
    for job_id in [_text(j) for j in connection.lrange(stuck.key, 0, limit - 1)]:
        key = stuck.get_first_seen_key(job_id)
        if connection.set(key, current_timestamp(), nx=True, ex=3600):
            continue  # first seen now: look again next tick
        seen = connection.get(key)
        if seen is None or current_timestamp() - float(seen) < older_than:
            continue
        if connection.hget(JOB_PREFIX + job_id, "status") != JobStatus.QUEUED.value.encode():
            continue  # started, or gone: the worker did its bookkeeping after all
        if connection.lrem(stuck.key, 1, job_id):  # taken from the list here: no other tick puts it back
            connection.lpush(QUEUE_PREFIX + queue_name, job_id)
            connection.delete(key)
            put_back.append(job_id)
    return put_back


def take_over(connection, queue_name: str, job_id: str, reason: str, *, failure_ttl: int) -> bool | None:
    """A started job whose worker died (its entry claimed): retried after its next backoff while it
    has retries left (True), else failed with `reason` (False), as RQ's cleanup would. None when
    the job is gone or no longer started (its worker finished the bookkeeping after all)."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None
    if job.get_status(refresh=False) != JobStatus.STARTED:
        return None
    with connection.pipeline() as pipe:
        retried = job.should_retry
        if retried:
            job.retry(Queue(queue_name, connection=connection), pipe)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            FailedJobRegistry(queue_name, connection=connection).add(job, ttl=failure_ttl, exc_string=reason,
                                                                     pipeline=pipe)
        pipe.execute()
    return retried


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
