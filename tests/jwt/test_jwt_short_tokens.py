"""3-second JWTs for ~30 seconds of generations: no request ever reaches the upstream with an
expired token, and every generation completes (real workers, sandbox, Redis)."""

from __future__ import annotations

import random
import time

RUN_SECONDS = 30.0
LIFETIME = 3  # seconds: a refresh margin of 1 s (the transit floor; 10 % would be 0.3 s)


def test_three_second_jwts_never_reach_upstream_expired(dispatcher, upstreams, fleet, helpers):
    accounts = {
        "runwayml": [upstreams.account("runwayml", f"run{i}@example.com", 4, jwt_lifetime=LIFETIME) for i in range(2)],
        "pixverse": [upstreams.account("pixverse", f"pix{i}@example.com", 4, jwt_lifetime=LIFETIME) for i in range(2)],
        "riffusion": [upstreams.account("riffusion", f"riff-user-{i}", 4, jwt_lifetime=LIFETIME) for i in range(2)],
    }
    fleet.start(2)
    rng = random.Random(5)
    ids: list[str] = []
    began = time.monotonic()
    # a steady trickle over the whole run: generations of 0.5-3 s, so polls straddle refreshes
    while time.monotonic() - began < RUN_SECONDS:
        for provider in accounts:
            payload = {"prompt": f"short-jwt {len(ids)}", "sandbox_duration": round(rng.uniform(0.5, 3.0), 2)}
            op = "gen3a_turbo" if provider == "runwayml" else "create"
            ids.append(dispatcher.submit(provider, op, payload).id)
        time.sleep(0.6)
    submitted = time.monotonic()
    done = helpers.wait_all(dispatcher, ids, timeout=90)
    drained = time.monotonic() - submitted
    stats = upstreams.stats()
    states = {g.state for g in done.values()}
    failed = {g.id: (g.error, g.error_code) for g in done.values() if g.state != "completed"}
    assert not failed, failed
    assert states == {"completed"}
    assert stats["expired_token_requests"] == 0, {u: s["expired_token_requests"] for u, s in stats["users"].items()}
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    # every account stayed in rotation, and its token really did turn over again and again
    for provider, ids_ in accounts.items():
        for account in ids_:
            assert "error" not in dispatcher.account_view(provider, account), account
            user = stats["users"][account]
            assert user["logins"] + user["refreshes"] >= RUN_SECONDS / LIFETIME, (account, user)
            assert user["submitted"] > 0, account
    renewals = sum(s["logins"] + s["refreshes"] for s in stats["users"].values())
    print(f"\n{len(ids)} generations over {RUN_SECONDS:.0f}s on {LIFETIME}s tokens: {renewals} logins+refreshes, "
          f"expired_token_requests={stats['expired_token_requests']}; drained {drained:.1f}s after the last submit")
