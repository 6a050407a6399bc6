"""Prometheus metrics shared by every process: counters in Redis, gauges read at scrape time.

The API and the workers are separate processes, so every count ends up in
one Redis hash (`metric_store`), never on the admission Lua path.
`DISPATCHER_METRICS=false` turns all of it off.

How the hooks (`admitted`, `finished`, `cooldown`, `flagged`,
`refresh_failed`, `timed_step`) reach Redis depends on the process:
- by default (API, CLI, library) each sends one pipelined round trip;
- a worker process turns on `Deferred`: samples gather in process memory and
  ride along on a round trip the worker makes anyway (the next step's first
  read), or go out with the maintenance tick when the worker is idle, and when
  it stops. A step job then costs no round trip for its metrics (they were three
  of a step's ten), and a busy worker sends each changed field once per half
  second rather than once per step; counters lag by at most a maintenance
  interval, and a SIGKILLed worker loses at most that much of its own counts.

`/metrics` renders `exposition.DispatcherCollector`: the stored counters plus
gauges computed live from Redis (this module never imports it: hooks write,
the exposition reads).
A metrics hook that fails (Redis away) is logged and ignored: it never
fails the work it measures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import functools
import math
import threading
import time

import redis
from rq import get_current_job

from .generations import provider_of
from .logging import get_logger
from .metric_store import (GENERATION_BUCKETS, METRICS_KEY, STEP_BUCKETS, STORED, Spec, _bucket,  # noqa: F401
                           field, outcomes, parse_field, reason_of, stored)

if TYPE_CHECKING:
    from dispatcher.core import Core


class Batch:
    """Samples to add in one pipelined round trip."""

    def __init__(self):
        self.ints: dict[str, int] = {}
        self.floats: dict[str, float] = {}

    def inc(self, name: str, amount: int = 1, **labels) -> "Batch":
        f = field("c", name, labels)
        self.ints[f] = self.ints.get(f, 0) + amount
        return self

    def observe(self, name: str, value: float, **labels) -> "Batch":
        value = max(0.0, float(value))
        if math.isnan(value):
            return self
        f = field("h", name, labels, _bucket(value, STORED[name].buckets))
        self.ints[f] = self.ints.get(f, 0) + 1
        f = field("h", name, labels, "sum")
        self.floats[f] = self.floats.get(f, 0.0) + value
        return self

    def __bool__(self) -> bool:
        return bool(self.ints or self.floats)

    def merge(self, other: "Batch") -> None:
        for f, n in other.ints.items():
            self.ints[f] = self.ints.get(f, 0) + n
        for f, x in other.floats.items():
            self.floats[f] = self.floats.get(f, 0.0) + x

    def queue(self, pipe) -> None:
        """Queue the samples on a pipeline."""
        for f, n in self.ints.items():
            pipe.hincrby(METRICS_KEY, f, n)
        for f, x in self.floats.items():
            pipe.hincrbyfloat(METRICS_KEY, f, x)

    def send(self, client) -> None:
        if not self:
            return
        pipe = client.pipeline(transaction=False)
        self.queue(pipe)
        pipe.execute()


class Deferred:
    """A worker's samples waiting for a round trip to ride on (see the module docstring).

    Thread-safe: the worker's steps and its maintenance thread share it. Samples
    older than `MAX_AGE` are sent at once by the next hook, so a worker whose
    maintenance thread is stuck still reports."""

    MAX_AGE = 5.0  # seconds
    RIDE_AGE = 0.5  # seconds: younger samples wait for more (a field is one command however often it moved)

    def __init__(self):
        self._lock = threading.Lock()
        self._batch = Batch()
        self._since: float | None = None

    def add(self, batch: Batch) -> bool:
        """Keep the samples; True when the oldest kept ones are overdue (then flush)."""
        with self._lock:
            self._batch.merge(batch)
            if self._since is None:
                self._since = time.monotonic()
            return time.monotonic() - self._since > self.MAX_AGE

    def take(self, older_than: float = 0.0) -> Batch:
        """The kept samples (all of them), if the oldest is at least `older_than` seconds old."""
        with self._lock:
            if self._since is None or time.monotonic() - self._since < older_than:
                return Batch()
            batch, self._batch, self._since = self._batch, Batch(), None
            return batch


def _enabled(d: Core) -> bool:
    return getattr(d.settings, "metrics", True)


def _send(d: Core, batch: Batch, pipe=None) -> None:
    """Record samples: deferred in a worker, else on `pipe` (a round trip about to run, whose
    caller reads only its own replies) when given, else in a round trip of their own."""
    if not _enabled(d) or not batch:
        return
    deferred = getattr(d, "deferred_metrics", None)
    if deferred is not None and not deferred.add(batch):
        return
    if deferred is None and pipe is not None:
        batch.queue(pipe)
        return
    try:
        (deferred.take() if deferred is not None else batch).send(d.r)
    except redis.RedisError as exc:
        get_logger().warning("metrics not recorded", error=type(exc).__name__)


def ride(d: Core, pipe) -> Batch | None:
    """Put a worker's deferred samples (once RIDE_AGE old) on a pipeline about to run anyway;
    their replies come after the caller's own and need not be read. Returns the samples put
    on it, for `keep` should that round trip fail."""
    deferred = getattr(d, "deferred_metrics", None)
    if deferred is None or not _enabled(d):
        return None
    batch = deferred.take(older_than=deferred.RIDE_AGE)
    if not batch:
        return None
    batch.queue(pipe)
    return batch


def keep(d: Core, batch: Batch | None) -> None:
    """Samples whose round trip failed wait for the next one (a retried round trip that did
    reach Redis may count them twice: the client retries on a timeout)."""
    deferred = getattr(d, "deferred_metrics", None)
    if deferred is not None and batch:
        deferred.add(batch)


def flush(d: Core) -> None:
    """Send a worker's deferred samples now (maintenance tick, worker exit)."""
    deferred = getattr(d, "deferred_metrics", None)
    if deferred is None:
        return
    batch = deferred.take()
    try:
        batch.send(d.r)
    except redis.RedisError as exc:
        keep(d, batch)
        get_logger().warning("metrics not recorded yet", error=type(exc).__name__)


# -- hooks -------------------------------------------------------------------------------
def admitted(d: Core, admissions, pipe=None) -> None:
    """Slots granted by a capacity script (called with every batch `Core.dispatch` receives);
    `pipe`: the round trip that enqueues the first start step, to ride on."""
    if not admissions:
        return
    batch = Batch()
    for a in admissions:
        batch.inc("dispatcher_admissions", provider=_provider(a.generation_id, provider_of), account=a.account)
    _send(d, batch, pipe)


def finished(d: Core, gen) -> None:
    """A generation reached a terminal state: outcome, reason, durations."""
    if gen is None or not gen.terminal:
        return
    batch = Batch().inc("dispatcher_generations", provider=gen.provider, outcome=gen.state,
                        reason=reason_of(gen.state, gen.error_code))
    end = gen.finished_at or time.time()
    if gen.created:
        batch.observe("dispatcher_generation_duration_seconds", end - gen.created,
                      provider=gen.provider, outcome=gen.state)
        if gen.admitted_at:
            batch.observe("dispatcher_generation_wait_seconds", gen.admitted_at - gen.created, provider=gen.provider)
    _send(d, batch)


def cooldown(d: Core, provider: str, account: str) -> None:
    _send(d, Batch().inc("dispatcher_cooldowns", provider=provider, account=account))


def flagged(d: Core, provider: str, account: str) -> None:
    _send(d, Batch().inc("dispatcher_account_flags", provider=provider, account=account))


def refresh_failed(d: Core, provider: str, account: str, kind: str) -> None:
    _send(d, Batch().inc("dispatcher_token_refresh_failures", provider=provider, account=account, kind=kind))


def chained_start(d: Core, provider: str, waited: float) -> None:
    """A start step run by the step job whose release claimed it (workers/chain.py): it never
    sat in a queue; it waited `waited` seconds, for the rest of that job's earlier steps."""
    _send(d, Batch().observe("dispatcher_step_queue_delay_seconds", waited, provider=provider, step="start"))


def timed_step(step: str, get_dispatcher: Callable[[], Core]):
    """Decorator for a worker step `fn(generation_id, step_id=None) -> result`: duration, queue delay, result."""

    def wrap(fn):
        @functools.wraps(fn)
        def timed(generation_id, step_id=None, *args, **kwargs):
            began = time.perf_counter()
            result = "error"
            try:
                result = fn(generation_id, step_id, *args, **kwargs)
                return result
            finally:
                try:
                    _record_step(get_dispatcher(), step, generation_id, step_id, time.perf_counter() - began, result)
                except Exception as exc:  # measuring must never fail the step it measures
                    get_logger().warning("step metrics not recorded", error=type(exc).__name__)

        return timed

    return wrap


def _record_step(d: Core, step: str, generation_id: str, step_id, seconds: float, result) -> None:
    provider = _provider(generation_id, provider_of)
    batch = Batch().observe("dispatcher_step_duration_seconds", seconds, provider=provider, step=step)
    batch.inc("dispatcher_steps", provider=provider, step=step, result=str(result))
    delay = _queue_delay(step_id)
    if delay is not None:
        batch.observe("dispatcher_step_queue_delay_seconds", delay, provider=provider, step=step)
    _send(d, batch)


def _queue_delay(step_id) -> float | None:
    """Seconds the running RQ job waited in its queue, when this call is that job."""
    if step_id is None:
        return None
    job = get_current_job()
    if job is None or job.id != step_id or job.enqueued_at is None or job.started_at is None:
        return None
    return max(0.0, (job.started_at - job.enqueued_at).total_seconds())


def _provider(generation_id: str, provider_of) -> str:
    try:
        return provider_of(generation_id)
    except Exception:
        return "unknown"
