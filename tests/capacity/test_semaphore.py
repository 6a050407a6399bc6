"""Example-based tests of the capacity semaphore, one behaviour each."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
import redis

from dispatcher import keys, lua, rq_glue
from dispatcher.capacity import Admission, Capacity, semaphore
from dispatcher.capacity.prng import Minstd
from dispatcher.capacity.semaphore import SCRIPT_NAMES
from dispatcher.errors import NoCapacity, NotFound, ValidationError

P = "runway"
SCRIPTS = Path(__file__).resolve().parents[2] / "dispatcher" / "capacity" / "scripts"


@pytest.fixture
def cap(r):
    return Capacity(r, P, rng=random.Random(7))


def until(predicate, timeout=5.0):
    """Poll a condition that depends on time passing (bounded; no timing asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not reached")


def redis_ms(r) -> int:
    s, us = r.time()
    return s * 1000 + us // 1000


def test_every_script_has_a_header():
    for name in SCRIPT_NAMES:
        head = (SCRIPTS / f"{name}.lua").read_text().split("\n\n")[0]
        assert head.startswith(f"-- {name}.lua:"), name
        for word in ("KEYS", "ARGV", "Returns", "Invariant", "_pump.lua"):
            assert word in head, (name, word)
    prelude = (SCRIPTS / "_pump.lua").read_text()
    assert "KEYS" in prelude and "Invariant" in prelude


def test_every_core_script_has_a_header():
    for name in lua.CORE.names:
        head = lua.CORE.read(name).split("\n\n")[0]
        assert head.startswith(f"-- {name}.lua:"), name
        for word in ("KEYS", "ARGV", "Returns", "Invariant"):
            assert word in head, (name, word)


def test_the_loader_fills_in_rqs_key_names_once_at_load():
    for name in SCRIPT_NAMES:
        text = semaphore.SCRIPTS.source(name)
        assert "{{" not in text and text.startswith(semaphore.SCRIPTS.text("_pump")), name
    prelude = semaphore.SCRIPTS.text("_pump")
    for value in rq_glue.LUA_NAMES.values():
        assert f"'{value}'" in prelude
    assert "'rq:job:'" in prelude and "'rq:deferred:'" in prelude  # RQ's names today, as the Lua needs them
    with pytest.raises(RuntimeError, match="NOPE"):
        lua.fill("local x = '{{NOPE}}'", rq_glue.LUA_NAMES)
    with pytest.raises(RuntimeError, match="cannot sit in a Lua string"):
        lua.fill("local x = '{{Q}}'", {"Q": "it's"})


def test_admits_until_full_then_queues_fifo(cap):
    cap.set_account("a@x", 1)
    cap.set_account("b@x", 2)
    got = [cap.acquire(f"g{i}") for i in range(5)]
    assert [x.status for x in got] == ["admitted"] * 3 + ["waiting"] * 2
    assert [x.position for x in got[3:]] == [1, 2]
    assert sorted(x.account for x in got[:3]) == ["a@x", "b@x", "b@x"]
    assert got[0].admitted == (Admission("g0", got[0].account),)
    assert cap.position("g4") == 2
    # releasing admits the head of the line, on the account that freed up
    first = cap.release("g0")
    assert first == [Admission("g3", got[0].account)]
    assert cap.holder("g3") == got[0].account
    assert cap.position("g4") == 1
    snap = cap.snapshot()
    assert snap["waiting"] == 1
    assert {a: v["executing"] for a, v in snap["accounts"].items()} == {"a@x": 1, "b@x": 2}


def test_release_is_idempotent_and_used_never_goes_negative(cap, r):
    cap.set_account("a", 2)
    cap.acquire("g1")
    assert cap.release("g1") == []
    assert cap.release("g1") == []
    assert cap.release("never") == []
    assert r.hgetall(keys.used(P)) == {}
    assert cap.snapshot()["accounts"]["a"]["executing"] == 0


def test_acquire_is_idempotent(cap):
    cap.set_account("a", 1)
    first = cap.acquire("g1")
    again = cap.acquire("g1")
    assert again.status == "admitted" and again.account == first.account and again.admitted == ()
    assert cap.acquire("g2").position == 1
    assert cap.acquire("g2").position == 1
    assert cap.snapshot()["waiting"] == 1
    assert cap.snapshot()["accounts"]["a"]["executing"] == 1


def test_no_wait_refuses_with_useapi_style_message(cap, r):
    cap.set_account("a@x", 3)
    cap.set_account("b@x", 5)
    for i in range(8):
        cap.acquire(f"g{i}")
    before = r.dump(keys.holder(P)), r.llen(keys.waiting(P))
    with pytest.raises(NoCapacity) as info:
        cap.acquire("late", wait=False)
    err = info.value
    assert err.message == "All accounts are busy: a@x 3/3, b@x 5/5"
    assert err.accounts == {
        "a@x": {"maxJobs": 3, "executing": 3, "available": 0},
        "b@x": {"maxJobs": 5, "executing": 5, "available": 0},
    }
    assert err.status == 429 and err.retry_after > 0 and err.headers["Retry-After"]
    assert err.admitted == ()
    assert (r.dump(keys.holder(P)), r.llen(keys.waiting(P))) == before  # nothing changed
    with pytest.raises(NoCapacity, match=r"^Account a@x is busy: 3/3$"):
        cap.acquire("late", account="a@x", wait=False)


def test_no_wait_is_refused_while_others_wait(cap):
    cap.set_account("a", 1)
    cap.acquire("g1")
    cap.acquire("g2")
    cap.release("g1")  # admits g2
    assert cap.holder("g2") == "a"
    with pytest.raises(NoCapacity):
        cap.acquire("g3", wait=False)


def test_pinned_unknown_account_is_not_found(cap):
    cap.set_account("a", 1)
    with pytest.raises(NotFound, match="^Account ghost is not configured$"):
        cap.acquire("g1", account="ghost")
    assert cap.snapshot()["pinned"] == {}
    # known (exists but flagged): the pinned job waits
    assert cap.acquire("g1", account="ghost", known=True).status == "waiting"
    # a pinned line exists now: later pins wait too, known or not
    assert cap.acquire("g2", account="ghost").position == 2


@pytest.mark.parametrize("pin", [None, "a"])
def test_a_missing_required_key_refuses_whole(cap, r, snapshot, pin):
    """`require` (the account's record at submit): checked before anything, so a submission
    for a missing account never enters a line that a later account could pump."""
    redis_snapshot = snapshot
    cap.set_account("a", 1)
    cap.acquire("g0")  # takes the slot: the next one would wait
    before = redis_snapshot(r)
    missing = keys.account(cap.provider, "nobody")
    with pytest.raises(NotFound):
        cap.acquire("g1", account=pin, known=pin is not None, require=missing)
    assert redis_snapshot(r) == before
    r.hset(missing, "id", "nobody")
    assert cap.acquire("g1", account=pin, known=pin is not None, require=missing).status == "waiting"


def test_require_must_share_the_providers_hash_tag(cap):
    with pytest.raises(ValidationError, match="same hash tag"):
        cap.acquire("g1", require="dsp:{other}:accounts")


def test_pinned_lines_are_served_before_the_common_line(cap):
    cap.set_account("a", 1)
    cap.set_account("b", 1)
    cap.acquire("r1", account="a")
    cap.acquire("r2", account="b")
    assert cap.acquire("common").position == 1
    assert cap.acquire("pin-a", account="a").position == 1
    assert cap.snapshot()["pinned"] == {"a": 1}
    assert cap.release("r1") == [Admission("pin-a", "a")]  # the pinned waiter goes first
    assert cap.snapshot()["pinned"] == {}
    assert cap.release("r2") == [Admission("common", "b")]


def test_pinned_acquire_does_not_jump_its_line(cap):
    cap.set_account("a", 1)
    cap.acquire("r1", account="a")
    cap.acquire("p1", account="a")
    cap.set_cooldown("a", redis_ms(cap.client) + 3_600_000)
    cap.release("r1")  # room on a, but a is cooling down: p1 keeps waiting
    assert cap.holder("p1") is None
    assert cap.set_cooldown("a", None) == [Admission("p1", "a")]
    assert cap.holder("p1") == "a"


def test_disable_keeps_pinned_line_and_enable_serves_it(cap):
    cap.set_account("a", 1)
    cap.acquire("r1", account="a")
    cap.acquire("p1", account="a")
    cap.disable_account("a")
    cap.release("r1")
    assert cap.holder("p1") is None and cap.position("p1", "a") == 1
    assert cap.acquire("p2", account="a", known=True).position == 2
    assert cap.set_account("a", 1) == [Admission("p1", "a")]


def test_remove_fails_pinned_waiters_and_forgets_the_account(cap, r):
    cap.set_account("a", 1)
    cap.set_account("b", 1)
    cap.acquire("r1", account="a")
    cap.acquire("p1", account="a")
    cap.acquire("p2", account="a")
    cap.set_cooldown("a", 10**14)
    failed, admitted = cap.remove_account("a")
    assert failed == ["p1", "p2"] and admitted == []
    assert not r.exists(keys.pinned(P, "a"))
    assert not r.hexists(keys.cooldown(P), "a")
    # its running lease stays until released; then "a" disappears from used
    assert cap.holder("r1") == "a"
    assert cap.snapshot()["accounts"]["a"]["executing"] == 1
    assert cap.snapshot()["accounts"]["a"]["eligible"] is False
    cap.release("r1")
    assert "a" not in cap.snapshot()["accounts"]
    assert not r.hexists(keys.used(P), "a")
    with pytest.raises(NotFound):
        cap.acquire("p3", account="a")
    assert cap.acquire("x").account == "b"


def test_lowering_max_jobs_keeps_leases_and_admits_below_the_new_limit(cap):
    cap.set_account("a", 3)
    for i in range(3):
        cap.acquire(f"g{i}")
    cap.set_account("a", 1)
    assert cap.snapshot()["accounts"]["a"] == {
        "maxJobs": 1, "executing": 3, "available": 0, "eligible": True,
        "cooldown_until": None, "usable_until": None,
    }
    assert cap.acquire("w").status == "waiting"
    assert cap.release("g0") == []
    assert cap.release("g1") == []  # executing 1 == maxJobs 1: still no room
    assert cap.release("g2") == [Admission("w", "a")]
    assert cap.set_account("a", 2) == []


def test_raising_max_jobs_admits_waiters(cap):
    cap.set_account("a", 1)
    for i in range(4):
        cap.acquire(f"g{i}")
    assert cap.set_account("a", 3) == [Admission("g1", "a"), Admission("g2", "a")]


def test_cooldown_ends_without_an_event(cap):
    cap.set_account("a", 1)
    cap.set_cooldown("a", redis_ms(cap.client) + 40)
    assert cap.acquire("g1").status == "waiting"
    assert cap.snapshot()["accounts"]["a"]["eligible"] is False
    # no event fires when the cooldown ends: the next call of any script sees it
    until(lambda: cap.pump() or cap.holder("g1"))
    assert cap.holder("g1") == "a"


def test_usable_until_takes_an_account_out_of_rotation_in_time(cap):
    cap.set_account("a", 5)
    cap.set_account("b", 5)
    cap.set_usable_until("a", redis_ms(cap.client) + 30)
    until(lambda: not cap.snapshot()["accounts"]["a"]["eligible"])
    assert {cap.acquire(f"g{i}").account for i in range(5)} == {"b"}
    assert cap.acquire("g5").status == "waiting"
    assert cap.set_usable_until("a", None) == [Admission("g5", "a")]  # token refreshed: room again
    assert cap.snapshot()["accounts"]["a"]["usable_until"] is None


def test_leases_expire_for_real_and_reap_pumps(r):
    cap = Capacity(r, P, lease_ttl_ms=1)
    cap.set_account("a", 1)
    cap.acquire("g1")
    assert cap.acquire("g2", seed=1).status == "waiting"
    until(lambda: cap.expired())
    assert cap.expired() == ["g1"]
    assert cap.holder("g1") == "a"  # expired() changes nothing
    assert cap.renew("g1", ttl_ms=60_000) is True  # resumed by the generations layer
    assert cap.expired() == []
    assert cap.renew("g1", ttl_ms=0) is True  # deadline = now: expired at once
    reaped, admitted = cap.reap()
    assert reaped == ["g1"] and admitted == [Admission("g2", "a")]
    until(lambda: cap.reap()[0] == ["g2"])  # g2's 1 ms lease runs out in turn
    assert cap.snapshot()["accounts"]["a"]["executing"] == 0


def test_reap_respects_limit(r):
    cap = Capacity(r, P, lease_ttl_ms=60_000)
    cap.set_account("a", 10)
    for i in range(5):
        cap.acquire(f"g{i}")
        cap.renew(f"g{i}", ttl_ms=-1000 + i)
    reaped, _ = cap.reap(limit=2)
    assert reaped == ["g0", "g1"]  # earliest deadline first
    assert sorted(cap.expired(limit=10)) == ["g2", "g3", "g4"]


def test_renew_without_a_lease_is_false(cap):
    assert cap.renew("nobody") is False
    assert cap.running() == []


def test_running_and_snapshot_shapes(cap):
    cap.set_account("a", 2)
    cap.set_account("b", 0)
    cap.acquire("g1")
    cap.acquire("g2")
    rows = cap.running()
    assert [row["generation_id"] for row in rows] == ["g1", "g2"]
    assert all(row["account"] == "a" and row["deadline_ms"] - row["started_ms"] == 30_000 for row in rows)
    snap = cap.snapshot()
    assert snap == {
        "accounts": {
            "a": {"maxJobs": 2, "executing": 2, "available": 0, "eligible": True,
                  "cooldown_until": None, "usable_until": None},
            "b": {"maxJobs": 0, "executing": 0, "available": 0, "eligible": True,
                  "cooldown_until": None, "usable_until": None},
        },
        "waiting": 0,
        "pinned": {},
        "lines": {},
        "tenants": {},
    }


def test_cancel_waiting(cap):
    cap.set_account("a", 1)
    cap.acquire("g1")
    cap.acquire("g2")
    cap.acquire("p1", account="a")
    assert cap.cancel_waiting("g2") is True
    assert cap.cancel_waiting("g2") is False
    assert cap.cancel_waiting("p1") is False  # pinned: needs its account
    assert cap.cancel_waiting("p1", "a") is True
    assert cap.cancel_waiting("g1") is False  # holds a lease: not waiting
    assert cap.snapshot()["pinned"] == {} and cap.snapshot()["waiting"] == 0
    assert cap.release("g1") == []


def test_script_choice_matches_the_python_twin(cap):
    """Lua's MINSTD and pick() agree with prng.Minstd for many seeds."""
    names = ["a", "b", "c", "d", "e"]
    for a in names:
        cap.set_account(a, 1000)
    for seed in list(range(50)) + [2**31 - 2, 2**31 - 1, 2**31, 2**62 + 12345]:
        got = cap.acquire(f"s{seed}", seed=seed).account
        assert got == names[Minstd(seed).pick(len(names))], seed


def test_decoded_client_and_script_flush(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    cap = Capacity(client, P)
    cap.set_account("a", 1)
    client.script_flush()  # scripts reload transparently (NOSCRIPT -> SCRIPT LOAD)
    assert cap.acquire("g1").account == "a"
    assert cap.snapshot()["accounts"]["a"]["executing"] == 1
    assert cap.running()[0]["generation_id"] == "g1"
    client.close()


def test_validation(cap):
    with pytest.raises(ValidationError):
        cap.set_account("a", -1)
    with pytest.raises(ValidationError):
        cap.set_account("a", 1.5)
    with pytest.raises(ValidationError):
        cap.acquire("")
    with pytest.raises(ValidationError):
        cap.set_cooldown("a", "soon")
    with pytest.raises(ValidationError):
        Capacity(cap.client, P, lease_ttl_ms=0)


def test_providers_are_isolated(r):
    one, two = Capacity(r, "one"), Capacity(r, "two")
    one.set_account("a", 1)
    assert one.acquire("g").status == "admitted"
    with pytest.raises(NoCapacity, match=re.escape("No account of two is configured")):
        two.acquire("g", wait=False)
    assert all(k.decode().startswith(("dsp:{one}:", "dsp:{two}:")) for k in r.keys("*"))
