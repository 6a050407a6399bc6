"""One live picture of providers, accounts, slots, waiting lines, tokens, queues and workers.

`collect` reads it from Redis as plain data (JSON-ready): `/metrics` exports it as gauges
(`exposition`), `dispatcher status` prints it (`ops.status`), the demo watches it. Each account
carries `metrics_label`, the `account` label `/metrics` gives it (a keyed digest by default,
see `metric_store.AccountLabels`): where an operator reads which account a series is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import time

import redis

from . import keys, providers, rq_glue
from .errors import StoreUnavailable
from .logging import mask_url
from .metric_store import AccountLabels, outcomes
from .steps import all_queue_names

if TYPE_CHECKING:
    from dispatcher.client import Dispatcher


def collect(d: Dispatcher, *, now: float | None = None) -> dict:
    """Everything `status` shows, as plain data (JSON-ready)."""
    try:
        return _collect(d, time.time() if now is None else now)
    except (redis.ConnectionError, redis.TimeoutError):
        raise StoreUnavailable(f"Redis at {mask_url(d.core.redis_url)} is unreachable") from None


def _collect(d: Dispatcher, now: float) -> dict:
    label = AccountLabels.of(d)
    out: dict = {"time": now, "redis": mask_url(d.core.redis_url), "account_labels": label.mode, "providers": {}}
    for spec in providers.all_specs():
        snap = d.available(spec.name)
        ids = sorted(snap["accounts"])
        pipe = d.core.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(keys.account(spec.name, account_id), "expires_at", "refreshes", "error_until", "maxJobs")
        facts = dict(zip(ids, pipe.execute())) if ids else {}
        accounts = []
        for account_id in ids:
            a = snap["accounts"][account_id]
            expires_at, refreshes, error_until, configured = facts.get(account_id) or (None, None, None, None)
            cooldown_until = a.get("cooldown_until")  # epoch seconds
            accounts.append({
                "id": account_id,
                "metrics_label": label(account_id),
                # configured maxJobs: a flagged account leaves the capacity table but keeps its value
                "maxJobs": int(configured) if configured else a["maxJobs"],
                "executing": a["executing"],
                "available": a["available"],
                "eligible": bool(a["eligible"]),
                "cooldown_seconds": round(max(0.0, cooldown_until - now), 3) if cooldown_until else 0.0,
                "token_expires_at": float(expires_at) if expires_at else None,
                "token_seconds_to_expiry": round(float(expires_at) - now, 3) if expires_at else None,
                "refreshes": int(refreshes or 0),
                "error": a.get("error"),
                "error_until": float(error_until) if error_until else None,
            })
        out["providers"][spec.name] = {
            "title": spec.title,
            "accounts": accounts,
            "slots": sum(a["maxJobs"] for a in accounts),
            "running": sum(a["executing"] for a in accounts),
            "waiting": snap["waiting"],
            "pinned": snap["pinned"],
            "lines": _lines(snap.get("lines", {})),  # waiting per priority and tenant
            "tenants": snap.get("tenants", {}),  # running per tenant (those with a tenant)
        }
    out["queues"] = rq_glue.queue_lengths(d.core.rq, all_queue_names(sorted(providers.REGISTRY)))
    out["workers"] = rq_glue.worker_count(d.core.rq)
    out["generations"] = outcomes(d.core.r)
    return out


def _lines(lines: dict) -> list[dict]:
    """The common waiting lines as rows {priority, tenant, waiting}, highest priority first."""
    rows = []
    for name, waiting in lines.items():
        priority, _, tenant = name.partition(":")
        rows.append({"priority": int(priority), "tenant": tenant or None, "waiting": waiting})
    return sorted(rows, key=lambda row: (-row["priority"], row["tenant"] or ""))
