"""`settle`: a generation's RQ job, run by the callback worker once the generation ended.

See `dispatcher.backend_events` for the whole picture. In short: fire the end's callback and
replyQueue event (once, whatever the number of runs), keep the result on the job, then end the
job the way the generation ended, so RQ releases the backends' dependents: finished (returns the
result) when it completed, failed (raises `GenerationFailed`, no retry) when it failed or was
canceled. A run cut short by a dying worker is retried (maintenance's callback take-over).
"""

from __future__ import annotations

from rq import get_current_job

from dispatcher import backend_events
from dispatcher import logging as dlog
from dispatcher.backends import RESULT_META, GenerationFailed, GenerationResult, result_dict
from dispatcher.generations import COMPLETED

from .context import dispatcher

log = dlog.get_logger()


class GenerationRunning(RuntimeError):
    """Released before its generation ended (never by design): RQ retries it later."""


def settle(generation_id: str) -> dict:
    d = dispatcher()
    job = get_current_job()
    gen = d.generations.find(generation_id)
    if gen is not None and not gen.terminal:
        raise GenerationRunning(f"generation {generation_id} is still {gen.state}")
    hooks = backend_events.Hooks.from_meta(job.meta if job is not None else None)
    if backend_events.fire(d, generation_id, gen, hooks):
        log.info("generation end fired on RQ", generation_id=generation_id, queue=hooks.queue,
                 reply=bool(hooks.reply))
    result = result_dict(generation_id, gen)
    if job is not None:
        job.meta[RESULT_META] = result
        job.save_meta()
    if gen is not None and gen.state == COMPLETED:
        return result
    if job is not None:
        job.retries_left = 0  # the generation's failure is final: RQ fails the job, no retry
    raise GenerationFailed(GenerationResult.from_dict(result))
