"""Pure-Python reference model of the capacity scripts.

Same semantics as the Lua, written for clarity rather than speed, with time
(`now_ms`) and randomness (the caller's seed, drawn through the twin PRNG in
`prng.py`) passed explicitly. Given the same seed it picks the same account as
the scripts (candidates sorted by name), so tests compare admissions exactly.
Every admission asserts its own validity (eligible account with room).

Where the real outcome depends on timing the model cannot see (which expired
leases a limited reap takes), the model is told the real choice, checks it is
a valid one, and applies it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .prng import Minstd


class ModelError(AssertionError):
    """The real system did something the semantics forbid."""


@dataclass
class CapacityModel:
    ttl_ms: int = 30_000
    max_waiting: int = 0  # 0: no cap on waiting generations (acquire.lua ARGV 9)
    cap: dict[str, int] = field(default_factory=dict)
    used: Counter = field(default_factory=Counter)
    holder: dict[str, str] = field(default_factory=dict)
    deadline: dict[str, int] = field(default_factory=dict)
    started: dict[str, int] = field(default_factory=dict)
    cooldown: dict[str, int] = field(default_factory=dict)
    usable_until: dict[str, int] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    pinned: dict[str, list[str]] = field(default_factory=dict)

    # -- eligibility ------------------------------------------------------------
    def eligible(self, a: str, now: int) -> bool:
        if a not in self.cap:
            return False
        if a in self.cooldown and self.cooldown[a] > now:
            return False
        if a in self.usable_until and self.usable_until[a] <= now:
            return False
        return True

    def has_room(self, a: str, now: int) -> bool:
        return self.eligible(a, now) and self.used[a] < self.cap[a]

    def free_accounts(self, now: int) -> list[str]:
        return sorted(a for a in self.cap if self.has_room(a, now))

    # -- core -------------------------------------------------------------------
    def _admit(self, g: str, a: str, now: int, ttl: int, out: list) -> None:
        if not self.has_room(a, now):
            raise ModelError(f"admitting {g} to {a} without room")
        if g in self.holder:
            raise ModelError(f"{g} would hold two slots")
        self.used[a] += 1
        self.holder[g] = a
        self.deadline[g] = now + ttl
        self.started[g] = now
        out.append((g, a))

    def _release(self, g: str) -> bool:
        a = self.holder.pop(g, None)
        if a is None:
            return False
        del self.deadline[g], self.started[g]
        self.used[a] -= 1
        if self.used[a] <= 0:
            del self.used[a]
        return True

    def _pump(self, now: int, rng: Minstd, ttl: int, out: list) -> None:
        for a in sorted(self.pinned):
            line = self.pinned[a]
            while line and self.has_room(a, now):
                self._admit(line.pop(0), a, now, ttl, out)
            if not line:
                del self.pinned[a]
        free = self.free_accounts(now) if self.waiting else []
        while free and self.waiting:
            g = self.waiting.pop(0)
            i = rng.pick(len(free))
            a = free[i]
            self._admit(g, a, now, ttl, out)
            if not self.has_room(a, now):
                free.pop(i)

    # -- operations (mirror the scripts) ----------------------------------------
    def acquire(self, g: str, *, account: str | None = None, known: bool = False, wait: bool = True,
                front: bool = False, seed: int, now: int, ttl: int | None = None) -> tuple[str, object, list]:
        """("admitted", account, adm) | ("waiting", position, adm) | ("busy", None, adm) | ("unknown", account, [])
        | ("full", waiting, adm): it would wait, but `max_waiting` generations already do."""
        ttl = self.ttl_ms if ttl is None else ttl
        if account is not None and not known and account not in self.cap and not self.pinned.get(account):
            return "unknown", account, []
        rng, out = Minstd(seed), []
        self._pump(now, rng, ttl, out)
        if g in self.holder:
            return "admitted", self.holder[g], out
        line = self.waiting if account is None else self.pinned.get(account, [])
        if line:
            if g in line:
                return "waiting", line.index(g) + 1, out
        elif account is not None:
            if self.has_room(account, now):
                self._admit(g, account, now, ttl, out)
                return "admitted", account, out
        else:
            free = self.free_accounts(now)
            if free:
                a = free[rng.pick(len(free))]
                self._admit(g, a, now, ttl, out)
                return "admitted", a, out
        if not wait:
            return "busy", None, out
        total = len(self.waiting) + sum(len(x) for x in self.pinned.values())
        if self.max_waiting and not front and total >= self.max_waiting:
            return "full", total, out
        line = self.waiting if account is None else self.pinned.setdefault(account, [])
        if front:
            line.insert(0, g)
            return "waiting", 1, out
        line.append(g)
        return "waiting", len(line), out

    def release(self, g: str, *, seed: int, now: int, ttl: int | None = None) -> tuple[bool, list]:
        released = self._release(g)
        out: list = []
        self._pump(now, Minstd(seed), self.ttl_ms if ttl is None else ttl, out)
        return released, out

    def renew(self, g: str, ttl: int, *, now: int) -> bool:
        if g not in self.holder:
            return False
        self.deadline[g] = now + ttl
        return True

    def expired(self, now: int) -> set[str]:
        return {g for g, d in self.deadline.items() if d <= now}

    def reap(self, reaped: list[str], *, limit: int, seed: int, now: int, ttl: int | None = None) -> list:
        """Apply a real reap: `reaped` must be `limit` (or all) expired leases."""
        due = self.expired(now)
        if not set(reaped) <= due or len(set(reaped)) != len(reaped) or len(reaped) != min(limit, len(due)):
            raise ModelError(f"reaped {reaped} but expired leases are {sorted(due)} (limit {limit})")
        for g in reaped:
            self._release(g)
        out: list = []
        self._pump(now, Minstd(seed), self.ttl_ms if ttl is None else ttl, out)
        return out

    def pump(self, *, seed: int, now: int, ttl: int | None = None) -> list:
        out: list = []
        self._pump(now, Minstd(seed), self.ttl_ms if ttl is None else ttl, out)
        return out

    def set_account(self, a: str, max_jobs: int, *, seed: int, now: int, ttl: int | None = None) -> list:
        self.cap[a] = max_jobs
        return self.pump(seed=seed, now=now, ttl=ttl)

    def disable_account(self, a: str) -> None:
        self.cap.pop(a, None)

    def remove_account(self, a: str, *, seed: int, now: int, ttl: int | None = None) -> tuple[list, list]:
        self.cap.pop(a, None)
        self.cooldown.pop(a, None)
        self.usable_until.pop(a, None)
        failed = self.pinned.pop(a, [])
        return failed, self.pump(seed=seed, now=now, ttl=ttl)

    def set_cooldown(self, a: str, until: int | None, *, seed: int, now: int, ttl: int | None = None) -> list:
        if until is None:
            self.cooldown.pop(a, None)
        else:
            self.cooldown[a] = until
        return self.pump(seed=seed, now=now, ttl=ttl)

    def set_usable_until(self, a: str, until: int | None, *, seed: int, now: int, ttl: int | None = None) -> list:
        if until is None:
            self.usable_until.pop(a, None)
        else:
            self.usable_until[a] = until
        return self.pump(seed=seed, now=now, ttl=ttl)

    def cancel_waiting(self, g: str, account: str | None = None) -> bool:
        removed = g in self.waiting
        self.waiting = [x for x in self.waiting if x != g]
        if account is not None and account in self.pinned:
            line = self.pinned[account]
            removed = removed or g in line
            line[:] = [x for x in line if x != g]
            if not line:
                del self.pinned[account]
        return removed

    # -- views ------------------------------------------------------------------
    def executing(self) -> dict[str, int]:
        return {a: n for a, n in self.used.items() if n > 0}

    def pinned_lines(self) -> dict[str, list[str]]:
        return {a: list(line) for a, line in self.pinned.items() if line}
