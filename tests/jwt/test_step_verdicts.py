"""What each upstream answer does to the account and the generation, step by step.

The real step functions run in this process (`workers.context.install`), against the
sandbox with a fault injected at rate 1.0, so every outcome is deterministic: 412 and
596 flag (596 with a hold that clears itself), 429 cools down and clears itself, 401
refreshes (and flags only when refreshing cannot help), 5xx retries then fails with
the upstream's reason. A generation not yet accepted goes back to the line and is
admitted on another account; an accepted one keeps polling on a flagged account."""

from __future__ import annotations

import time

import pytest

from dispatcher import providers

RUNWAY = "runwayml"
SANDBOX_5XX = {"Internal server error", "Bad gateway", "Service unavailable", "Gateway timeout"}


@pytest.fixture
def settings(settings):
    return settings.with_(cooldown_596=1.0, cooldown_429=5.0, upstream_retries=2)


@pytest.fixture
def steps(dispatcher):
    """The workers' step functions, running on this test's Dispatcher."""
    from workers import context
    from workers import steps as step_functions

    previous = context._core
    context.install(dispatcher.core)
    yield step_functions
    context._core = previous


def admitted_on(dispatcher, upstreams, faulty_options: dict, *, duration: float = 5.0):
    """A generation admitted on a fresh account `bad` (the only one then), plus a clean
    account `good` added afterwards: (generation id, bad, good)."""
    bad = upstreams.account(RUNWAY, "bad@example.com", 2, **faulty_options)
    gen_id = dispatcher.submit(RUNWAY, "gen3a_turbo", {"prompt": "p", "sandbox_duration": duration}).id
    assert dispatcher.get(gen_id).account == bad
    good = upstreams.account(RUNWAY, "good@example.com", 2)
    return gen_id, bad, good


def eligible(dispatcher, account) -> bool:
    return dispatcher.available(RUNWAY)["accounts"][account]["eligible"]


def test_412_flags_the_account_and_the_generation_moves_to_another(dispatcher, upstreams, steps):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {"faults": {"412": 1.0}})
    assert steps.start(gen_id) == "rerouted"
    view = dispatcher.account_view(RUNWAY, bad)
    assert view["error"] == "Out of credits (412): Insufficient credits" and "errorUntil" not in view
    assert not eligible(dispatcher, bad)
    gen = dispatcher.get(gen_id)
    assert (gen.state, gen.account, gen.upstream_id) == ("admitted", good, None)
    assert steps.start(gen_id) in ("submitted", "completed")
    assert dispatcher.get(gen_id).upstream_id
    assert upstreams.stats()["users"][good]["submitted"] == 1


def test_a_rerouted_generation_keeps_its_turn_at_the_head_of_the_line(dispatcher, upstreams, steps):
    """Admitted, then its account left rotation before the upstream took it: it goes back ahead
    of the generations that arrived after it, not behind them."""
    bad = upstreams.account(RUNWAY, "bad@example.com", 1, faults={"412": 1.0})
    first = dispatcher.submit(RUNWAY, "gen3a_turbo", {"prompt": "first", "sandbox_duration": 5}).id
    good = upstreams.account(RUNWAY, "good@example.com", 1)
    busy = dispatcher.submit(RUNWAY, "gen3a_turbo", {"prompt": "takes good's slot", "sandbox_duration": 5}).id
    later = dispatcher.submit(RUNWAY, "gen3a_turbo", {"prompt": "arrived later", "sandbox_duration": 5}).id
    assert [dispatcher.get(g).account for g in (first, busy)] == [bad, good]
    assert dispatcher.core.capacity(RUNWAY).position(later) == 1

    assert steps.start(first) == "rerouted"
    cap = dispatcher.core.capacity(RUNWAY)
    assert (cap.position(first), cap.position(later)) == (1, 2)
    assert dispatcher.get(first).state == "waiting"


def test_a_generation_that_every_account_throttles_fails_after_max_reroutes(dispatcher, upstreams, steps):
    """Each reroute puts it at the head of the line, so it would take every account that frees
    up and cool it down, for ever: after MAX_REROUTES it fails with the upstream's answer."""
    accounts = [upstreams.account(RUNWAY, f"busy{i}@example.com", 1, faults={"429": 1.0}) for i in range(2)]
    gen_id = dispatcher.submit(RUNWAY, "gen3a_turbo", {"prompt": "p", "sandbox_duration": 1}).id
    cap, outcomes = dispatcher.core.capacity(RUNWAY), []
    for _ in range(steps.MAX_REROUTES + 3):
        outcomes.append(steps.start(gen_id))
        if outcomes[-1] != "rerouted":
            break
        for account in accounts:  # time passes: the cooldowns end, the head of the line is admitted
            dispatcher.core.dispatch(cap.set_cooldown(account, None))
    assert outcomes == ["rerouted"] * steps.MAX_REROUTES + ["failed"]
    gen = dispatcher.get(gen_id)
    assert (gen.state, gen.error_code, gen.error) == ("failed", 429, "Too many requests")
    assert cap.holder(gen_id) is None and cap.position(gen_id) is None


def test_596_holds_the_account_then_it_returns_by_itself(dispatcher, upstreams, steps):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {"faults": {"596": 1.0}})
    assert steps.start(gen_id) == "rerouted"
    view = dispatcher.account_view(RUNWAY, bad)
    assert view["error"] == "Account on hold (596): Account on hold"
    assert view["errorUntil"] == pytest.approx(time.time() + 1.0, abs=0.5) and view["errorUntilUTC"].endswith("Z")
    assert not eligible(dispatcher, bad) and dispatcher.get(gen_id).account == good
    dispatcher.core.unflag_expired(RUNWAY)
    assert "error" in dispatcher.account_view(RUNWAY, bad)  # the hold is not over yet
    time.sleep(max(0.0, view["errorUntil"] - time.time()) + 0.05)
    dispatcher.core.unflag_expired(RUNWAY)  # what the maintenance tick does
    assert "error" not in dispatcher.account_view(RUNWAY, bad) and eligible(dispatcher, bad)


def test_429_cools_down_for_retry_after_and_clears_itself(dispatcher, upstreams, steps):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {"faults": {"429": 1.0}, "retry_after": 0.6})
    began = time.time()
    assert steps.start(gen_id) == "rerouted"
    view = dispatcher.account_view(RUNWAY, bad)
    assert "error" not in view  # not flagged
    assert began + 0.5 <= view["cooldownUntil"] <= time.time() + 0.7 and view["cooldownUntilUTC"].endswith("Z")
    assert not eligible(dispatcher, bad) and dispatcher.get(gen_id).account == good
    time.sleep(max(0.0, view["cooldownUntil"] - time.time()) + 0.05)
    assert eligible(dispatcher, bad) and "cooldownUntil" not in dispatcher.account_view(RUNWAY, bad)


def test_401_refreshes_then_retries_and_never_flags_while_refreshing_works(dispatcher, upstreams, steps):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {"faults": {"401": 1.0}})
    for attempt in (1, 2):  # each: 401, one forced refresh (a new login), 401 again: retry later
        assert steps.start(gen_id) == "retrying"
        assert "error" not in dispatcher.account_view(RUNWAY, bad) and eligible(dispatcher, bad)
        assert dispatcher.get(gen_id).retries == attempt
        assert upstreams.stats()["users"][bad]["logins"] == 1 + attempt
    # upstream_retries (2) fresh sessions all refused: the account is unusable after all
    assert steps.start(gen_id) == "rerouted"
    assert dispatcher.account_view(RUNWAY, bad)["error"].startswith("Session refresh failed")
    gen = dispatcher.get(gen_id)
    assert (gen.state, gen.account, gen.retries) == ("admitted", good, 0)  # a fresh budget on the new account


def test_401_on_a_revoked_session_is_healed_by_one_forced_refresh(dispatcher, upstreams, steps, sandbox):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {})
    sandbox.post("/_sandbox/tokens/expire", json={"provider": RUNWAY, "id": bad}).raise_for_status()
    assert steps.start(gen_id) in ("submitted", "completed")
    gen = dispatcher.get(gen_id)
    assert gen.account == bad and gen.upstream_id
    assert "error" not in dispatcher.account_view(RUNWAY, bad)
    assert upstreams.stats()["users"][bad]["logins"] == 2


def test_refused_refresh_during_a_step_flags_and_reroutes(dispatcher, upstreams, steps, sandbox):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {})
    upstreams.patch(RUNWAY, bad, password="rotated-upstream")
    sandbox.post("/_sandbox/tokens/expire", json={"provider": RUNWAY, "id": bad}).raise_for_status()
    assert steps.start(gen_id) == "rerouted"
    assert dispatcher.account_view(RUNWAY, bad)["error"].startswith("Session refresh failed")
    assert dispatcher.get(gen_id).account == good


def test_5xx_retries_on_the_same_account_then_fails_with_the_upstreams_reason(dispatcher, upstreams, steps):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {"faults": {"5xx": 1.0}})
    assert [steps.start(gen_id) for _ in range(2)] == ["retrying", "retrying"]
    assert dispatcher.get(gen_id).account == bad
    assert steps.start(gen_id) == "failed"
    gen = dispatcher.get(gen_id)
    assert gen.state == "failed" and gen.error in SANDBOX_5XX and gen.error_code in (500, 502, 503, 504)
    assert "error" not in dispatcher.account_view(RUNWAY, bad) and eligible(dispatcher, bad)
    assert dispatcher.available(RUNWAY)["accounts"][bad]["executing"] == 0  # its slot came back


def test_accepted_generation_keeps_polling_on_a_flagged_account(dispatcher, upstreams, steps, sandbox):
    gen_id, bad, good = admitted_on(dispatcher, upstreams, {})
    assert steps.start(gen_id) == "submitted"
    dispatcher.core.flag_account(RUNWAY, bad, "Out of credits (412): Insufficient credits", code=412)
    assert steps.poll(gen_id) == "polling"  # its token still works: the upstream job is followed
    assert dispatcher.get(gen_id).state == "submitted"
    # the token stops working and cannot be renewed: the generation fails with a clear reason
    upstreams.patch(RUNWAY, bad, password="rotated-upstream")
    sandbox.post("/_sandbox/tokens/expire", json={"provider": RUNWAY, "id": bad}).raise_for_status()
    assert steps.poll(gen_id) == "failed"
    gen = dispatcher.get(gen_id)
    assert gen.error.startswith("account left rotation") and gen.error_code == 401
    assert dispatcher.available(RUNWAY)["accounts"][bad]["executing"] == 0


def test_account_view_shows_error_cooldown_expiry_and_last_refresh_masked(dispatcher, upstreams):
    account = upstreams.account(RUNWAY, "view@example.com", 3, jwt_lifetime=600)
    view = dispatcher.account_view(RUNWAY, account)
    session = dispatcher.core.accounts.get(providers.get(RUNWAY), account).session
    assert view["tokenExpires"] == session.expires_at and view["tokenExpiresUTC"].endswith("Z")
    assert abs(view["lastRefreshed"] - time.time()) < 5 and view["lastRefreshedUTC"].endswith("Z")
    assert not {"error", "errorUTC", "errorUntil", "cooldownUntil"} & set(view)
    assert view["password"] == "…secured…" and "…secured…" in view["jwt"]["token"]
    assert session.token not in str(view)

    dispatcher.core.cooldown_account(RUNWAY, account, 30)
    dispatcher.core.flag_account(RUNWAY, account, "Account on hold (596): Account on hold", hold=60)
    listed = dispatcher.list_accounts(RUNWAY)[account]
    assert listed["cooldownUntil"] == pytest.approx(time.time() + 30, abs=2)
    assert listed["error"] == "Account on hold (596): Account on hold"
    assert listed["errorUntil"] == pytest.approx(time.time() + 60, abs=2) and listed["errorUTC"].endswith("Z")

    before = view["lastRefreshed"]
    time.sleep(0.01)
    dispatcher.upsert_account(RUNWAY, {"email": account, "password": "pw-s3cret-value", "maxJobs": 3}, account)
    again = dispatcher.account_view(RUNWAY, account)  # re-POST clears flags and cooldown
    assert not {"error", "errorUTC", "errorUntil", "cooldownUntil"} & set(again)
    assert again["lastRefreshed"] > before
    assert eligible(dispatcher, account)


def test_a_failure_rate_over_half_cools_the_account_down(dispatcher, upstreams):
    account = upstreams.account(RUNWAY, "rate@example.com", 2)
    for _ in range(3):
        dispatcher.core.health_ok(RUNWAY, account)
    for _ in range(3):
        dispatcher.core.health_failed(RUNWAY, account)  # 3 of 6: not over half
    assert "cooldownUntil" not in dispatcher.account_view(RUNWAY, account)
    dispatcher.core.health_failed(RUNWAY, account)  # 4 of 7
    view = dispatcher.account_view(RUNWAY, account)
    assert view["cooldownUntil"] == pytest.approx(time.time() + 5.0, abs=1) and "error" not in view
    assert not eligible(dispatcher, account)
