"""`ensure_token` and the watch against the sandbox: single-flight refresh under a race,
refusals that flag the account, MiniMax flagged before expiry, refresh ahead of expiry."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from dispatcher import keys, providers
from dispatcher.client import Dispatcher
from dispatcher.tokens import AccountUnusable, ensure_token, watch

RACERS = 50


@pytest.fixture
def racers(settings, dispatcher):
    """RACERS Dispatchers, each with its own Redis connections (one shared HTTP pool, which
    is thread-safe: building an httpx client per racer costs more than the race)."""
    http = httpx.Client(timeout=30)
    ds = [Dispatcher(settings.redis_url, settings, http=http) for _ in range(RACERS)]
    yield ds
    for d in ds:
        d.core.r.close()
        d.core.rq.close()
    http.close()


def race(ds, provider: str, account_id: str, **kw) -> tuple[list, list]:
    """Each racer calls ensure_token in its own thread, all released at the same instant."""
    barrier = threading.Barrier(len(ds))
    tokens: list = []
    errors: list = []

    def racer(d):
        barrier.wait()
        try:
            tokens.append(ensure_token(d.core, provider, account_id, **kw))
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(d,)) for d in ds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return tokens, errors


def session_of(d, provider, account_id):
    return d.core.accounts.get(providers.get(provider), account_id).session


@pytest.mark.parametrize("provider,ident,counter", [
    ("runwayml", "racer@example.com", "logins"),      # refresh = log in again
    ("riffusion", "racer-riff-user", "refreshes"),    # rotating refresh token: a second use would be refused
])
def test_fifty_racers_on_an_expiring_account_make_exactly_one_refresh(
        dispatcher, upstreams, racers, provider, ident, counter):
    account = upstreams.account(provider, ident, 2, jwt_lifetime=2)
    old = session_of(dispatcher, provider, account)
    assert dispatcher.core.refresh_margin(old) == pytest.approx(1.0)
    before = upstreams.stats()["users"][account]
    time.sleep(max(0.0, old.expires_at - dispatcher.core.refresh_margin(old) - time.time()) + 0.05)  # inside the margin

    tokens, errors = race(racers, provider, account)

    assert errors == []
    assert len(tokens) == RACERS and len(set(tokens)) == 1 and tokens[0] != old.token
    after = upstreams.stats()["users"][account]
    assert after[counter] - before[counter] == 1
    assert after["logins"] + after["refreshes"] - before["logins"] - before["refreshes"] == 1
    assert after["expired_token_requests"] == 0
    fresh = session_of(dispatcher, provider, account)
    assert fresh.token == tokens[0] and fresh.expires_at > old.expires_at
    assert dispatcher.core.r.hget(keys.account(provider, account), "refreshes") == "1"
    assert dispatcher.account_view(provider, account).get("error") is None


def test_fifty_racers_after_a_401_share_one_forced_refresh(dispatcher, upstreams, racers):
    account = upstreams.account("pixverse", "storm@example.com", 2)  # a day-long token, far from expiry
    old = session_of(dispatcher, "pixverse", account).token
    tokens, errors = race(racers, "pixverse", account, force=True, stale_token=old)
    assert errors == [] and len(set(tokens)) == 1 and tokens[0] != old
    assert upstreams.stats()["users"][account]["logins"] == 2  # the account's POST, then one refresh


def test_refused_refresh_flags_the_account_with_useapis_error(dispatcher, upstreams, sandbox):
    account = upstreams.account("runwayml", "locked@example.com", 2, jwt_lifetime=2)
    upstreams.patch("runwayml", account, password="changed-upstream")
    time.sleep(1.1)  # inside the 1 s margin of a 2 s token
    with pytest.raises(AccountUnusable):
        ensure_token(dispatcher.core, "runwayml", account)
    view = dispatcher.account_view("runwayml", account)
    assert view["error"].startswith("Session refresh failed ") and view["error"].endswith(", update the account")
    assert "errorUTC" in view and "errorUntil" not in view  # permanent until re-POSTed
    assert dispatcher.available("runwayml")["accounts"][account]["eligible"] is False
    with pytest.raises(AccountUnusable):  # flagged: no more upstream calls for new work
        ensure_token(dispatcher.core, "runwayml", account)
    assert upstreams.stats()["users"][account]["expired_token_requests"] == 0
    # re-POSTing the account with the new password clears the flag
    dispatcher.upsert_account("runwayml", {"email": account, "password": "changed-upstream", "maxJobs": 2}, account)
    assert "error" not in dispatcher.account_view("runwayml", account)
    assert dispatcher.available("runwayml")["accounts"][account]["eligible"] is True


def test_minimax_leaves_rotation_inside_its_margin_before_expiry(dispatcher, upstreams):
    account = upstreams.account("minimax", "5550001", 2, jwt_lifetime=3)
    s = session_of(dispatcher, "minimax", account)
    margin = dispatcher.core.refresh_margin(s)
    assert margin == pytest.approx(1.0)
    assert ensure_token(dispatcher.core, "minimax", account) == s.token  # outside the margin: used as is
    snap = dispatcher.available("minimax")["accounts"][account]
    assert snap["usable_until"] == pytest.approx(s.expires_at - margin, abs=0.002)  # admission stops there (epoch s)
    time.sleep(max(0.0, s.expires_at - margin - time.time()) + 0.05)
    assert dispatcher.available("minimax")["accounts"][account]["eligible"] is False  # by time alone
    with pytest.raises(AccountUnusable):
        ensure_token(dispatcher.core, "minimax", account)
    flagged_at = time.time()
    assert flagged_at < s.expires_at  # out of rotation, with the reason, before the token expires
    view = dispatcher.account_view("minimax", account)
    assert "cannot be refreshed; POST the account with a new token" in view["error"]
    assert view["tokenExpires"] == s.expires_at
    stats = upstreams.stats()["users"][account]
    assert stats["expired_token_requests"] == 0 and stats["refreshes"] == 0


def test_flagged_account_serves_polls_while_its_token_works(dispatcher, upstreams):
    account = upstreams.account("runwayml", "broke@example.com", 2)
    token = session_of(dispatcher, "runwayml", account).token
    dispatcher.core.flag_account("runwayml", account, "Out of credits (412): Insufficient credits", code=412)
    with pytest.raises(AccountUnusable):
        ensure_token(dispatcher.core, "runwayml", account)  # no new work
    assert ensure_token(dispatcher.core, "runwayml", account, flagged_ok=True) == token  # running work keeps polling


def test_watch_refreshes_ahead_of_expiry_when_no_job_runs(dispatcher, upstreams):
    accounts = [upstreams.account("runwayml", "idle@example.com", 2, jwt_lifetime=3),
                upstreams.account("riffusion", "idle-riff", 2, jwt_lifetime=3),
                upstreams.account("pixverse", "idle@example.com", 2, jwt_lifetime=3),
                upstreams.account("minimax", "5550002", 2, jwt_lifetime=3)]
    providers_ = ["runwayml", "riffusion", "pixverse", "minimax"]
    seen: dict = {p: set() for p in providers_}
    ends = time.time() + 5.5
    while time.time() < ends:  # what the maintenance tick does, every 0.2 s, horizon 0.4 s
        for p, a in zip(providers_, accounts):
            watch(dispatcher.core, p, horizon=0.4)
            s = session_of(dispatcher, p, a)
            seen[p].add(s.token)
            if p != "minimax":
                assert s.expires_at - time.time() > 0.5, p  # never allowed near expiry
        time.sleep(0.2)
    for p, a in zip(providers_[:3], accounts):
        assert len(seen[p]) >= 3, p  # 5.5 s of 3 s tokens: refreshed ahead, again and again
        assert dispatcher.available(p)["accounts"][a]["eligible"] is True
        assert "error" not in dispatcher.account_view(p, a)
    mm = dispatcher.account_view("minimax", accounts[3])
    assert "POST the account with a new token" in mm["error"]
    assert upstreams.stats()["expired_token_requests"] == 0


def test_lost_riffusion_refresh_token_falls_back_to_the_cookie(dispatcher, upstreams, sandbox_url):
    account = upstreams.account("riffusion", "lost-answer", 2)
    s = session_of(dispatcher, "riffusion", account)
    # the refresh token is used upstream but its answer never arrives (a timeout, say)
    res = httpx.post(f"{sandbox_url}/riffusion/auth/v1/token", params={"grant_type": "refresh_token"},
                     json={"refresh_token": s.refresh_token})
    assert res.status_code == 200
    token = ensure_token(dispatcher.core, "riffusion", account, force=True, stale_token=s.token)
    assert token != s.token
    assert "error" not in dispatcher.account_view("riffusion", account)
    assert upstreams.stats()["users"][account]["logins"] == 2  # the POST, then the fallback login


def test_an_expired_refreshable_token_is_ineligible_until_the_watch_renews_it(dispatcher, upstreams):
    account = upstreams.account("runwayml", "lapsed@example.com", 2, jwt_lifetime=1)
    s = session_of(dispatcher, "runwayml", account)
    assert dispatcher.available("runwayml")["accounts"][account]["eligible"] is True
    time.sleep(max(0.0, s.expires_at - time.time()) + 0.05)  # nobody refreshed it in time
    assert dispatcher.available("runwayml")["accounts"][account]["eligible"] is False
    gen_id = dispatcher.submit("runwayml", "gen3a_turbo", {"prompt": "waits"}).id
    assert dispatcher.get(gen_id).state == "waiting"  # admission never hands out an expired token
    assert watch(dispatcher.core, "runwayml") == 1
    assert dispatcher.available("runwayml")["accounts"][account]["eligible"] is True
    gen = dispatcher.get(gen_id)  # the refresh made room: the pump admitted the waiter
    assert (gen.state, gen.account) == ("admitted", account)
