"""How metric samples are named and kept: one Redis hash, `dsp:metrics`, shared by every process.

A hash field is one sample: `c|<name>|<label>=<value>|…` for a counter,
`h|<name>|<labels>#le=<bound>` / `#sum` for a histogram (one field per bucket,
made cumulative at scrape time; the count is their sum); label values are
percent-encoded. `metrics` writes them (its hooks), `exposition` reads them
for `/metrics`, `status` for the outcome counts.

Samples keep the account id as counted; what `/metrics` shows in its `account` label is
decided when it is read (`AccountLabels`, `DISPATCHER_METRICS_ACCOUNT_LABELS`), so every
process that counts and the one that exposes never have to agree on anything but Redis.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from . import keys

if TYPE_CHECKING:
    from .client import Dispatcher

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


# -- account labels -------------------------------------------------------------------
LABEL_CONTEXT = b"dispatcher metrics account label v1"  # fixed: the label key is derived, never the secret itself
LABEL_PREFIX = "acct-"
LABEL_HEX = 10  # 40 bits: no two accounts of one team collide in practice


class AccountLabels:
    """The `account` label `/metrics` shows for an account id.

    `hash` (the default): `acct-` + 10 hex of HMAC-SHA256 under a key derived from the
    deployment's secret key (the vault key every process of one Redis shares), so a label is
    stable across processes and restarts, yet nobody without the key can confirm a guessed
    email by hashing it. `raw`: the id itself. `dispatcher status` shows which account a
    label is."""

    def __init__(self, mode: str, secret: str | bytes):
        if mode not in ("hash", "raw"):
            raise ValueError(f"account labels: hash or raw, not {mode!r}")
        self.mode = mode
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._key = hmac.new(raw, LABEL_CONTEXT, hashlib.sha256).digest()
        self._seen: dict[str, str] = {}

    @classmethod
    def of(cls, d: Dispatcher) -> "AccountLabels":
        """The labels of a `Dispatcher`: its settings' mode, its vault's key."""
        return cls(d.core.settings.metrics_account_labels, d.core.vault.key)

    def __call__(self, account_id: str) -> str:
        if self.mode == "raw":
            return account_id
        label = self._seen.get(account_id)
        if label is None:
            mac = hmac.new(self._key, str(account_id).encode("utf-8", "surrogatepass"), hashlib.sha256)
            label = LABEL_PREFIX + mac.hexdigest()[:LABEL_HEX]
            if len(self._seen) < 4096:
                self._seen[account_id] = label
        return label


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
