"""Stateful property test of priorities, aging and tenants: the Lua scripts against the
reference model, step by step, with the same seeds (as test_stateful.py does for the rest).

A policy with a weighted tenant, a capped tenant and aging (one level per minute) is set first;
generations come with random priorities and tenants, pinned or not. Aging is made real by moving
a waiter's `enq` time back by whole minutes plus a half (never near a level's boundary), in Redis
and in the model alike; a newly queued waiter's `enq` is copied from Redis into the model.
"""

from __future__ import annotations

import time
from collections import Counter

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test

from dispatcher import keys
from dispatcher.capacity import Admission, Capacity, CapacityModel
from dispatcher.capacity.names import parked_lines
from dispatcher.errors import NoCapacity

PROVIDER = "policy-stateful"
ACCOUNTS = ["a0", "a1"]
TENANTS = ["", "gold", "gold", "capped"]
OPERATIONS = ["", "video", "image"]
POLICY = {"aging_ms": 60_000, "weights": {"gold": 3}, "caps": {"capped": 1}}
TTL = 600_000
SEEN: Counter = Counter()
MUST_SEE = ("waiting", "admitted by a pump", "aged", "capped tenant waits", "busy", "windows moved", "paced out", "quarantined",
            "quarantine blocks a head", "parked", "policy changed")

seeds = st.integers(min_value=0, max_value=2**40)


def d(x):
    return x.decode() if isinstance(x, bytes) else x


class PolicyMachine(RuleBasedStateMachine):
    client = None

    def __init__(self):
        super().__init__()
        self.r = type(self).client
        self.r.flushdb()
        self.cap = Capacity(self.r, PROVIDER, lease_ttl_ms=TTL)
        self.model = CapacityModel(ttl_ms=TTL)
        self.issued: dict[str, tuple] = {}  # g -> (pin, priority, tenant)
        self.n = 0
        self.last_now = 0
        self.max_cap = POLICY["caps"]["capped"]

    def now(self) -> int:
        self.last_now = max(self.last_now, int(time.time() * 1000))
        return self.last_now

    def expect(self, real, pairs):
        assert list(real) == [Admission(g, a) for g, a in pairs]
        SEEN["admitted by a pump"] += len(pairs)
        for g, a in pairs:  # the model's clock is ours, a few ms off Redis TIME: take Redis' admission time
            if g in self.model.starts.get(a, {}):
                self.model.starts[a][g] = int(self.r.zscore(keys.starts(PROVIDER, a), g))

    @initialize(limits=st.lists(st.integers(1, 2), min_size=2, max_size=2), seed=seeds)
    def setup(self, limits, seed):
        self.expect(self.cap.set_policy(**POLICY, seed=seed), self.model.set_policy(**POLICY, seed=seed, now=self.now()))
        for a, n in zip(ACCOUNTS, limits):
            self.expect(self.cap.set_account(a, n, seed=seed), self.model.set_account(a, n, seed=seed, now=self.now()))

    @rule(priority=st.sampled_from([5, 5, 5, 0, 9]), tenant=st.sampled_from(TENANTS),
          pin=st.sampled_from([None, None, "a0"]), wait=st.booleans(), seed=seeds)
    def acquire(self, priority, tenant, pin, wait, seed):
        self._acquire(priority, tenant, pin, wait, seed)

    @rule(op=st.sampled_from(OPERATIONS[1:]), pin=st.sampled_from([None, "a0"]), seed=seeds)
    def acquire_op(self, op, pin, seed):
        self._acquire(5, "", pin, True, seed, op)

    @rule(a=st.sampled_from(ACCOUNTS), op=st.sampled_from(OPERATIONS[1:]),
          until=st.sampled_from([None, "past", "future"]), seed=seeds)
    def quarantine(self, a, op, until, seed):
        ms = None if until is None else (1 if until == "past" else int(time.time() * 1000) + 3_600_000)
        self.expect(self.cap.quarantine(a, op, ms, seed=seed), self.model.quarantine(a, op, ms, seed=seed, now=self.now()))
        SEEN["quarantined"] += until == "future"

    @rule(tenant=st.sampled_from(TENANTS), n=st.integers(2, 4), seed=seeds)
    def backlog(self, tenant, n, seed):
        """Several waiters of one tenant at the default priority: tenants' turns then decide."""
        for i in range(n):
            self._acquire(5, tenant, None, True, seed + i)

    @precondition(lambda self: len(self.model.holder) >= 2)
    @rule(data=st.data(), seed=seeds)
    def release_all(self, data, seed):
        """Every slot freed one after another: a run of choices between the lines."""
        for i, g in enumerate(sorted(self.model.holder)):
            _, pairs = self.model.release(g, seed=seed + i, now=self.now())
            self.expect(self.cap.release(g, seed=seed + i), pairs)

    def _acquire(self, priority, tenant, pin, wait, seed, op=""):
        self.n += 1
        g = f"g{self.n}"
        self.issued[g] = (pin, priority, tenant)
        kw = dict(account=pin, wait=wait, priority=priority, tenant=tenant or None, operation=op or None, seed=seed)
        status, detail, pairs = self.model.acquire(g, **kw, now=self.now())
        SEEN[status] += 1
        if status == "busy":
            try:
                self.cap.acquire(g, **kw)
            except NoCapacity as refused:
                self.expect(refused.admitted, pairs)
            else:
                raise AssertionError("the scripts admitted or queued what the model refused")
            return
        result = self.cap.acquire(g, **kw)
        assert (result.status, result.account if status == "admitted" else result.position) == (status, detail)
        self.expect(result.admitted, pairs)
        if status == "waiting":
            self.model.enq[g] = int(self.r.hget(keys.enqueued(PROVIDER), g))
            if tenant == "capped" and self.model.trun["capped"] >= 1:
                SEEN["capped tenant waits"] += 1

    @precondition(lambda self: self.model.holder)
    @rule(data=st.data(), seed=seeds)
    def release(self, data, seed):
        g = data.draw(st.sampled_from(sorted(self.model.holder)))
        _, pairs = self.model.release(g, seed=seed, now=self.now())
        self.expect(self.cap.release(g, seed=seed), pairs)

    @precondition(lambda self: self.model.enq)
    @rule(data=st.data(), minutes=st.integers(1, 12))
    def age(self, data, minutes):
        g = data.draw(st.sampled_from(sorted(self.model.enq)))
        t = self.now() - minutes * 60_000 - 30_000
        self.r.hset(keys.enqueued(PROVIDER), g, t)
        self.model.enq[g] = t
        SEEN["aged"] += 1

    @precondition(lambda self: self.model.enq)
    @rule(data=st.data())
    def cancel(self, data):
        g = data.draw(st.sampled_from(sorted(self.model.enq)))
        pin, priority, tenant = self.issued[g]
        kw = dict(priority=priority, tenant=tenant or None)
        assert self.cap.cancel_waiting(g, pin, **kw) == self.model.cancel_waiting(g, pin, **kw) is True

    @rule(a=st.sampled_from(ACCOUNTS), n=st.integers(0, 3), seed=seeds)
    def set_max(self, a, n, seed):
        self.expect(self.cap.set_account(a, n, seed=seed), self.model.set_account(a, n, seed=seed, now=self.now()))

    @rule(a=st.sampled_from(ACCOUNTS), per_minute=st.sampled_from([None, 1, 2]), per_day=st.sampled_from([None, 3]),
          seed=seeds)
    def pace(self, a, per_minute, per_day, seed):
        self.expect(self.cap.set_pace(a, per_minute, per_day, seed=seed),
                    self.model.set_pace(a, per_minute, per_day, seed=seed, now=self.now()))

    @precondition(lambda self: any(self.model.starts.values()))
    @rule(data=st.data(), span=st.sampled_from([61_000, 86_401_000]))
    def time_passes_for(self, data, span):
        """An account's recorded admissions move `span` into the past, in Redis and the model."""
        a = data.draw(st.sampled_from(sorted(a for a, s in self.model.starts.items() if s)))
        key = keys.starts(PROVIDER, a)
        for g, t in self.r.zrange(key, 0, -1, withscores=True):
            self.r.zadd(key, {g: int(t) - span})
        self.model.starts[a] = {g: t - span for g, t in self.model.starts[a].items()}
        SEEN["windows moved"] += 1

    @rule(seed=seeds)
    def pump(self, seed):
        self.expect(self.cap.pump(seed=seed), self.model.pump(seed=seed, now=self.now()))

    @rule(capped=st.integers(0, 2), gold=st.sampled_from([None, 1]), seed=seeds)
    def change_policy(self, capped, gold, seed):
        """Caps move: a raised cap unparks its tenant's lines (and may admit at once), a lowered one parks."""
        caps = {"capped": capped, **({"gold": gold} if gold is not None else {})}
        policy = {**POLICY, "caps": caps}
        self.max_cap = max(self.max_cap, capped)
        self.expect(self.cap.set_policy(**policy, seed=seed), self.model.set_policy(**policy, seed=seed, now=self.now()))
        SEEN["policy changed"] += 1

    @invariant()
    def same_state(self):
        holder = {d(g): d(a) for g, a in self.r.hgetall(keys.holder(PROVIDER)).items()}
        assert holder == self.model.holder
        snap = self.cap.snapshot()
        model_lines = {(n or "5:"): len(x) for n, x in self.model.lines.items() if x}
        if self.model.waiting:
            model_lines["5:"] = len(self.model.waiting)
        assert snap["lines"] == model_lines
        for name in model_lines:
            key = keys.waiting(PROVIDER) if name == "5:" else keys.line(PROVIDER, name)
            assert [d(g) for g in self.r.lrange(key, 0, -1)] == (self.model.waiting if name == "5:"
                                                                 else self.model.lines[name])
        assert snap["tenants"] == {t: n for t, n in self.model.trun.items() if n}
        assert snap["tenants"].get("capped", 0) <= self.max_cap  # a lowered cap keeps running slots
        # parked sub-lines (scripts/_pump.lua, unpark) are non-empty lines of tenants at their cap
        parked = {d(n) for n in self.r.smembers(parked_lines(PROVIDER))}
        assert parked <= set(model_lines)
        for name in parked:
            tenant = name.split(":", 1)[1]
            assert tenant in self.model.caps and self.model.trun[tenant] >= self.model.caps[tenant], name
            SEEN["parked"] += 1
        gten = {d(g): d(t) for g, t in self.r.hgetall(keys.generation_tenant(PROVIDER)).items()}
        assert gten == self.model.gten
        gop = {d(g): d(o) for g, o in self.r.hgetall(keys.generation_operation(PROVIDER)).items()}
        assert gop == self.model.ops
        if any(self.model.quarantined(a, op, self.now()) for a in ACCOUNTS for op in OPERATIONS[1:]) and \
                any(self.model.ops.get(line[0]) for line in [self.model.waiting, *self.model.lines.values()] if line):
            SEEN["quarantine blocks a head"] += 1
        for a in ACCOUNTS:
            real = {d(g): int(t) for g, t in self.r.zrange(keys.starts(PROVIDER, a), 0, -1, withscores=True)}
            assert real == self.model.starts.get(a, {})
            if self.model.paced_out(a, self.now()):
                SEEN["paced out"] += 1


def test_policy_matches_model(r):
    PolicyMachine.client = r
    SEEN.clear()
    run_state_machine_as_test(PolicyMachine, settings=settings(
        max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]))
    print("situations reached:", dict(SEEN))
    missing = [name for name in MUST_SEE if not SEEN[name]]
    assert not missing, f"the run never reached: {missing}"
