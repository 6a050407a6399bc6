"""rq-dashboard on the dispatcher's Redis: seen in headless Chromium while generations run."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import httpx
import pytest

from dispatcher.ops.dashboard import build_app, check_exposure, is_loopback
from dispatcher.errors import ConfigurationError
from dispatcher.generations import LIVE, public_id


def test_dashboard_in_headless_chromium(dispatcher, add_account, submit, fleet, dashboard_url, browse, wait,
                                        artifacts):
    runway = add_account("runwayml", 2)
    add_account("pixverse", 1)
    fleet.start(1)
    short = submit("runwayml", 1, 1.0)[0]
    ids = [short] + submit("runwayml", 2, 30.0) + submit("pixverse", 2, 30.0)

    def ready():  # one generation ended (its ending step stays listed) while others run upstream
        gens = dispatcher.core.generations.many(ids)
        return gens[0].state == "completed" and sum(g.state == "submitted" for g in gens) >= 2

    wait(ready, 90, what="one generation completed and two accepted upstream")
    queues = browse(dashboard_url)
    jobs = browse(f"{dashboard_url}0/view/jobs/dispatcher.runwayml/finished/8/dsc/1")
    still_running = [g.id for g in dispatcher.core.generations.many(ids) if g.state in LIVE]
    shot = artifacts / "ops-dashboard-jobs.png"
    shot.unlink(missing_ok=True)
    browse(f"{dashboard_url}0/view/jobs/dispatcher.runwayml/finished/8/dsc/1", screenshot=shot)

    assert still_running, "the generations should still be running while the dashboard is read"
    for queue in ("dispatcher.runwayml", "dispatcher.pixverse"):
        assert queue in queues, f"queue {queue} missing from the dashboard's queue list"
    assert f"{public_id(short, 'task')} on {runway}" in jobs, \
        "the ending step is not described '<provider> <step> <public id> on <account>' on the jobs page"
    assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the JSON behind the pages works with rq 3 too: workers, a registry, one job's details
    workers = httpx.get(f"{dashboard_url}0/data/workers.json", timeout=10).json()["workers"]
    assert any("dispatcher.runwayml" in w["queues"] for w in workers)  # the callback worker serves its own queue
    finished = httpx.get(f"{dashboard_url}0/data/jobs/dispatcher.runwayml/finished/8/dsc/1.json", timeout=10).json()
    ending = dispatcher.get(short).step
    assert ending in [j["id"] for j in finished["jobs"]]
    job = httpx.get(f"{dashboard_url}0/data/job/{ending}.json", timeout=10).json()
    assert job["status"] == "finished" and job["origin"] == "dispatcher.runwayml" and job["result"] == "completed"
    assert job["description"].startswith("runwayml ") and job["description"].endswith(f" on {runway}")


def test_dashboard_basic_auth_guards_every_path(redis_url, settings):
    app = build_app(redis_url, username="ops", password="dash-pass-Zz19-secret", settings=settings)
    client = app.test_client()

    def auth(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    for path in ("/", "/0/data/queues.json", "/static/js/jquery-3.5.1.min.js", "/0/view/accounts",
                 "/0/view/accounts/table", "/0/data/accounts.json"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth("ops", "wrong")).status_code == 401
        assert client.get(path, headers=auth("nobody", "dash-pass-Zz19-secret")).status_code == 401
        assert client.get(path, headers=auth("ops", "dash-pass-Zz19-secret")).status_code == 200
    assert "WWW-Authenticate" in client.get("/").headers


@pytest.mark.parametrize("host,user,password,ok", [
    ("127.0.0.1", None, None, True), ("localhost", None, None, True), ("::1", None, None, True),
    ("0.0.0.0", None, None, False), ("10.1.2.3", None, None, False), ("dash.example.com", None, None, False),
    ("0.0.0.0", "ops", "pw-secret-1", True), ("127.0.0.1", "ops", None, False),
])
def test_dashboard_refuses_to_listen_off_loopback_without_auth(host, user, password, ok):
    if ok:
        check_exposure(host, user, password)
    else:
        with pytest.raises(ConfigurationError):
            check_exposure(host, user, password)
    assert is_loopback("127.0.0.2") and not is_loopback("192.168.0.1")


def test_dashboard_command_refuses_public_bind(settings, child_env):
    env = child_env(settings)
    done = subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", "dashboard", "--host", "0.0.0.0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to serve rq-dashboard on 0.0.0.0 without basic auth" in done.stderr
    assert "Traceback" not in done.stderr


# -- the Accounts page --------------------------------------------------------------------
RUNWAY_B = {"email": "ops-runway-b@example.com", "password": "Runway-B-pass-Jj42-not-for-logs"}


def _accounts_scene(dispatcher, add_account, submit):
    """Runway: one account running two long generations with two more waiting, one flagged out of
    credits; PixVerse: one account cooling down; MiniMax: one idle account."""
    runway = add_account("runwayml", 2)
    flagged = add_account("runwayml", 1, creds=RUNWAY_B)
    dispatcher.core.flag_account("runwayml", flagged, "Out of credits (412): Insufficient credits", code=412)
    pix = add_account("pixverse", 1)
    dispatcher.core.cooldown_account("pixverse", pix, 300)
    minimax = add_account("minimax", 3)
    ids = submit("runwayml", 4, 60.0)
    return {"runway": runway, "flagged": flagged, "pix": pix, "minimax": minimax, "ids": ids}


def _secrets(dispatcher, known) -> list[str]:
    """Every credential value and every stored token of the accounts."""
    from dispatcher import providers

    values = [v for creds in known["accounts"].values() for v in creds.values()] + list(RUNWAY_B.values())
    secrets = [v for v in values if "not-for-logs" in v] + ["Broke-pass-Bb77-not-for-logs"]
    for provider in ("runwayml", "pixverse", "minimax"):
        spec = providers.get(provider)
        for account_id in dispatcher.core.accounts.ids(provider):
            session = dispatcher.core.accounts.session(spec, account_id)
            if session is not None:
                secrets.append(session.token)
    return secrets


def test_accounts_page_html_and_json_without_a_browser(dispatcher, add_account, submit, settings, redis_url, known):
    scene = _accounts_scene(dispatcher, add_account, submit)
    client = build_app(redis_url, settings=settings).test_client()

    queues = client.get("/").get_data(as_text=True)
    assert 'href="/0/view/accounts"' in queues and ">Accounts</a>" in queues, "no Accounts link in the navbar"
    page = client.get("/0/view/accounts")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert '<li class="nav-item active"><a href="/0/view/accounts"' in html
    assert "/0/view/accounts/table" in html and "POLL_INTERVAL" in html, "the page must refresh itself"

    data = client.get("/0/data/accounts.json").json
    runway = {p["name"]: p for p in data["providers"]}["runwayml"]
    rows = {a["id"]: a for a in runway["accounts"]}
    assert (runway["running"], runway["slots"], runway["waiting"]) == (2, 3, 2)
    assert (rows[scene["runway"]]["used"], rows[scene["runway"]]["maxJobs"], rows[scene["runway"]]["state"]) == \
        (2, 2, "ok")
    assert rows[scene["flagged"]]["state"] == "flagged"
    assert rows[scene["flagged"]]["error"] == "Out of credits (412): Insufficient credits"
    assert rows[scene["runway"]]["token_seconds_to_expiry"] > 0 and rows[scene["runway"]]["refreshes"] >= 0
    pix = {p["name"]: p for p in data["providers"]}["pixverse"]["accounts"][0]
    assert pix["state"] == "cooling down" and 200 < pix["cooldown_seconds"] <= 300

    table = client.get("/0/view/accounts/table").get_data(as_text=True)
    for needle in (f'data-account="{scene["runway"]}"', ">2/2<", "Out of credits (412): Insufficient credits",
                   "cooling down", "flagged", "waiting line: <b>2</b>", f'data-account="{scene["minimax"]}"'):
        assert needle in table and needle in html, needle
    everything = html + table + json.dumps(data)
    for secret in _secrets(dispatcher, known):
        assert secret not in everything, "a credential or token reached the Accounts page"


def test_dashboard_screenshots_in_headless_chromium(dispatcher, add_account, submit, fleet, dashboard_url, browse,
                                                    wait, artifacts, known):
    """The Failed list with a moderated and an out-of-credits generation and their reasons, the
    queues page counting them, and the Accounts page (saved to artifacts/, copied to docs/)."""
    fleet.start(1)
    broke = add_account("runwayml", 1, creds={"email": "ops-broke@example.com",
                                               "password": "Broke-pass-Bb77-not-for-logs"}, credits=0)

    def fails(payload: dict) -> str:  # pinned to `broke`, as the provider-shaped endpoints submit
        gen_id = dispatcher.submit("runwayml", "gen3turbo/create", payload, account=broke,
                                   extra={"shape": "runwayml", "fail_fast": True}).id
        wait(lambda: dispatcher.get(gen_id).state == "failed", 60, what=f"{gen_id} to fail")
        return gen_id

    moderated = fails({"promptText": "a [moderated] prompt"})  # 422 comes before the credits check
    fails({"promptText": "no credits left"})  # 412: `broke` leaves rotation, its pinned waiter fails
    scene = _accounts_scene(dispatcher, add_account, submit)  # the other generations never reach `broke`

    failed_url = f"{dashboard_url}0/view/jobs/dispatcher.runwayml/failed/8/asc/1"
    wait(lambda: "Out of credits (412)" in browse(failed_url), 30, what="both failures on the Failed list")
    dom = browse(failed_url)
    assert "moderated (422): Prompt rejected by moderation — account" in dom
    assert f"taskId {public_id(moderated, 'task', broke)}" in dom  # pinned: the id carries the account
    queues = httpx.get(f"{dashboard_url}0/data/queues.json", timeout=10).json()["queues"]
    (row,) = [q for q in queues if q["name"] == "dispatcher.runwayml"]
    listed = httpx.get(f"{dashboard_url}0/data/jobs/dispatcher.runwayml/failed/100/asc/1.json", timeout=10).json()
    assert row["failed_job_registry_count"] == len(listed["jobs"]) == 2

    accounts_url = f"{dashboard_url}0/view/accounts"
    dom = browse(accounts_url)
    assert 'data-refreshes="' in dom, "the Accounts page did not refresh itself"
    assert scene["runway"] in dom and "flagged" in dom and "cooling down" in dom
    for secret in _secrets(dispatcher, known):
        assert secret not in dom

    shots = {"dashboard-failed.png": failed_url, "dashboard-queues.png": f"{dashboard_url}0/view/queues",
             "dashboard-accounts.png": accounts_url}
    for name, url in shots.items():
        shot = artifacts / name
        shot.unlink(missing_ok=True)
        browse(url, screenshot=shot)
        assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_of_a_job_with_dependencies_opens(redis_url, settings, r):
    """rq-dashboard 0.9 decodes RQ 3's (already str) dependency ids: its job page answered 500 for
    every job that depends on another, such as a backend job waiting on a generation."""
    from rq import Queue

    from dispatcher.connection import connect_rq

    conn = connect_rq(redis_url)
    queue = Queue("backend", connection=conn)
    first = queue.enqueue("builtins.print", "first")
    second = queue.enqueue("builtins.print", "second", depends_on=first)
    client = build_app(redis_url, settings=settings).test_client()
    answer = client.get(f"/0/data/job/{second.id}.json", headers={"Host": "127.0.0.1:9181"})
    assert answer.status_code == 200, answer.data[:300]
    assert answer.get_json()["depends_on"] == [first.id] and answer.get_json()["status"] == "deferred"
