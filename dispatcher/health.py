"""Account health: what an upstream error means for the account and the generation.

A pure decision (`judge`), applied by the worker steps. It mirrors useapi's
codes: 401 session, 412 out of credits, 422 moderated, 429 throttled,
596 account on hold, 5xx/timeouts transient.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .errors import UpstreamError

REFRESH, COOLDOWN, FLAG, RETRY, FAIL = "refresh", "cooldown", "flag", "retry", "fail"


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str
    cooldown: float = 0.0  # seconds the account stays out of rotation (COOLDOWN, FLAG with hold)
    flag: str | None = None  # error set on the account (FLAG)


def judge(exc: UpstreamError, settings) -> Verdict:
    status = exc.status
    message = exc.message
    if status == 401:
        return Verdict(REFRESH, message or "Unauthorized")
    if status == 429:
        return Verdict(COOLDOWN, "upstream throttled (429)",
                       cooldown=exc.retry_after if exc.retry_after is not None else settings.cooldown_429)
    if status == 412:
        return Verdict(FLAG, message or "out of credits", flag=f"Out of credits (412): {message}".rstrip(": "))
    if status == 596:
        return Verdict(FLAG, message or "account on hold", cooldown=settings.cooldown_596,
                       flag=f"Account on hold (596): {message}".rstrip(": "))
    if status == 422:
        return Verdict(FAIL, message or "moderated")
    if status >= 500 or status in (408, 425):
        return Verdict(RETRY, message or f"upstream error {status}")
    return Verdict(FAIL, message or f"upstream error {status}")


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter."""
    rng = rng or random
    return rng.uniform(0, min(cap, base * (2 ** attempt))) + base / 2


def refresh_failed_message(now: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now or time.time()))
    return f"Session refresh failed {stamp}, update the account"


class FailureWindow:
    """Share of failed upstream calls per account over a sliding window, kept in Redis."""

    def __init__(self, client, *, window: float, min_calls: int = 6, threshold: float = 0.5):
        self.r = client
        self.window = window
        self.min_calls = min_calls
        self.threshold = threshold

    def record(self, key: str, ok: bool, now: float | None = None) -> bool:
        """Record one call; True when the failure share is over the threshold (then the window restarts)."""
        now = now or time.time()
        member = f"{now:.6f}:{'ok' if ok else 'err'}:{random.getrandbits(24)}"
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {member: now})
        pipe.zremrangebyscore(key, 0, now - self.window)
        pipe.zrange(key, 0, -1)
        pipe.expire(key, int(self.window) + 5)
        _, _, members, _ = pipe.execute()
        if len(members) < self.min_calls:
            return False
        failed = sum(1 for m in members if ":err:" in m)
        if failed / len(members) > self.threshold:
            self.r.delete(key)
            return True
        return False
