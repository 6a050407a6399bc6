"""A generation's step jobs: which exist, on which queue, and which one is current.

The core never imports `workers`; it names the step functions for RQ. Every
step job is described so that a person reading rq-dashboard sees which
generation (its public id, as the HTTP API shows it), provider and account it
belongs to: `"runwayml poll user:dispatcher-runwayml-task:<hex> on a@b.com"`; a
waiting generation's parked start reads `"… start <public id>, waiting for a slot"`
until its admission names the account. An enqueue and the record's `step` (the
current step; any other exits at once) are written in one round trip. How RQ
stores the jobs is `rq_glue`'s business.

What RQ keeps of them (`StepHistory`): an intermediate step for RESULT_TTL (10) seconds,
the step that ended its generation for `step_history_ttl` (24 h by default), in
RQ's finished registry, or in its failed registry with the reason when it failed
the generation (`moderated (422): … — account a@b.com, taskId user:…`).
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from . import keys, providers, rq_glue
from .generations import FAILED, TERMINAL, Generation, provider_of, public_id
from .shapes import job_id as public_job_id, shape_for

START = "workers.steps.start"
POLL = "workers.steps.poll"
POLL_BATCH = "workers.polls.poll_batch"
BATCH_NAMES = 20  # generations a poll batch's description names (the job's arguments list them all)
DELIVER = "workers.callbacks.deliver"
CALLBACK_QUEUE = "dispatcher.callbacks"  # served by the callback worker process only (workers/pool.py)
# RQ's backstop; each delivery ends by DISPATCHER_CALLBACK_DEADLINE (300 s at most) long before
CALLBACK_TIMEOUT = 360
STEP_TIMEOUT = 120  # seconds; a step is milliseconds of work plus one upstream call
# Seconds RQ keeps an intermediate step job once it ran / a claimed one that raised outside a worker
# (the step that ends a generation, and any step a worker fails, is kept `step_history_ttl`:
# StepHistory). A finished step costs Redis about 7 KB (its job hash ~2 KB, RQ 3's result stream
# ~4.8 KB, its registry entry); 5,000 generations in flight polled every ~8 s finish ~625 polls a
# second: kept 24 h that is 54 million jobs (~370 GB), kept 60 s ~255 MB, kept 10 s ~43 MB. 10 s
# still lists each running generation's latest poll (the longest poll interval is 10 s), and
# its next one is always under Scheduled.
RESULT_TTL, FAILURE_TTL = 10, 7 * 24 * 3600


def queue_name(provider: str) -> str:
    return f"dispatcher.{provider}"


def all_queue_names(providers) -> list[str]:
    return [queue_name(p) for p in providers] + [CALLBACK_QUEUE]


def _job_id(generation_id: str, step: str) -> str:
    return f"{generation_id}_{step}_{uuid.uuid4().hex[:8]}"


def _public(provider: str, generation_id: str) -> str:
    """The generation's public id as the provider-shaped endpoints accept it. A step knows neither
    the pinned account nor the operation, so the id is the any-account form of the provider's
    main shape (what they answer for most generations); every form resolves to the same record
    (`generations.internal_id`), and a failure's text names the exact one (`failure_reason`)."""
    spec = providers.REGISTRY.get(provider)
    return public_id(generation_id, spec.shape.kind) if spec is not None else generation_id


def describe_step(provider: str, step: str, generation_id: str, account: str | None) -> str:
    """How rq-dashboard names a step job: `runwayml poll <public id> on a@b.com`."""
    return f"{provider} {step} {_public(provider, generation_id)} on {account or '-'}"


def poll_step(generation_id: str) -> str:
    """The record's `step` while its next poll waits in the due index (one per generation)."""
    return f"{generation_id}_poll"


def _batch_description(provider: str, generation_ids: list[str]) -> str:
    shown = " ".join(_public(provider, g) for g in generation_ids[:BATCH_NAMES])
    more = f" and {len(generation_ids) - BATCH_NAMES} more" if len(generation_ids) > BATCH_NAMES else ""
    return f"{provider} poll {len(generation_ids)}: {shown}{more}"


def _parked_description(provider: str, generation_id: str) -> str:
    # rq_glue.park_in appends ", waiting for a slot"; the admitting script replaces it with
    # " on <account>" (_pump.lua), so an admitted start reads like any other step
    return f"{provider} start {_public(provider, generation_id)}"


class StepQueue:
    def __init__(self, rq_connection):
        self.connection = rq_connection
        self._queues: dict[str, rq_glue.Queue] = {}
        self._polls = None  # the transaction `polls_together` collects on

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
                                 description=describe_step(provider, step, generation_id, account),
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
                        description=_parked_description(provider, generation_id), timeout=STEP_TIMEOUT,
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
             fields: dict | None = None, ride=None) -> None:
        """Make the generation's next poll due `delay` seconds ahead, in the provider's due index
        (no RQ job of its own: a worker's DuePump claims what is due and polls it in batches,
        workers/polls.py), and its current step, in one round trip with `fields` and `ride(pipe)`
        (as `_enqueue`). `account` is not needed here: a batch reads it from the record."""
        due = time.time() + max(delay, 0)
        pipe = self._polls if self._polls is not None else self.connection.pipeline(transaction=True)
        pipe.zadd(keys.due(provider), {generation_id: int(due * 1000)})
        pipe.hset(keys.generation(provider, generation_id),
                  mapping={**(fields or {}), "due": due, "step": poll_step(generation_id)})
        if ride is not None:
            ride(pipe)
        if pipe is not self._polls:
            pipe.execute()

    @contextmanager
    def polls_together(self):
        """Within the block, `poll` queues its writes on one transaction, sent when the block
        ends (a poll batch: one round trip for every generation's next poll). Only the thread
        that runs steps may use it (a step worker runs one job at a time, in one thread)."""
        self._polls = pipe = self.connection.pipeline(transaction=True)
        try:
            yield
        finally:
            self._polls = None
            if len(pipe):
                pipe.execute()

    def poll_batch_in(self, pipe, provider: str, generation_ids: list[str]):
        """Enqueue one RQ job that polls `generation_ids` (claimed from the due index), ahead of
        queued starts: generations already running are tracked before more are started."""
        job_id = f"{provider}_polls_{uuid.uuid4().hex[:12]}"
        return rq_glue.enqueue_in(pipe, self.queue(queue_name(provider)), POLL_BATCH, (provider, generation_ids),
                                  job_id=job_id, description=_batch_description(provider, generation_ids),
                                  delay=0, at_front=True, timeout=STEP_TIMEOUT, result_ttl=RESULT_TTL,
                                  failure_ttl=FAILURE_TTL)

    def callback(self, generation_id: str, retries: int):
        intervals = [min(2 ** i, 60) for i in range(max(retries, 1))]
        return rq_glue.enqueue_callback(self.queue(CALLBACK_QUEUE), DELIVER, generation_id,
                                        job_id=f"{generation_id}_callback_{uuid.uuid4().hex[:8]}",
                                        description=f"callback {generation_id}", retries=retries,
                                        intervals=intervals, result_ttl=60, timeout=CALLBACK_TIMEOUT)


# -- what RQ keeps of the steps that end generations --------------------------------------------
# What the step functions return (their RQ result) when they may have ended their generation:
# its end seen upstream, or a refusal that failed it; a reroute fails a `fail_fast` generation
# when no account it may use is left in rotation (Core.fail_stranded). A step that ended it is
# its current `step` and left it terminal.
SEEN_ENDING = frozenset({"completed", "canceled"})  # the upstream's answer: no need to read the record
MAY_HAVE_FAILED = frozenset({"failed", "rerouted"})  # the record tells, and why
STEP_FUNCTIONS = frozenset({START, POLL, POLL_BATCH})
_WHAT = {401: "unauthorized", 404: "account deleted", 412: "out of credits", 422: "moderated",
         429: "throttled", 596: "account on hold"}


@dataclass(frozen=True)
class Ending:
    """A step that ended its generation: kept `ttl` seconds; `failed` is the record when the
    generation failed (RQ then records the step failed, with `reason`)."""

    ttl: int
    failed: Generation | None = None

    def reason(self, description: str | None = None) -> str | None:
        """The RQ exception text of a step that failed its generation (None otherwise).
        `description`: the step job's, whose account names the one that refused when the
        record no longer holds it (rerouted before it failed)."""
        if self.failed is None:
            return None
        return failure_reason(self.failed, _account_in(description))


def failure_reason(gen: Generation, account: str | None = None) -> str:
    """`moderated (422): <upstream message> — account a@b.com, taskId user:…`."""
    code = gen.error_code
    what = _WHAT.get(code) or ("upstream failure" if code and code >= 500 else "failed")
    error = gen.error or what
    if code and f"({code})" in error:  # an account's flag says it already: "Out of credits (412): …"
        head = error
    else:
        head = f"{what} ({code}): {error}" if code else f"{what}: {error}"
    ident = f"{shape_for(gen).id_key} {public_job_id(gen)}" if gen.provider in providers.REGISTRY else gen.id
    return f"{head} — account {gen.account or gen.pinned or account or '-'}, {ident}"


def _account_in(description: str | None) -> str | None:
    account = (description or "").rpartition(" on ")[2] if " on " in (description or "") else ""
    return account if account and account != "-" else None


class StepHistory:
    """Which step jobs ended their generation, and how RQ keeps them: `ttl` seconds
    (`step_history_ttl`), as finished, or as failed with the reason. The workers apply it
    (`workers.pool.StepWorker` to the jobs they run, `rq_glue.record_claimed_in` to the
    claimed starts a step ran after itself); every other step keeps RQ's RESULT_TTL."""

    def __init__(self, generations, ttl: int):
        self.generations = generations  # a GenerationStore
        self.ttl = int(ttl)

    def judge(self, steps: list[tuple[str, object]]) -> list[Ending | None]:
        """For each (job id, outcome): its Ending, or None when it did not end its generation.
        Reads the records (one round trip) only for outcomes that may have failed one."""
        out: list[Ending | None] = [Ending(self.ttl) if outcome in SEEN_ENDING else None for _, outcome in steps]
        unsure = [i for i, (job_id, outcome) in enumerate(steps) if outcome in MAY_HAVE_FAILED]
        if not unsure:
            return out
        ids = [steps[i][0].partition("_")[0] for i in unsure]
        for i, gen in zip(unsure, self.generations.many(ids)):
            if gen is None or gen.state not in TERMINAL or gen.step != steps[i][0]:
                continue  # still going (rerouted to another account), or ended by something else
            out[i] = Ending(self.ttl, gen if gen.state == FAILED else None)
        return out
