"""Chained starts: the step that frees a slot runs the admitted waiter's start step itself.

Under load every finished generation admits the next waiter. Pushing that waiter's start
step onto RQ costs a whole RQ job (dequeue, bookkeeping, heartbeats, result): with an
upstream that answers at once, about half of a generation's CPU, for a step that some
worker would run a millisecond later anyway. Instead the release that admits it claims
its parked start job (marked started, never pushed: CLAIM in capacity/scripts/_pump.lua),
and once the step that released returns, the same RQ job runs the claimed start, one
after another (`run_step`, the entry point of every step job). Each claimed job's outcome
is then written on it (finished or failed, with RQ's result records: `rq_glue`), so rq-dashboard
still shows every start step under its own name, and each is timed as a step of its own.

With no line (every generation admitted at submit) no release claims anything, yet a burst
of submissions queues one start job each. So, within the same bounds, a step job then
also claims the start jobs waiting at the head of its own queue (`claim_queued.lua`: never
past a poll batch, which goes ahead of starts) and runs them the same way.

Bounds: an RQ job claims at most `chain_starts` starts (a setting, default 16; 0 turns
chaining off: one RQ job per step), and only within BUDGET_S seconds of its own start,
so a slow step never claims, polls queued behind a chain wait at most that long, and
every claimed start begins with nearly all of the job's timeout ahead of it. The other
admissions of a release are enqueued as before. A claimed start that raises, or an RQ
job that dies or times out before running its claims, leaves the claimed generations
leased with no queued step: their leases expire and maintenance resumes them, as for
any step that dies. Step workers run one job at a time in one thread (`SimpleWorker`),
so the chain's state is the process's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import time
import traceback

from rq.job import get_current_job
from rq.timeouts import BaseTimeoutException

from dispatcher import logging as dlog
from dispatcher import metrics, rq_glue
from dispatcher.steps import FAILURE_TTL, RESULT_TTL, START, queue_name

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()
BUDGET_S = 0.25  # seconds into an RQ job after which it claims no more starts
CLAIM_TTL = FAILURE_TTL  # seconds a claimed job's hash lives if its outcome is never written
QUEUED_AT_ONCE = 4  # queued start jobs claimed in one round trip (`_run_queued`)


class _Chain:
    def __init__(self):
        self.active = False  # a step job's entry point is running
        self.began = 0.0  # wall time its RQ job started
        self.claims = 0
        self.pending: list[tuple[str, str, str, float]] = []  # (provider, generation, job id, claimed at)
        self.done: list[tuple[str, str, str, str | None]] = []  # (provider, job id, outcome, traceback)


_chain = _Chain()


def run_step(get_dispatcher: Callable[[], Core], step, start, *args):
    """Entry point of a step job: run `step(*args)` (a generation id and step id; a poll batch's
    provider and generation ids), then the start steps its releases claimed (and theirs), each
    with its claimed job id as its step id, then record their outcomes."""
    if _chain.active:  # called from within a step (not by RQ): no chain of its own
        return step(*args)
    job = get_current_job()
    _chain.active, _chain.claims, _chain.pending, _chain.done = True, 0, [], []
    _chain.began = job.started_at.timestamp() if job is not None and job.started_at else time.time()
    try:
        try:
            result = step(*args)
        except BaseTimeoutException:
            raise
        except Exception:
            _run_pending(get_dispatcher(), start)  # its claims do not wait for their leases to lapse
            raise
        _run_pending(get_dispatcher(), start)
        _run_queued(get_dispatcher(), start, job)
        return result
    finally:
        _chain.active = False
        if _chain.done:
            _record(get_dispatcher())


def claim_ttl(d: Core) -> int:
    """What the release about to run may claim: CLAIM_TTL, or 0 outside a step job's entry
    point (nobody would run the claim) and past the chain's bounds."""
    if not _chain.active or _chain.claims >= d.settings.chain_starts:
        return 0
    if time.time() - _chain.began > BUDGET_S:
        return 0
    return CLAIM_TTL


def claimed(provider: str, admissions) -> None:
    """Take note of the start a release claimed (at most one), to run once the step returns."""
    for admission in admissions:
        if admission.claimed is not None:
            _chain.claims += 1
            _chain.pending.append((provider, admission.generation_id, admission.claimed, time.monotonic()))


def _run_pending(d: Core, start) -> None:
    while _chain.pending:
        provider, generation_id, job_id, claimed_at = _chain.pending.pop(0)
        metrics.chained_start(d, provider, time.monotonic() - claimed_at)  # deferred: rides a later round trip
        try:
            outcome = start(generation_id, job_id)
        except BaseTimeoutException:
            raise  # the RQ job ran out of time: RQ handles it (the claimed generations are leased)
        except Exception as exc:
            # as for a start step that raises on its own: its generation stays leased and
            # maintenance resumes it once the lease expires
            log.error("chained start step failed", generation_id=generation_id, step=job_id,
                      error=f"{type(exc).__name__}: {exc}")
            _chain.done.append((provider, job_id, "error", traceback.format_exc()))
        else:
            _chain.done.append((provider, job_id, str(outcome), None))


def _run_queued(d: Core, start, job) -> None:
    """Then, within the same bounds, the start jobs at the head of this job's own queue, a few
    at a time (`rq_glue.claim_queued`): with no line, admissions happen at submit and no release
    claims anything, yet a burst of submissions queues one start job per generation."""
    if job is None or not job.origin or job.func_name != START:
        return  # a poll batch asks nothing: the starts behind it come to the next worker free
    provider = job.origin.partition(".")[2]
    while True:
        room = min(d.settings.chain_starts - _chain.claims, QUEUED_AT_ONCE)
        if room <= 0 or time.time() - _chain.began > BUDGET_S:
            return
        claimed = rq_glue.claim_queued(d.rq, job.origin, room, CLAIM_TTL)
        if not claimed:
            return
        for job_id in claimed:
            _chain.claims += 1
            _chain.pending.append((provider, job_id.partition("_")[0], job_id, time.monotonic()))
        _run_pending(d, start)


def _record(d: Core) -> None:
    """Mark the chain's claimed jobs finished or failed, with a result as RQ records one, in
    one round trip (`rq_glue.record_claimed_in`)."""
    done, _chain.done = _chain.done, []
    pipe = d.rq.pipeline(transaction=False)
    rq_glue.record_claimed_in(pipe, d.rq, [(queue_name(provider), job_id, outcome, error)
                                           for provider, job_id, outcome, error in done],
                              result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
    try:
        pipe.execute()
    except Exception as exc:  # the jobs' hashes expire after CLAIM_TTL; the generations are unaffected
        log.warning("could not record chained start steps", error=str(exc), steps=len(done))
