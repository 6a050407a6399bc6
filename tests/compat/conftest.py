"""Fixtures for the useapi drop-in tests: the API served by uvicorn on a loopback port (so clients
speak real HTTP, as useapi's scripts do), upstream users in the sandbox, and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

@pytest.fixture
def live_api(dispatcher, settings):
    """An httpx client on the dispatcher API served by a real uvicorn server (thread, free port)."""
    import uvicorn

    from dispatcher.api.app import create_app
    from dispatcher.sandbox.server import free_port

    port = free_port()
    config = uvicorn.Config(create_app(dispatcher), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="compat-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    headers = {"Authorization": f"Bearer {settings.api_tokens[0]}", "Accept": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


class Upstream:
    """Register upstream users in the sandbox and configure them as dispatcher accounts over the API."""

    def __init__(self, sandbox: httpx.Client, api: httpx.Client):
        self.sandbox = sandbox
        self.api = api

    def user(self, **body) -> dict:
        res = self.sandbox.post("/_sandbox/users", json=body)
        assert res.status_code == 201, res.text
        return res.json()

    def runway(self, email: str, max_jobs: int, **user) -> None:
        self.user(provider="runwayml", email=email, password="pw-" + email, **user)
        res = self.api.post(f"/v1/runwayml/accounts/{email}",
                            json={"email": email, "password": "pw-" + email, "maxJobs": max_jobs})
        assert res.status_code == 200, res.text

    def pixverse(self, email: str, max_jobs: int, **user) -> None:
        self.user(provider="pixverse", email=email, password="pw-" + email, **user)
        res = self.api.post(f"/v2/pixverse/accounts/{email}",
                            json={"email": email, "password": "pw-" + email, "maxJobs": max_jobs})
        assert res.status_code == 200, res.text

    def minimax(self, account: str, max_jobs: int, **user) -> None:
        token = self.user(provider="minimax", account=account, **user)["token"]
        res = self.api.post(f"/v1/minimax/accounts/{account}",
                            json={"account": account, "token": token, "maxJobs": max_jobs})
        assert res.status_code == 200, res.text

    def riffusion(self, cookie: str, max_jobs: int, **user) -> str:
        user_id = self.user(provider="riffusion", cookie=cookie, **user)["user_id"]
        res = self.api.post("/v1/riffusion/accounts", json={"cookie": cookie, "maxJobs": max_jobs})
        assert res.status_code == 200, res.text
        return user_id


@pytest.fixture
def upstream(sandbox, live_api) -> Upstream:
    return Upstream(sandbox, live_api)


class Receiver:
    """A webhook endpoint on a loopback port: records (headers, raw body) of every POST."""

    def __init__(self):
        received = self.received = []
        self.arrived = threading.Condition()
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with arrived:
                    received.append((dict(self.headers), body))
                    arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.received)} of {count} webhooks arrived"
                self.arrived.wait(left)
            return list(self.received)

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def poll_until(fn, done, *, timeout: float = 60, interval: float = 0.25):
    """Call fn() until done(value) holds; return the value (generous timeout, never a duration assert)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still not done after {timeout}s: {value!r}"
        time.sleep(interval)


@pytest.fixture
def wait_for():
    return poll_until
