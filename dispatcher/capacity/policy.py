"""Priorities and tenants: the words the capacity scripts and their callers share.

A generation waits in the common sub-line of its priority (0 lowest … 9 highest, 5 by default)
and tenant (none by default); the scripts choose the next head by effective priority (its own
plus one level per `aging_ms` waited), then by tenant turn (weighted round robin), then by age
(scripts/_pump.lua, `next_line`; the Python twin is `CapacityModel._next_line`).
"""

from __future__ import annotations

import re

from .. import keys
from ..errors import ValidationError

DEFAULT_PRIORITY, MAX_PRIORITY = 5, 9
TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_priority(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ValidationError(f"priority must be an integer from 0 (lowest) to {MAX_PRIORITY} (highest), got {value!r}")
    return value


def check_tenant(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TENANT.fullmatch(value):
        raise ValidationError("tenant must be 1 to 64 letters, digits, '_', '.' or '-', got "
                              f"{str(value)[:80]!r}")
    return value


def line_name(priority: int, tenant: str | None) -> str:
    """The common sub-line a generation of this priority and tenant waits in ('' the default)."""
    return "" if priority == DEFAULT_PRIORITY and not tenant else f"{priority}:{tenant or ''}"


def pace_view(client, provider: str, account: str) -> dict:
    """A paced account's windows: {"minute"|"day": {limit, count, frees_at_ms}}, `frees_at_ms`
    (epoch ms) being when a full window admits again (None: not full). Read-only."""
    limits = client.hmget(keys.pace(provider), f"m:{account}", f"d:{account}")
    per_minute, per_day = (int(x) if x else None for x in limits)
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    starts = [int(score) for _, score in client.zrangebyscore(keys.starts(provider, account), now - 86_400_000,
                                                              "+inf", withscores=True)]
    out = {}
    for name, limit, span in (("minute", per_minute, 60_000), ("day", per_day, 86_400_000)):
        inside = sorted(t for t in starts if t > now - span)
        full = limit is not None and len(inside) >= limit
        out[name] = {"limit": limit, "count": len(inside), "frees_at_ms": inside[len(inside) - limit] + span if full else None}
    return out
