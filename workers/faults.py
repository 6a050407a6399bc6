"""Steps that raise what no rule handles: retried a bounded number of times, then failed.

A step that raises an exception the step rules do not expect (a bug, a payload an adapter
cannot encode, an upstream answer it cannot read) would otherwise be resumed by maintenance
at every lease expiry, forever, holding its account's slot while its client reads PENDING.
Here each such raise counts in the record's `faults`. Up to `max_resumes` of them, the step
is tried again after a backoff (its lease held meanwhile); one more, and the generation
fails with the reason and releases its slot (a job the upstream already runs is cancelled
there first, best effort). The exception still propagates, so RQ records the failed step
job with its traceback (rq-dashboard's Failed list).

Not counted: Redis going away (a step cannot record anything then; maintenance resumes the
generation once Redis is back) and a step that was superseded or whose generation ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import functools

import redis

from dispatcher import logging as dlog
from dispatcher.errors import DispatcherError
from dispatcher.generations import ADMITTED, FAILED, SUBMITTED
from dispatcher.health import backoff
from dispatcher.tokens import ensure_token

from .context import dispatcher

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()
REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError)
REASON_CHARS = 300  # of the exception's text kept in the generation's error


def guarded(step):
    """`step(generation_id, step_id)` with its unexpected exceptions counted (see above)."""

    @functools.wraps(step)
    def run(generation_id: str, step_id: str | None = None):
        try:
            return step(generation_id, step_id)
        except REDIS_AWAY:
            raise
        except Exception as exc:
            try:
                fault(generation_id, step_id, exc)
            except Exception as inner:  # never hide the step's own exception
                log.error("could not record a step fault", generation_id=generation_id,
                          error=type(inner).__name__)
            raise

    return run


def fault(generation_id: str, step_id: str | None, exc: BaseException) -> str:
    """Count one unexpected raise of a step; retry the step after a backoff or, past the
    bound, fail the generation. Returns what was done ("retrying", "failed", "ignored")."""
    d = dispatcher()
    gen = d.generations.find(generation_id)
    if gen is None or gen.terminal or gen.state not in (ADMITTED, SUBMITTED):
        return "ignored"
    if step_id is not None and gen.step and gen.step != step_id:
        return "ignored"  # superseded: the current step carries on
    faults = d.generations.incr(gen.id, "faults")
    reason = f"{type(exc).__name__}: {str(exc)[:REASON_CHARS]}"
    if faults <= d.settings.max_resumes:
        if not gen.upstream_id and gen.maybe_on != gen.account:
            # the raise may have come after the upstream took the job (a reply it could not read):
            # stay on this account, so the idempotency key returns it instead of a reroute
            d.generations.update(gen.id, maybe_on=gen.account)
        delay = backoff(faults)
        d.capacity(gen.provider).renew(gen.id, ttl_ms=int((d.settings.lease_ttl + delay) * 1000))
        if gen.upstream_id:
            d.steps.poll(gen.provider, gen.id, gen.account, delay=delay)
        else:
            d.steps.start(gen.provider, gen.id, gen.account, delay=delay)
        log.warning("step raised; retrying", faults=faults, retry_in=round(delay, 3), error=reason)
        return "retrying"
    message = f"internal error, {faults} attempts: {reason}"
    if not d.generations.move(gen.id, {ADMITTED, SUBMITTED}, FAILED, error=message, error_code=500):
        return "ignored"  # finished or canceled meanwhile
    if gen.upstream_id:
        _cancel_upstream(d, gen)
    d.dispatch(d.capacity(gen.provider).release(gen.id))
    d.finished(gen.id)
    log.error("generation failed after step faults", faults=faults, error=reason)
    return "failed"


def _cancel_upstream(d: Core, gen) -> None:
    try:
        token = ensure_token(d, gen.provider, gen.account, flagged_ok=True)
        d.adapter(gen.provider).cancel(token, gen.upstream_id)
    except DispatcherError as exc:  # upstream refused, account gone or unusable
        log.warning("could not cancel a faulty generation upstream", error=exc.message)
    except Exception as exc:  # the generation has failed either way; its slot must come back
        log.warning("could not cancel a faulty generation upstream", error=type(exc).__name__)
