"""`/metrics`: the Prometheus text exposition of the stored samples plus live gauges.

`DispatcherCollector` yields the stored counters and histograms (`metric_store`)
and gauges computed live from Redis (`overview.collect`): slots used/max per
account, waiting lines, token seconds-to-expiry, cooldowns, flags, workers,
queues. `render` turns them into the text format.

The `account` label is `AccountLabels` of the account id (`DISPATCHER_METRICS_ACCOUNT_LABELS`:
a keyed digest such as `acct-3f9a1c02e4` by default, or the id itself), applied here, when
read: the stored samples keep the id, so the workers that count need no key.

Label values come from stored data (account ids, step results) and are made safe
for the text format (`label_value`): prometheus_client escapes `\\`, `"` and a
line feed itself; every other control character (CR, NUL, tab, DEL, C1, the
Unicode line and paragraph separators), which it would pass through raw and a
line-oriented reader would split or choke on, becomes `%XX` (`%uXXXX`). Series
whose labels become equal that way are summed, so no two samples collide.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .metric_store import STORED, AccountLabels, Spec, stored
from .overview import collect as collect_status

if TYPE_CHECKING:
    from .client import Dispatcher

_UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match) -> str:
    code = ord(match.group())
    return f"%{code:02X}" if code < 0x100 else f"%u{code:04X}"


@functools.lru_cache(maxsize=4096)
def label_value(value) -> str:
    """A label value the exposition carries on one line (see the module docstring)."""
    return _UNSAFE.sub(_escaped, str(value))


def _labels(values) -> tuple:
    return tuple(label_value(v) for v in values)


class DispatcherCollector:
    """prometheus_client collector: stored counters and histograms, plus live gauges."""

    def __init__(self, dispatcher: Dispatcher):
        self.d = dispatcher

    def describe(self):
        return []

    def collect(self):
        account = AccountLabels.of(self.d)
        samples = stored(self.d.core.r)
        for spec in STORED.values():
            rows = samples.get(spec.name, [])
            yield (_counter(spec, rows, account) if spec.kind == "counter" else _histogram(spec, rows, account))
        status = collect_status(self.d)
        yield from _gauges(status, account)
        refreshes = CounterMetricFamily("dispatcher_token_refreshes", "Successful JWT refreshes per account "
                                        "(reset when the account is deleted).", labels=("provider", "account"))
        for provider, p in sorted(status["providers"].items()):
            for a in p["accounts"]:
                refreshes.add_metric(_labels((provider, account(a["id"]))), a["refreshes"])
        yield refreshes


def _key(spec: Spec, labels: dict, account) -> tuple:
    """A sample's label values in the spec's order, made safe; `account` maps the account label."""
    values = (labels.get(k, "") for k in spec.labels)
    if account is not None and "account" in spec.labels:
        values = (account(v) if k == "account" else v for k, v in zip(spec.labels, values))
    return _labels(values)


def _counter(spec: Spec, rows, account=None):
    family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    series: dict[tuple, float] = {}
    for labels, _, value in rows:
        key = _key(spec, labels, account)
        series[key] = series.get(key, 0.0) + value
    for key in sorted(series):
        family.add_metric(key, series[key])
    return family


def _histogram(spec: Spec, rows, account=None):
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    series: dict[tuple, dict] = {}
    for labels, suffix, value in rows:
        key = _key(spec, labels, account)
        values = series.setdefault(key, {})
        values[suffix] = values.get(suffix, 0) + value
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


def _gauges(status: dict, account=lambda account_id: account_id):
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
        waiting.add_metric(_labels((provider,)), p["waiting"])
        running.add_metric(_labels((provider,)), p["running"])
        for account_id, n in sorted(p["pinned"].items()):
            pinned.add_metric(_labels((provider, account(account_id))), n)
        for a in p["accounts"]:
            labels = _labels((provider, account(a["id"])))
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
        queues.add_metric(_labels((name,)), n)
    yield from (used, cap, free, eligible, cooling, flagged_, expiry, waiting, pinned, running, workers, queues)


def render(dispatcher: Dispatcher) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DispatcherCollector(dispatcher))
    return generate_latest(registry)
