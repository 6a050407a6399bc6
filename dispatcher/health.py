"""Account health: what an upstream error means for the account and the generation.

A pure decision (`judge`), applied by the worker steps. It mirrors useapi's
codes, and what each does to the account and the generation:

- 401 session (REFRESH): one forced refresh and one retry within the step. A
  refresh that is refused flags the account ("Session refresh failed …");
  a 401 again on the fresh token is retried like a 5xx, and flags the
  account only when every retry's fresh session is refused as well.
- 429 throttled (COOLDOWN): out of rotation for `Retry-After` (else
  `cooldown_429`) seconds; it returns by itself.
- 412 out of credits, 596 on hold (FLAG): out of rotation with the reason; the
  596 flag clears itself after `cooldown_596`, the 412 one on re-POST.
- 5xx and timeouts (RETRY): the same account again after `backoff`, up to
  `upstream_retries`, then the generation fails with the upstream's message.
- 422 moderated and anything else (FAIL): the generation fails at once.

A generation not yet accepted upstream whose account leaves rotation goes
back to the waiting line; one already accepted keeps polling. `FailureWindow`
adds a cooldown when most of an account's recent calls failed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .errors import UpstreamError

REFRESH, COOLDOWN, FLAG, RETRY, FAIL = "refresh", "cooldown", "flag", "retry", "fail"
MIN_COOLDOWN = 0.1  # seconds: a `Retry-After: 0` must not turn into a hot loop


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str
    cooldown: float = 0.0  # seconds the account stays out of rotation (COOLDOWN, FLAG with hold)
    flag: str | None = None  # error set on the account (FLAG)
    code: int | None = None  # useapi's code for that error (FLAG: 412 out of credits, 596 on hold)


def judge(exc: UpstreamError, settings) -> Verdict:
    status = exc.status
    message = exc.message
    if status == 401:
        return Verdict(REFRESH, message or "Unauthorized")
    if status == 429:
        wait = exc.retry_after if exc.retry_after is not None and exc.retry_after >= 0 else settings.cooldown_429
        return Verdict(COOLDOWN, message or "upstream throttled (429)", cooldown=max(wait, MIN_COOLDOWN))
    if status == 412:
        return Verdict(FLAG, message or "out of credits", flag=f"Out of credits (412): {message}".rstrip(": "),
                       code=412)
    if status == 596:
        return Verdict(FLAG, message or "account on hold", cooldown=settings.cooldown_596,
                       flag=f"Account on hold (596): {message}".rstrip(": "), code=596)
    if status == 422:
        return Verdict(FAIL, message or "moderated")
    if status >= 500 or status in (408, 425):
        return Verdict(RETRY, message or f"upstream error {status}")
    return Verdict(FAIL, message or f"upstream error {status}")


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1, 2, …): exponential with jitter.

    The ceiling doubles per attempt from `base` up to `cap`; the delay is drawn
    uniformly from the upper half of it ("equal jitter"), so retries of many
    generations spread out, never come back at once (no zero delay), and never
    wait longer than `cap`."""
    rng = rng or random
    ceiling = min(cap, base * (2.0 ** min(max(attempt - 1, 0), 62)))
    return rng.uniform(ceiling / 2, ceiling)


def refresh_failed_message(now: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now or time.time()))
    return f"Session refresh failed {stamp}, update the account"


class FailureWindow:
    """Share of failed upstream calls per account over a sliding window, kept in Redis.

    Two sorted sets scored by time: every call in `key`, the failed ones also in
    `key + ":err"` (same hash tag). Each record is one transaction of O(log n)
    commands: no member list is ever read back, however busy the account."""

    def __init__(self, client, *, window: float, min_calls: int = 6, threshold: float = 0.5):
        self.r = client
        self.window = window
        self.min_calls = min_calls
        self.threshold = threshold

    def record_ok_in(self, pipe, key: str, now: float | None = None) -> None:
        """Queue the record of one successful call on a pipeline about to run anyway. Nothing
        is read back: the share is judged when the next failure is recorded (a success only
        lowers it; `record` also judges at a success, which can trip once `min_calls` is
        reached by it, the failures having come first)."""
        now = time.time() if now is None else now
        pipe.zadd(key, {f"{now:.6f}:{random.getrandbits(32)}": now})
        pipe.zremrangebyscore(key, "-inf", f"({now - self.window}")
        pipe.expire(key, int(self.window) + 5)

    def record(self, key: str, ok: bool, now: float | None = None) -> bool:
        """Record one call; True when the failure share is over the threshold (then the window restarts)."""
        now = time.time() if now is None else now
        errors = key + ":err"
        member = f"{now:.6f}:{random.getrandbits(32)}"
        ttl = int(self.window) + 5
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {member: now})
        if not ok:
            pipe.zadd(errors, {member: now})
        for k in (key, errors):
            pipe.zremrangebyscore(k, "-inf", f"({now - self.window}")
            pipe.expire(k, ttl)
        pipe.zcard(key)
        pipe.zcard(errors)
        *_, calls, failed = pipe.execute()
        if calls < self.min_calls or failed / calls <= self.threshold:
            return False
        self.r.delete(key, errors)
        return True
