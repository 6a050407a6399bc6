"""The maintenance tick: a safety net, not the scheduler.

Every worker process runs the loop; a Redis lock makes exactly one of them
active at a time. Each tick, per provider:
- promote delayed steps (poll backoff, retries) whose time has come onto their
  queues — done here rather than by RQ's scheduler, see `promote_scheduled`;
- resume orphans: a live generation whose lease expired (its worker crashed)
  gets its lease renewed and its next step enqueued — `poll` when the
  upstream id was saved, `start` (idempotent) otherwise;
- reap: expired leases of generations that are gone or finished return their
  slots (never a live one's: see `resume_orphans`);
- hand over ended generations' RQ jobs a dead worker left deferred (`backend_events.sweep`);
- pump: admit waiters where time made room (cooldowns ended);
- sweep parked start jobs whose generation stopped waiting for them, at most
  every SWEEP_EVERY seconds (see `StepQueue.sweep_parked`);
- JWT watch: refresh tokens ahead of expiry; return held accounts to rotation.
Once per tick, whatever the provider:
- recover callbacks whose worker died mid-delivery, within seconds (see `recover_callbacks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import threading
import time
import uuid

import redis

from dispatcher import keys
from dispatcher import logging as dlog
from dispatcher import backend_events, metrics, providers, rq_glue, useapi_accounts
from dispatcher.errors import UpstreamError
from dispatcher.generations import ADMITTED, LIVE
from dispatcher.steps import CALLBACK_QUEUE, FAILURE_TTL, all_queue_names, poll_step, queue_name
from dispatcher.tokens import watch

from .callbacks import DONE, GRACE, lock_key

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()


def promote_scheduled(d: Core, queue_names: list[str], limit: int = 1000) -> int:
    """Move delayed step jobs (start retries; polls wait in the due index, workers/polls.py)
    whose time has come onto their queues; returns how many.

    RQ's own scheduler runs in a forked child process that survives a SIGKILLed
    worker (an orphan holding the scheduler lock), and once it does die, the other
    workers only take over after its 61 s lock and their 10-minute maintenance
    pass: delayed steps would stall for minutes. Here it runs in the maintenance
    tick, in the worker's own process and under a lock taken over within
    max(3 ticks, 1 s). Each job is claimed with ZREM before it is enqueued
    (`rq_glue.promote_due`), so two ticks that overlap never enqueue it twice; one lost
    between the two (a crash) is recovered by its generation's lease."""
    return rq_glue.promote_due(d.rq, queue_names, limit)


def _steps_pending(d: Core, provider: str, gens: list) -> list[bool]:
    """For each generation (or None): is its current step still to come? A poll: its entry in
    the due index (claimed or not: a claim that runs out makes it due again); any other step:
    its job still in its queue or among the delayed (scheduled) steps."""
    polling = [g is not None and g.step == poll_step(g.id) for g in gens]
    jobs = rq_glue.steps_pending(d.rq, queue_name(provider),
                                 [g.step if g is not None and not p else None for g, p in zip(gens, polling)])
    polled = [g for g, p in zip(gens, polling) if p]
    due = iter(d.r.zmscore(keys.due(provider), [g.id for g in polled]) if polled else [])
    return [_poll_pending(g, next(due)) if p else job for g, p, job in zip(gens, polling, jobs)]


def _poll_pending(gen, score) -> bool:
    """A poll in the due index is pending unless a batch claimed it (its score moved past the
    due time the record holds) and then let the lease run out: that batch died (SIGKILL), so
    the generation is an orphan now, not once the claim runs out (CLAIM_S)."""
    if score is None:
        return False
    return gen.due is None or score <= int(gen.due * 1000) + 1


def resume_orphans(d: Core, provider: str, limit: int = 500) -> int:
    """Resume live generations whose lease expired; release the expired leases of the others.

    Reaping happens here, record by record, rather than with the capacity `reap`
    script: that script releases every lease expired at *its* instant, and a live
    generation whose lease expired between our read and the reap would lose its
    slot while its upstream job still runs (an oversubscribed account).

    A generation whose current step still waits in its queue or among the
    delayed steps is not an orphan, however long it waits (a backlog, a poll
    backoff longer than the lease): its lease is renewed and nothing enqueued."""
    cap = d.capacity(provider)
    expired = cap.expired(limit)
    if not expired:
        return 0
    resumed = 0
    gens = d.generations.many(expired)
    pending = _steps_pending(d, provider, gens)
    pipe = d.r.pipeline(transaction=False)
    pipe.time()
    pipe.zmscore(keys.leases(provider), expired)
    (seconds, micros), deadlines = pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    for gen_id, gen, waiting, deadline in zip(expired, gens, pending, deadlines):
        if gen is None or gen.state not in LIVE:
            d.dispatch(cap.release(gen_id))  # finished or gone: its slot returns
            continue
        if not cap.renew(gen_id) or waiting:
            continue
        if gen.upstream_id:
            d.steps.poll(provider, gen_id, gen.account)
        else:
            if gen.state == ADMITTED and gen.account and gen.maybe_on != gen.account:
                # its worker may have died with the create sent: stay on the account and ask
                # the upstream for that job before creating it again (`Adapter.recover`)
                d.generations.update(gen_id, maybe_on=gen.account)
            d.steps.start(provider, gen_id, gen.account or cap.holder(gen_id))
        resumed += 1
        # overdue: how long after its lease ran out; the lease ran out within lease_ttl of its worker's death
        log.info("orphan resumed", generation_id=gen_id, provider=provider, upstream_id=gen.upstream_id,
                 overdue_ms=None if deadline is None else int(now_ms - deadline))
    return resumed


SWEEP_EVERY = 30.0  # seconds between sweeps of a provider's parked jobs (leaks are rare, a sweep is not free)
_swept: dict[str, float] = {}


def sweep_parked(d: Core, provider: str, *, force: bool = False) -> int:
    """`StepQueue.sweep_parked`, at most every SWEEP_EVERY seconds per provider in this process:
    it reads a few hundred keys, which a tick every second should not pay each time."""
    clock = time.monotonic()
    if not force and clock - _swept.get(provider, float("-inf")) < SWEEP_EVERY:
        return 0
    _swept[provider] = clock
    return d.steps.sweep_parked(provider)


def _stale_callbacks(d: Core, entries: list[str]) -> list[str]:
    """The started-registry entries (`<job id>:<execution id>`) of callback jobs a dead worker left:
    no execution record, no worker key, or started more than deadline + GRACE ago (a live worker
    ends every delivery by its deadline) — and whose delivery lock is gone (it outlives the deadline)."""
    records = rq_glue.execution_facts(d.rq, entries)
    pipe = d.rq.pipeline(transaction=False)
    for entry, (worker, _) in zip(entries, records):
        pipe.exists(rq_glue.worker_key((worker or b"").decode()))
        pipe.get(lock_key(entry.partition("_callback_")[0]))
    replies = pipe.execute()
    too_old = time.time() - (d.settings.callback_deadline + GRACE)
    stale = []
    for entry, (worker, created), alive, lock in zip(entries, records, replies[0::2], replies[1::2]):
        if lock is not None and lock != DONE.encode():
            continue  # a delivery may be in flight: wait for its lock to run out
        if not worker or not created or not alive or float(created) < too_old:
            stale.append(entry)
    return stale


def recover_callbacks(d: Core, limit: int = 200) -> int:
    """Take over callback jobs whose worker died mid-delivery; returns how many.

    RQ would notice only when the job's started-registry entry expires (job timeout + 60 s) and
    its 10-minute cleanup pass runs: about 17 minutes. Here it takes deadline + GRACE plus a tick.
    Each entry is claimed with ZREM, so two ticks never take one over both; the job is then treated
    as RQ's cleanup would: retried after its next backoff while it has retries left, else failed.
    A delivery never runs twice at once: the stale test waits for its lock to expire, and a
    delivery that finds the lock held does not send (`workers.callbacks.deliver`)."""
    entries = rq_glue.started_entries(d.rq, CALLBACK_QUEUE, limit)
    if not entries:
        return 0
    taken = 0
    for entry in _stale_callbacks(d, entries):
        if not rq_glue.claim_started(d.rq, CALLBACK_QUEUE, entry):
            continue  # another tick took it
        job_id = rq_glue.job_id_of(entry)
        retried = rq_glue.take_over(d.rq, CALLBACK_QUEUE, job_id, "its worker died during the delivery",
                                    failure_ttl=FAILURE_TTL)
        if retried is None:
            continue  # gone, or its worker finished the bookkeeping after all
        taken += 1
        log.warning("callback taken over from a dead worker", job_id=job_id, retried=retried)
    return taken


STUCK_AFTER = 5.0  # seconds a taken but never started callback job waits before it is put back


def requeue_stuck_callbacks(d: Core) -> int:
    """Callback jobs (replyUrl deliveries, backend events) a callback worker took and died with
    before starting them (it dies with the step worker that started it): back on their queue
    within STUCK_AFTER plus a tick, not after RQ's minute-and-a-restart; returns how many."""
    put_back = rq_glue.requeue_stuck_dequeues(d.rq, CALLBACK_QUEUE, STUCK_AFTER)
    for job_id in put_back:
        log.warning("callback job put back after its worker died taking it", job_id=job_id)
    return len(put_back)


def tick(d: Core, *, watch_horizon: float = 0.0) -> dict:
    totals = {"promoted": promote_scheduled(d, all_queue_names(sorted(providers.REGISTRY))),
              "callbacks": recover_callbacks(d) + requeue_stuck_callbacks(d), "resumed": 0, "handed": 0, "refreshed": 0, "unparked": 0,
              "synced": 0}
    for provider in sorted(d.r.smembers(keys.providers_seen())):
        cap = d.capacity(provider)
        totals["resumed"] += resume_orphans(d, provider)
        totals["handed"] += backend_events.sweep(d, provider)  # ends a dead worker did not hand to RQ
        d.dispatch(cap.pump())
        totals["unparked"] += sweep_parked(d, provider)
        d.unflag_expired(provider)
        totals["refreshed"] += watch(d, provider, horizon=watch_horizon)
        totals["synced"] += _sync_useapi(d, provider)
    return totals


def _sync_useapi(d: Core, provider: str) -> int:
    """Accounts brought in step with useapi.net (a provider reached through it; every
    `useapi_sync` seconds). useapi away: the next interval tries again."""
    try:
        return useapi_accounts.sync(d, provider)
    except UpstreamError as exc:
        log.warning("useapi accounts not read", provider=provider, error=exc.message)
        return 0


class MaintenanceLoop(threading.Thread):
    """Runs `tick` every interval while holding the cluster-wide maintenance lock."""

    def __init__(self, d: Core, interval: float):
        super().__init__(name="dispatcher-maintenance", daemon=True)
        self.d = d
        self.interval = interval
        self.me = uuid.uuid4().hex
        self.stopping = threading.Event()

    def holds_lock(self) -> bool:
        ttl_ms = int(max(self.interval * 3, 1.0) * 1000)
        lock = keys.maintenance_lock()
        if self.d.r.set(lock, self.me, nx=True, px=ttl_ms):
            log.info("maintenance lock taken", pid=os.getpid())
            return True
        if self.d.r.get(lock) == self.me:
            self.d.r.pexpire(lock, ttl_ms)
            return True
        return False

    def run(self) -> None:
        backoff = self.interval
        while not self.stopping.wait(backoff):
            try:
                metrics.flush(self.d)  # this worker's deferred samples, in every worker, lock or not
                if self.holds_lock():
                    tick(self.d, watch_horizon=self.interval * 2)
                backoff = self.interval
            except redis.RedisError as exc:
                backoff = min(backoff * 2, 5.0)  # Redis away: back off, never crash-loop
                log.warning("maintenance waiting for redis", error=type(exc).__name__)
            except Exception as exc:  # one bad tick must not stop the safety net
                log.error("maintenance tick failed", error=type(exc).__name__, detail=str(exc)[:200])

    def stop(self) -> None:
        self.stopping.set()
