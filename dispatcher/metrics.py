"""Prometheus metrics shared by every process: counters in Redis, gauges read at scrape time.

The API and the workers are separate processes, so every count ends up in
one Redis hash, `dsp:metrics`, never on the admission Lua path. A hash
field is one sample: `c|<name>|<label>=<value>|…` for a counter,
`h|<name>|<labels>#le=<bound>` / `#sum` for a histogram (one
field per bucket, made cumulative at scrape time; the count is their sum);
label values are percent-encoded. `DISPATCHER_METRICS=false` turns all of it off.

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

`/metrics` renders `DispatcherCollector`: the stored counters plus gauges
computed live from Redis (`status.collect`): slots used/max per account,
waiting lines, token seconds-to-expiry, cooldowns, flags, workers, queues.
A metrics hook that fails (Redis away) is logged and ignored: it never
fails the work it measures.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

import redis

from . import keys
from .logging import get_logger

METRICS_KEY = f"{keys.ROOT}:metrics"
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
GENERATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "counter" | "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


STORED = {s.name: s for s in (
    Spec("dispatcher_admissions", "counter", "Generations given a capacity slot, by account.",
         ("provider", "account")),
    Spec("dispatcher_generations", "counter", "Generations that reached a terminal state, by outcome and reason.",
         ("provider", "outcome", "reason")),
    Spec("dispatcher_cooldowns", "counter", "Times an account was put in cooldown (429, failure rate).",
         ("provider", "account")),
    Spec("dispatcher_account_flags", "counter", "Times an account left rotation with an error.",
         ("provider", "account")),
    Spec("dispatcher_token_refresh_failures", "counter", "JWT refreshes that failed (refused or upstream error).",
         ("provider", "account", "kind")),
    Spec("dispatcher_steps", "counter", "Step jobs run by the workers, by result.",
         ("provider", "step", "result")),
    Spec("dispatcher_step_duration_seconds", "histogram", "Time a worker spent in one step job.",
         ("provider", "step"), STEP_BUCKETS),
    Spec("dispatcher_step_queue_delay_seconds", "histogram", "Time a step job waited in its RQ queue.",
         ("provider", "step"), STEP_BUCKETS),
    Spec("dispatcher_generation_duration_seconds", "histogram", "Submission to terminal state.",
         ("provider", "outcome"), GENERATION_BUCKETS),
    Spec("dispatcher_generation_wait_seconds", "histogram", "Submission to admission (time in the waiting line).",
         ("provider",), GENERATION_BUCKETS),
)}

# error code of a failed generation -> a reason label with few values
_REASONS = {401: "unauthorized", 404: "account_deleted", 412: "insufficient_credits", 422: "moderated",
            429: "throttled", 500: "upstream_failed", 502: "upstream_error", 503: "upstream_error",
            504: "upstream_timeout", 596: "account_on_hold"}


def reason_of(state: str, code: int | None) -> str:
    if state == "completed":
        return "ok"
    if state == "canceled":
        return "canceled"
    if code is None:
        return "unknown"
    return _REASONS.get(int(code), f"code_{int(code)}")


# -- field encoding ------------------------------------------------------------------
def field(kind: str, name: str, labels: dict, suffix: str = "") -> str:
    return _field(kind, name, tuple(sorted((k, str(v)) for k, v in labels.items())), suffix)


@functools.lru_cache(maxsize=4096)  # a few label sets recur on every step: encode each once
def _field(kind: str, name: str, labels: tuple, suffix: str) -> str:
    parts = [kind, name] + [f"{k}={quote(v, safe='')}" for k, v in labels]
    return "|".join(parts) + (f"#{suffix}" if suffix else "")


def parse_field(raw: str) -> tuple[str, str, dict, str]:
    """(kind, name, labels, suffix) of a stored field."""
    body, _, suffix = raw.partition("#")
    kind, name, *pairs = body.split("|")
    labels = {}
    for pair in pairs:
        k, _, v = pair.partition("=")
        labels[k] = unquote(v)
    return kind, name, labels, suffix


def _bucket(value: float, buckets: tuple[float, ...]) -> str:
    for bound in buckets:
        if value <= bound:
            return f"le={bound:g}"
    return "le=+Inf"


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


def _enabled(d) -> bool:
    return getattr(d.settings, "metrics", True)


def _send(d, batch: Batch, pipe=None) -> None:
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


def ride(d, pipe) -> Batch | None:
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


def keep(d, batch: Batch | None) -> None:
    """Samples whose round trip failed wait for the next one (a retried round trip that did
    reach Redis may count them twice: the client retries on a timeout)."""
    deferred = getattr(d, "deferred_metrics", None)
    if deferred is not None and batch:
        deferred.add(batch)


def flush(d) -> None:
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
def admitted(d, admissions, pipe=None) -> None:
    """Slots granted by a capacity script (called with every batch `Dispatcher.dispatch` receives);
    `pipe`: the round trip that enqueues the first start step, to ride on."""
    if not admissions:
        return
    from .generations import provider_of

    batch = Batch()
    for a in admissions:
        batch.inc("dispatcher_admissions", provider=_provider(a.generation_id, provider_of), account=a.account)
    _send(d, batch, pipe)


def finished(d, gen) -> None:
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


def cooldown(d, provider: str, account: str) -> None:
    _send(d, Batch().inc("dispatcher_cooldowns", provider=provider, account=account))


def flagged(d, provider: str, account: str) -> None:
    _send(d, Batch().inc("dispatcher_account_flags", provider=provider, account=account))


def refresh_failed(d, provider: str, account: str, kind: str) -> None:
    _send(d, Batch().inc("dispatcher_token_refresh_failures", provider=provider, account=account, kind=kind))


def chained_start(d, provider: str, waited: float) -> None:
    """A start step run by the step job whose release claimed it (workers/chain.py): it never
    sat in a queue; it waited `waited` seconds, for the rest of that job's earlier steps."""
    _send(d, Batch().observe("dispatcher_step_queue_delay_seconds", waited, provider=provider, step="start"))


def timed_step(step: str, get_dispatcher):
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


def _record_step(d, step: str, generation_id: str, step_id, seconds: float, result) -> None:
    from .generations import provider_of

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
    from rq import get_current_job

    job = get_current_job()
    if job is None or job.id != step_id or job.enqueued_at is None or job.started_at is None:
        return None
    return max(0.0, (job.started_at - job.enqueued_at).total_seconds())


def _provider(generation_id: str, provider_of) -> str:
    try:
        return provider_of(generation_id)
    except Exception:
        return "unknown"


# -- reading ------------------------------------------------------------------------------
def stored(client) -> dict:
    """Every stored sample: {name: [(labels, suffix, value)]}."""
    out: dict[str, list] = {}
    for raw, value in client.hgetall(METRICS_KEY).items():
        raw = raw.decode() if isinstance(raw, bytes) else raw
        value = value.decode() if isinstance(value, bytes) else value
        try:
            kind, name, labels, suffix = parse_field(raw)
            number = float(value)
        except ValueError:
            continue
        out.setdefault(name, []).append((labels, suffix, number))
    return out


def outcomes(client) -> dict:
    """{provider: {outcome: count}} from the stored generation counters."""
    out: dict[str, dict[str, int]] = {}
    for labels, _, value in stored(client).get("dispatcher_generations", ()):
        per = out.setdefault(labels.get("provider", "unknown"), {})
        outcome = labels.get("outcome", "unknown")
        per[outcome] = per.get(outcome, 0) + int(value)
    return out


class DispatcherCollector:
    """prometheus_client collector: stored counters and histograms, plus live gauges."""

    def __init__(self, dispatcher):
        self.d = dispatcher

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        from .status import collect as collect_status

        samples = stored(self.d.r)
        for spec in STORED.values():
            rows = samples.get(spec.name, [])
            yield (_counter(spec, rows) if spec.kind == "counter" else _histogram(spec, rows))
        status = collect_status(self.d)
        yield from _gauges(status)
        refreshes = CounterMetricFamily("dispatcher_token_refreshes", "Successful JWT refreshes per account "
                                        "(reset when the account is deleted).", labels=("provider", "account"))
        for provider, p in sorted(status["providers"].items()):
            for a in p["accounts"]:
                refreshes.add_metric((provider, a["id"]), a["refreshes"])
        yield refreshes


def _counter(spec: Spec, rows):
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, _, value in sorted(rows, key=lambda r: sorted(r[0].items())):
        family.add_metric(tuple(labels.get(k, "") for k in spec.labels), value)
    return family


def _histogram(spec: Spec, rows):
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    series: dict[tuple, dict] = {}
    for labels, suffix, value in rows:
        key = tuple(labels.get(k, "") for k in spec.labels)
        series.setdefault(key, {})[suffix] = value
    for key in sorted(series):
        values = series[key]
        running, buckets = 0.0, []
        for bound in spec.buckets:
            running += values.get(f"le={bound:g}", 0)
            buckets.append((f"{bound:g}", running))
        running += values.get("le=+Inf", 0)
        buckets.append(("+Inf", running))
        family.add_metric(list(key), buckets, values.get("sum", 0.0))
    return family


def _gauges(status: dict):
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name, help_, labels=("provider", "account")):
        return GaugeMetricFamily(name, help_, labels=labels)

    used = gauge("dispatcher_account_slots_used", "Slots (leases) an account holds now.")
    cap = gauge("dispatcher_account_slots_max", "maxJobs of an account.")
    free = gauge("dispatcher_account_slots_available", "Free slots of an account (0 when not eligible).")
    eligible = gauge("dispatcher_account_eligible", "1 when the account takes new generations now.")
    cooling = gauge("dispatcher_account_cooldown_active", "1 while the account is in cooldown.")
    flagged_ = gauge("dispatcher_account_flagged", "1 while the account is out of rotation with an error.")
    expiry = gauge("dispatcher_account_token_seconds_to_expiry", "Seconds until the account's JWT expires.")
    pinned = gauge("dispatcher_waiting_pinned", "Generations waiting for one pinned account.")
    waiting = gauge("dispatcher_waiting", "Generations in a provider's common waiting line.", labels=("provider",))
    running = gauge("dispatcher_running", "Generations holding a slot, per provider.", labels=("provider",))
    for provider, p in sorted(status["providers"].items()):
        waiting.add_metric((provider,), p["waiting"])
        running.add_metric((provider,), p["running"])
        for account, n in sorted(p["pinned"].items()):
            pinned.add_metric((provider, account), n)
        for a in p["accounts"]:
            labels = (provider, a["id"])
            used.add_metric(labels, a["executing"])
            cap.add_metric(labels, a["maxJobs"])
            free.add_metric(labels, a["available"])
            eligible.add_metric(labels, 1 if a["eligible"] else 0)
            cooling.add_metric(labels, 1 if a["cooldown_seconds"] else 0)
            flagged_.add_metric(labels, 1 if a["error"] else 0)
            if a["token_seconds_to_expiry"] is not None:
                expiry.add_metric(labels, a["token_seconds_to_expiry"])
    workers = GaugeMetricFamily("dispatcher_workers", "RQ workers registered in Redis.", value=status["workers"])
    queues = GaugeMetricFamily("dispatcher_rq_queue_length", "Step jobs ready in each RQ queue.", labels=("queue",))
    for name, n in sorted(status["queues"].items()):
        queues.add_metric((name,), n)
    yield from (used, cap, free, eligible, cooling, flagged_, expiry, waiting, pinned, running, workers, queues)


def render(dispatcher) -> bytes:
    """The Prometheus text exposition of everything above."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DispatcherCollector(dispatcher))
    return generate_latest(registry)
