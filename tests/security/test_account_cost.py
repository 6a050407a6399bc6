"""Cost per account (issue 15, finding 1): with 2,000 accounts on one provider, the paths that look
at every account read their plain fields and decrypt nothing; only the account being used is
decrypted. Counted on the real vault: every `Vault.open` call of the dispatcher under test.

The 2,000 records are written with the store's own `save` (a session made here instead of 2,000
sandbox logins) and opened in the capacity table as `upsert_account` does; everything measured
runs the real code paths: the maintenance tick, the HTTP routes, the views."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from dispatcher import keys, overview, providers
from dispatcher.providers import Session
from workers.maintenance import tick

N = 2000
RUNWAY = "runwayml"


def seed(d, n: int = N, *, lifetime: float = 30 * 86400, prefix: str = "load") -> list[str]:
    """`n` Runway accounts written as a successful login would leave them."""
    spec = providers.get(RUNWAY)
    cap = d.core.capacity(RUNWAY)
    now = time.time()
    ids = []
    for i in range(n):
        email = f"{prefix}-{i:05d}@example.com"
        token = f"seeded-token-{i:05d}-{'x' * 40}"
        session = Session(account_id=email, token=token, expires_at=now + lifetime, issued_at=now,
                          jwt={"token": token, "exp": now + lifetime, "iat": now, "id": i})
        d.core.accounts.save(spec, {"email": email, "password": f"seeded-password-{i:05d}"}, 2, session)
        cap.set_usable_until(email, d.core.usable_until_ms(spec, session))
        cap.set_account(email, 2)
        ids.append(email)
    return ids


@contextmanager
def opens(d):
    """Count the vault's `open` calls (each one a decryption unless its cache holds the value)."""
    calls: list[int] = []
    real = d.core.vault.open

    def counted(token):
        calls.append(1)
        return real(token)

    d.core.vault.open = counted
    try:
        yield calls
    finally:
        del d.core.vault.open


@pytest.mark.timeout(240)
def test_a_maintenance_tick_decrypts_only_the_accounts_it_acts_on(dispatcher, sandbox):
    ids = seed(dispatcher)
    # one account whose hold ended (the tick returns it), one whose token is due (the tick refreshes it)
    held = ids[7]
    dispatcher.core.flag_account(RUNWAY, held, "Account on hold", hold=0.001)
    sandbox.post("/_sandbox/users", json={"provider": RUNWAY, "email": "due@example.com", "password": "pw-due-0001",
                                          "jwt_lifetime": 30}).raise_for_status()
    dispatcher.upsert_account(RUNWAY, {"email": "due@example.com", "password": "pw-due-0001", "maxJobs": 1})
    time.sleep(0.01)

    with opens(dispatcher) as calls:
        totals = tick(dispatcher.core, watch_horizon=60.0)
    assert totals["refreshed"] == 1, totals
    assert dispatcher.core.r.hget(keys.account(RUNWAY, held), "error") == ""  # the hold ended: back in rotation
    assert len(calls) <= 10, f"one tick over {N + 1} accounts opened {len(calls)} sealed values"

    with opens(dispatcher) as calls:
        tick(dispatcher.core, watch_horizon=1.0)  # nothing due, nothing held: an idle tick
    assert calls == [], f"an idle tick over {N + 1} accounts opened {len(calls)} sealed values"


@pytest.mark.timeout(240)
def test_a_provider_shaped_create_decrypts_nothing(dispatcher, api):
    ids = seed(dispatcher)
    dispatcher.core.flag_account(RUNWAY, ids[3], "Insufficient credits")
    with opens(dispatcher) as calls:
        anywhere = api.post("/v1/runwayml/gen3turbo/create", json={"text_prompt": "any account"})
        pinned = api.post("/v1/runwayml/gen3turbo/create", json={"text_prompt": "one", "email": ids[5]})
        refused = api.post("/v1/runwayml/gen3turbo/create", json={"text_prompt": "flagged", "email": ids[3]})
        generic = api.post("/v1/runwayml/gen3turbo", json={"promptText": "generic route"})
    assert anywhere.status_code == 200 and pinned.status_code == 200, (anywhere.text, pinned.text)
    assert refused.status_code == 596 and "Insufficient credits" in refused.json()["error"], refused.text
    assert generic.status_code == 200, generic.text
    assert calls == [], f"four creates among {N} accounts opened {len(calls)} sealed values"


@pytest.mark.timeout(240)
def test_account_and_scheduler_views_decrypt_only_what_they_show(dispatcher, api):
    ids = seed(dispatcher)
    dispatcher.core.flag_account(RUNWAY, ids[1], "Session refresh failed")
    with opens(dispatcher) as calls:
        available = api.get("/v1/runwayml/scheduler/available")
        running = api.get("/v1/runwayml/scheduler")
        snap = dispatcher.available(RUNWAY)
        collected = overview.collect(dispatcher)
        scraped = api.get("/metrics")
    assert available.status_code == 200 and len(available.json()["accounts"]) == N
    assert running.status_code == 200 and scraped.status_code == 200
    assert snap["accounts"][ids[1]]["error"] == "Session refresh failed"
    assert len(collected["providers"][RUNWAY]["accounts"]) == N
    assert calls == [], f"the scheduler views, status and /metrics opened {len(calls)} sealed values"

    with opens(dispatcher) as calls:
        one = api.get(f"/v1/runwayml/accounts/{ids[9]}")
        token = dispatcher.core.token_for(RUNWAY, ids[9])
    assert one.status_code == 200 and one.json()["email"] == ids[9]
    assert token.startswith("seeded-token-00009")
    assert len(calls) <= 3, f"one account's view and token opened {len(calls)} sealed values"

    with opens(dispatcher) as calls:
        listed = api.get("/v1/runwayml/accounts")
    assert listed.status_code == 200 and len(listed.json()) == N
    assert len(calls) <= 2 * N  # the listing shows every account's masked token: each opened once


def test_records_written_before_issued_at_was_stored_are_read_once(dispatcher, r):
    ids = seed(dispatcher, 20, prefix="old")
    for account_id in ids:  # as an older version wrote them
        r.hdel(keys.account(RUNWAY, account_id), "issued_at")
    with opens(dispatcher) as calls:
        tick(dispatcher.core, watch_horizon=1.0)
    assert len(calls) <= len(ids)  # each old record's session, once
    assert all(r.hexists(keys.account(RUNWAY, a), "issued_at") for a in ids)
    with opens(dispatcher) as calls:
        tick(dispatcher.core, watch_horizon=1.0)
    assert calls == []
