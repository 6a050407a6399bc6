"""The maintenance tick: a safety net, not the scheduler.

Every worker process runs the loop; a Redis lock makes exactly one of them
active at a time. Each tick, per provider:
- resume orphans: a live generation whose lease expired (its worker crashed)
  gets its lease renewed and its next step enqueued — `poll` when the
  upstream id was saved, `start` (idempotent) otherwise;
- reap: leases of generations that are gone or finished return their slots;
- pump: admit waiters where time made room (cooldowns ended);
- JWT watch: refresh tokens ahead of expiry; return held accounts to rotation.
"""

from __future__ import annotations

import threading
import time
import uuid

import redis

from dispatcher import keys
from dispatcher import logging as dlog
from dispatcher.generations import LIVE
from dispatcher.tokens import watch

log = dlog.get_logger()


def resume_orphans(d, provider: str, limit: int = 500) -> int:
    cap = d.capacity(provider)
    expired = cap.expired(limit)
    if not expired:
        return 0
    resumed = 0
    for gen_id, gen in zip(expired, d.generations.many(expired)):
        if gen is None or gen.state not in LIVE:
            continue  # left for reap
        if not cap.renew(gen_id):
            continue
        if gen.upstream_id:
            d.steps.poll(provider, gen_id, gen.account)
        else:
            d.steps.start(provider, gen_id, gen.account or cap.holder(gen_id))
        resumed += 1
        log.info("orphan resumed", generation_id=gen_id, provider=provider, upstream_id=gen.upstream_id)
    return resumed


def tick(d, *, watch_horizon: float = 0.0) -> dict:
    totals = {"resumed": 0, "reaped": 0, "refreshed": 0}
    for provider in sorted(d.r.smembers(keys.providers_seen())):
        cap = d.capacity(provider)
        totals["resumed"] += resume_orphans(d, provider)
        reaped, admitted = cap.reap()
        totals["reaped"] += len(reaped)
        d.dispatch(admitted)
        d.dispatch(cap.pump())
        d.unflag_expired(provider)
        totals["refreshed"] += watch(d, provider, horizon=watch_horizon)
    return totals


class MaintenanceLoop(threading.Thread):
    """Runs `tick` every interval while holding the cluster-wide maintenance lock."""

    def __init__(self, d, interval: float):
        super().__init__(name="dispatcher-maintenance", daemon=True)
        self.d = d
        self.interval = interval
        self.me = uuid.uuid4().hex
        self.stopping = threading.Event()

    def holds_lock(self) -> bool:
        ttl_ms = int(max(self.interval * 3, 1.0) * 1000)
        lock = keys.maintenance_lock()
        if self.d.r.set(lock, self.me, nx=True, px=ttl_ms):
            return True
        if self.d.r.get(lock) == self.me:
            self.d.r.pexpire(lock, ttl_ms)
            return True
        return False

    def run(self) -> None:
        backoff = self.interval
        while not self.stopping.wait(backoff):
            try:
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
