"""Poll batches: one RQ job polls every generation whose next poll is due, over one client.

A generation running upstream is polled every few seconds for minutes. One RQ job per poll
(a delayed job, its promotion, its dequeue, its result records) cost about 5.9 ms of worker CPU
for a status call that costs a fraction of that, so two worker processes could hold only
1,500–2,000 generations in flight. Instead:

- a poll's due time is a score in the provider's due index (`dsp:{p}:due`, written by
  `StepQueue.poll` in the round trip that makes it the generation's current step);
- `DuePump`, a thread in every step worker process, claims what is due every POLL_TICK
  seconds (`claim_due.lua`: atomic, so two pumps never claim the same generation) and
  enqueues the claimed ids as RQ jobs of at most `poll_batch` generations each, named after
  them in rq-dashboard ("runwayml poll 50: <public ids>");
- `poll_batch` reads every record, its account and renews every lease in one round trip,
  then polls each generation exactly as a poll job did (`workers.steps.poll_loaded`: the
  status call, the verdicts, the next due time or the end). A generation the batch ended gets
  an RQ job record of its own, finished or failed with the reason (`rq_glue.record_ended_in`).

Crash safety: a claim pushes the generation's due time CLAIM_S ahead. A batch that dies
(SIGKILL, a lost job) leaves its generations to be claimed again once that passes; their
leases are kept meanwhile by maintenance, which sees them pending in the due index
(`maintenance.resume_orphans`). A poll only reads upstream, so a generation polled twice
costs a status call, never a second submission: creates run only in start steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import threading
import time
import traceback

import redis

from dispatcher import keys, lua, metrics, rq_glue
from dispatcher import logging as dlog
from dispatcher.generations import CANCELED, COMPLETED, FAILED
from dispatcher.steps import POLL, describe_step, failure_reason, poll_step, queue_name

from . import chain, faults, steps
from .context import dispatcher

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()
POLL_TICK = 0.25  # seconds between a pump's claims
CLAIM_S = 30.0  # seconds a claimed generation stays claimed (a batch runs for far less; the default lease)
CLAIM_LIMIT = 1000  # generations one claim takes at most (the pump claims again while it gets that many)
REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError)
_ENDED = {COMPLETED, CANCELED, FAILED}


# -- claiming ---------------------------------------------------------------------------------
def pump_due(d: Core, providers: list[str], now: float | None = None) -> int:
    """Claim every due poll of `providers` and enqueue it in batches; returns the batches."""
    script = lua.CORE.registered(d.r)["claim_due"]
    at = int((time.time() if now is None else now) * 1000)
    size = max(1, d.settings.poll_batch)
    batches = 0
    for provider in providers:
        while True:
            ids = [_s(g) for g in script(keys=[keys.due(provider)], args=[at, CLAIM_LIMIT, int(CLAIM_S * 1000)])]
            if not ids:
                break
            pipe = d.rq.pipeline(transaction=False)
            for i in range(0, len(ids), size):
                d.steps.poll_batch_in(pipe, provider, ids[i:i + size])
                batches += 1
            pipe.execute()
            if len(ids) < CLAIM_LIMIT:
                break
    return batches


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DuePump(threading.Thread):
    """Claims due polls every `interval` seconds in a step worker process (every worker runs
    one: claims are atomic, and a pump that dies leaves nothing the others cannot claim)."""

    PROVIDERS_EVERY = 5.0  # seconds between reads of which providers have accounts

    def __init__(self, d: Core, interval: float = POLL_TICK):
        super().__init__(name="dispatcher-due-pump", daemon=True)
        self.d, self.interval = d, interval
        self.stopping = threading.Event()
        self._providers: list[str] = []
        self._read_at = 0.0

    def providers(self) -> list[str]:
        if time.monotonic() - self._read_at > self.PROVIDERS_EVERY:
            self._providers = sorted(self.d.r.smembers(keys.providers_seen()))
            self._read_at = time.monotonic()
        return self._providers

    def run(self) -> None:
        wait = self.interval
        while not self.stopping.wait(wait):
            try:
                pump_due(self.d, self.providers())
                wait = self.interval
            except redis.RedisError as exc:
                wait = min(max(wait, 0.5) * 2, 5.0)  # Redis away: back off, never crash-loop
                log.warning("due pump waiting for redis", error=type(exc).__name__)
            except Exception as exc:  # one bad claim must not stop polling
                log.error("due pump failed", error=type(exc).__name__, detail=str(exc)[:200])

    def stop(self) -> None:
        self.stopping.set()


# -- polling ----------------------------------------------------------------------------------
def poll_batch(provider: str, generation_ids: list[str]) -> str:
    """RQ entry point of a poll batch (followed by the starts its releases claimed: chain.py)."""
    return chain.run_step(dispatcher, _poll_batch, steps._guarded_start, provider, list(generation_ids))


def _poll_batch(provider: str, generation_ids: list[str]) -> str:
    d = dispatcher()
    loaded = _load_all(d, provider, generation_ids)
    outcomes: dict[str, int] = {}
    ended: list[tuple] = []
    stale: list[str] = []
    with d.steps.polls_together():  # every next due time in one round trip, at the end
        for gen_id, (gen, account) in zip(generation_ids, loaded):
            if gen is None:
                stale.append(gen_id)
                continue
            outcome = _poll_one(d, gen, account)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome in _ENDED:
                ended.append((gen, outcome))
    dlog.clear()
    if stale:  # gone, ended or superseded: nothing polls them (a start step re-adds its own)
        _drop_stale(d, provider, stale)
    if ended:
        _record_endings(d, provider, ended)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    return f"{len(generation_ids)} polled: {summary or 'none due'}" + (f", {len(stale)} stale" if stale else "")


def _load_all(d: Core, provider: str, generation_ids: list[str]) -> list[tuple]:
    """Every record with its account, each lease renewed: one round trip (with the worker's
    deferred metrics riding along). A record whose current step is not its due poll is stale."""
    cap = d.capacity(provider)
    pipe = d.r.pipeline(transaction=False)
    found = [d.generations.find_with_account_in(pipe, g) for g in generation_ids]
    renewed = [cap.renew_in(pipe, g) for g in generation_ids]
    riding = metrics.ride(d, pipe)
    try:
        replies = pipe.execute(raise_on_error=False)
    except Exception:
        metrics.keep(d, riding)
        raise
    n = len(generation_ids)
    out = []
    for i, gen_id in enumerate(generation_ids):
        renewed[i](replies[n + i])
        gen, account = found[i](replies[i])
        out.append(steps.loaded(d, gen, account, poll_step(gen_id)))
    return out


@metrics.timed_step("poll", dispatcher)
def _timed_poll(generation_id: str, step_id: str | None, gen, account) -> str:
    return steps.poll_loaded(dispatcher(), gen, account)


def _poll_one(d: Core, gen, account) -> str:
    """One generation's poll; an unexpected raise is counted as a step fault (faults.py) and
    the rest of the batch goes on; Redis away fails the batch (its claims run out, maintenance
    keeps the leases)."""
    try:
        return _timed_poll(gen.id, None, gen, account)
    except REDIS_AWAY:
        raise
    except Exception as exc:
        log.error("poll raised", generation_id=gen.id, error=f"{type(exc).__name__}: {exc}",
                  traceback=traceback.format_exc(limit=5))
        try:
            return f"fault {faults.fault(gen.id, poll_step(gen.id), exc)}"
        except Exception as inner:
            log.error("could not record a step fault", generation_id=gen.id, error=type(inner).__name__)
            return "error"


def _drop_stale(d: Core, provider: str, generation_ids: list[str]) -> None:
    """Remove stale entries, unless their due time was written again meanwhile (a start step
    that made its poll current): only entries still claimed by this batch go."""
    pipe = d.r.pipeline(transaction=False)
    for gen_id in generation_ids:
        pipe.hget(keys.generation(provider, gen_id), "step")
    steps_now = pipe.execute()
    gone = [g for g, step in zip(generation_ids, steps_now) if step != poll_step(g)]
    if gone:
        d.r.zrem(keys.due(provider), *gone)


def _record_endings(d: Core, provider: str, ended: list[tuple]) -> None:
    """An RQ job record per generation this batch ended, kept `step_history_ttl`; failed (with
    the reason, as rq-dashboard shows it) when the generation failed (its record read again:
    the failing step wrote the reason there). Its id is the poll step the record already names
    (`poll_step`), so the record names the job that ended it from the terminal move on."""
    ttl = d.settings.step_history_ttl
    failed = [gen.id for gen, outcome in ended if outcome == FAILED]
    records = dict(zip(failed, d.generations.many(failed))) if failed else {}
    rows = []
    for gen, outcome in ended:
        job_id = poll_step(gen.id)  # the record's step already: a generation ends once
        record = records.get(gen.id)
        reason = failure_reason(record) if record is not None and record.state == FAILED else None
        rows.append((job_id, (gen.id, job_id), describe_step(provider, "poll", gen.id, gen.account), outcome,
                     reason, ttl))
    pipe = d.rq.pipeline(transaction=False)
    rq_glue.record_ended_in(pipe, d.rq, queue_name(provider), POLL, rows)
    try:
        pipe.execute()
    except redis.RedisError as exc:  # the generations ended all the same; only their RQ records are missing
        log.warning("could not record the endings of a poll batch", error=type(exc).__name__, ended=len(rows))
