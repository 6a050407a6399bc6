"""A helper over the sandbox's api.useapi.net emulation (`/useapi`), on the session's sandbox
process (real HTTP on loopback), with the state reset before every test (the `up` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

TOKEN = "user:1001-useapi-test-token"
PROVIDERS = ("runwayml", "pixverse", "minimax", "kling", "riffusion")
CREDENTIALS = {
    "runwayml": {"email": "run@example.com", "password": "pw"},
    "pixverse": {"email": "pix@example.com", "password": "pw"},
    "kling": {"email": "kling@example.com", "password": "pw"},
    "minimax": {"account": "mm-1", "token": "pasted-minimax-token-1"},
    "riffusion": {"cookie": "sb-cookie-1"},
}
BASE = {"runwayml": "/v1/runwayml", "pixverse": "/v2/pixverse", "minimax": "/v1/minimax",
        "kling": "/v1/kling", "riffusion": "/v1/riffusion"}
PIN = {"runwayml": "email", "pixverse": "email", "kling": "email", "minimax": "account", "riffusion": "user_id"}
JOB_KEY = {"runwayml": "taskId", "pixverse": "video_id", "minimax": "videoId", "kling": "task_id",
           "riffusion": "job_id"}
CREATE = {"runwayml": "/v1/runwayml/gen3turbo/create", "pixverse": "/v2/pixverse/videos/create",
          "minimax": "/v1/minimax/videos/create", "kling": "/v1/kling/videos/text2video",
          "riffusion": "/v1/riffusion/music/create-prompt"}
STATUS = {"runwayml": "/v1/runwayml/tasks/{id}", "pixverse": "/v2/pixverse/videos/{id}",
          "minimax": "/v1/minimax/videos/{id}", "kling": "/v1/kling/tasks/{id}",
          "riffusion": "/v1/riffusion/music/{id}"}


class Useapi:
    """Requests to `/useapi/...` with a registered token, plus the sandbox's admin controls."""

    TOKEN, BASE, PIN, JOB_KEY, CREATE, STATUS = TOKEN, BASE, PIN, JOB_KEY, CREATE, STATUS

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        assert http.post("/_sandbox/useapi-tokens", json={"token": TOKEN}).status_code == 201
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"/useapi{path}", headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    # -- the sandbox side
    def user(self, provider: str, **fields: Any) -> dict:
        r = self.http.post("/_sandbox/users", json={"provider": provider, **CREDENTIALS[provider], **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def stats(self) -> dict:
        return self.http.get("/_sandbox/stats").json()["useapi"]

    def busy(self, provider: str, account: str, jobs: int, seconds: float | None = None) -> None:
        body = {"provider": provider, "account": account, "jobs": jobs, "seconds": seconds}
        assert self.http.post("/_sandbox/useapi-busy", json=body).status_code == 200

    def set_error(self, provider: str, account: str, error: str | None) -> None:
        body = {"provider": provider, "account": account, "error": error}
        assert self.http.post("/_sandbox/useapi-accounts/error", json=body).status_code == 200

    # -- useapi accounts and jobs
    def post_account(self, provider: str, max_jobs: Any = 2, **override: Any) -> httpx.Response:
        body = {**CREDENTIALS[provider], "maxJobs": max_jobs, **override}
        if provider in ("kling", "riffusion"):
            return self.post(f"{BASE[provider]}/accounts", json=body)
        ident = body.get(PIN[provider])
        return self.post(f"{BASE[provider]}/accounts/{ident}", json=body)

    def account(self, provider: str, max_jobs: int = 2, *, user: dict | None = None, **body: Any) -> str:
        """A sandbox user and its useapi account; returns the account id."""
        self.user(provider, **(user or {}))
        r = self.post_account(provider, max_jobs, **body)
        assert r.status_code in (200, 201), r.text
        return r.json()[PIN[provider]]

    def create(self, provider: str, **body: Any) -> httpx.Response:
        return self.post(CREATE[provider], json={"prompt": "a lighthouse at dawn", **body})

    def job_id(self, provider: str, r: httpx.Response) -> str:
        assert r.status_code == 200, r.text
        return r.json()[JOB_KEY[provider]]

    def status(self, provider: str, job_id: str) -> httpx.Response:
        return self.get(STATUS[provider].format(id=job_id))


@pytest.fixture
def ua(up) -> Useapi:
    return Useapi(up.http)


@pytest.fixture(params=PROVIDERS)
def service(request) -> str:
    return request.param
