"""Priorities and tenants over HTTP: a `priority` field on creates, a tenant per API token
(`DISPATCHER_API_TOKENS` entries `tenant:token`), both shown in the job status and `/scheduler`."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.client import Dispatcher

PW = "pw-s3cret-value"


@pytest.fixture
def settings(settings):
    return settings.with_(api_tokens=("alpha:token-of-alpha-0123", "plain-token-0123456789"))


@pytest.fixture
def client(dispatcher, sandbox):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "p@example.com", "password": PW,
                                           "concurrency": 5}).raise_for_status()
    dispatcher.upsert_account("runwayml", {"email": "p@example.com", "password": PW, "maxJobs": 1}, "p@example.com")
    with TestClient(create_app(dispatcher), raise_server_exceptions=False) as c:
        yield c


def as_(token):
    return {"Authorization": f"Bearer {token}"}


def test_priority_and_tenant_on_creates(client, dispatcher):
    first = client.post("/v1/runwayml/gen3turbo/create", json={"promptText": "runs", "sandbox_duration": 30},
                        headers=as_("token-of-alpha-0123"))
    assert first.status_code == 200, first.text
    assert first.json()["priority"] == 5 and first.json()["tenant"] == "alpha"
    waiting = client.post("/v1/runwayml/gen3turbo/create", json={"promptText": "urgent", "priority": 9},
                          headers=as_("plain-token-0123456789"))
    assert waiting.status_code == 200 and waiting.json()["priority"] == 9 and "tenant" not in waiting.json()
    generic = client.post("/v1/runwayml/videos/create", json={"prompt": "x", "priority": 0},
                          headers=as_("token-of-alpha-0123"))
    assert generic.status_code == 200 and generic.json()["priority"] == 0 and generic.json()["tenant"] == "alpha"
    status = client.get(f"/v1/runwayml/tasks/{waiting.json()['taskId']}", headers=as_("plain-token-0123456789"))
    assert status.json()["priority"] == 9
    rows = client.get("/v1/runwayml/scheduler", headers=as_("plain-token-0123456789")).json()
    assert [(r["priority"], r["tenant"]) for r in rows] == [(5, "alpha")]
    # the tenant:token form: the token alone authenticates; the whole entry does not
    assert client.get("/v1/runwayml/scheduler", headers=as_("alpha:token-of-alpha-0123")).status_code == 401


@pytest.mark.parametrize("value", [10, -1, "9", 2.5, True])
def test_bad_priority_is_a_400_that_changes_nothing(client, r, snapshot, value):
    before = snapshot(r)
    res = client.post("/v1/runwayml/gen3turbo/create", json={"promptText": "x", "priority": value},
                      headers=as_("plain-token-0123456789"))
    assert res.status_code == 400 and set(res.json()) == {"error", "code"} and "priority" in res.json()["error"]
    assert snapshot(r) == before
