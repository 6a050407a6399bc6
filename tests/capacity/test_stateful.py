"""Stateful property test: the Lua scripts against the reference model, step by step.

Hypothesis drives random sequences of every operation against a real Redis and
`CapacityModel`; the model uses the same seeded PRNG, so it predicts the exact
admissions (generation and account), statuses and positions, and each step
checks the invariants on the real keys.

Expiry is made real without sleeping: leases are taken with a 10-minute ttl, so
none expires on its own during a run, and `renew(g, ttl_ms=0)` sets a deadline
equal to Redis' now, which counts as expired (deadline <= now) from that very
millisecond on. The model mirrors this with its own clock (the same system
clock Redis reads); no outcome depends on a deadline being close to now.
Cooldown and usable_until are either cleared, far in the past or an hour ahead,
for the same reason.
"""

from __future__ import annotations

import time
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)

from dispatcher import keys
from dispatcher.capacity import Admission, Capacity, CapacityModel
from dispatcher.errors import NoCapacity, NotFound

PROVIDER = "stateful"
ACCOUNTS = ["a0", "a1", "a2", "a3"]
UNKNOWN = "zz"
TTL = 600_000
MAX_WAITING = 7  # small, so runs reach a full line (common and pinned lines count together)
HOUR = 3_600_000

seeds = st.integers(min_value=0, max_value=2**40)
accounts = st.sampled_from(ACCOUNTS)
times = st.sampled_from([None, "past", "future"])

# situations the run must reach, so that the comparison is never vacuous
SEEN: Counter = Counter()
MUST_SEE = ("random pick among >= 3", "admitted by a pump", "pinned admitted by a pump", "busy", "unknown",
            "waiting", "full", "over the limit", "reaped", "pinned waiters failed", "canceled", "requeued at the head")


def adm(pairs) -> list[Admission]:
    return [Admission(g, a) for g, a in pairs]


def d(x):
    return x.decode() if isinstance(x, bytes) else x


class CapacityMachine(RuleBasedStateMachine):
    client = None  # set by the test function (a flushed redis.Redis)

    def __init__(self):
        super().__init__()
        self.r = type(self).client
        self.r.flushdb()
        self.cap = Capacity(self.r, PROVIDER, lease_ttl_ms=TTL, max_waiting=MAX_WAITING)
        self.model = CapacityModel(ttl_ms=TTL, max_waiting=MAX_WAITING)
        self.counter = 0
        self.pins: dict[str, str | None] = {}  # every generation issued -> its pin
        self.common_order: list[str] = []  # independent FIFO tracker of the common line
        self.over: set[str] = set()  # accounts whose maxJobs was lowered below used
        self.admitted_now: set[str] = set()  # accounts admitted to in the current step
        self.last_now = 0
        self.current = None  # the generation the current acquire is for

    # -- helpers ---------------------------------------------------------------
    def now(self) -> int:
        self.last_now = max(self.last_now, int(time.time() * 1000))
        return self.last_now

    def when(self, which) -> int | None:
        return None if which is None else (1 if which == "past" else int(time.time() * 1000) + HOUR)

    def saw(self, admissions) -> None:
        """Record admissions: independent FIFO check of the common line."""
        for a in admissions:
            g = a.generation_id
            if g in self.model.holder and g != self.current:
                SEEN["admitted by a pump"] += 1
                if self.pins.get(g):
                    SEEN["pinned admitted by a pump"] += 1
            if g in self.common_order:
                assert self.common_order[0] == g, f"{g} admitted ahead of {self.common_order[0]}"
                self.common_order.pop(0)
            self.admitted_now.add(a.account)

    def expect(self, real, model_pairs) -> None:
        assert list(real) == adm(model_pairs)
        self.saw(real)

    # -- configuration -----------------------------------------------------------
    @initialize(limits=st.lists(st.integers(1, 2), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)), seed=seeds)
    def configure_accounts(self, limits, seed):
        for a, n in zip(ACCOUNTS, limits):
            self.expect(self.cap.set_account(a, n, seed=seed), self.model.set_account(a, n, seed=seed, now=self.now()))

    @rule(a=accounts, n=st.integers(0, 3), seed=seeds)
    def set_max(self, a, n, seed):
        if self.model.used[a] > n:
            self.over.add(a)
        self.expect(self.cap.set_account(a, n, seed=seed), self.model.set_account(a, n, seed=seed, now=self.now()))

    @rule(a=accounts, op=st.sampled_from(["disable", "remove", "cooldown", "usable"]), which=times, seed=seeds)
    def account_event(self, a, op, which, seed):
        """Taking accounts out of rotation (one rule, so that it is not drawn too often)."""
        if op == "disable":
            self.cap.disable_account(a)
            self.model.disable_account(a)
        elif op == "remove":
            failed, real = self.cap.remove_account(a, seed=seed)
            m_failed, m_adm = self.model.remove_account(a, seed=seed, now=self.now())
            assert failed == m_failed
            SEEN["pinned waiters failed"] += bool(failed)
            self.expect(real, m_adm)
        elif op == "cooldown":
            until = self.when(which)
            self.expect(self.cap.set_cooldown(a, until, seed=seed),
                        self.model.set_cooldown(a, until, seed=seed, now=self.now()))
        else:
            until = self.when(which)
            self.expect(self.cap.set_usable_until(a, until, seed=seed),
                        self.model.set_usable_until(a, until, seed=seed, now=self.now()))

    @precondition(lambda self: self.model.pinned)
    @rule(data=st.data(), seed=seeds)
    def remove_account_with_waiters(self, data, seed):
        """Removing an account fails its pinned waiters (returned to the caller)."""
        a = data.draw(st.sampled_from(sorted(self.model.pinned)))
        failed, real = self.cap.remove_account(a, seed=seed)
        m_failed, m_adm = self.model.remove_account(a, seed=seed, now=self.now())
        assert failed == m_failed and failed
        SEEN["pinned waiters failed"] += 1
        self.expect(real, m_adm)

    # -- acquire ---------------------------------------------------------------
    def _acquire(self, g, pin, known, wait, seed, front=False):
        self.current = g
        if pin is None and not self.model.waiting and len(self.model.free_accounts(self.now())) >= 3:
            SEEN["random pick among >= 3"] += 1
        status, detail, pairs = self.model.acquire(g, account=pin, known=known, wait=wait, front=front, seed=seed,
                                                   now=self.now())
        SEEN[status] += 1
        if status == "unknown":
            with pytest.raises(NotFound, match=f"Account {pin} is not configured"):
                self.cap.acquire(g, account=pin, known=known, wait=wait, front=front, seed=seed)
            return status
        if status in ("busy", "full"):
            with pytest.raises(NoCapacity, match="is full" if status == "full" else "busy|configured") as info:
                self.cap.acquire(g, account=pin, known=known, wait=wait, front=front, seed=seed)
            self.expect(info.value.admitted, pairs)
            if status == "full":
                assert detail >= MAX_WAITING and info.value.status == 429 and info.value.headers["Retry-After"]
            return status
        result = self.cap.acquire(g, account=pin, known=known, wait=wait, front=front, seed=seed)
        assert result.status == status
        if status == "admitted":
            assert result.account == detail and result.position is None
        else:
            assert result.position == detail and result.account is None
            assert self.cap.position(g, pin) == detail
        self.expect(result.admitted, pairs)
        return status

    def _new(self, pin, known, wait, seed):
        self.counter += 1
        g = f"g{self.counter}"
        self.pins[g] = pin
        status = self._acquire(g, pin, known, wait, seed)
        if status == "waiting" and pin is None:
            self.common_order.append(g)

    @rule(n=st.integers(1, 3), wait=st.booleans(), seed=seeds)
    def acquire(self, n, wait, seed):
        """A burst of n new unpinned generations (seeds seed, seed+1, ...)."""
        for i in range(n):
            self._new(None, False, wait, seed + i)

    @rule(n=st.integers(1, 3), pin=st.sampled_from(ACCOUNTS + [UNKNOWN]), known=st.booleans(),
          wait=st.booleans(), seed=seeds)
    def acquire_pinned(self, n, pin, known, wait, seed):
        for i in range(n):
            self._new(pin, known, wait, seed + i)

    @precondition(lambda self: self.model.holder or self.model.waiting or self.model.pinned)
    @rule(data=st.data(), seed=seeds)
    def acquire_again(self, data, seed):
        """Idempotence: a holder stays admitted, a waiter keeps its place."""
        live = sorted(set(self.model.holder) | set(self.model.waiting)
                      | {g for line in self.model.pinned.values() for g in line})
        g = data.draw(st.sampled_from(live))
        self._acquire(g, self.pins[g], True, data.draw(st.booleans()), seed)

    @precondition(lambda self: self.model.holder)
    @rule(data=st.data(), seed=seeds)
    def requeue(self, data, seed):
        """A holder whose account left rotation before the upstream took it goes back to the
        head of its line (`Core.requeue`): release, then acquire at the front."""
        g = data.draw(st.sampled_from(sorted(self.model.holder)))
        self._release(g, seed)
        if self._acquire(g, self.pins[g], True, True, seed + 1, front=True) == "waiting":
            SEEN["requeued at the head"] += 1
            if self.pins[g] is None:
                self.common_order.insert(0, g)

    # -- leases ----------------------------------------------------------------
    @precondition(lambda self: self.model.holder)
    @rule(data=st.data(), seed=seeds)
    def release(self, data, seed):
        self._release(data.draw(st.sampled_from(sorted(self.model.holder))), seed)

    @precondition(lambda self: self.pins)
    @rule(data=st.data(), seed=seeds)
    def release_any(self, data, seed):
        """Any generation ever issued: waiting, released, failed or holding."""
        self._release(data.draw(st.sampled_from(sorted(self.pins))), seed)

    def _release(self, g, seed):
        assert self.cap.holder(g) == self.model.holder.get(g)
        _, pairs = self.model.release(g, seed=seed, now=self.now())
        self.expect(self.cap.release(g, seed=seed), pairs)
        assert self.cap.release(g, seed=seed) == []  # double release: a no-op
        assert self.cap.holder(g) is None

    @precondition(lambda self: self.pins)
    @rule(data=st.data(), expire=st.booleans())
    def renew(self, data, expire):
        g = data.draw(st.sampled_from(sorted(self.model.holder) or sorted(self.pins)))
        ttl = 0 if expire else TTL
        assert self.cap.renew(g, ttl_ms=ttl) == self.model.renew(g, ttl, now=self.now())

    @rule()
    def expired(self):
        assert set(self.cap.expired(limit=1000)) == self.model.expired(self.now())

    @rule(limit=st.sampled_from([1, 2, 100]), seed=seeds)
    def reap(self, limit, seed):
        reaped, real = self.cap.reap(limit=limit, seed=seed)
        self.expect(real, self.model.reap(reaped, limit=limit, seed=seed, now=self.now()))
        SEEN["reaped"] += len(reaped)

    @rule(seed=seeds)
    def pump(self, seed):
        self.expect(self.cap.pump(seed=seed), self.model.pump(seed=seed, now=self.now()))

    @precondition(lambda self: self.pins)
    @rule(data=st.data(), use_pin=st.booleans())
    def cancel(self, data, use_pin):
        g = data.draw(st.sampled_from(sorted(self.pins)))
        pin = self.pins[g] if use_pin else None
        canceled = self.cap.cancel_waiting(g, pin)
        assert canceled == self.model.cancel_waiting(g, pin)
        SEEN["canceled"] += canceled
        if g not in self.model.waiting and g in self.common_order:
            self.common_order.remove(g)

    @precondition(lambda self: self.model.waiting or self.model.pinned)
    @rule(data=st.data())
    def cancel_waiter(self, data):
        waiters = sorted(set(self.model.waiting) | {g for line in self.model.pinned.values() for g in line})
        g = data.draw(st.sampled_from(waiters))
        assert self.cap.cancel_waiting(g, self.pins[g]) is True
        assert self.model.cancel_waiting(g, self.pins[g]) is True
        assert self.cap.position(g, self.pins[g]) is None
        SEEN["canceled"] += 1
        if g in self.common_order:
            self.common_order.remove(g)

    # -- invariants --------------------------------------------------------------
    @invariant()
    def real_state_matches(self):
        p = self.r.pipeline(transaction=True)
        p.hgetall(keys.cap(PROVIDER)).hgetall(keys.used(PROVIDER)).hgetall(keys.holder(PROVIDER))
        p.zrange(keys.leases(PROVIDER), 0, -1).hkeys(keys.started(PROVIDER))
        p.lrange(keys.waiting(PROVIDER), 0, -1).smembers(keys.pinned_lines(PROVIDER))
        for a in ACCOUNTS + [UNKNOWN]:
            p.lrange(keys.pinned(PROVIDER, a), 0, -1)
        cap, used, holder, leases, started, waiting, lines, *pinned = p.execute()
        cap = {d(a): int(n) for a, n in cap.items()}
        used = {d(a): int(n) for a, n in used.items()}
        holder = {d(g): d(a) for g, a in holder.items()}
        pinned = {a: [d(g) for g in line] for a, line in zip(ACCOUNTS + [UNKNOWN], pinned) if line}
        waiting = [d(g) for g in waiting]

        # slots: used per account == holders on it == leases == started
        assert used == dict(Counter(holder.values()))
        assert set(map(d, leases)) == set(holder) == set(map(d, started))
        # the model agrees
        assert cap == self.model.cap
        assert holder == self.model.holder
        assert used == self.model.executing()
        # waiting lines match the model, in order; pinned_lines lists the non-empty ones
        assert waiting == self.model.waiting == self.common_order
        assert pinned == self.model.pinned_lines()
        assert {d(a) for a in lines} == set(pinned)
        # nobody both waits and holds, nobody waits twice
        queued = waiting + [g for line in pinned.values() for g in line]
        assert len(queued) == len(set(queued))
        assert not set(queued) & set(holder)
        # used <= maxJobs, except after a lowering; an account admitted to in this
        # step ends it within its limit (so nothing is admitted at or over the limit)
        for a, n in cap.items():
            if used.get(a, 0) <= n:
                self.over.discard(a)
            else:
                assert a in self.over, f"{a} runs {used[a]} > maxJobs {n} without a lowering"
                SEEN["over the limit"] += 1
        for a in self.admitted_now:
            assert a in cap and used.get(a, 0) <= cap[a]
        self.admitted_now.clear()


def test_capacity_matches_model(r):
    CapacityMachine.client = r
    SEEN.clear()
    run_state_machine_as_test(
        CapacityMachine,
        settings=settings(max_examples=200, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
    print("situations reached:", dict(SEEN))
    missing = [name for name in MUST_SEE if not SEEN[name]]
    assert not missing, f"the run never reached: {missing} (seen: {dict(SEEN)})"
