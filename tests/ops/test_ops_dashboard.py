"""rq-dashboard on the dispatcher's Redis: seen in headless Chromium while generations run."""

from __future__ import annotations

import base64
import subprocess
import sys

import httpx
import pytest

from dispatcher.ops.dashboard import build_app, check_exposure, is_loopback
from dispatcher.errors import ConfigurationError
from dispatcher.generations import LIVE


def test_dashboard_in_headless_chromium(dispatcher, add_account, submit, fleet, dashboard_url, browse, wait,
                                        artifacts):
    runway = add_account("runwayml", 2)
    add_account("pixverse", 1)
    fleet.start(1)
    ids = submit("runwayml", 3, 12.0) + submit("pixverse", 2, 12.0)

    def started():  # at least one start step ran, so its job sits in the finished registry
        gens = dispatcher.core.generations.many(ids)
        return sum(g.state == "submitted" for g in gens) >= 2

    wait(started, 90, what="two generations accepted upstream")
    queues = browse(dashboard_url)
    jobs = browse(f"{dashboard_url}0/view/jobs/dispatcher.runwayml/finished/8/asc/1")
    still_running = [g.id for g in dispatcher.core.generations.many(ids) if g.state in LIVE]
    shot = artifacts / "ops-dashboard-jobs.png"
    shot.unlink(missing_ok=True)
    browse(f"{dashboard_url}0/view/jobs/dispatcher.runwayml/finished/8/asc/1", screenshot=shot)

    assert still_running, "the generations should still be running while the dashboard is read"
    for queue in ("dispatcher.runwayml", "dispatcher.pixverse"):
        assert queue in queues, f"queue {queue} missing from the dashboard's queue list"
    described = [gid for gid in ids if f"runwayml start {gid} on {runway}" in jobs]
    assert described, "no step job described '<provider> start <generation id> on <account>' on the jobs page"
    assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the JSON behind the pages works with rq 3 too: workers, a registry, one job's details
    workers = httpx.get(f"{dashboard_url}0/data/workers.json", timeout=10).json()["workers"]
    assert any("dispatcher.runwayml" in w["queues"] for w in workers)  # the callback worker serves its own queue
    finished = httpx.get(f"{dashboard_url}0/data/jobs/dispatcher.runwayml/finished/8/asc/1.json", timeout=10).json()
    job = httpx.get(f"{dashboard_url}0/data/job/{finished['jobs'][0]['id']}.json", timeout=10).json()
    assert job["status"] == "finished" and job["origin"] == "dispatcher.runwayml"
    assert job["description"].startswith("runwayml ") and f" on {runway}" in job["description"]


def test_dashboard_basic_auth_guards_every_path(redis_url):
    app = build_app(redis_url, username="ops", password="dash-pass-Zz19-secret")
    client = app.test_client()

    def auth(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    for path in ("/", "/0/data/queues.json", "/static/js/jquery-3.5.1.min.js"):
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
