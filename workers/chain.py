"""Chained starts: the step that frees a slot runs the admitted waiter's start step itself.

Under load every finished generation admits the next waiter. Pushing that waiter's start
step onto RQ costs a whole RQ job (dequeue, bookkeeping, heartbeats, result): with an
upstream that answers at once, about half of a generation's CPU, for a step that some
worker would run a millisecond later anyway. Instead the release that admits it claims
its parked start job (marked started, never pushed: CLAIM in capacity/scripts/_pump.lua)
and the worker that released runs it at once, inside the same RQ job. Each claimed job's
outcome is then written on it (finished or failed, in RQ's registries), so rq-dashboard
still shows every start step under its own name.

Bounds: one RQ job claims at most `chain_starts` starts (a setting, default 16; 0 turns
chaining off: one RQ job per step) and stops claiming BUDGET_S seconds
after its first release, so polls queued behind it wait no longer than that; the other
admissions of a release are enqueued as before. A worker that dies mid-chain leaves the
claimed generation with a lease and no queued step: the lease expires and maintenance
resumes it, as for any step that dies. Step workers run one job at a time in one thread
(`SimpleWorker`), so the chain's state is the process's.
"""

from __future__ import annotations

import time
import traceback

from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.results import Result
from rq.timeouts import BaseTimeoutException
from rq.utils import now, utcformat

from dispatcher import logging as dlog
from dispatcher import metrics
from dispatcher.steps import FAILURE_TTL, RESULT_TTL, queue_name

log = dlog.get_logger()
BUDGET_S = 0.25  # seconds after the first release of an RQ job during which it claims
CLAIM_TTL = FAILURE_TTL  # seconds a claimed job's hash lives if its outcome is never written


class _Chain:
    def __init__(self):
        self.depth = 0  # chained starts running now (nested: a chained start may finish and claim again)
        self.claims = 0
        self.began = 0.0
        self.done: list[tuple[str, str, str | None]] = []  # (provider, job id, traceback or None)


_chain = _Chain()


def claim_ttl(d) -> int:
    """What the release about to run may claim: CLAIM_TTL, or 0 past the chain's bounds."""
    if _chain.depth == 0:  # a step's own release: a new chain
        _chain.claims, _chain.began = 0, time.monotonic()
    if _chain.claims >= d.settings.chain_starts or time.monotonic() - _chain.began > BUDGET_S:
        return 0
    return CLAIM_TTL


def run_claimed(d, provider: str, admissions, start) -> None:
    """Run the start step the release claimed (if any) now, with its job id as its step id;
    once the outermost chained start returns, write the claimed jobs' outcomes."""
    entered = time.monotonic()
    for admission in admissions:
        if admission.claimed is None:
            continue
        metrics.chained_start(d, provider, time.monotonic() - entered)  # deferred: rides a later round trip
        _chain.claims += 1
        _chain.depth += 1
        try:
            start(admission.generation_id, admission.claimed)
        except BaseTimeoutException:
            raise  # the RQ job ran out of time: RQ handles it (the chain's generations are leased)
        except Exception:
            # a start step that raises on its own leaves its generation leased, and maintenance
            # resumes it once the lease expires; so here (the releasing step succeeded)
            log.error("chained start step failed", generation_id=admission.generation_id,
                      step=admission.claimed, error=traceback.format_exc(limit=-1).strip().splitlines()[-1])
            _chain.done.append((provider, admission.claimed, traceback.format_exc()))
        else:
            _chain.done.append((provider, admission.claimed, None))
        finally:
            _chain.depth -= 1
    if _chain.depth == 0 and _chain.done:
        _record(d)


def _record(d) -> None:
    """Mark the chain's claimed jobs finished or failed, as RQ would have, in one round trip
    (a failure fetches its job: RQ's failed registry saves the whole job with the traceback)."""
    done, _chain.done = _chain.done, []
    ended = utcformat(now())
    pipe = d.rq.pipeline(transaction=False)
    for provider, job_id, error in done:
        registry_args = dict(name=queue_name(provider), connection=d.rq)
        if error is None:
            pipe.hset(Job.key_for(job_id), mapping={"status": JobStatus.FINISHED.value, "ended_at": ended})
            pipe.expire(Job.key_for(job_id), RESULT_TTL)
            FinishedJobRegistry(**registry_args).add(Job(job_id, connection=d.rq), RESULT_TTL, pipeline=pipe)
            continue
        try:
            job = Job.fetch(job_id, connection=d.rq)
        except Exception:  # expired or deleted meanwhile: nothing to show it on
            continue
        job.ended_at = now()
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(**registry_args).add(job, ttl=FAILURE_TTL, exc_string=error, pipeline=pipe)
        Result.create_failure(job, FAILURE_TTL, exc_string=error, pipeline=pipe)  # the traceback RQ shows
    try:
        pipe.execute()
    except Exception as exc:  # the jobs' hashes expire after CLAIM_TTL; the generations are unaffected
        log.warning("could not record chained start steps", error=str(exc), steps=len(done))
