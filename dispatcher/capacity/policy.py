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
DEFAULT_AGING_MS = 60_000  # what the scripts use when no policy is stored (scripts/_pump.lua)
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


def pace_views(client, provider: str, only: str | None = None) -> dict[str, dict]:
    """Every paced account's windows: {account: {"minute"|"day": {limit, count, frees_at_ms}}},
    `frees_at_ms` (epoch ms) being when a full window admits again (None: not full). Read-only;
    two round trips whatever the number of accounts."""
    limits: dict[str, list] = {}
    if only is not None:  # one account: its two fields, not every paced account's
        table = dict(zip((f"m:{only}", f"d:{only}"), client.hmget(keys.pace(provider), f"m:{only}", f"d:{only}")))
        table = {k: v for k, v in table.items() if v is not None}
    else:
        table = client.hgetall(keys.pace(provider))
    for field, value in table.items():
        field = field.decode() if isinstance(field, bytes) else field
        limits.setdefault(field[2:], [None, None])[0 if field.startswith("m:") else 1] = int(value)
    names = sorted(limits)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for account in names:
        pipe.zrange(keys.starts(provider, account), 0, -1, withscores=True)
    (seconds, micros), *starts = pipe.execute()
    now = int(seconds) * 1000 + int(micros) // 1000
    out = {}
    for account, rows in zip(names, starts):
        times = [int(score) for _, score in rows]
        out[account] = {name: _window(times, limit, span, now)
                        for name, limit, span in (("minute", limits[account][0], 60_000),
                                                  ("day", limits[account][1], 86_400_000))}
    return out


def no_pace() -> dict:
    """The windows of an account without limits."""
    return {name: {"limit": None, "count": 0, "frees_at_ms": None} for name in ("minute", "day")}


def _window(times: list[int], limit: int | None, span: int, now: int) -> dict:
    inside = sorted(t for t in times if t > now - span)
    full = limit is not None and len(inside) >= limit
    return {"limit": limit, "count": len(inside), "frees_at_ms": inside[len(inside) - limit] + span if full else None}


def quarantine_table(client, provider: str) -> dict[str, dict[str, int]]:
    """{account: {operation: until ms}} of the running quarantines (Redis TIME); read-only."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(keys.quarantine(provider))
    (seconds, micros), table = pipe.execute()
    now = int(seconds) * 1000 + int(micros) // 1000
    out: dict[str, dict[str, int]] = {}
    for field, until in table.items():
        field = field.decode() if isinstance(field, bytes) else field
        account, _, operation = field.partition("\t")
        if int(float(until)) > now:
            out.setdefault(account, {})[operation] = int(float(until))
    return out
