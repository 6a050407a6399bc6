"""Every registered provider, the same way: accounts over HTTP, then a batch of generations.

Parametrized over the registry, so a provider added as a folder (with its sandbox module and
demo data) is exercised by these tests without writing any: account create, read, list and
delete through its useapi routes, secrets masked; then more generations than its slots through
real worker processes, with 0 concurrency violations and 0 duplicate submissions counted by
the sandbox, and every slot returned.
"""

from __future__ import annotations

import time

import pytest

from dispatcher import providers, shapes
from dispatcher.generations import COMPLETED, LIVE

SPECS = sorted(providers.REGISTRY)


def _register(api, sandbox, spec, duration: float) -> tuple[str, dict, dict]:
    """A sandbox user and the dispatcher account for it; returns (account id, body, view)."""
    demo = spec.demo.accounts()[0]
    up = sandbox.post("/_sandbox/users", json={"provider": spec.name, "concurrency": demo.body["maxJobs"],
                                               "duration": duration, **demo.upstream})
    assert up.status_code == 201, up.text
    body = dict(demo.body, **{name: up.json()[name] for name in demo.sandbox_fields})
    path = f"{spec.api_prefix}/accounts" + (f"/{demo.path_id}" if demo.path_id else "")
    res = api.post(path, json=body)
    assert res.status_code in (200, 201), res.text
    view = res.json()
    return view[spec.id_field], body, view


@pytest.mark.parametrize("name", SPECS)
def test_account_create_read_list_delete(name, api, sandbox):
    spec = providers.get(name)
    account, body, view = _register(api, sandbox, spec, duration=1.0)
    secrets = [v for k, v in body.items() if k in spec.credential_fields and k != spec.id_field]
    assert view["maxJobs"] == body["maxJobs"] and spec.session_key in view
    one = api.get(f"{spec.api_prefix}/accounts/{account}")
    listed = api.get(f"{spec.api_prefix}/accounts")
    assert one.status_code == 200 and one.json()[spec.id_field] == account
    assert listed.status_code == 200 and account in listed.json()
    for text in (one.text, listed.text):
        assert not any(secret in text for secret in secrets), "a secret came back unmasked"
    assert api.delete(f"{spec.api_prefix}/accounts/{account}").status_code == 200
    gone = api.get(f"{spec.api_prefix}/accounts/{account}")
    assert gone.status_code == 404 and set(gone.json()) == {"error", "code"}


@pytest.mark.parametrize("name", SPECS)
def test_a_batch_larger_than_the_slots_completes_without_violations(name, api, sandbox, dispatcher, fleet):
    spec = providers.get(name)
    account, body, _ = _register(api, sandbox, spec, duration=0.3)
    n = 2 * body["maxJobs"] + 1
    ids = [dispatcher.submit(name, spec.demo.operation, {"prompt": f"{name} batch {i}"}).id for i in range(n)]
    assert sum(dispatcher.get(g).state == "waiting" for g in ids) >= n - body["maxJobs"]
    fleet.start(1)
    deadline = time.monotonic() + 90
    while any(dispatcher.get(g).state in LIVE for g in ids):
        assert time.monotonic() < deadline, [dispatcher.get(g).state for g in ids]
        time.sleep(0.2)
    assert [dispatcher.get(g).state for g in ids] == [COMPLETED] * n
    stats = sandbox.get("/_sandbox/stats", params={"provider": name}).json()
    assert stats["violations"] == 0 and stats["duplicates"] == 0, stats
    assert sum(u["submitted"] for u in stats["users"].values()) == n
    assert dispatcher.available(name)["accounts"][account]["executing"] == 0
    # the provider-shaped status route answers each of them, as useapi would
    status = next(r for r in spec.shape.routes if r.kind == providers.STATUS)
    gen = dispatcher.get(ids[0])
    res = api.get(spec.api_prefix + status.path.replace("{" + spec.shape.id_key + "}", shapes.job_id(gen)))
    assert res.status_code == 200 and res.json()[spec.shape.id_key] == shapes.job_id(gen)
