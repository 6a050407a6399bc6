"""The RQ step functions: each runs for the milliseconds of one upstream call.

`start` submits upstream and saves the upstream id before anything else;
`poll` checks the upstream, renews the lease and reschedules itself until the
upstream finishes; then the record is finished, the slot released (which
admits the next waiter) and the callback enqueued. A step whose id is not the
generation's current `step` was superseded and does nothing, and a step that
runs again never submits twice: with an upstream id saved it resumes polling,
and the create call carries the generation id as its idempotency key.
"""

from __future__ import annotations

import time

from dispatcher import logging as dlog
from dispatcher import providers
from dispatcher.errors import UpstreamError
from dispatcher.generations import ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, provider_of
from dispatcher.health import COOLDOWN, FAIL, FLAG, REFRESH, RETRY, backoff, judge
from dispatcher.tokens import AccountUnusable, ensure_token

from .context import dispatcher

log = dlog.get_logger()
_STATES = {"succeeded": COMPLETED, "failed": FAILED, "canceled": CANCELED}


def _load(generation_id: str, step_id: str | None):
    d = dispatcher()
    gen = d.generations.find(generation_id)
    if gen is None:
        return d, None  # record gone (expired/never written): maintenance reaps any slot
    if step_id is not None and gen.step and gen.step != step_id:
        return d, None  # superseded by a newer step for the same generation
    dlog.clear()
    dlog.bind(generation_id=gen.id, provider=gen.provider, account=gen.account)
    if gen.terminal:
        _release(d, gen.provider, gen.id)
        return d, None
    return d, gen


def _release(d, provider: str, generation_id: str) -> None:
    cap = d.capacity(provider)
    if cap.holder(generation_id):
        d.dispatch(cap.release(generation_id))


def start(generation_id: str, step_id: str | None = None) -> str:
    d, gen = _load(generation_id, step_id)
    if gen is None:
        return "skipped"
    cap = d.capacity(gen.provider)
    if gen.state == WAITING:  # admitted by a script, but the record never heard (crash in between)
        account = cap.holder(gen.id)
        if not account or not d.generations.move(gen.id, {WAITING}, ADMITTED, account=account,
                                                 admitted_at=time.time()):
            return "not admitted"
        gen.account, gen.state = account, ADMITTED
    if gen.upstream_id:
        d.steps.poll(gen.provider, gen.id, gen.account)
        return "resumed"
    cap.renew(gen.id)
    adapter = d.adapter(gen.provider)
    try:
        token = _token(d, gen)
        try:
            upstream_id = adapter.create(token, gen.operation, gen.payload, gen.id)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(d, gen.provider, gen.account, force=True, stale_token=token)
            upstream_id = adapter.create(token, gen.operation, gen.payload, gen.id)
    except AccountUnusable as exc:
        return _reroute(d, gen, exc.message)
    except UpstreamError as exc:
        return _start_failed(d, gen, exc)
    # the upstream accepted: save its id before anything else
    if not d.generations.move(gen.id, {ADMITTED}, SUBMITTED, upstream_id=upstream_id, submitted_at=time.time()):
        current = d.generations.find(gen.id)
        if current is not None and current.state == CANCELED:  # canceled while we submitted
            _quietly(adapter.cancel, token, upstream_id)
            _release(d, gen.provider, gen.id)
        return "superseded"
    d.health_ok(gen.provider, gen.account)
    d.steps.poll(gen.provider, gen.id, gen.account, delay=providers.get(gen.provider).backoff(0))
    return "submitted"


def _token(d, gen) -> str:
    return ensure_token(d, gen.provider, gen.account)


def _start_failed(d, gen, exc: UpstreamError) -> str:
    verdict = judge(exc, d.settings)
    if verdict.action == REFRESH:  # 401 again after a forced refresh
        d.flag_account(gen.provider, gen.account, _refresh_failed())
        return _reroute(d, gen, verdict.reason)
    if verdict.action == COOLDOWN:
        d.cooldown_account(gen.provider, gen.account, verdict.cooldown)
        return _reroute(d, gen, verdict.reason)
    if verdict.action == FLAG:
        d.flag_account(gen.provider, gen.account, verdict.flag, hold=verdict.cooldown)
        return _reroute(d, gen, verdict.reason)
    if verdict.action == RETRY:
        d.health_failed(gen.provider, gen.account)
        retries = d.generations.incr(gen.id, "retries")
        if retries <= d.settings.upstream_retries:
            d.steps.start(gen.provider, gen.id, gen.account, delay=backoff(retries))
            return "retrying"
    return _fail(d, gen, exc, allowed={ADMITTED})


def _refresh_failed() -> str:
    from dispatcher.health import refresh_failed_message

    return refresh_failed_message()


def _reroute(d, gen, reason: str) -> str:
    """Not accepted upstream and the account left rotation: back to the line, for another account."""
    log.info("generation rerouted", reason=reason)
    d.requeue(gen.id)
    return "rerouted"


def _fail(d, gen, exc: UpstreamError, *, allowed) -> str:
    if d.generations.move(gen.id, allowed, FAILED, error=exc.message or f"upstream error {exc.status}",
                          error_code=exc.status):
        _release(d, gen.provider, gen.id)
        d.finished(gen.id)
        log.info("generation failed", error=exc.message, code=exc.status)
    return "failed"


def poll(generation_id: str, step_id: str | None = None) -> str:
    d, gen = _load(generation_id, step_id)
    if gen is None:
        return "skipped"
    if not gen.upstream_id:
        return start(generation_id, None)
    cap = d.capacity(gen.provider)
    spec = providers.get(gen.provider)
    adapter = d.adapter(gen.provider)
    try:
        token = _token(d, gen)
        try:
            result = adapter.poll(token, gen.upstream_id)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(d, gen.provider, gen.account, force=True, stale_token=token)
            result = adapter.poll(token, gen.upstream_id)
    except AccountUnusable as exc:
        # accepted upstream, but the token no longer works and cannot be renewed
        return _fail(d, gen, UpstreamError(f"account left rotation: {exc.message}", status=401),
                     allowed={SUBMITTED})
    except UpstreamError as exc:
        return _poll_failed(d, gen, exc)
    cap.renew(gen.id)
    if result.done:
        return _finish(d, gen, result)
    polls = d.generations.incr(gen.id, "polls")
    d.generations.update(gen.id, progress=result.progress, retries=0)
    d.steps.poll(gen.provider, gen.id, gen.account, delay=spec.backoff(polls))
    return "polling"


def _poll_failed(d, gen, exc: UpstreamError) -> str:
    verdict = judge(exc, d.settings)
    cap = d.capacity(gen.provider)
    if verdict.action == REFRESH:
        d.flag_account(gen.provider, gen.account, _refresh_failed())
        return _fail(d, gen, exc, allowed={SUBMITTED})
    if verdict.action == COOLDOWN:
        d.cooldown_account(gen.provider, gen.account, verdict.cooldown)
        cap.renew(gen.id)
        d.steps.poll(gen.provider, gen.id, gen.account, delay=max(verdict.cooldown, 1.0))
        return "throttled"
    if verdict.action in (FLAG, RETRY):
        if verdict.action == FLAG:
            d.flag_account(gen.provider, gen.account, verdict.flag, hold=verdict.cooldown)
        else:
            d.health_failed(gen.provider, gen.account)
        retries = d.generations.incr(gen.id, "retries")
        if retries <= d.settings.upstream_retries:
            cap.renew(gen.id)
            d.steps.poll(gen.provider, gen.id, gen.account, delay=backoff(retries))
            return "retrying"
    return _fail(d, gen, exc, allowed={SUBMITTED})


def _finish(d, gen, result) -> str:
    state = _STATES[result.state]
    values = {"progress": 1.0 if state == COMPLETED else result.progress}
    if state == COMPLETED:
        values["result"] = {"artifacts": list(result.artifacts)}
    else:
        values["error"] = result.error or f"upstream {result.state}"
        values["error_code"] = 422 if result.error and "moderat" in result.error.lower() else 500
    if d.generations.move(gen.id, {SUBMITTED}, state, **values):
        _release(d, gen.provider, gen.id)
        d.finished(gen.id)
        log.info("generation finished", state=state)
    return state


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except UpstreamError:
        pass


__all__ = ["start", "poll", "provider_of"]
