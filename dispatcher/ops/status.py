"""`dispatcher status`: one live picture of providers, accounts, slots, lines, tokens and errors.

`dispatcher.overview.collect` reads everything from Redis (the same numbers `/metrics`
exports as gauges); `render_table` prints it with rich; `dispatcher status --json` prints
`collect`'s dict for scripts. Beside each account stands its `/metrics` label (a keyed digest,
`DISPATCHER_METRICS_ACCOUNT_LABELS=hash`, the default): the one place that says which account
a series such as `dispatcher_admissions_total{account="acct-3f9a1c02e4"}` is.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def duration(seconds: float | None) -> str:
    """`1d02h`, `3h05m`, `4m07s`, `12s` (a sign for the past); `-` for none."""
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
    console = console or Console(width=None if sys.stdout.isatty() else 200)  # pipes: no folding at 80
    console.print(f"redis {data['redis']} · workers {data['workers']} · "
                  + " ".join(f"{q}={n}" for q, n in data["queues"].items() if n))
    hashed = data.get("account_labels", "raw") == "hash"
    table = Table(title="accounts", title_justify="left")
    columns = ("provider", "account", *(("metrics label",) if hashed else ()), "slots", "free", "state",
               "token expires in", "refreshes", "error")
    for column in columns:
        table.add_column(column, overflow="fold")
    lines = Table(title="waiting lines and outcomes", title_justify="left")
    for column in ("provider", "running", "waiting", "pinned", "completed", "failed", "canceled"):
        lines.add_column(column)
    for name, p in data["providers"].items():
        if not p["accounts"]:
            table.add_row(name, "[dim]no accounts[/dim]", *[""] * (len(columns) - 2))
        for a in p["accounts"]:
            if a["error"]:
                state = "[red]flagged[/red]"
            elif a["cooldown_seconds"]:
                state = f"[yellow]cooldown {duration(a['cooldown_seconds'])}[/yellow]"
            else:
                state = "[green]eligible[/green]" if a["eligible"] else "[yellow]not eligible[/yellow]"
            label = (a.get("metrics_label", ""),) if hashed else ()
            table.add_row(name, a["id"], *label, f"{a['executing']}/{a['maxJobs']}", str(a["available"]), state,
                          duration(a["token_seconds_to_expiry"]), str(a["refreshes"]), a["error"] or "")
        done = data.get("generations", {}).get(name, {})
        lines.add_row(name, str(p["running"]), str(p["waiting"]), str(sum(p["pinned"].values())),
                      str(done.get("completed", 0)), str(done.get("failed", 0)), str(done.get("canceled", 0)))
    console.print(table)
    console.print(lines)
    _print_tenants(data, console)


def _print_tenants(data: dict, console) -> None:
    """Waiting by priority and tenant, and running per tenant, where any line or tenant is not the default."""
    rows = []
    for name, p in data["providers"].items():
        running = p.get("tenants", {})
        for line in p.get("lines", []):
            if line["priority"] != 5 or line["tenant"]:
                rows.append((name, str(line["priority"]), line["tenant"] or "-", str(line["waiting"]),
                             str(running.get(line["tenant"], "")) if line["tenant"] else ""))
        for tenant, n in running.items():
            if not any(line["tenant"] == tenant for line in p.get("lines", [])):
                rows.append((name, "", tenant, "0", str(n)))
    if not rows:
        return
    table = Table(title="priorities and tenants", title_justify="left")
    for column in ("provider", "priority", "tenant", "waiting", "running"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
