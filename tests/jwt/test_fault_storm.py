"""300 generations under 20 % injected faults of every kind across 4 Runway accounts, with
real worker processes: every generation ends completed or failed with the upstream's reason,
none is lost, no account is oversubscribed, and exactly the accounts whose faults call for
it are flagged.

The kinds are spread so that rotation can never run dry (which would leave generations
waiting for ever, by design): two accounts carry the faults that must NOT flag (401, whose
refresh works; 429, a cooldown; 5xx, retried; slow answers), two carry one flagging fault
each (412 out of credits, 596 on hold) plus a harmless one. Every kind is injected at 20 %
on each request (create and poll) of the account carrying it."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

RUNWAY = "runwayml"
N = 300
FAULTS = {
    "auth@example.com": {"faults": {"401": 0.2, "slow": 0.2}, "slow_seconds": 0.3},
    "throttled@example.com": {"faults": {"429": 0.2, "5xx": 0.2}, "retry_after": 0.3},
    "credits@example.com": {"faults": {"412": 0.2, "slow": 0.2}, "slow_seconds": 0.3},
    "hold@example.com": {"faults": {"596": 0.2, "5xx": 0.2}},
}
MUST_FLAG = {"credits@example.com": "Out of credits (412): Insufficient credits",
             "hold@example.com": "Account on hold (596): Account on hold"}
# what the sandbox answers for each injected failure: a failed generation must carry one of them
UPSTREAM_REASONS = {401: {"Unauthorized"}, 429: {"Too many requests"}, 412: {"Insufficient credits"},
                    596: {"Account on hold"}, 500: {"Internal server error"}, 502: {"Bad gateway"},
                    503: {"Service unavailable"}, 504: {"Gateway timeout"}}


@pytest.fixture
def settings(settings):
    # the hold outlasts the run, so the 596 account is still flagged when we look
    return settings.with_(cooldown_596=600.0, cooldown_429=1.0, upstream_retries=4)


def test_fault_storm_ends_every_generation_and_flags_exactly_the_right_accounts(
        dispatcher, upstreams, fleet, helpers):
    accounts = [upstreams.account(RUNWAY, email, 10, **options) for email, options in FAULTS.items()]
    fleet.start(2)
    rng = random.Random(11)
    began = time.monotonic()
    ids = [dispatcher.submit(RUNWAY, "gen3a_turbo",
                             {"prompt": f"storm {i}", "sandbox_duration": round(rng.uniform(0.2, 0.5), 2)}).id
           for i in range(N)]
    done = helpers.wait_all(dispatcher, ids, timeout=150)
    elapsed = time.monotonic() - began

    # every generation ended: completed, or failed with what the upstream said
    outcomes = Counter(g.state for g in done.values())
    assert set(outcomes) <= {"completed", "failed"} and sum(outcomes.values()) == N
    for g in done.values():
        if g.state == "failed":
            assert g.error in UPSTREAM_REASONS.get(g.error_code, ()), (g.id, g.error, g.error_code)
        else:
            assert g.result["artifacts"] and g.upstream_id

    # none lost, nothing left holding a slot or waiting
    snap = dispatcher.available(RUNWAY)
    assert snap["waiting"] == 0 and all(a["executing"] == 0 for a in snap["accounts"].values())
    assert dispatcher.core.capacity(RUNWAY).running() == []

    # the upstream's view: no oversubscription, no double submission, no expired token
    stats = upstreams.stats(RUNWAY)
    users = stats["users"]
    assert stats["violations"] == 0 and stats["duplicates"] == 0 and stats["expired_token_requests"] == 0
    accepted = sum(1 for g in done.values() if g.upstream_id)
    assert sum(u["submitted"] for u in users.values()) == accepted  # each accepted exactly once
    assert sum(u["completed"] for u in users.values()) == outcomes["completed"]

    # exactly the accounts whose faults call for it are flagged, with the upstream's reason
    errors = {a: dispatcher.account_view(RUNWAY, a).get("error") for a in accounts}
    assert {a: e for a, e in errors.items() if e} == MUST_FLAG
    assert snap["accounts"]["credits@example.com"]["eligible"] is False
    assert snap["accounts"]["hold@example.com"]["eligible"] is False
    # ...and the faults that must not flag really happened, and were handled as they should
    auth, throttled = users["auth@example.com"], users["throttled@example.com"]
    assert auth["faults"].get("401", 0) > 5 and auth["logins"] > 5  # each 401: one forced refresh
    assert auth["faults"].get("slow", 0) > 5
    assert throttled["faults"].get("429", 0) > 5 and throttled["faults"].get("5xx", 0) > 5
    for flagged in MUST_FLAG:
        assert users[flagged]["faults"], flagged

    by_account = Counter(g.account for g in done.values())
    fault_counts = {a: users[a]["faults"] for a in accounts}
    print(f"\n{N} generations in {elapsed:.1f}s: {dict(outcomes)}; by account {dict(by_account)}; "
          f"faults {fault_counts}; logins {({a: users[a]['logins'] for a in accounts})}")
