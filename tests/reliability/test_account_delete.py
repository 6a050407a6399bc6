"""Deleting an account never strands its generations, and a cancel always ends one (issue 15, finding 4).

Before: admitted and submitted generations of a deleted account failed `ensure_token` on every
step, were resumed forever, kept the account's `used` count, and could not be cancelled
(404 "Configuration not found").
"""

from __future__ import annotations

import time

from dispatcher import keys
from dispatcher.generations import ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED


def _wait_state(d, generation_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while d.get(generation_id).state != state:
        assert time.monotonic() < deadline, f"{generation_id} still {d.get(generation_id).state}, not {state}"
        time.sleep(0.1)


def test_deleting_an_account_ends_what_it_runs_and_frees_its_slots(rig, api, fleet):
    d, sandbox = rig.d, rig.sandbox
    [doomed] = rig.add_accounts(1, 3, duration=60)
    fleet.start(1)
    upstream = d.submit("runwayml", "gen3a_turbo", {"promptText": "accepted upstream"}).id
    _wait_state(d, upstream, SUBMITTED)
    fleet.stop()
    pinned = d.submit("runwayml", "gen3a_turbo", {"promptText": "pinned"}, account=doomed).id
    free = d.submit("runwayml", "gen3a_turbo", {"promptText": "unpinned", "sandbox_duration": 0.3}).id
    assert d.get(pinned).state == ADMITTED and d.get(free).state == ADMITTED  # no worker runs their start
    [other] = rig.add_accounts(1, 1, duration=0.3)
    assert d.get(free).account == doomed

    res = api.delete(f"/v1/runwayml/accounts/{doomed}")
    assert res.status_code in (200, 204), res.text

    assert (d.get(upstream).state, d.get(upstream).error_code) == (FAILED, 404)
    assert d.get(upstream).error == f"Account {doomed} was deleted"
    assert (d.get(pinned).state, d.get(pinned).error_code) == (FAILED, 404)
    rerouted = d.get(free)
    assert rerouted.state == ADMITTED and rerouted.account == other  # back to the line, admitted elsewhere
    assert doomed not in d.core.r.hvals(keys.holder("runwayml"))
    assert d.core.r.hget(keys.used("runwayml"), doomed) is None
    assert sandbox.get("/_sandbox/stats").json()["users"][doomed]["canceled"] == 1  # told upstream

    fleet.start(1)
    _wait_state(d, free, COMPLETED)
    stats = rig.upstream()
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    assert rig.leftover_capacity() == {"executing": {}, "holders": 0, "leases": 0, "used": 0, "started": 0,
                                       "waiting": 0}


def test_a_cancel_ends_the_generation_even_when_the_upstream_cannot_be_told(rig, api, fleet):
    d, sandbox = rig.d, rig.sandbox
    [account] = rig.add_accounts(1, 1, duration=60)
    fleet.start(1)
    running = d.submit("runwayml", "gen3a_turbo", {"promptText": "long"}).id
    _wait_state(d, running, SUBMITTED)
    fleet.stop()
    # the account is suspended upstream: every call with its token answers 401
    sandbox.patch(f"/_sandbox/users/runwayml/{account}", json={"suspended": True}).raise_for_status()

    res = api.delete(f"/v1/jobs/{running}")
    assert res.status_code == 200, res.text
    gen = d.get(running)
    assert gen.state == CANCELED
    assert gen.error.startswith("canceled here; the upstream could not be told")
    assert gen.payload == {}  # a canceled record keeps no payload
    assert d.core.capacity("runwayml").snapshot()["accounts"][account]["executing"] == 0


def test_a_start_step_racing_the_delete_cancels_what_it_created(rig):
    """The upstream accepts the create, then the account is deleted before the step saves the id:
    the step finds its record moved on and cancels the upstream job with the create's token."""
    from workers import context
    from workers import steps

    d, sandbox = rig.d, rig.sandbox
    [doomed] = rig.add_accounts(1, 1, duration=60)
    gen = d.submit("runwayml", "gen3a_turbo", {"promptText": "raced"})
    core, previous = d.core, context._core
    real_adapter = core.adapter

    class DeletingAdapter:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def create(self, *args):
            upstream_id = self.inner.create(*args)
            d.delete_account("runwayml", doomed)  # lands between the upstream's accept and the save
            return upstream_id

    core.adapter = lambda provider, **kw: DeletingAdapter(real_adapter(provider, **kw))
    context.install(core)
    try:
        assert steps.start(gen.id, d.get(gen.id).step) == "superseded"
    finally:
        core.adapter = real_adapter
        context._core = previous
    assert sandbox.get("/_sandbox/stats").json()["users"][doomed]["canceled"] == 1
    assert d.get(gen.id).state == "waiting"  # back in line for another account; the raced job is gone upstream
