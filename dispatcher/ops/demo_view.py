"""What the demo shows: the live view of slots, lines and states, and the summary's numbers."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from ..generations import COMPLETED, TERMINAL

STATES = ("waiting", "admitted", "submitted", "completed", "failed", "canceled")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def live_view(snap: dict, progress) -> Group:
    """Every account's slots and its provider's waiting line, the generations' states, `progress`."""
    table = Table(title="accounts (■ busy slot, □ free slot)", title_justify="left", expand=False)
    for column in ("provider", "account", "slots", "waiting line"):
        table.add_column(column)
    for provider, p in snap["status"]["providers"].items():
        first = True
        for a in p["accounts"]:
            used, cap = a["executing"], a["maxJobs"]
            bar = "[bold green]" + "■" * used + "[/]" + "□" * max(0, cap - used) + f" {used}/{cap}"
            line = ("[yellow]" + "▪" * min(p["waiting"], 30) + f"[/] {p['waiting']}") if first else ""
            table.add_row(provider if first else "", a["id"], bar, line)
            first = False
    states = Table(title="generations", title_justify="left")
    for s in STATES:
        states.add_column(s)
    states.add_row(*(str(snap["counts"].get(s, 0)) for s in STATES))
    return Group(table, states, progress)


def outcome_lines(gens: list, total: int, elapsed: float, accounts: list) -> list[str]:
    """The summary's outcome, per-account and timing lines. `gens`: the demo's generation records
    (those still there); `accounts`: the demo's accounts (provider, id, body with maxJobs)."""
    by_state = {s: sum(1 for g in gens if g.state == s) for s in STATES}
    lines = [f"summary    {by_state['completed']}/{total} completed, {by_state['failed']} failed, "
             f"{by_state['canceled']} canceled, {total - sum(by_state[s] for s in TERMINAL)} unfinished "
             f"in {elapsed:.1f}s", "per account:"]
    per: dict[tuple[str, str], int] = {}
    for g in gens:
        if g.state == COMPLETED:
            per[(g.provider, g.account)] = per.get((g.provider, g.account), 0) + 1
    for a in accounts:
        lines.append(f"  {a.provider:<10} {a.id:<40} maxJobs {a.body['maxJobs']}  "
                     f"completed {per.get((a.provider, a.id), 0)}")
    durations = [g.finished_at - g.created for g in gens if g.state == COMPLETED and g.finished_at]
    waits = [g.admitted_at - g.created for g in gens if g.admitted_at]
    lines.append(f"durations  submit→done  p50 {secs(percentile(durations, 50))}  "
                 f"p95 {secs(percentile(durations, 95))}  max {secs(max(durations, default=None))}")
    lines.append(f"waiting    submit→slot  p50 {secs(percentile(waits, 50))}  p95 {secs(percentile(waits, 95))}")
    return lines
