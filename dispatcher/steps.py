"""A generation's step jobs: which exist, on which queue, and which one is current.

The core never imports `workers`; it names the step functions for RQ. Every
step job is described so that a person reading rq-dashboard sees which
generation, provider and account it belongs to. An enqueue and the record's
`step` (the current step; any other exits at once) are written in one round
trip. How RQ stores the jobs is `rq_glue`'s business.
"""

from __future__ import annotations

import time
import uuid

from . import keys, rq_glue
from .generations import provider_of

START = "workers.steps.start"
POLL = "workers.steps.poll"
DELIVER = "workers.callbacks.deliver"
CALLBACK_QUEUE = "dispatcher.callbacks"  # served by the callback worker process only (workers/pool.py)
# RQ's backstop; each delivery ends by DISPATCHER_CALLBACK_DEADLINE (300 s at most) long before
CALLBACK_TIMEOUT = 360
STEP_TIMEOUT = 120  # seconds; a step is milliseconds of work plus one upstream call
RESULT_TTL, FAILURE_TTL = 60, 7 * 24 * 3600  # seconds RQ keeps a step job once it ran / failed


def queue_name(provider: str) -> str:
    return f"dispatcher.{provider}"


def all_queue_names(providers) -> list[str]:
    return [queue_name(p) for p in providers] + [CALLBACK_QUEUE]


def _job_id(generation_id: str, step: str) -> str:
    return f"{generation_id}_{step}_{uuid.uuid4().hex[:8]}"


def _description(provider: str, step: str, generation_id: str, account: str | None) -> str:
    # a parked start ends in " on -": the admitting script writes the account there (_pump.lua)
    return f"{provider} {step} {generation_id} on {account or '-'}"


class StepQueue:
    def __init__(self, rq_connection):
        self.connection = rq_connection
        self._queues: dict[str, rq_glue.Queue] = {}

    def queue(self, name: str) -> rq_glue.Queue:
        if name not in self._queues:
            self._queues[name] = rq_glue.queue(self.connection, name)
        return self._queues[name]

    def _enqueue(self, provider, func, step, generation_id, account, delay: float, fields: dict | None = None,
                 before=None, ride=None):
        """Enqueue one step and, in the same round trip, make it the generation's current step
        (and write `fields` to the record with it, and `due`: when the step is meant to run).

        A step whose id is no longer the record's `step` has been superseded
        (e.g. by crash recovery) and exits at once, so a generation never has
        two poll chains.

        `before(pipe, job_id)`, when given, queues one command ahead of the enqueue in the
        same MULTI and takes over writing the record (a state move that records `step`, so
        the step is current only if the move happened, and nothing is written to a record
        that is gone); it returns a function of its reply, whose result this call returns.
        `ride(pipe)`, when given, queues commands whose replies need no reading (a health record)
        after the enqueue, in the same round trip."""
        q = self.queue(queue_name(provider))
        job_id = _job_id(generation_id, step)
        pipe = self.connection.pipeline(transaction=True)
        read = None
        if before is not None:
            pipe.multi()  # RQ opens the MULTI itself unless commands come first
            read = before(pipe, job_id)
        # a poll goes ahead of queued starts: generations already running are tracked
        # before more are started (a burst of submissions otherwise delays every poll)
        job = rq_glue.enqueue_in(pipe, q, func, (generation_id, job_id), job_id=job_id, delay=delay,
                                 description=_description(provider, step, generation_id, account),
                                 at_front=step == "poll", timeout=STEP_TIMEOUT, result_ttl=RESULT_TTL,
                                 failure_ttl=FAILURE_TTL)
        if ride is not None:
            ride(pipe)
        if read is None:
            record = {**(fields or {}), "due": time.time() + max(delay, 0), "step": job_id}
            pipe.hset(keys.generation(provider_of(generation_id), generation_id), mapping=record)
            pipe.execute()
            return job
        replies = pipe.execute(raise_on_error=False)
        for reply in replies[1:]:
            if isinstance(reply, Exception):
                raise reply
        return read(replies[0])

    def park_in(self, pipe, provider: str, generation_id: str) -> str:
        """Write a generation's start job on `pipe` without putting it on a queue (RQ status
        `deferred`, in its queue's deferred registry, so rq-dashboard shows the waiting
        generations). The capacity script that admits the generation enqueues it in the same
        atomic step (`enqueue_parked` in capacity/scripts/_pump.lua), so an admitted
        generation is on RQ without another round trip and never admitted but not enqueued.
        Returns the job id, for the record's `parked` field."""
        job_id = _job_id(generation_id, "start")
        rq_glue.park_in(pipe, self.queue(queue_name(provider)), START, (generation_id, job_id), job_id=job_id,
                        description=_description(provider, "start", generation_id, None), timeout=STEP_TIMEOUT,
                        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
        return job_id

    def unpark_in(self, pipe, provider: str, job_id: str | None) -> None:
        """Delete a parked start job that will never run (its generation left the line)."""
        if job_id:
            rq_glue.unpark_in(pipe, queue_name(provider), job_id)

    def sweep_parked(self, provider: str, limit: int = 200) -> int:
        """Delete parked start jobs whose generation no longer waits for them (maintenance's
        safety net: a record moved to admitted outside the admitting script, e.g. by a worker
        of an older version during a rolling upgrade, or after a crash mid-requeue). Checks
        `limit` of them from a random place in the deferred registry; returns how many went.
        A parked job, once its record stops naming it while waiting, never becomes current
        again (parking always writes a fresh id), so reading then deleting is safe."""
        queue = queue_name(provider)
        job_ids = rq_glue.parked_window(self.connection, queue, limit)
        if not job_ids:
            return 0
        pipe = self.connection.pipeline(transaction=False)
        for job_id in job_ids:
            gen_id = job_id.partition("_")[0]
            pipe.hmget(keys.generation(provider, gen_id), "state", "parked")
            rq_glue.job_status_in(pipe, job_id)
        replies = pipe.execute()
        stale = []
        for job_id, (state, parked), status in zip(job_ids, replies[0::2], replies[1::2]):
            if not (state == b"waiting" and parked == job_id.encode()):
                stale.append((job_id, status))
        if stale:
            pipe = self.connection.pipeline(transaction=False)
            for job_id, status in stale:
                rq_glue.drop_parked_in(pipe, queue, job_id, status)
            pipe.execute()
        return len(stale)

    def start(self, provider: str, generation_id: str, account: str | None, delay: float = 0):
        return self._enqueue(provider, START, "start", generation_id, account, delay)

    def start_after(self, provider: str, generation_id: str, account: str | None, before):
        """A start step enqueued in one round trip with `before(pipe, job_id)` (see `_enqueue`)."""
        return self._enqueue(provider, START, "start", generation_id, account, 0, before=before)

    def poll(self, provider: str, generation_id: str, account: str | None, delay: float = 0,
             fields: dict | None = None, ride=None):
        return self._enqueue(provider, POLL, "poll", generation_id, account, delay, fields, ride=ride)

    def callback(self, generation_id: str, retries: int):
        intervals = [min(2 ** i, 60) for i in range(max(retries, 1))]
        return rq_glue.enqueue_callback(self.queue(CALLBACK_QUEUE), DELIVER, generation_id,
                                        job_id=f"{generation_id}_callback_{uuid.uuid4().hex[:8]}",
                                        description=f"callback {generation_id}", retries=retries,
                                        intervals=intervals, result_ttl=60, timeout=CALLBACK_TIMEOUT)
