"""Priorities and tenants through the whole system: `submit(priority=, tenant=)`, real worker
processes, the sandbox upstream. The order generations reach a slot is read from their records."""

from __future__ import annotations

import time

import pytest

from dispatcher.errors import NoCapacity, ValidationError

RUNWAY = "runwayml"


@pytest.fixture
def one_slot(dispatcher, sandbox):
    res = sandbox.post("/_sandbox/users", json={"provider": RUNWAY, "email": "solo@example.com",
                                                "password": "pw-s3cret-value"})
    assert res.status_code == 201, res.text
    dispatcher.upsert_account(RUNWAY, {"email": "solo@example.com", "password": "pw-s3cret-value", "maxJobs": 1},
                              "solo@example.com")
    return dispatcher


def wait_done(d, ids, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gens = d.core.generations.many(ids)
        if all(g is not None and g.terminal for g in gens):
            return gens
        time.sleep(0.1)
    raise AssertionError("generations did not finish")


def test_priority_and_tenant_turns_decide_who_runs_next(one_slot, fleet):
    d = one_slot
    first = d.submit(RUNWAY, "gen3turbo/create", {"prompt": "first", "sandbox_duration": 1.5})
    ids = [d.submit(RUNWAY, "gen3turbo/create", {"prompt": f"bulk {i}", "sandbox_duration": 0.05},
                    tenant="bulk").id for i in range(6)]
    ids += [d.submit(RUNWAY, "gen3turbo/create", {"prompt": f"vip {i}", "sandbox_duration": 0.05},
                     tenant="vip").id for i in range(2)]
    urgent = d.submit(RUNWAY, "gen3turbo/create", {"prompt": "urgent", "sandbox_duration": 0.05}, priority=9,
                      tenant="bulk")
    assert d.get(urgent.id).priority == 9 and d.get(urgent.id).tenant == "bulk"
    assert d.get(urgent.id).to_dict()["priority"] == 9
    fleet.start(1)
    gens = wait_done(d, [first.id, urgent.id, *ids])
    assert all(g.state == "completed" for g in gens)
    order = [g.id for g in sorted(gens[1:], key=lambda g: g.admitted_at)]
    assert order[0] == urgent.id  # priority 9 before everything at 5
    vip = [order.index(i) for i in ids[6:]]
    assert max(vip) <= 4, order  # the two vip generations are not stuck behind six bulk ones


@pytest.mark.parametrize("kw", [{"priority": 10}, {"priority": True}, {"tenant": ""}, {"tenant": "a/b"}])
def test_bad_priority_or_tenant_changes_nothing(one_slot, r, snapshot, kw):
    before = snapshot(r)
    with pytest.raises(ValidationError):
        one_slot.submit(RUNWAY, "gen3turbo/create", {"prompt": "x"}, **kw)
    assert snapshot(r) == before


def test_status_views_show_waiting_and_running_per_tenant(one_slot):
    from dispatcher.ops.status import render_table
    from dispatcher.overview import collect
    from rich.console import Console

    d = one_slot
    d.submit(RUNWAY, "gen3turbo/create", {"prompt": "runs"}, tenant="alpha")
    for i in range(3):
        d.submit(RUNWAY, "gen3turbo/create", {"prompt": f"waits {i}"}, tenant="beta", priority=7)
    view = collect(d)["providers"][RUNWAY]
    assert view["lines"] == [{"priority": 7, "tenant": "beta", "waiting": 3}]
    assert view["tenants"] == {"alpha": 1}
    console = Console(record=True, width=200)
    render_table(collect(d), console)
    text = console.export_text()
    assert "priorities and tenants" in text and "beta" in text and "alpha" in text


def test_pacing_holds_at_the_upstream_and_nothing_fails(dispatcher, sandbox, fleet, api):
    """maxPerMinute 3 on an account with 5 slots: 3 of 6 generations start, the rest wait for
    the window (none fails); the sandbox, pacing the user at 3 too, counts no violation."""
    sandbox.post("/_sandbox/users", json={"provider": RUNWAY, "email": "paced@example.com", "password": "pw-1",
                                          "per_minute": 3}).raise_for_status()
    res = api.post("/v1/runwayml/accounts/paced@example.com",
                   json={"email": "paced@example.com", "password": "pw-1", "maxJobs": 5, "maxPerMinute": 3})
    assert res.status_code == 200 and res.json()["maxPerMinute"] == 3, res.text
    fleet.start(1)
    ids = [dispatcher.submit(RUNWAY, "gen3turbo/create", {"prompt": f"paced {i}", "sandbox_duration": 0.1}).id
           for i in range(6)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [g.state for g in dispatcher.core.generations.many(ids)]
        if states.count("completed") == 3:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # room for a wrong fourth start to show
    states = [g.state for g in dispatcher.core.generations.many(ids)]
    assert states.count("completed") == 3 and states.count("waiting") == 3, states
    view = api.get("/v1/runwayml/accounts/paced@example.com").json()
    assert view["pacing"]["minute"]["count"] == 3 and view["pacing"]["minute"]["freesAtUTC"], view
    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["pace_violations"] == 0 and stats["users"]["paced@example.com"]["submitted"] == 3


def test_bad_pacing_is_refused_before_any_login(api, r, snapshot):
    before = snapshot(r)
    res = api.post("/v1/runwayml/accounts/x@example.com",
                   json={"email": "x@example.com", "password": "pw", "maxJobs": 2, "maxPerDay": 0})
    assert res.status_code == 400 and "maxPerDay" in res.json()["error"]
    assert snapshot(r) == before


def _user_and_account(d, sandbox, email, max_jobs, **account):
    sandbox.post("/_sandbox/users", json={"provider": RUNWAY, "email": email, "password": "pw-1"}).raise_for_status()
    d.upsert_account(RUNWAY, {"email": email, "password": "pw-1", "maxJobs": max_jobs, **account}, email)


def test_moderation_quarantines_an_account_for_that_operation_only(dispatcher, sandbox, fleet):
    """Three moderation refusals of one operation on one account (DISPATCHER_QUARANTINE_AFTER=3)
    keep it from that operation; it keeps serving the others."""
    q = dispatcher
    _user_and_account(q, sandbox, "mod@example.com", 3)
    _user_and_account(q, sandbox, "clean@example.com", 3)
    fleet.start(1)
    bad = [q.submit(RUNWAY, "gen3turbo/create", {"prompt": f"[moderated] {i}"}, account="mod@example.com").id
           for i in range(3)]
    wait_done(q, bad)
    assert all(g.error_code == 422 for g in q.core.generations.many(bad))
    view = q.account_view(RUNWAY, "mod@example.com")
    assert set(view["quarantined"]) == {"gen3turbo/create"}, view
    # that operation now runs elsewhere; another operation still runs on the quarantined account
    again = [q.submit(RUNWAY, "gen3turbo/create", {"prompt": f"fine {i}", "sandbox_duration": 0.05}).id
             for i in range(4)]
    other = q.submit(RUNWAY, "videos/create", {"prompt": "other", "sandbox_duration": 0.05},
                     account="mod@example.com")
    gens = wait_done(q, [*again, other.id])
    assert {g.account for g in gens[:-1]} == {"clean@example.com"} and gens[-1].state == "completed"
    # wait=false while every account is held for that operation: Retry-After is the quarantine's end
    q.core.capacity(RUNWAY).quarantine("clean@example.com", "gen3turbo/create", int((time.time() + 300) * 1000))
    with pytest.raises(NoCapacity) as refused:
        q.submit(RUNWAY, "gen3turbo/create", {"prompt": "x"}, wait=False)
    assert 290 <= refused.value.retry_after <= 301
    assert refused.value.headers["Retry-After"] == str(refused.value.retry_after)


def test_retry_after_is_ten_seconds_for_full_slots_or_the_pacing_window(dispatcher, sandbox):
    d = dispatcher
    _user_and_account(d, sandbox, "w@example.com", 1)
    d.submit(RUNWAY, "gen3turbo/create", {"prompt": "takes the slot"})
    with pytest.raises(NoCapacity) as full:
        d.submit(RUNWAY, "gen3turbo/create", {"prompt": "x"}, wait=False)
    assert full.value.retry_after == 10  # the slot frees whenever the running job ends: unknown
    cap = d.core.capacity(RUNWAY)
    cap.set_pace("w@example.com", per_minute=1)  # paced from now on: the next admission fills the minute
    cap.set_account("w@example.com", 3)
    assert d.submit(RUNWAY, "gen3turbo/create", {"prompt": "fills the minute"}).status == "admitted"
    with pytest.raises(NoCapacity) as paced:
        d.submit(RUNWAY, "gen3turbo/create", {"prompt": "x"}, wait=False)
    assert 50 <= paced.value.retry_after <= 61  # a slot may free sooner, but the minute is full
