"""A real sandbox server for the whole session; state reset before every test."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatcher.sandbox import SandboxProcess


@pytest.fixture(scope="session")
def sandbox_url():
    with SandboxProcess() as proc:
        yield proc.url


PROVIDERS = ("runwayml", "pixverse", "minimax", "riffusion")
IDEM = {"runwayml": "Idempotency-Key", "pixverse": "Ai-Trace-Id", "minimax": "X-Request-Id",
        "riffusion": "Idempotency-Key"}
CREATE = {"pixverse": "/pixverse/creative_platform/video/create",
          "minimax": "/minimax/v1/api/multimodal/generate/video", "riffusion": "/riffusion/api/generations"}
POLL = {"runwayml": "/runwayml/v1/tasks/{id}", "pixverse": "/pixverse/creative_platform/video/{id}",
        "minimax": "/minimax/v1/api/multimodal/video/{id}", "riffusion": "/riffusion/api/generations/{id}"}
CANCEL = {"runwayml": "/runwayml/v1/tasks/{id}", "pixverse": "/pixverse/creative_platform/video/{id}/cancel",
          "minimax": "/minimax/v1/api/multimodal/video/{id}/cancel", "riffusion": "/riffusion/api/generations/{id}"}
# Expected wire statuses: running, succeeded, failed, canceled.
STATUS = {"runwayml": ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"), "pixverse": (5, 1, 8, 9),
          "minimax": (1, 2, 5, 7), "riffusion": ("running", "complete", "failed", "canceled")}
PENDING = {"runwayml": "PENDING", "pixverse": 5, "minimax": 1, "riffusion": "queued"}


class Upstream:
    """Thin test helper over the admin API and each provider's login."""

    def __init__(self, client: httpx.Client) -> None:
        self.http = client

    def user(self, provider: str, **fields: Any) -> dict:
        defaults = {
            "runwayml": {"email": "run@example.com", "password": "pw"},
            "pixverse": {"email": "pix@example.com", "password": "pw"},
            "minimax": {"account": "mm-1", "token": "pasted-minimax-token"},
            "riffusion": {"cookie": "sb-cookie-1"},
        }[provider]
        r = self.http.post("/_sandbox/users", json={"provider": provider, **defaults, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    # -- provider-neutral job operations, for tests parametrized over providers
    def create(self, provider: str, headers: dict, payload: dict, key: str | None = None) -> httpx.Response:
        h = dict(headers)
        if key is not None:
            h[IDEM[provider]] = key
        if provider == "runwayml":
            return self.http.post("/runwayml/v1/tasks", json={"taskType": "gen3a_turbo", "options": payload}, headers=h)
        return self.http.post(CREATE[provider], json=payload, headers=h)

    def job_id(self, provider: str, r: httpx.Response) -> str:
        body = r.json()
        return {"runwayml": lambda: body["task"]["id"], "pixverse": lambda: str(body["Resp"]["video_id"]),
                "minimax": lambda: body["data"]["id"], "riffusion": lambda: body["id"]}[provider]()

    def poll(self, provider: str, headers: dict, job_id: str) -> httpx.Response:
        return self.http.get(POLL[provider].format(id=job_id), headers=headers)

    def cancel(self, provider: str, headers: dict, job_id: str) -> httpx.Response:
        path = CANCEL[provider].format(id=job_id)
        if provider in ("runwayml", "riffusion"):
            return self.http.delete(path, headers=headers)
        return self.http.post(path, headers=headers)

    def job(self, provider: str, r: httpx.Response) -> dict:
        """(normalized status, artifact url or None, error or None) of a poll/cancel answer."""
        body = r.json()
        if provider == "runwayml":
            t = body["task"]
            url = t["artifacts"][0]["url"] if t["artifacts"] else None
            return {"status": t["status"], "url": url, "error": t["error"]}
        if provider == "pixverse":
            v = body["Resp"]
            return {"status": v["video_status"], "url": v["url"], "error": v["err_msg"]}
        if provider == "minimax":
            v = body["data"]
            return {"status": v["status"], "url": v["videoURL"], "error": v["message"]}
        return {"status": body["status"], "url": body["audio_url"], "error": body["error"]}

    @staticmethod
    def expected(provider: str, name: str):
        if name == "pending":
            return PENDING[provider]
        return STATUS[provider][("running", "succeeded", "failed", "canceled").index(name)]

    def stats(self) -> dict:
        return self.http.get("/_sandbox/stats").json()

    def user_stats(self, ident: str) -> dict:
        return self.stats()["users"][ident]

    def headers(self, provider: str, **fields: Any) -> dict[str, str]:
        """Register a user (with `fields`) and return the auth headers of a fresh login."""
        user = self.user(provider, **fields)
        return self.login(provider, user)

    def login(self, provider: str, user: dict) -> dict[str, str]:
        if provider == "runwayml":
            r = self.http.post("/runwayml/v1/login", json={"email": user["id"], "password": user.get("_pw", "pw")})
            return {"Authorization": f"Bearer {r.json()['token']}"}
        if provider == "pixverse":
            r = self.http.post("/pixverse/creative_platform/login",
                               json={"Username": user["id"], "Password": user.get("_pw", "pw")})
            return {"Token": r.json()["Resp"]["Result"]["Token"]}
        if provider == "minimax":
            return {"token": user["token"]}
        r = self.http.post("/riffusion/auth/v1/token?grant_type=cookie", json={"cookie": "sb-cookie-1"})
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def up(sandbox_url):
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        assert client.post("/_sandbox/reset", json={"seed": 0}).status_code == 200
        yield Upstream(client)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=PROVIDERS)
def provider(request):
    return request.param
