"""Bounded growth (issue 15, finding 6): a capped waiting line, one payload limit, lean canceled records.

Before: 10,000 waiting generations and 100 payloads of 1 MB added 101 MB in 3 s, and canceled
records kept their payload for 7 days.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dispatcher import keys
from dispatcher.api.app import create_app
from dispatcher.client import Dispatcher
from dispatcher.errors import NoCapacity, ValidationError
from dispatcher.payloads import MAX_PAYLOAD_BYTES


@pytest.fixture
def capped(r, settings, sandbox):
    d = Dispatcher(settings.redis_url, settings.with_(max_waiting=3))
    yield d
    d.close()


def test_a_full_waiting_line_answers_429_and_changes_nothing(capped, rig, snapshot, r):
    rig.d = capped
    rig.add_accounts(1, 1)
    pinned_to = next(iter(rig.accounts))
    capped.submit("runwayml", "gen3a_turbo", {"promptText": "runs"})
    capped.submit("runwayml", "gen3a_turbo", {"promptText": "waits 1"})
    capped.submit("runwayml", "gen3a_turbo", {"promptText": "waits 2 (pinned)"}, account=pinned_to)
    capped.submit("runwayml", "gen3a_turbo", {"promptText": "waits 3"})
    before = snapshot(r)
    with pytest.raises(NoCapacity, match="waiting line of runwayml is full .3 generations wait, at most 3."):
        capped.submit("runwayml", "gen3a_turbo", {"promptText": "one too many"})
    with TestClient(create_app(capped), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {capped.settings.api_tokens[0]}"
        res = client.post("/v1/runwayml/gen3a_turbo", json={"promptText": "one too many"})
    assert res.status_code == 429 and res.json()["code"] == 429
    assert int(res.headers["Retry-After"]) > 0
    assert snapshot(r) == before  # nothing queued, no record, no parked job
    # a generation that leaves the line makes room again
    waiting = [g for g in capped.core.generations.many(capped.core.r.lrange(keys.waiting("runwayml"), 0, -1))]
    capped.cancel(waiting[0].id)
    assert capped.submit("runwayml", "gen3a_turbo", {"promptText": "fits now"}).status == "waiting"


def test_payload_limit_is_the_same_for_python_and_http(rig, api, snapshot, r):
    rig.add_accounts(1, 1)
    before = snapshot(r)
    big = {"promptText": "x" * MAX_PAYLOAD_BYTES}
    with pytest.raises(ValidationError) as info:
        rig.d.submit("runwayml", "gen3a_turbo", big)
    assert info.value.status == 413
    # counted in UTF-8 bytes as sent upstream: 400,000 three-byte characters are 1.2 MB
    with pytest.raises(ValidationError):
        rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "€" * 400_000})
    res = api.post("/v1/runwayml/gen3a_turbo", json=big)
    assert res.status_code == 413 and res.json()["code"] == 413
    assert snapshot(r) == before


def test_a_canceled_record_keeps_no_payload(rig):
    rig.add_accounts(1, 1)
    rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "runs"})
    waiting = rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "a large prompt " * 1000})
    assert waiting.status == "waiting"
    canceled = waiting.cancel()
    assert canceled.state == "canceled" and canceled.payload == {}
    assert len(rig.d.core.r.hget(keys.generation("runwayml", waiting.id), "payload")) <= 2
