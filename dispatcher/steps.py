"""Enqueueing the workers' step jobs on RQ, by dotted path.

The core never imports `workers`; it names the step functions for RQ. Every
step job is described so that a person reading rq-dashboard sees which
generation, provider and account it belongs to.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from rq import Queue, Retry

from . import keys
from .generations import provider_of

START = "workers.steps.start"
POLL = "workers.steps.poll"
DELIVER = "workers.callbacks.deliver"
CALLBACK_QUEUE = "dispatcher.callbacks"
STEP_TIMEOUT = 120  # seconds; a step is milliseconds of work plus one upstream call


def queue_name(provider: str) -> str:
    return f"dispatcher.{provider}"


def all_queue_names(providers) -> list[str]:
    return [queue_name(p) for p in providers] + [CALLBACK_QUEUE]


class StepQueue:
    def __init__(self, rq_connection):
        self.connection = rq_connection
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection)
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
        job_id = f"{generation_id}_{step}_{uuid.uuid4().hex[:8]}"
        pipe = self.connection.pipeline(transaction=True)
        read = None
        if before is not None:
            pipe.multi()  # RQ opens the MULTI itself unless commands come first
            read = before(pipe, job_id)
        kwargs = dict(
            job_id=job_id,
            pipeline=pipe,
            description=f"{provider} {step} {generation_id} on {account or '-'}",
            result_ttl=60,
            failure_ttl=7 * 24 * 3600,
            job_timeout=STEP_TIMEOUT,
            # a poll goes ahead of queued starts: generations already running are tracked
            # before more are started (a burst of submissions otherwise delays every poll)
            at_front=step == "poll",
            # the account rides along as a hint, so the step reads it with the record in one
            # round trip; in the job's meta, not its arguments, so that a worker of an older
            # version (two arguments) still runs the job during a rolling upgrade
            meta={"account": account} if account else None,
        )
        if delay > 0:
            job = q.enqueue_in(timedelta(seconds=delay), func, generation_id, job_id, **kwargs)
        else:
            job = q.enqueue(func, generation_id, job_id, **kwargs)
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
        return self.queue(CALLBACK_QUEUE).enqueue(
            DELIVER, generation_id,
            job_id=f"{generation_id}_callback_{uuid.uuid4().hex[:8]}",
            description=f"callback {generation_id}",
            retry=Retry(max=retries, interval=intervals) if retries else None,
            result_ttl=60, job_timeout=60,
        )
