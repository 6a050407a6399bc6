"""Priorities and tenants through the whole system: `submit(priority=, tenant=)`, real worker
processes, the sandbox upstream. The order generations reach a slot is read from their records."""

from __future__ import annotations

import time

import pytest

from dispatcher.errors import ValidationError

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
