"""The RQ step functions: each runs for the milliseconds of one upstream call.

`start` submits upstream and saves the upstream id before anything else;
a poll (run by a poll batch, workers/polls.py, or by `poll` for one generation) checks the
upstream, renews the lease and makes the next poll due until the upstream finishes; then the record is finished, the slot released (which
admits the next waiter, whose start this step's RQ job may run next: chain.py)
and the callback enqueued. A step whose id is not the
generation's current `step` was superseded and does nothing, and a step that
runs again never submits twice: with an upstream id saved it resumes polling,
and the create call carries the generation id as its idempotency key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import time

from dispatcher import logging as dlog
from dispatcher import metrics
from dispatcher import providers
from dispatcher.errors import DispatcherError, NotFound, UpstreamError
from dispatcher.generations import ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, provider_of
from dispatcher.providers import MODERATED
from dispatcher.health import COOLDOWN, FLAG, REFRESH, RETRY, backoff, judge, refresh_failed_message
from dispatcher.tokens import AccountUnusable, ensure_token

from . import chain, faults
from .context import dispatcher

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()
POLL_RETRY_FACTOR = 3  # polls of an accepted job retry this many times longer than creates
# a generation whose create sends account after account out of rotation (429, 412, 596, a dead
# session) fails after this many reroutes: it returns to the head of the line and would
# otherwise take every account that frees up, and cool down or flag each in turn
MAX_REROUTES = 5
_STATES = {"succeeded": COMPLETED, "failed": FAILED, "canceled": CANCELED}
TOKEN_REUSE_S = 0.25  # seconds after a token check during which the start step's poll reuses it


class PollLag:
    """Benchmark instrumentation, off unless `DISPATCHER_RECORD_POLL_LAG=1`: how late each
    poll starts (now - the `due` time the previous step recorded), pushed to the Redis list
    `PollLag.KEY` in batches (one RPUSH per BATCH samples or per second), so measuring
    adds next to no round trips to the path it measures."""

    KEY = "dsp:bench:poll_lag"
    BATCH = 100

    def __init__(self):
        self.samples: list[str] = []
        self.flushed = time.monotonic()

    def add(self, d: Core, due: float) -> None:
        """One poll step started now; it was due at `due` (epoch s). Sample: "<due> <lag>"."""
        self.samples.append(f"{due:.3f} {time.time() - due:.4f}")
        if len(self.samples) >= self.BATCH or time.monotonic() - self.flushed > 1.0:
            samples, self.samples, self.flushed = self.samples, [], time.monotonic()
            d.r.rpush(self.KEY, *samples)


_lag = PollLag() if os.environ.get("DISPATCHER_RECORD_POLL_LAG") == "1" else None


def _load(generation_id: str, step_id: str | None):
    """The generation, unless gone, superseded or finished, and the account it holds (as the
    token check will need it): one round trip, which also renews the lease (harmless when it
    has none or the step turns out stale: renew only extends a lease) and carries the
    worker's deferred metrics."""
    d = dispatcher()
    try:
        provider = provider_of(generation_id)
        cap = d.capacity(provider)
    except NotFound:
        return d, None, None
    pipe = d.r.pipeline(transaction=False)
    found = d.generations.find_with_account_in(pipe, generation_id)
    renewed = cap.renew_in(pipe, generation_id)
    riding = metrics.ride(d, pipe)
    try:
        replies = pipe.execute(raise_on_error=False)
    except Exception:
        metrics.keep(d, riding)
        raise
    renewed(replies[1])
    gen, account = found(replies[0])
    return d, *loaded(d, gen, account, step_id)


def loaded(d: Core, gen, account, step_id: str | None):
    """(generation, account) as read by a step, or (None, None) when there is nothing to do:
    the record is gone, the step superseded, or the generation ended (its slot released)."""
    if gen is None:
        return None, None  # record gone (expired/never written): maintenance reaps any slot
    if step_id is not None and gen.step and gen.step != step_id:
        return None, None  # superseded by a newer step for the same generation
    dlog.clear()
    dlog.bind(generation_id=gen.id, provider=gen.provider, account=gen.account)
    if gen.terminal:
        _release(d, gen.provider, gen.id)
        return None, None
    return gen, d.accounts.decode(gen.provider, account)


def _release(d: Core, provider: str, generation_id: str) -> None:
    # release is idempotent (a generation without a lease releases nothing): no HGET first
    d.dispatch(d.capacity(provider).release(generation_id))


def start(generation_id: str, step_id: str | None = None) -> str:
    """RQ entry point of a start step (followed by the starts its release claimed: chain.py)."""
    return chain.run_step(dispatcher, _guarded_start, _guarded_start, generation_id, step_id)


def poll(generation_id: str, step_id: str | None = None) -> str:
    """RQ entry point of a poll step (followed by the starts its release claimed: chain.py)."""
    return chain.run_step(dispatcher, _guarded_poll, _guarded_start, generation_id, step_id)


@metrics.timed_step("start", dispatcher)
def _start(generation_id: str, step_id: str | None = None) -> str:
    d, gen, acct = _load(generation_id, step_id)
    if gen is None:
        return "skipped"
    cap = d.capacity(gen.provider)
    if gen.state == WAITING:  # admitted by a script, but the record never heard (crash in between)
        account = cap.holder(gen.id)
        if not account or not d.generations.move(gen.id, {WAITING}, ADMITTED, account=account,
                                                 admitted_at=time.time(), parked=None):
            return "not admitted"
        gen.account, gen.state = account, ADMITTED
    if gen.upstream_id:
        d.steps.poll(gen.provider, gen.id, gen.account)
        return "resumed"
    # the lease was renewed by _load; useapi takes the account's maxJobs on every create
    adapter = d.adapter(gen.provider, max_jobs=acct.max_jobs if acct is not None else None)
    try:
        # after an ambiguous attempt (timeout, 5xx, a crash) the upstream may hold our job: stay
        # on that account, flagged or not, and let the idempotency key (or `recover`) return it
        again = gen.maybe_on == gen.account
        token = _poll_token(d, gen, acct) if again else _token(d, gen, acct)
        checked = time.monotonic()
        try:
            upstream_id = (adapter.recover(token, gen.id) if again else None) or \
                adapter.create(token, gen.operation, gen.payload, gen.id)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(d, gen.provider, gen.account, force=True, stale_token=token)
            checked = time.monotonic()
            upstream_id = adapter.create(token, gen.operation, gen.payload, gen.id)
    except AccountUnusable as exc:
        return _reroute(d, gen, UpstreamError(exc.message, status=503))
    except UpstreamError as exc:
        return _start_failed(d, gen, exc)
    # the upstream accepted: save its id before anything else (the account's good call rides along)
    submitted_at = time.time()
    pipe = d.r.pipeline(transaction=False)
    moved = d.generations.move_in(pipe, gen.id, {ADMITTED}, SUBMITTED, upstream_id=upstream_id,
                                  submitted_at=submitted_at)
    d.health_ok_in(pipe, gen.provider, gen.account)
    if not moved(pipe.execute(raise_on_error=False)[0]):
        current = d.generations.find(gen.id)
        if current is None or current.upstream_id != upstream_id:
            # canceled, or its account deleted (requeued or failed), while we submitted: the
            # upstream job would run for nobody
            _quietly(lambda: adapter.cancel(token, upstream_id))  # the create's token: the account may be gone
        if current is not None and current.state == CANCELED:
            _release(d, gen.provider, gen.id)
        return "superseded"
    spec = providers.get(gen.provider)
    if spec.poll_at_submit:  # one status call now: an instant answer finishes in this very step
        gen.state, gen.upstream_id, gen.submitted_at = SUBMITTED, upstream_id, submitted_at
        # a create that answered within TOKEN_REUSE_S leaves the token outside its margin
        # (the transit guard alone is 1 s): reuse it; after a slow create, check it again
        reuse = token if time.monotonic() - checked < TOKEN_REUSE_S else None
        outcome = _check(d, gen, reuse, inline=True)
        return "submitted" if outcome == "polling" else outcome
    d.steps.poll(gen.provider, gen.id, gen.account, delay=spec.backoff(0))
    return "submitted"


def _token(d: Core, gen, account=None) -> str:
    return ensure_token(d, gen.provider, gen.account, account=account)


def _poll_token(d: Core, gen, account=None) -> str:
    """Accepted upstream: a flagged account keeps polling while its token works."""
    return ensure_token(d, gen.provider, gen.account, flagged_ok=True, account=account)


def _hold(d: Core, gen, delay: float) -> None:
    """Keep the lease across a delayed retry, so maintenance does not resume it early."""
    d.capacity(gen.provider).renew(gen.id, ttl_ms=int((d.settings.lease_ttl + delay) * 1000))


def _start_failed(d: Core, gen, exc: UpstreamError) -> str:
    verdict = judge(exc, d.settings)
    if verdict.action == RETRY and gen.maybe_on != gen.account:
        d.generations.update(gen.id, maybe_on=gen.account)  # the upstream may have accepted it
        gen.maybe_on = gen.account
    if gen.maybe_on == gen.account and verdict.action in (REFRESH, COOLDOWN, FLAG):
        # never reroute a job the upstream may already run: apply the account's verdict,
        # then ask the same account again (same idempotency key) or fail
        if verdict.action == COOLDOWN:
            d.cooldown_account(gen.provider, gen.account, verdict.cooldown)
        elif verdict.action == FLAG:
            d.flag_account(gen.provider, gen.account, verdict.flag, hold=verdict.cooldown, code=verdict.code)
        return _retry_start(d, gen, exc, delay=max(verdict.cooldown if verdict.action == COOLDOWN else 0, 0))
    if verdict.action == REFRESH:  # 401 again right after a forced refresh that worked
        d.health_failed(gen.provider, gen.account)
        retries = d.generations.incr(gen.id, "retries")
        if retries <= d.settings.upstream_retries:
            delay = backoff(retries)
            _hold(d, gen, delay)
            d.steps.start(gen.provider, gen.id, gen.account, delay=delay)
            return "retrying"
        # every fresh session refused: the account is unusable, the generation goes elsewhere
        d.flag_account(gen.provider, gen.account, refresh_failed_message())
        return _reroute(d, gen, exc)
    if verdict.action == COOLDOWN:
        d.cooldown_account(gen.provider, gen.account, verdict.cooldown)
        return _reroute(d, gen, exc)
    if verdict.action == FLAG:
        d.flag_account(gen.provider, gen.account, verdict.flag, hold=verdict.cooldown, code=verdict.code)
        return _reroute(d, gen, exc)
    if verdict.action == RETRY:
        d.health_failed(gen.provider, gen.account)
        return _retry_start(d, gen, exc)
    return _fail(d, gen, exc, allowed={ADMITTED})


def _retry_start(d: Core, gen, exc: UpstreamError, delay: float = 0.0) -> str:
    retries = d.generations.incr(gen.id, "retries")
    if retries > d.settings.upstream_retries:
        return _fail(d, gen, exc, allowed={ADMITTED})
    delay = max(delay, backoff(retries))
    _hold(d, gen, delay)
    d.steps.start(gen.provider, gen.id, gen.account, delay=delay)
    return "retrying"


def _reroute(d: Core, gen, exc: UpstreamError) -> str:
    """Not accepted upstream and the account left rotation: back to the head of the line, for
    another account; after MAX_REROUTES of them, failed with the last upstream answer."""
    if d.generations.incr(gen.id, "reroutes") > MAX_REROUTES:
        log.info("generation failed after reroutes", reason=exc.message, reroutes=MAX_REROUTES)
        return _fail(d, gen, exc, allowed={ADMITTED})
    log.info("generation rerouted", reason=exc.message)
    d.generations.update(gen.id, retries=0)  # a fresh retry budget on the next account
    d.requeue(gen.id)
    return "rerouted"


def _fail(d: Core, gen, exc: UpstreamError, *, allowed) -> str:
    if d.generations.move(gen.id, allowed, FAILED, error=exc.message or f"upstream error {exc.status}",
                          error_code=exc.status):
        _release(d, gen.provider, gen.id)
        if exc.status == MODERATED or exc.status >= 500:  # the operation's fault on this account, maybe
            d.operation_failed(gen.provider, gen.account, gen.operation)
        d.finished(gen.id)
        log.info("generation failed", error=exc.message, code=exc.status)
    return "failed"


@metrics.timed_step("poll", dispatcher)
def _poll(generation_id: str, step_id: str | None = None) -> str:
    d, gen, acct = _load(generation_id, step_id)
    if gen is None:
        return "skipped"
    return poll_loaded(d, gen, acct)


def poll_loaded(d: Core, gen, acct) -> str:
    """A poll of a generation read and leased by `_load` or by a poll batch (workers/polls.py)."""
    if _lag is not None and gen.due:
        _lag.add(d, gen.due)
    if not gen.upstream_id:
        return _start(gen.id, None)
    return _check(d, gen, account=acct)


def _check(d: Core, gen, token: str | None = None, *, inline: bool = False, account=None) -> str:
    """One status call upstream, then finish, or renew the lease and schedule the next poll.

    `inline`: the start step's poll right after submitting (it does not count in `polls`,
    so the backoff runs as if polling began after it). The lease was renewed by `_load`.
    `token`: one checked a moment ago (the start step's, after a fast create); otherwise
    it is checked here, so a slow create cannot leave it inside its margin."""
    spec = providers.get(gen.provider)
    adapter = d.adapter(gen.provider)
    try:
        token = token or _poll_token(d, gen, account)
        try:
            result = adapter.poll(token, gen.upstream_id)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(d, gen.provider, gen.account, force=True, stale_token=token, flagged_ok=True)
            result = adapter.poll(token, gen.upstream_id)
    except AccountUnusable as exc:
        # accepted upstream, but the token no longer works and cannot be renewed
        return _fail(d, gen, UpstreamError(f"account left rotation: {exc.message}", status=401),
                     allowed={SUBMITTED})
    except UpstreamError as exc:
        return _poll_failed(d, gen, exc)
    if result.done:
        return _finish(d, gen, result)  # the good call is recorded in the finishing round trip
    polls = gen.polls + (0 if inline else 1)  # only the current step writes `polls`
    elapsed = time.time() - gen.submitted_at if gen.submitted_at else 0.0
    # the good status call is recorded in the round trip that schedules the next poll
    d.steps.poll(gen.provider, gen.id, gen.account, delay=spec.next_poll(polls, elapsed, result.progress),
                 fields={"polls": polls, "progress": result.progress, "retries": 0},
                 ride=lambda pipe: d.health_ok_in(pipe, gen.provider, gen.account))
    return "polling"


_guarded_start, _guarded_poll = faults.guarded(_start), faults.guarded(_poll)  # bounded unexpected raises


def _poll_failed(d: Core, gen, exc: UpstreamError) -> str:
    verdict = judge(exc, d.settings)
    if verdict.action == COOLDOWN:
        d.cooldown_account(gen.provider, gen.account, verdict.cooldown)
        delay = max(verdict.cooldown, 1.0)
        _hold(d, gen, delay)
        d.steps.poll(gen.provider, gen.id, gen.account, delay=delay)
        return "throttled"
    if verdict.action in (FLAG, RETRY, REFRESH):  # REFRESH: 401 again right after a forced refresh
        if verdict.action == FLAG:
            d.flag_account(gen.provider, gen.account, verdict.flag, hold=verdict.cooldown, code=verdict.code)
        else:
            d.health_failed(gen.provider, gen.account)
        # the upstream already runs (and bills) this job: a poll gets a larger budget than a create
        # before the generation is given up, with the same capped backoff between tries
        retries = d.generations.incr(gen.id, "retries")
        if retries <= POLL_RETRY_FACTOR * d.settings.upstream_retries:
            delay = backoff(retries)
            _hold(d, gen, delay)
            d.steps.poll(gen.provider, gen.id, gen.account, delay=delay)
            return "retrying"
        if verdict.action == REFRESH:  # every fresh session refused: out of rotation
            d.flag_account(gen.provider, gen.account, refresh_failed_message())
    return _fail(d, gen, exc, allowed={SUBMITTED})


def _finish(d: Core, gen, result) -> str:
    state = _STATES[result.state]
    values = {"progress": 1.0 if state == COMPLETED else result.progress}
    if state == COMPLETED:
        values["result"] = {"artifacts": list(result.artifacts)}
    else:
        values["error"] = result.error or f"upstream {result.state}"
        values["error_code"] = result.error_code or 500  # the adapter's reading (422: moderated)
    values["finished_at"] = time.time()
    # the terminal move and the release in one round trip. The release does not wait for
    # the move's answer: with the upstream done the slot is free either way, and a record
    # that did not move was finished or canceled by someone else (release is idempotent).
    # The release may claim the start of the waiter it admits, which this step job then runs (chain.py).
    pipe = d.r.pipeline(transaction=False)
    moved = d.generations.move_in(pipe, gen.id, {SUBMITTED}, state, **values)
    released = d.capacity(gen.provider).release_in(pipe, gen.id, claim_ttl=chain.claim_ttl(d))
    d.health_ok_in(pipe, gen.provider, gen.account)  # the status call that brought the news worked
    move_reply, release_reply, *_ = pipe.execute(raise_on_error=False)
    ok = moved(move_reply)
    admissions = released(release_reply)
    chain.claimed(gen.provider, admissions)  # run by this step job once this step returns
    d.dispatch(admissions)
    if ok:
        gen.state = state
        for name, value in values.items():
            setattr(gen, name, value)
        if state == FAILED:  # moderated or failed upstream: counted toward the operation's quarantine
            d.operation_failed(gen.provider, gen.account, gen.operation)
        d.finished(gen.id, gen)
        log.info("generation finished", state=state)
    return state


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except DispatcherError:  # upstream refused, account unusable or deleted
        pass


__all__ = ["start", "poll", "provider_of"]
