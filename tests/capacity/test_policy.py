"""Priorities, aging and tenants in the capacity scripts, on a real Redis.

Aging is made real without waiting: a waiter's `enq` time (when it joined its line) is moved
back, which is what minutes of waiting would have done."""

from __future__ import annotations

import pytest

from dispatcher import keys
from dispatcher.capacity import Capacity
from dispatcher.capacity.names import parked_lines
from dispatcher.errors import ValidationError

P = "policy"
MINUTE = 60_000


@pytest.fixture
def cap(r):
    return Capacity(r, P, lease_ttl_ms=600_000)


def admitted_by_releases(cap, holder: str, n: int) -> list[str]:
    """Release the one slot n times, each time to whoever the release admits; their ids in order."""
    order = []
    for _ in range(n):
        got = cap.release(holder)
        if not got:
            break
        holder = got[0].generation_id
        order.append(holder)
    return order


def test_higher_priority_is_admitted_first(cap):
    cap.set_account("a", 1)
    assert cap.acquire("running").status == "admitted"
    cap.acquire("low", priority=1)
    cap.acquire("mid")
    for i in range(3):
        cap.acquire(f"high{i}", priority=9)
    assert admitted_by_releases(cap, "running", 5) == ["high0", "high1", "high2", "mid", "low"]


def test_aging_bounds_the_wait_of_low_priority(cap, r):
    """With one level per minute, a priority-0 waiter reaches priority 9 after 9 minutes, and then,
    older than any fresh priority-9 work, goes first, however much of it keeps coming: the bound
    is (9 - p) levels of aging."""
    cap.set_policy(aging_ms=MINUTE)
    cap.set_account("a", 1)
    cap.acquire("running")
    cap.acquire("low", priority=0)
    now = int(r.time()[0]) * 1000
    holder, order = "running", []
    for step in range(12):
        cap.acquire(f"urgent{step}", priority=9)  # a constant stream of top-priority work
        r.hset(keys.enqueued(P), "low", now - int((step + 0.5) * MINUTE))  # "low" has waited step + ½ minutes
        holder = cap.release(holder)[0].generation_id
        order.append(holder)
        if holder == "low":
            break
    assert order[-1] == "low" and len(order) == 10, order  # admitted at 9½ minutes, not before 8½


def test_one_tenant_burst_does_not_stand_before_another(cap):
    cap.set_account("a", 1)
    cap.acquire("a-0", tenant="alpha")
    for i in range(1, 1000):
        cap.acquire(f"a-{i}", tenant="alpha")
    for i in range(5):
        cap.acquire(f"b-{i}", tenant="beta")
    nxt = admitted_by_releases(cap, "a-0", 10)
    assert {f"b-{i}" for i in range(5)} <= set(nxt), nxt


def test_weights_share_admissions(cap):
    cap.set_policy(weights={"gold": 2})
    cap.set_account("a", 1)
    cap.acquire("first", tenant="gold")
    for i in range(30):
        cap.acquire(f"g-{i}", tenant="gold")
        cap.acquire(f"s-{i}", tenant="silver")
    nxt = admitted_by_releases(cap, "first", 30)
    gold = sum(1 for g in nxt if g.startswith("g-"))
    assert 19 <= gold <= 21, nxt  # two for one


def test_a_tenant_cap_holds(cap):
    cap.set_policy(caps={"small": 2})
    cap.set_account("a", 5)
    results = [cap.acquire(f"s-{i}", tenant="small").status for i in range(4)]
    assert results == ["admitted", "admitted", "waiting", "waiting"]
    assert cap.acquire("other", tenant="big").status == "admitted"  # room left, another tenant
    assert cap.snapshot()["tenants"] == {"small": 2, "big": 1}
    got = cap.release("s-0")
    assert [a.generation_id for a in got] == ["s-2"]
    assert cap.snapshot()["tenants"]["small"] == 2
    cap.set_policy(caps={"small": 3})  # a raised cap admits at once
    assert cap.snapshot()["tenants"]["small"] == 3


def test_a_capped_tenants_backlog_is_parked_until_it_has_room(cap, r):
    """Lines of a tenant at its cap are parked (left out of every pump's scan) and come back when
    one of its slots frees, when the policy changes, or at the periodic pump after a hand edit."""
    cap.set_policy(caps={"small": 1})
    cap.set_account("a", 10)
    assert cap.acquire("s-0", tenant="small").status == "admitted"
    for g, priority in (("s-1", 9), ("s-2", 1), ("s-3", 9)):
        assert cap.acquire(g, tenant="small", priority=priority).status == "waiting"
    assert cap.acquire("x", tenant="other").status == "admitted"  # its pump parks small's lines

    def parked():
        return {n.decode() for n in r.smembers(parked_lines(P))}

    assert parked() == {"9:small", "1:small"}
    assert [a.generation_id for a in cap.release("s-0")] == ["s-1"]  # unparked, served, parked again
    assert parked() == {"9:small", "1:small"}
    r.hdel(keys.policy(P), "c:small")  # by hand: no script saw it
    assert [a.generation_id for a in cap.pump()] == ["s-3", "s-2"]
    assert parked() == set() and cap.snapshot()["lines"] == {}
    cap.set_policy(caps={"small": 0})
    cap.acquire("s-4", tenant="small")
    cap.acquire("y")
    assert parked() == {"5:small"}
    assert cap.cancel_waiting("s-4", tenant="small") is True and parked() == set()
    cap.acquire("s-5", tenant="small")
    cap.acquire("z")
    assert [a.generation_id for a in cap.set_policy(caps={"small": 4})] == ["s-5"]
    assert parked() == set()


def test_cancel_and_snapshot_know_the_lines(cap):
    cap.set_account("a", 1)
    cap.acquire("run")
    cap.acquire("w1", priority=7, tenant="t")
    cap.acquire("w2")
    snap = cap.snapshot()
    assert snap["waiting"] == 2 and snap["lines"] == {"7:t": 1, "5:": 1}
    assert cap.position("w1", priority=7, tenant="t") == 1
    assert cap.cancel_waiting("w1", priority=7, tenant="t") is True
    assert cap.snapshot()["lines"] == {"5:": 1}


@pytest.mark.parametrize("kw", [{"priority": 10}, {"priority": -1}, {"priority": "5"}, {"tenant": "a b"},
                                {"tenant": "x" * 65}, {"tenant": "~vt"}])
def test_bad_priority_or_tenant_is_refused(cap, r, kw):
    cap.set_account("a", 1)
    before = sorted(r.keys("*"))
    with pytest.raises(ValidationError):
        cap.acquire("g", **kw)
    assert sorted(r.keys("*")) == before


def shift_starts(r, account: str, ms: int) -> None:
    """Move an account's recorded admissions `ms` into the past (time passing for its windows)."""
    key = keys.starts(P, account)
    for g, t in r.zrange(key, 0, -1, withscores=True):
        r.zadd(key, {g: t - ms})


def test_pace_per_minute_holds_and_the_window_moves(cap, r):
    cap.set_account("a", 10)
    cap.set_pace("a", per_minute=2)
    assert [cap.acquire(f"g{i}").status for i in range(3)] == ["admitted", "admitted", "waiting"]
    cap.release("g0")  # a free slot does not help: the minute is full
    assert cap.snapshot()["waiting"] == 1
    view = cap.pace("a")["minute"]
    assert view["limit"] == 2 and view["count"] == 2 and view["frees_at_ms"] is not None
    shift_starts(r, "a", 61_000)  # a minute later
    assert [x.generation_id for x in cap.pump()] == ["g2"]
    assert cap.pace("a")["minute"]["count"] == 1


def test_pace_per_day_and_a_paced_account_leaves_room_to_others(cap, r):
    cap.set_account("a", 5)
    cap.set_account("b", 5)
    cap.set_pace("a", per_day=1)
    admitted = [cap.acquire(f"g{i}").account for i in range(6)]
    assert admitted.count("a") == 1 and admitted.count("b") == 5  # no generation fails for the window
    shift_starts(r, "a", 3_600_000)
    assert cap.acquire("late").status == "waiting"  # an hour is not a day
    shift_starts(r, "a", 86_400_000)
    assert cap.pace("a")["day"]["count"] == 0
    assert [x.account for x in cap.pump()] == ["a"]
    cap.set_pace("a")  # no limit any more: its starts are forgotten
    assert cap.pace("a") == {"minute": {"limit": None, "count": 0, "frees_at_ms": None},
                             "day": {"limit": None, "count": 0, "frees_at_ms": None}}


def test_bad_pace_is_refused(cap):
    cap.set_account("a", 1)
    for kw in ({"per_minute": 0}, {"per_day": -1}, {"per_minute": 1.5}):
        with pytest.raises(ValidationError):
            cap.set_pace("a", **kw)


def test_quarantine_keeps_an_account_from_one_operation_only(cap, r):
    cap.set_account("a", 2)
    cap.set_account("b", 2)
    later = int(r.time()[0]) * 1000 + 3_600_000
    cap.quarantine("a", "video", later)
    videos = [cap.acquire(f"v{i}", operation="video").account for i in range(3)]
    assert videos[:2] == ["b", "b"] and cap.snapshot()["waiting"] == 1  # a takes no video, b is full
    images = [cap.acquire(f"i{i}", operation="image").account for i in range(2)]
    assert images == ["a", "a"]  # the other operation still runs on a
    assert cap.quarantines() == {"a": {"video": later}}
    cap.release("i0")
    assert cap.snapshot()["waiting"] == 1  # the video waiter does not take a's free slot
    assert [x.generation_id for x in cap.quarantine("a", "video", None)] == ["v2"]  # recovery
    assert cap.quarantines() == {}
