"""Accounts in useapi mode: forwarded to useapi, its refusals passed through, deleted there only
when asked, imported from it; a missing or wrong useapi token refused with a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher import providers
from dispatcher.errors import ConfigurationError
from dispatcher.useapi_accounts import check_settings

ROOT = Path(__file__).resolve().parents[2]


def test_account_post_is_forwarded_and_useapi_holds_it(api, team):
    team.user("runwayml", "fwd@example.com")
    res = api.post("/v1/runwayml/accounts/fwd@example.com",
                   json={"email": "fwd@example.com", "password": "pw-s3cret-value", "maxJobs": 4})
    assert res.status_code == 200, res.text
    view = res.json()
    assert view["maxJobs"] == 4 and "pw-s3cret-value" not in res.text
    at_useapi = team.useapi("GET", "/v1/runwayml/accounts/fwd@example.com")
    assert at_useapi.status_code == 200 and at_useapi.json()["maxJobs"] == 4
    assert view["jwt"]["exp"] == pytest.approx(at_useapi.json()["jwt"]["exp"])  # useapi's expiry, taken


@pytest.mark.parametrize("provider,path,body,status", [
    ("runwayml", "/v1/runwayml/accounts/nobody@example.com",
     {"email": "nobody@example.com", "password": "wrong-password", "maxJobs": 2}, 401),
    ("kling", "/v1/kling/accounts", {"email": "nobody@example.com", "password": "wrong-password", "maxJobs": 2}, 400),
])
def test_useapi_refusal_comes_back_unchanged_in_shape(api, team, snapshot, r, provider, path, body, status):
    before = snapshot(r)
    res = api.post(path, json=body)
    assert res.status_code == status, res.text
    answer = res.json()
    assert set(answer) == {"error", "code"} and answer["code"] == status and answer["error"]
    assert "wrong-password" not in res.text and "Traceback" not in res.text
    assert snapshot(r) == before  # nothing stored


def test_delete_removes_at_useapi_only_when_asked(api, team):
    for ident in ("keep@example.com", "drop@example.com"):
        team.account("pixverse", ident, 2)
    assert api.delete("/v2/pixverse/accounts/keep@example.com").status_code == 200
    assert team.useapi("GET", "/v2/pixverse/accounts/keep@example.com").status_code == 200
    res = api.delete("/v2/pixverse/accounts/drop@example.com", params={"remote": "true"})
    assert res.status_code == 200 and res.json() == {"deleted": "drop@example.com", "remote": True}
    assert team.useapi("GET", "/v2/pixverse/accounts/drop@example.com").status_code == 404
    assert api.get("/v2/pixverse/accounts/drop@example.com").status_code == 404


def test_remote_delete_of_a_direct_provider_is_refused(dispatcher, settings, team, r, snapshot):
    from dispatcher.client import Dispatcher

    team.account("runwayml", "direct@example.com", 2)
    direct = Dispatcher(settings.redis_url, settings.with_(upstreams=("runwayml=direct",)))
    try:
        before = snapshot(r)
        with pytest.raises(Exception) as caught:
            direct.delete_account("runwayml", "direct@example.com", remote=True)
        assert getattr(caught.value, "status", None) == 400 and "useapi" in caught.value.message
        assert snapshot(r) == before
    finally:
        direct.close()


def _cli(settings, *args, token=None):
    env = {**os.environ, **settings.to_env(), "DISPATCHER_LOG_FORMAT": "json"}
    if token is not None:
        env["DISPATCHER_USEAPI_TOKEN"] = token
    env.pop("DISPATCHER_USEAPI_TOKEN", None) if token == "" else None
    return subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_import_mirrors_twelve_accounts_with_their_maxjobs_and_error(dispatcher, team, settings):
    made = {}
    for i in range(4):
        made[("runwayml", team.at_useapi("runwayml", f"imp-r{i}@example.com", 2 + i))] = 2 + i
        made[("pixverse", team.at_useapi("pixverse", f"imp-p{i}@example.com", 1 + i))] = 1 + i
        made[("minimax", team.at_useapi("minimax", f"42000{i}", 3))] = 3
    team.sandbox.post("/_sandbox/useapi-accounts/error", json={
        "provider": "pixverse", "account": "imp-p2@example.com", "error": "Session refresh failed, update the account",
    }).raise_for_status()
    done = _cli(settings, "accounts", "import", "--from-useapi")
    assert done.returncode == 0, done.stderr
    assert "imp-p2@example.com: imported, out of rotation" in done.stdout
    for (provider, ident), max_jobs in made.items():
        view = dispatcher.account_view(provider, ident)
        assert view["maxJobs"] == max_jobs, (provider, ident, view)
    flagged = dispatcher.account_view("pixverse", "imp-p2@example.com")
    assert "Session refresh failed" in flagged["error"]
    snap = dispatcher.core.capacity("pixverse").snapshot()["accounts"]
    assert "imp-p2@example.com" not in snap, snap  # out of rotation: no slots
    assert snap["imp-p1@example.com"]["maxJobs"] == 2
    assert sum(len(dispatcher.core.accounts.ids(p)) for p in ("runwayml", "pixverse", "minimax")) == 12
    # a generation pinned elsewhere runs; the errored account takes none
    gen = dispatcher.submit("pixverse", "videos/create", {"prompt": "x"}, account="imp-p1@example.com")
    assert gen.status in ("admitted", "waiting", "submitted")


def test_import_keeps_an_account_configured_here(dispatcher, team, settings):
    """An account posted through the dispatcher holds its password here: an import must not
    replace it by useapi's masked copy (the JWT watch could no longer re-POST it)."""
    team.account("runwayml", "mine@example.com", 2)
    done = _cli(settings, "accounts", "import", "--from-useapi", "--provider", "runwayml")
    assert done.returncode == 0 and "mine@example.com: kept: already configured here" in done.stdout, done.stdout
    account = dispatcher.core.accounts.get(providers.get("runwayml"), "mine@example.com")
    assert account.credentials.get("password") == "pw-s3cret-value"


def test_import_of_one_provider(dispatcher, team, settings):
    team.at_useapi("kling", "solo@example.com", 7)
    team.at_useapi("runwayml", "other@example.com", 2)
    done = _cli(settings, "accounts", "import", "--from-useapi", "--provider", "kling")
    assert done.returncode == 0, done.stderr
    assert dispatcher.account_view("kling", "solo@example.com")["maxJobs"] == 7
    assert dispatcher.core.accounts.ids("runwayml") == []


@pytest.mark.parametrize("token,words", [("", "DISPATCHER_USEAPI_TOKEN is not set"),
                                         ("not-a-token", "useapi refused DISPATCHER_USEAPI_TOKEN")])
def test_wrong_or_missing_token_is_a_clear_error(settings, token, words):
    with pytest.raises(ConfigurationError, match=words):
        check_settings(settings.with_(useapi_token=token or None))
    done = _cli(settings, "accounts", "import", "--from-useapi", token=token)
    assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr
    assert "not-a-token" not in done.stderr + done.stdout
    served = _cli(settings, "serve", "--port", "1", token=token)  # stops before it binds anything
    assert served.returncode == 1 and words in served.stderr, served.stderr


def test_unreachable_useapi_does_not_stop_start_up(settings):
    check_settings(settings.with_(useapi_url="http://127.0.0.1:9/useapi"))  # warns, does not raise
