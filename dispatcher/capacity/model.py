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

DEFAULT_PRIORITY, STRIDE = 5, 1_000_000  # as in scripts/_pump.lua
MINUTE_MS, DAY_MS = 60_000, 86_400_000


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
    waiting: list[str] = field(default_factory=list)  # the default common line (priority 5, no tenant)
    pinned: dict[str, list[str]] = field(default_factory=dict)
    # priorities and tenants (see next_line in _pump.lua)
    lines: dict[str, list[str]] = field(default_factory=dict)  # "<priority>:<tenant>" -> FIFO (not '')
    enq: dict[str, int] = field(default_factory=dict)  # waiting generation -> ms it joined
    gten: dict[str, str] = field(default_factory=dict)  # generation -> tenant
    trun: Counter = field(default_factory=Counter)  # tenant -> slots held
    tpass: dict[str, int] = field(default_factory=dict)  # tenant -> pass
    vt: int = 0  # the virtual time: the pass of the last choice
    aging_ms: int = 60_000  # the scripts' default when no policy is stored
    weights: dict[str, int] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    # pacing: account -> (per minute or None, per day or None); account -> {generation: ms admitted}
    pace: dict[str, tuple] = field(default_factory=dict)
    starts: dict[str, dict[str, int]] = field(default_factory=dict)
    # quarantines: (account, operation) -> ms until; waiting generation -> its operation
    quar: dict[tuple, int] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)

    # -- eligibility ------------------------------------------------------------
    def eligible(self, a: str, now: int) -> bool:
        if a not in self.cap:
            return False
        if a in self.cooldown and self.cooldown[a] > now:
            return False
        if a in self.usable_until and self.usable_until[a] <= now:
            return False
        return not self.paced_out(a, now)

    def paced_out(self, a: str, now: int) -> bool:
        if a not in self.pace:
            return False
        per_minute, per_day = self.pace[a]
        times = self.starts.get(a, {}).values()
        in_minute = sum(1 for t in times if t > now - MINUTE_MS)
        in_day = sum(1 for t in times if t > now - DAY_MS)
        return (per_minute is not None and in_minute >= per_minute) or (per_day is not None and in_day >= per_day)

    def has_room(self, a: str, now: int) -> bool:
        return self.eligible(a, now) and self.used[a] < self.cap[a]

    def free_accounts(self, now: int) -> list[str]:
        return sorted(a for a in self.cap if self.has_room(a, now))

    # -- priorities and tenants ---------------------------------------------------
    def tenant_room(self, tenant: str | None) -> bool:
        if not tenant or tenant not in self.caps:
            return True
        return self.trun[tenant] < self.caps[tenant]

    def quarantined(self, a: str, op: str | None, now: int) -> bool:
        return bool(op) and self.quar.get((a, op), 0) > now

    def for_op(self, free: list[str], op: str | None, now: int) -> list[str]:
        return [a for a in free if not self.quarantined(a, op, now)] if op else free

    def line(self, name: str) -> list[str]:
        return self.waiting if name == "" else self.lines.setdefault(name, [])

    def _next_line(self, now: int, free: list[str]):
        """(name, tenant, pass, candidate accounts) of the common sub-line whose head goes next, or None."""
        best, best_key = None, None
        names = [n for n, line in self.lines.items() if line] + ([""] if self.waiting else [])
        for n in names:
            priority, tenant = (DEFAULT_PRIORITY, "") if n == "" else (int(n.split(":", 1)[0]), n.split(":", 1)[1])
            if not self.tenant_room(tenant):
                continue
            head = self.line(n)[0]
            cands = self.for_op(free, self.ops.get(head), now)
            if not cands:
                continue
            t = self.enq.get(head, now)
            eff = priority + ((now - t) // self.aging_ms if self.aging_ms > 0 else 0)
            own = self.tpass.get(tenant)
            pass_ = own if own is not None and own > self.vt else self.vt
            key = (-eff, pass_, t, n)
            if best_key is None or key < best_key:
                best, best_key = (n, tenant, pass_, cands), key
        return best

    def _take_head(self, best) -> str:
        n, tenant, pass_, _ = best
        line = self.line(n)
        g = line.pop(0)
        if n and not line:
            del self.lines[n]
        self.enq.pop(g, None)
        self.ops.pop(g, None)
        weight = self.weights.get(tenant, 1)
        self.tpass[tenant] = pass_ + STRIDE // (weight if weight > 0 else 1)
        self.vt = pass_
        return g

    # -- core -------------------------------------------------------------------
    def _admit(self, g: str, a: str, now: int, ttl: int, out: list) -> None:
        if not self.has_room(a, now):
            raise ModelError(f"admitting {g} to {a} without room")
        if g in self.holder:
            raise ModelError(f"{g} would hold two slots")
        tenant = self.gten.get(g)
        if tenant is not None:
            if tenant in self.caps and self.trun[tenant] >= self.caps[tenant]:
                raise ModelError(f"admitting {g} of tenant {tenant} at its cap {self.caps[tenant]}")
            self.trun[tenant] += 1
        self.used[a] += 1
        self.holder[g] = a
        if a in self.pace:
            starts = self.starts.setdefault(a, {})
            starts[g] = now
            for old in [x for x, t in starts.items() if t <= now - DAY_MS]:
                del starts[old]
        self.deadline[g] = now + ttl
        self.started[g] = now
        out.append((g, a))

    def _release(self, g: str) -> bool:
        a = self.holder.pop(g, None)
        if a is None:
            return False
        del self.deadline[g], self.started[g]
        tenant = self.gten.pop(g, None)
        if tenant is not None:
            self.trun[tenant] -= 1
            if self.trun[tenant] <= 0:
                del self.trun[tenant]
        self.used[a] -= 1
        if self.used[a] <= 0:
            del self.used[a]
        return True

    def _pump(self, now: int, rng: Minstd, ttl: int, out: list) -> None:
        for a in sorted(self.pinned):
            line = self.pinned[a]
            while (line and self.has_room(a, now) and self.tenant_room(self.gten.get(line[0]))
                   and not self.quarantined(a, self.ops.get(line[0]), now)):
                g = line.pop(0)
                self.enq.pop(g, None)
                self.ops.pop(g, None)
                self._admit(g, a, now, ttl, out)
            if not line:
                del self.pinned[a]
        common = self.waiting or any(self.lines.values())
        free = self.free_accounts(now) if common else []
        while free:
            best = self._next_line(now, free)
            if best is None:
                break
            g = self._take_head(best)
            cands = best[3]
            a = cands[rng.pick(len(cands))]
            self._admit(g, a, now, ttl, out)
            if not self.has_room(a, now):
                free.remove(a)

    # -- operations (mirror the scripts) ----------------------------------------
    def acquire(self, g: str, *, account: str | None = None, known: bool = False, wait: bool = True,
                front: bool = False, priority: int = DEFAULT_PRIORITY, tenant: str | None = None,
                operation: str | None = None, seed: int, now: int, ttl: int | None = None) -> tuple[str, object, list]:
        """("admitted", account, adm) | ("waiting", position, adm) | ("busy", None, adm) | ("unknown", account, [])
        | ("full", waiting, adm): it would wait, but `max_waiting` generations already do."""
        ttl = self.ttl_ms if ttl is None else ttl
        tenant = tenant or ""
        if account is not None and not known and account not in self.cap and not self.pinned.get(account):
            return "unknown", account, []
        rng, out = Minstd(seed), []
        self._pump(now, rng, ttl, out)
        name = "" if priority == DEFAULT_PRIORITY and not tenant else f"{priority}:{tenant}"
        line = (self.pinned.get(account, []) if account is not None
                else (self.waiting if name == "" else self.lines.get(name, [])))
        if (not line or account is None) and self.tenant_room(tenant):
            # after the pump a free account means no waiting head can take it (see acquire.lua)
            a = None
            if account is not None:
                a = account if self.has_room(account, now) and not self.quarantined(account, operation, now) else None
            else:
                free = self.for_op(self.free_accounts(now), operation, now)
                a = free[rng.pick(len(free))] if free else None
            if a is not None:
                if g in self.holder:
                    return "admitted", self.holder[g], out
                if tenant:
                    self.gten[g] = tenant
                self._admit(g, a, now, ttl, out)
                return "admitted", a, out
        if g in self.holder:
            return "admitted", self.holder[g], out
        if g in line:
            return "waiting", line.index(g) + 1, out
        if not wait:
            return "busy", None, out
        total = len(self.waiting) + sum(len(x) for x in self.pinned.values()) + sum(len(x) for x in self.lines.values())
        if self.max_waiting and not front and total >= self.max_waiting:
            return "full", total, out
        line = self.pinned.setdefault(account, []) if account is not None else self.line(name)
        if front:
            line.insert(0, g)
            position = 1
        else:
            line.append(g)
            position = len(line)
        self.enq.setdefault(g, now)
        if tenant:
            self.gten[g] = tenant
        if operation:
            self.ops[g] = operation
        return "waiting", position, out

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
        self.pace.pop(a, None)
        self.starts.pop(a, None)
        failed = self.pinned.pop(a, [])
        for g in failed:
            self.enq.pop(g, None)
            self.gten.pop(g, None)
            self.ops.pop(g, None)
        self.quar = {k: v for k, v in self.quar.items() if k[0] != a}
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

    def cancel_waiting(self, g: str, account: str | None = None, *, priority: int = DEFAULT_PRIORITY,
                       tenant: str | None = None) -> bool:
        removed = g in self.waiting
        self.waiting[:] = [x for x in self.waiting if x != g]
        name = "" if priority == DEFAULT_PRIORITY and not tenant else f"{priority}:{tenant or ''}"
        if name and name in self.lines:
            removed = removed or g in self.lines[name]
            self.lines[name] = [x for x in self.lines[name] if x != g]
            if not self.lines[name]:
                del self.lines[name]
        if account is not None and account in self.pinned:
            line = self.pinned[account]
            removed = removed or g in line
            line[:] = [x for x in line if x != g]
            if not line:
                del self.pinned[account]
        if removed:
            self.enq.pop(g, None)
            self.ops.pop(g, None)
            if g not in self.holder:
                self.gten.pop(g, None)
        return removed

    def quarantine(self, a: str, operation: str, until: int | None, *, seed: int, now: int,
                   ttl: int | None = None) -> list:
        if until is None:
            self.quar.pop((a, operation), None)
        else:
            self.quar[(a, operation)] = until
        return self.pump(seed=seed, now=now, ttl=ttl)

    def set_pace(self, a: str, per_minute: int | None, per_day: int | None, *, seed: int, now: int,
                 ttl: int | None = None) -> list:
        if per_minute is None and per_day is None:
            self.pace.pop(a, None)
            self.starts.pop(a, None)
        else:
            self.pace[a] = (per_minute, per_day)
        return self.pump(seed=seed, now=now, ttl=ttl)

    def set_policy(self, *, aging_ms: int = 60_000, weights: dict | None = None, caps: dict | None = None,
                   seed: int, now: int, ttl: int | None = None) -> list:
        self.aging_ms, self.weights, self.caps = aging_ms, dict(weights or {}), dict(caps or {})
        return self.pump(seed=seed, now=now, ttl=ttl)

    # -- views ------------------------------------------------------------------
    def executing(self) -> dict[str, int]:
        return {a: n for a, n in self.used.items() if n > 0}

    def pinned_lines(self) -> dict[str, list[str]]:
        return {a: list(line) for a, line in self.pinned.items() if line}
