"""Issue 15, finding 3: rq-dashboard's actions are POSTs without a CSRF token, so a web page
could empty the queues (cross-site, or through DNS rebinding). The served dashboard refuses a
Host it does not serve, and an unsafe request whose Origin (or Referer) is not its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rq import Queue

from dispatcher.ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "dispatcher.runwayml"
EMPTY = f"/queue/{QUEUE}/queued/empty"


@pytest.fixture
def dashboard(settings, r, tmp_path):
    """`dispatcher dashboard` as a real subprocess on a free loopback port: (base URL, port, log path)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(settings.to_env())
    env["DISPATCHER_LOG_FORMAT"] = "json"
    log_path = tmp_path / "dashboard.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dispatcher.ops.cli", "dashboard", "--port", str(port)],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"dashboard exited: {log_path.read_text()[-2000:]}"
            try:
                if httpx.get(base + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)
        yield base, port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def queue(dispatcher):
    """Three queued jobs no worker will take (no worker runs in these tests)."""
    q = Queue(QUEUE, connection=dispatcher.core.rq)
    for i in range(3):
        q.enqueue("builtins.len", f"job {i}")
    assert q.count == 3
    return q


def test_a_rebinding_host_is_refused(dashboard, queue, redis_server):
    base, port, log_path = dashboard
    with httpx.Client(base_url=base, timeout=10) as http:
        rebound = {"Host": f"rebind.attacker.example:{port}"}
        for path in ("/", "/0/data/queues.json", f"/0/view/jobs/{QUEUE}/queued/8/1"):
            res = http.get(path, headers=rebound)
            assert res.status_code in (403, 421), (path, res.status_code)
            assert QUEUE not in res.text
        attack = http.post(EMPTY, headers={**rebound, "Origin": f"http://rebind.attacker.example:{port}"})
        assert attack.status_code in (403, 421) and queue.count == 3
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):  # what the dashboard serves
            assert http.get("/0/data/queues.json", headers={"Host": host}).status_code == 200, host
        page = http.get("/").text
    password = redis_server.password
    assert password not in page and password not in log_path.read_text(), "the Redis password was shown"


def test_a_cross_site_post_is_refused_and_a_same_origin_post_works(dashboard, queue):
    base, port, _ = dashboard
    with httpx.Client(base_url=base, timeout=10) as http:
        for headers in ({"Origin": "http://attacker.example"},       # a page elsewhere
                        {"Origin": f"http://localhost:{port + 1}"},   # another local site
                        {"Origin": "null"},                           # a sandboxed frame
                        {"Referer": "http://attacker.example/page"},  # no Origin: the Referer decides
                        {}):                                          # neither: refused
            res = http.post(EMPTY, headers=headers)
            assert res.status_code == 403, (headers, res.status_code, res.text)
            assert queue.count == 3, f"the queue was emptied by a request with {headers}"
        assert http.get(f"/requeue/{QUEUE}").status_code == 403  # rq-dashboard's GET action
        done = http.post(EMPTY, headers={"Origin": base})  # what the dashboard's own page sends
        assert done.status_code == 200 and done.json() == {"status": "OK"}, done.text
        assert queue.count == 0
        queue.enqueue("builtins.len", "again")
        by_referer = http.post(EMPTY, headers={"Referer": f"{base}/0/view/jobs/{QUEUE}/queued/8/1"})
        assert by_referer.status_code == 200 and queue.count == 0


def test_the_listen_host_is_served_and_the_guard_runs_before_basic_auth(redis_url):
    from werkzeug.test import Client

    from dispatcher.ops.dashboard import build_app

    app = build_app(redis_url, username="admin", password="dash-Pass-0123456789", listen_host="dash.internal")
    client = Client(app)
    assert client.get("/", headers={"Host": "dash.internal:9181"}).status_code == 401  # served: auth asked
    assert client.get("/", headers={"Host": "10.1.2.3:9181"}).status_code == 401  # an IP literal: served
    assert client.get("/", headers={"Host": "dash.internal.attacker.example"}).status_code in (403, 421)
    forged = client.post(EMPTY, headers={"Host": "dash.internal:9181", "Origin": "http://attacker.example",
                                         "Authorization": "Basic YWRtaW46ZGFzaC1QYXNzLTAxMjM0NTY3ODk="})
    assert forged.status_code == 403
