"""Data of the simulated upstream: users (accounts), jobs, and the admin-body parser.

Pure data and validation; no I/O, no clock reads (times are passed in).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any



@dataclass(frozen=True)
class Emulation:
    """What the sandbox's shared parts need to know of one emulated service (its module in
    `sandbox/upstreams/` declares it with `register`): the account's id and secret fields, the
    names it also answers to, and its job ids (numbers from `job_id_base`, or UUIDs)."""

    name: str
    id_field: str
    secret_field: str
    aliases: tuple[str, ...] = ()
    job_id_base: int | None = None


# filled by `register` as the emulation modules are imported (sandbox/upstreams/__init__.py)
EMULATIONS: dict[str, Emulation] = {}
PROVIDERS: list[str] = []
ALIASES: dict[str, str] = {}
ID_FIELD: dict[str, str] = {}
SECRET_FIELD: dict[str, str] = {}


def register(emulation: Emulation) -> Emulation:
    EMULATIONS[emulation.name] = emulation
    if emulation.name not in PROVIDERS:
        PROVIDERS.append(emulation.name)
        PROVIDERS.sort()
    ID_FIELD[emulation.name] = emulation.id_field
    SECRET_FIELD[emulation.name] = emulation.secret_field
    ALIASES.update({alias: emulation.name for alias in emulation.aliases})
    return emulation


FAULT_KINDS = ("401", "429", "412", "596", "5xx", "slow")
PROMPT_FIELDS = ("prompt", "text_prompt", "promptText")
RIFFUSION_NS = uuid.UUID("5b1f7c52-8f0e-4d36-9a51-3c2f4f0e9a11")


class BadRequest(ValueError):
    """An admin body that cannot be applied; `code` is a short machine-readable reason."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(eq=False)
class Job:
    id: str
    user: "User"
    created: float
    duration: float
    fail: bool
    payload: Any
    key: str | None = None
    canceled_at: float | None = None

    @property
    def end(self) -> float:
        return self.created + self.duration

    def phase(self, now: float) -> str:
        """pending | running | succeeded | failed | canceled."""
        if self.canceled_at is not None:
            return "canceled"
        if now >= self.end:
            return "failed" if self.fail else "succeeded"
        if now - self.created < 0.1 * self.duration:
            return "pending"
        return "running"

    def progress(self, now: float) -> float:
        """Fraction in [0, 1]; frozen at the cancel instant for canceled jobs."""
        if self.canceled_at is None and now >= self.end:
            return 1.0
        at = now if self.canceled_at is None else self.canceled_at
        if self.duration <= 0:
            return 1.0
        return max(0.0, min(1.0, (at - self.created) / self.duration))


@dataclass(eq=False)
class User:
    provider: str
    id: str
    secret: str
    number: int
    concurrency: int = 10
    suspended: bool = False
    duration: float = 1.0
    jwt_lifetime: float = 86400.0
    faults: dict[str, float] = field(default_factory=dict)
    retry_after: float = 2.0
    slow_seconds: float = 2.0
    credits: int | None = None
    # the service's own pacing: at most this many new jobs in any 60 s / 24 h (None: no limit);
    # a create past it is refused (429) and counted as a pace violation
    per_minute: int | None = None
    per_day: int | None = None
    starts: list[float] = field(default_factory=list)
    support_video: bool = True
    support_music: bool = False
    # MiniMax: the pasted token's registration time and expiry.
    registered_at: float = 0.0
    token_exp: float = 0.0
    # Sandbox-minted tokens (jti) issued, and those forced expired by the admin API.
    issued: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    jobs: dict[str, Job] = field(default_factory=dict)
    active: list[Job] = field(default_factory=list)
    idem: dict[str, Job] = field(default_factory=dict)
    payloads: set[bytes] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    fault_counts: Counter = field(default_factory=Counter)
    max_concurrent: int = 0

    def prune(self, now: float) -> None:
        """Drop jobs that reached their end from `active`, counting them completed/failed."""
        if not self.active:
            return
        keep = []
        for job in self.active:
            if job.end > now:
                keep.append(job)
            else:
                self.counts["failed" if job.fail else "completed"] += 1
        self.active = keep

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.provider,
            "id": self.id,
            "number": self.number,
            "concurrency": self.concurrency,
            "suspended": self.suspended,
            "duration": self.duration,
            "jwt_lifetime": self.jwt_lifetime,
            "faults": dict(self.faults),
            "retry_after": self.retry_after,
            "per_minute": self.per_minute,
            "per_day": self.per_day,
            "slow_seconds": self.slow_seconds,
            "credits": self.credits,
            "support_video": self.support_video,
            "support_music": self.support_music,
        }
        if self.provider == "riffusion":
            out["user_id"] = self.id
        if self.provider == "minimax":
            out["token"] = self.secret
            out["token_exp"] = self.token_exp
        return out


def stable_number(provider: str, ident: str) -> int:
    digest = hashlib.sha1(f"{provider}:{ident}".encode()).digest()
    return 100000 + int.from_bytes(digest[:4], "big") % 900000000


def riffusion_user_id(cookie: str) -> str:
    return str(uuid.uuid5(RIFFUSION_NS, cookie))


def canonical(payload: Any) -> bytes:
    import json

    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).digest()


def prompt_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    return " ".join(v for k in PROMPT_FIELDS if isinstance(v := payload.get(k), str))


def provider_of(body: dict[str, Any]) -> str:
    provider = body.get("provider")
    provider = ALIASES.get(provider, provider) if isinstance(provider, str) else provider
    if provider not in PROVIDERS:
        raise BadRequest(f"provider must be one of {', '.join(PROVIDERS)}", "invalid_provider")
    return provider


def _str(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string", f"invalid_{name}")
    return value


def _num(value: Any, name: str, *, low: float = 0.0, integer: bool = False) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value < low:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name} must be {kind} >= {low:g}", f"invalid_{name}")
    return value if integer else float(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be a boolean", f"invalid_{name}")
    return value


def parse_options(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the optional user fields present in `body`; returns only those present."""
    out: dict[str, Any] = {}
    if "concurrency" in body:
        out["concurrency"] = _num(body["concurrency"], "concurrency", integer=True)
    for name in ("suspended", "support_video", "support_music"):
        if name in body:
            out[name] = _bool(body[name], name)
    for name in ("duration", "jwt_lifetime", "retry_after", "slow_seconds"):
        if name in body:
            out[name] = _num(body[name], name)
    if "credits" in body:
        out["credits"] = None if body["credits"] is None else _num(body["credits"], "credits", integer=True)
    for name in ("per_minute", "per_day"):
        if name in body:
            out[name] = None if body[name] is None else _num(body[name], name, integer=True)
    if "faults" in body:
        faults = body["faults"]
        if not isinstance(faults, dict):
            raise BadRequest("faults must be an object kind -> rate", "invalid_faults")
        rates: dict[str, float] = {}
        for kind, rate in faults.items():
            if kind in ("retry_after", "slow_seconds"):
                out[kind] = _num(rate, kind)
                continue
            if kind not in FAULT_KINDS:
                raise BadRequest(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}", "invalid_faults")
            rate = _num(rate, f"faults.{kind}")
            if rate > 1:
                raise BadRequest(f"faults.{kind} must be in [0, 1]", "invalid_faults")
            rates[kind] = rate
        out["faults"] = rates
    return out


def identity(provider: str, body: dict[str, Any]) -> tuple[str, str]:
    """(account identity, secret) from a registration body."""
    if provider == "riffusion":
        cookie = _str(body, "cookie")
        ident = body.get("user_id")
        if ident is not None and (not isinstance(ident, str) or not ident):
            raise BadRequest("user_id must be a non-empty string", "invalid_user_id")
        return ident or riffusion_user_id(cookie), cookie
    if provider == "minimax":
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or not token):
            raise BadRequest("token must be a non-empty string", "invalid_token")
        return _str(body, "account"), token or ""
    return _str(body, "email"), _str(body, "password")
