"""The dispatcher in useapi mode, against the sandbox's useapi.net emulation (`/useapi`).

Every provider goes through useapi (`upstream="useapi"`), with a useapi token registered at the
sandbox for each test. Provider users are made at the sandbox as for the direct tests: the
emulated useapi logs in against the same emulated providers.
"""

from __future__ import annotations

import secrets

import pytest

from dispatcher import providers

PASSWORD = "pw-s3cret-value"


@pytest.fixture
def useapi_token(sandbox) -> str:
    token = "useapi-" + secrets.token_urlsafe(16)
    sandbox.post("/_sandbox/useapi-tokens", json={"token": token}).raise_for_status()
    return token


@pytest.fixture
def settings(settings, sandbox_url, useapi_token):
    return settings.with_(upstream="useapi", useapi_url=f"{sandbox_url}/useapi", useapi_token=useapi_token)


class Team:
    """Provider users at the sandbox, and accounts made through the dispatcher (which forwards
    them to useapi) or straight at useapi (as a team that configured useapi.net before)."""

    def __init__(self, sandbox, dispatcher, token: str):
        self.sandbox = sandbox
        self.d = dispatcher
        self.token = token

    def user(self, provider: str, ident: str, **options) -> dict:
        body = {"provider": provider, **options}
        if provider in ("runwayml", "pixverse", "kling"):
            body.update(email=ident, password=PASSWORD)
        elif provider == "riffusion":
            body.update(cookie=f"sb-access-token={ident}", user_id=ident)
        else:
            body.update(account=ident)
        res = self.sandbox.post("/_sandbox/users", json=body)
        assert res.status_code == 201, res.text
        return res.json()

    def body(self, provider: str, ident: str, user: dict, max_jobs: int) -> dict:
        if provider in ("runwayml", "pixverse", "kling"):
            body = {"email": ident, "password": PASSWORD}
        elif provider == "riffusion":
            body = {"cookie": f"sb-access-token={ident}"}
        else:
            body = {"account": ident, "token": user["token"]}
        return {**body, "maxJobs": max_jobs}

    def account(self, provider: str, ident: str, max_jobs: int, **options) -> str:
        """A provider user plus the dispatcher's account on it (posted on to useapi); returns its id."""
        user = self.user(provider, ident, **options)
        path_id = None if provider in ("riffusion", "kling") else ident
        view = self.d.upsert_account(provider, self.body(provider, ident, user, max_jobs), path_id)
        return view[providers.get(provider).id_field]

    def at_useapi(self, provider: str, ident: str, max_jobs: int, **options) -> str:
        """A provider user configured at useapi directly (not through the dispatcher)."""
        spec = providers.get(provider)
        user = self.user(provider, ident, **options)
        path = "" if provider in ("riffusion", "kling") else f"/{ident}"
        res = self.useapi("POST", f"{spec.api_prefix}/accounts{path}", json=self.body(provider, ident, user, max_jobs))
        assert res.status_code in (200, 201), res.text
        return str(res.json()[spec.id_field])

    def useapi(self, method: str, path: str, **kw):
        return self.sandbox.request(method, f"/useapi{path}", headers={"Authorization": f"Bearer {self.token}"}, **kw)

    def stats(self) -> dict:
        res = self.sandbox.get("/_sandbox/stats")
        res.raise_for_status()
        return res.json()


@pytest.fixture
def team(sandbox, dispatcher, useapi_token) -> Team:
    return Team(sandbox, dispatcher, useapi_token)
