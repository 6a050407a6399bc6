"""One settings object, read from the environment (`DISPATCHER_*`).

The defaults make `make demo` work on a bare machine: an embedded Redis in
`./.dispatcher`, the API on loopback, a generated secret key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError

PREFIX = "DISPATCHER_"
UPSTREAM_KINDS = ("direct", "useapi")
TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as dispatcher.capacity.policy.TENANT
REPLY_QUEUE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # an RQ queue name a replyQueue may name
REPLY_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*|\.[A-Za-z_][A-Za-z0-9_]*)")


def _env(name: str) -> str | None:
    value = os.environ.get(PREFIX + name)
    return value if value not in (None, "") else None


@dataclass(frozen=True)
class Settings:
    """Every tunable of the dispatcher; field name FOO is env `DISPATCHER_FOO`."""

    redis_url: str | None = None  # unset: embedded Redis in data_dir; redis:// or redis+sentinel:// (docs/scaling.md)
    redis_sentinel_password: str | None = None  # the sentinels' own password (a secret), for redis+sentinel://
    redis_wait_replicas: int = 0  # submits WAIT for this many replicas (503 when they do not ack); 0: no WAIT
    redis_wait_ms: int = 100  # ... at most this many milliseconds
    data_dir: Path = Path(".dispatcher")
    api_tokens: tuple[str, ...] = ()  # unset: a token is generated into data_dir
    secret_key: str | None = None  # Fernet key; unset: generated into data_dir
    upstream_url: str | None = None  # points every adapter at one base URL (the sandbox)
    upstream: str = "direct"  # upstream kind of every provider: direct (its own web API) | useapi (useapi.net)
    upstreams: tuple[str, ...] = ()  # per-provider kinds, "runwayml=useapi"; also read from DISPATCHER_UPSTREAM_<PROVIDER>
    useapi_token: str | None = None  # the team's useapi.net API token (a secret: never logged or shown)
    useapi_url: str = "https://api.useapi.net"  # useapi.net's base URL (tests: the sandbox's /useapi)
    useapi_sync: float = 60.0  # seconds between reads of the accounts at useapi (expiry, error); 0: never
    host: str = "127.0.0.1"
    port: int = 8000
    lease_ttl: float = 30.0  # seconds a slot lease lives without renewal
    maintenance_interval: float = 1.0  # seconds between maintenance ticks
    result_ttl: int = 7 * 24 * 3600  # seconds a finished generation is kept
    failure_ttl: int = 7 * 24 * 3600
    callback_secret: str | None = None  # HMAC key for replyUrl signatures; unset: secret_key
    callback_retries: int = 5
    refresh_margin: float = 300.0  # refresh a JWT this many seconds before expiry (at most)
    refresh_margin_ratio: float = 0.10  # ... or this share of its lifetime, whichever is smaller
    refresh_margin_floor: float = 1.0  # ... but never less than this (covers check-to-request delay)
    cooldown_429: float = 30.0  # default cooldown after an upstream 429 without Retry-After
    cooldown_596: float = 3 * 3600.0  # account-on-hold cooldown
    upstream_retries: int = 4  # 5xx/timeouts retried this often before a generation fails
    upstream_timeout: float = 30.0
    failure_window: float = 60.0  # seconds of calls the failure-rate cooldown looks at
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    metrics: bool = True  # count admissions, outcomes, step latency… in Redis for /metrics
    metrics_account_labels: str = "hash"  # the `account` label of /metrics: hash (a keyed digest) | raw (the id)
    chain_starts: int = 16  # claimed start steps one step job may run after its own (workers/chain.py); 0: none
    poll_batch: int = 50  # generations one poll batch job polls at most (workers/polls.py)
    step_history_ttl: int = 24 * 3600  # seconds rq-dashboard keeps the step that ended a generation (finished/failed)
    dashboard_port: int = 9181  # rq-dashboard (`dispatcher dashboard`, the demo)
    dashboard_user: str | None = None  # rq-dashboard basic auth (required off loopback)
    dashboard_password: str | None = None
    max_resumes: int = 3  # times a step may raise unexpectedly before its generation fails (slot released)
    priority_aging: float = 60.0  # seconds of waiting that raise a generation's priority one level; 0: never
    tenant_weights: tuple[str, ...] = ()  # "tenant=weight" pairs: shares of admissions at equal priority (default 1)
    tenant_caps: tuple[str, ...] = ()  # "tenant=n" pairs: at most n running generations per provider
    quarantine_after: int = 3  # refusals (422) or failures of one operation on one account that quarantine it; 0: never
    quarantine_window: float = 600.0  # ... counted over this many seconds
    quarantine_seconds: float = 1800.0  # how long the account then takes none of that operation
    max_waiting: int = 10000  # waiting generations per provider; past it submit answers 429 with Retry-After
    callback_allow: tuple[str, ...] = ()  # hosts or networks a replyUrl may reach although internal (loopback…)
    callback_deadline: float = 10.0  # seconds one callback delivery may take in all (connect, send, read)
    # replyQueue destinations an HTTP create may name, "queue=function" (a function path, or a module
    # prefix ending in ".*"); none: replyQueue is refused (see README "RQ-native backends")
    reply_queues: tuple[str, ...] = ()
    redis_maxmemory: str = "1gb"  # maxmemory of the embedded Redis (policy noeviction: writes refused, never evicted)

    def __post_init__(self):
        if self.poll_batch < 1:
            raise ConfigurationError(f"{PREFIX}POLL_BATCH must be 1 or more, got {self.poll_batch}")
        if self.chain_starts < 0:
            raise ConfigurationError(f"{PREFIX}CHAIN_STARTS must be 0 or more, got {self.chain_starts}")
        if self.max_resumes < 0:
            raise ConfigurationError(f"{PREFIX}MAX_RESUMES must be 0 or more, got {self.max_resumes}")
        if self.max_waiting < 1:
            raise ConfigurationError(f"{PREFIX}MAX_WAITING must be 1 or more, got {self.max_waiting}")
        if not 0 < self.callback_deadline <= 300:
            raise ConfigurationError(f"{PREFIX}CALLBACK_DEADLINE must be between 0 and 300 seconds")
        for kind in (self.upstream, *(pair.partition("=")[2] for pair in self.upstreams)):
            if kind not in UPSTREAM_KINDS:
                raise ConfigurationError(f"{PREFIX}UPSTREAM: unknown upstream kind {kind!r}; "
                                         f"known: {', '.join(UPSTREAM_KINDS)}")
        for pair in self.upstreams:
            if not pair.partition("=")[0]:
                raise ConfigurationError(f"{PREFIX}UPSTREAMS takes provider=kind pairs, got {pair!r}")
        if self.metrics_account_labels not in ("hash", "raw"):
            raise ConfigurationError(f"{PREFIX}METRICS_ACCOUNT_LABELS must be hash or raw")
        if self.step_history_ttl < 60:
            raise ConfigurationError(f"{PREFIX}STEP_HISTORY_TTL must be 60 seconds or more")
        if self.quarantine_after < 0 or self.quarantine_window <= 0 or self.quarantine_seconds <= 0:
            raise ConfigurationError(f"{PREFIX}QUARANTINE_AFTER must be 0 or more, QUARANTINE_WINDOW and "
                                     "QUARANTINE_SECONDS more than 0")
        if self.priority_aging < 0:
            raise ConfigurationError(f"{PREFIX}PRIORITY_AGING must be 0 or more seconds")
        for name, pairs, low in (("TENANT_WEIGHTS", self.tenant_weights, 1), ("TENANT_CAPS", self.tenant_caps, 0)):
            for pair in pairs:
                tenant, _, n = pair.partition("=")
                if not TENANT.fullmatch(tenant) or not n.isdigit() or int(n) < low:
                    raise ConfigurationError(f"{PREFIX}{name} takes tenant={'weight' if low else 'n'} pairs "
                                             f"(a whole number of at least {low}), got {pair!r}")
        if self.redis_wait_replicas < 0 or self.redis_wait_ms < 1:
            raise ConfigurationError(f"{PREFIX}REDIS_WAIT_REPLICAS must be 0 or more, {PREFIX}REDIS_WAIT_MS 1 or more "
                                     "(WAIT 0 would block forever)")
        if self.useapi_sync < 0:
            raise ConfigurationError(f"{PREFIX}USEAPI_SYNC must be 0 or more seconds")
        for pair in self.reply_queues:
            queue, _, function = pair.partition("=")
            ours = queue.startswith("dispatcher.")  # the dispatcher's own queues run its workers' code
            if ours or not REPLY_QUEUE.fullmatch(queue) or not REPLY_FUNCTION.fullmatch(function):
                raise ConfigurationError(f"{PREFIX}REPLY_QUEUES takes queue=function pairs (a dotted function path, "
                                         f"or a module prefix ending in .*; not a dispatcher.* queue), got {pair!r}")

    def tenant_table(self, which: str) -> dict[str, int]:
        """`tenant_weights` or `tenant_caps` ("weights" | "caps") as {tenant: n}."""
        pairs = self.tenant_weights if which == "weights" else self.tenant_caps
        return {p.partition("=")[0]: int(p.partition("=")[2]) for p in pairs}

    def upstream_kind(self, provider: str) -> str:
        """`direct` or `useapi`: a per-provider setting wins over `upstream`."""
        for pair in self.upstreams:
            name, _, kind = pair.partition("=")
            if name == provider:
                return kind
        return self.upstream

    def uses_useapi(self) -> bool:
        return self.upstream == "useapi" or any(p.endswith("=useapi") for p in self.upstreams)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        values: dict = {}
        for f in dataclasses.fields(cls):
            raw = _env(f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f, raw)
        # DISPATCHER_UPSTREAM_<PROVIDER>=kind, for one provider (beside the UPSTREAMS list)
        fields = {f.name for f in dataclasses.fields(cls)}  # UPSTREAM_URL, UPSTREAM_TIMEOUT… are settings
        named = {key[len(PREFIX):].lower()[len("upstream_"):]: value.strip() for key, value in os.environ.items()
                 if key.startswith(PREFIX + "UPSTREAM_") and key[len(PREFIX):].lower() not in fields
                 and value.strip()}
        if named:
            listed = [p for p in values.get("upstreams", ()) if p.partition("=")[0] not in named]
            values["upstreams"] = tuple(listed) + tuple(f"{name}={kind}" for name, kind in sorted(named.items()))
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as `DISPATCHER_*` variables, for child processes (workers, the API)."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[PREFIX + f.name.upper()] = str(value)
        return env

    def with_(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def _parse(f: dataclasses.Field, raw: str):
    kind = f.type
    try:
        if kind in ("int",):
            return int(raw)
        if kind in ("float",):
            return float(raw)
        if kind in ("bool",):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("tuple"):
            return tuple(t.strip() for t in raw.split(",") if t.strip())
    except ValueError:
        raise ConfigurationError(f"{PREFIX}{f.name.upper()} has an invalid value") from None
    return raw


def setting_names() -> list[str]:
    """Every environment name the dispatcher reads."""
    return [PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
