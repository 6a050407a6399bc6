"""Sessions and failures in useapi mode: the JWT watch re-posts what it can and flags what it
cannot before it expires; a create whose answer was lost is found again instead of sent twice;
a useapi that fails or cannot be reached gets the same backoff as a direct upstream."""

from __future__ import annotations

import time

from dispatcher import providers, tokens
from dispatcher.generations import ADMITTED, SUBMITTED


def test_watch_reposts_runway_accounts_to_useapi(dispatcher, team):
    account = team.account("runwayml", "short@example.com", 2, jwt_lifetime=3.0)
    before = dispatcher.core.accounts.get(providers.get("runwayml"), account).session
    assert tokens.watch(dispatcher.core, "runwayml", horizon=5.0) == 1
    after = dispatcher.core.accounts.get(providers.get("runwayml"), account).session
    assert after.expires_at > before.expires_at
    shown = team.useapi("GET", f"/v1/runwayml/accounts/{account}").json()
    assert shown["jwt"]["exp"] == after.expires_at  # the expiry useapi shows for the re-posted account


def test_minimax_token_is_flagged_before_it_expires(dispatcher, team):
    account = team.account("minimax", "430001", 2, jwt_lifetime=4.0)
    session = dispatcher.core.accounts.get(providers.get("minimax"), account).session
    assert session.expires_at - session.issued_at < 10  # useapi's expiry: the pasted token's
    time.sleep(max(0.0, session.expires_at - dispatcher.core.refresh_margin(session) - time.time()) + 0.1)
    tokens.watch(dispatcher.core, "minimax")
    view = dispatcher.account_view("minimax", account)
    assert "cannot be refreshed; POST the account with a new token" in view["error"]
    assert time.time() < session.expires_at  # before, not after


def test_a_create_whose_answer_was_lost_is_recovered_not_sent_twice(dispatcher, team, steps):
    """The worker died after useapi accepted the create and before the id was saved: the
    resumed start finds the job by its replyRef in useapi's scheduler."""
    from workers import maintenance

    account = team.account("pixverse", "lost@example.com", 2)
    gen = dispatcher.submit("pixverse", "videos/create", {"prompt": "lost", "sandbox_duration": 30})
    record = dispatcher.core.generations.get(gen.id)
    assert record.state == ADMITTED and record.account == account
    token = tokens.ensure_token(dispatcher.core, "pixverse", account)
    first = dispatcher.core.adapter("pixverse").create(token, "videos/create", record.payload, gen.id)  # lost answer
    # its worker is gone: the lease runs out and maintenance resumes the start
    dispatcher.core.capacity("pixverse").renew(gen.id, ttl_ms=1)
    time.sleep(0.05)
    dispatcher.core.r.delete(*[k for k in dispatcher.core.r.scan_iter("rq:queue:*")])  # its parked step is gone
    assert maintenance.resume_orphans(dispatcher.core, "pixverse") == 1
    record = dispatcher.core.generations.get(gen.id)
    assert record.maybe_on == account
    assert steps.start(gen.id, record.step) == "submitted"
    record = dispatcher.core.generations.get(gen.id)
    assert record.state == SUBMITTED and record.upstream_id == first
    assert team.stats()["useapi"]["duplicates"] == 0


def test_useapi_5xx_is_retried_and_nothing_is_lost(dispatcher, team, fleet):
    team.account("kling", "flaky@example.com", 3, faults={"5xx": 0.3})
    fleet.start(1)
    ids = [dispatcher.submit("kling", "videos/text2video", {"prompt": f"flaky {i}", "sandbox_duration": 0.3}).id
           for i in range(12)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        gens = dispatcher.core.generations.many(ids)
        if all(g.terminal for g in gens):
            break
        time.sleep(0.2)
    states = [g.state for g in dispatcher.core.generations.many(ids)]
    assert states.count("completed") + states.count("failed") == len(ids), states
    assert states.count("completed") >= 10, states  # a few may exhaust their retries: never lost
    assert team.stats()["useapi"]["duplicates"] == 0


def test_useapi_down_backs_off_and_the_generation_waits_its_turn(dispatcher, team, settings, steps):
    from dispatcher.client import Dispatcher
    from workers import context

    account = team.account("runwayml", "down@example.com", 1)
    gen = dispatcher.submit("runwayml", "gen3turbo/create", {"prompt": "down", "sandbox_duration": 0.2})
    down = Dispatcher(settings.redis_url, settings.with_(useapi_url="http://127.0.0.1:9/useapi"))
    previous = context._core
    context.install(down.core)
    try:
        assert steps.start(gen.id, dispatcher.core.generations.get(gen.id).step) == "retrying"
    finally:
        context._core = previous
        down.close()
    record = dispatcher.core.generations.get(gen.id)
    assert record.state == ADMITTED and record.account == account and record.maybe_on == account
    assert dispatcher.core.capacity("runwayml").holder(gen.id) == account  # its slot is kept
    # useapi is back: the retried start asks useapi's scheduler first, then creates once
    assert steps.start(gen.id, record.step) in ("submitted", "completed")
    assert dispatcher.core.generations.get(gen.id).upstream_id
    assert team.stats()["useapi"]["duplicates"] == 0
