"""`dispatcher status`: one live picture of providers, accounts, slots, lines, tokens and errors.

`collect` reads everything from Redis (the same numbers `/metrics` exports as
gauges); `render_table` prints it with rich; `dispatcher status --json` prints
`collect`'s dict for scripts.
"""

from __future__ import annotations

import re
import sys
import time

import redis

from . import keys, providers
from .errors import StoreUnavailable
from .metric_store import outcomes
from .steps import all_queue_names


def mask_url(url: str | None) -> str | None:
    """A Redis URL with its password masked."""
    if not url:
        return url
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1…secured…@", url)


def collect(d, *, now: float | None = None) -> dict:
    """Everything `status` shows, as plain data (JSON-ready)."""
    try:
        return _collect(d, time.time() if now is None else now)
    except (redis.ConnectionError, redis.TimeoutError):
        raise StoreUnavailable(f"Redis at {mask_url(d.redis_url)} is unreachable") from None


def _collect(d, now: float) -> dict:
    from rq import Queue, Worker

    out: dict = {"time": now, "redis": mask_url(d.redis_url), "providers": {}}
    for spec in providers.all_specs():
        snap = d.available(spec.name)
        ids = sorted(snap["accounts"])
        pipe = d.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(keys.account(spec.name, account_id), "expires_at", "refreshes", "error_until", "maxJobs")
        facts = dict(zip(ids, pipe.execute())) if ids else {}
        accounts = []
        for account_id in ids:
            a = snap["accounts"][account_id]
            expires_at, refreshes, error_until, configured = facts.get(account_id) or (None, None, None, None)
            cooldown_ms = a.get("cooldown_until")
            accounts.append({
                "id": account_id,
                # configured maxJobs: a flagged account leaves the capacity table but keeps its value
                "maxJobs": int(configured) if configured else a["maxJobs"],
                "executing": a["executing"],
                "available": a["available"],
                "eligible": bool(a["eligible"]),
                "cooldown_seconds": round(max(0.0, cooldown_ms / 1000 - now), 3) if cooldown_ms else 0.0,
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
        }
    pipe = d.rq.pipeline(transaction=False)
    names = all_queue_names(sorted(providers.REGISTRY))
    for name in names:
        pipe.llen(Queue.redis_queue_namespace_prefix + name)
    out["queues"] = dict(zip(names, (int(n) for n in pipe.execute())))
    out["workers"] = Worker.count(connection=d.rq)
    out["generations"] = outcomes(d.r)
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(int(seconds))
    if s >= 86400:
        return f"{sign}{s // 86400}d{(s % 86400) // 3600:02d}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    return f"{sign}{s}s"


def render_table(data: dict, console=None) -> None:
    """Print `collect`'s data as tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 200)  # pipes: no folding at 80
    console.print(f"redis {data['redis']} · workers {data['workers']} · "
                  + " ".join(f"{q}={n}" for q, n in data["queues"].items() if n))
    table = Table(title="accounts", title_justify="left")
    for column in ("provider", "account", "slots", "free", "state", "token expires in", "refreshes", "error"):
        table.add_column(column, overflow="fold")
    lines = Table(title="waiting lines and outcomes", title_justify="left")
    for column in ("provider", "running", "waiting", "pinned", "completed", "failed", "canceled"):
        lines.add_column(column)
    for name, p in data["providers"].items():
        if not p["accounts"]:
            table.add_row(name, "[dim]no accounts[/dim]", "", "", "", "", "", "")
        for a in p["accounts"]:
            if a["error"]:
                state = "[red]flagged[/red]"
            elif a["cooldown_seconds"]:
                state = f"[yellow]cooldown {_duration(a['cooldown_seconds'])}[/yellow]"
            else:
                state = "[green]eligible[/green]" if a["eligible"] else "[yellow]not eligible[/yellow]"
            table.add_row(name, a["id"], f"{a['executing']}/{a['maxJobs']}", str(a["available"]), state,
                          _duration(a["token_seconds_to_expiry"]), str(a["refreshes"]), a["error"] or "")
        done = data.get("generations", {}).get(name, {})
        lines.add_row(name, str(p["running"]), str(p["waiting"]), str(sum(p["pinned"].values())),
                      str(done.get("completed", 0)), str(done.get("failed", 0)), str(done.get("canceled", 0)))
    console.print(table)
    console.print(lines)
