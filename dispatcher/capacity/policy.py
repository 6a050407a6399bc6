"""Priorities and tenants: the words the capacity scripts and their callers share.

A generation waits in the common sub-line of its priority (0 lowest … 9 highest, 5 by default)
and tenant (none by default); the scripts choose the next head by effective priority (its own
plus one level per `aging_ms` waited), then by tenant turn (weighted round robin), then by age
(scripts/_pump.lua, `next_line`; the Python twin is `CapacityModel._next_line`).
"""

from __future__ import annotations

import re

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
