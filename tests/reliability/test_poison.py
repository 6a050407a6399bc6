"""Poison inputs (issue 15, finding 1): one character must never hold an account's slot.

A JSON prompt with a lone surrogate (a JavaScript client cutting an emoji in half) used to be
admitted; its start step then raised inside httpx on every resume, forever, holding the slot.
Now such a payload is refused at submit, and a step that raises what no rule expects is retried
a bounded number of times (`DISPATCHER_MAX_RESUMES`) and then fails with its reason, releasing
its slot, so the next generation runs.
"""

from __future__ import annotations

import json

import pytest

from dispatcher import keys
from dispatcher.errors import ValidationError
from dispatcher.generations import FAILED

# raw HTTP bodies the probe (and its fuzzer) found to get past the API, each with a lone surrogate
HTTP_POISON = [
    b'{"promptText": "x \\ud83d"}',  # half an emoji at the end
    b'{"promptText": "\\ude00 tail"}',  # a low surrogate alone
    b'{"promptText": "ok", "options": {"note": ["a", "\\udfff"]}}',  # nested in a list
    b'{"\\ud800key": "value"}',  # in a key
]
# what the Python API accepts as a dict but no upstream can receive as JSON
PY_POISON = [
    {"promptText": "x \ud83d"},
    {"\udc00": 1},
    {"promptText": "ok", "seed": float("nan")},
    {"promptText": "ok", "seed": float("inf")},
    {"promptText": "ok", "seed": 10 ** 5000},
    {"promptText": "ok", "image": b"bytes"},
    {"promptText": "ok", "tags": {"a", "b"}},
]


def _deep(n: int) -> dict:
    out: dict = {}
    for _ in range(n):
        out = {"x": out}
    return out


def test_http_refuses_every_poison_payload_and_changes_nothing(api, rig, snapshot, r):
    rig.add_accounts(1, 1)
    before = snapshot(r)
    for body in HTTP_POISON:
        res = api.post("/v1/runwayml/gen3a_turbo", content=body, headers={"Content-Type": "application/json"})
        assert res.status_code == 400, (body, res.text)
        answer = res.json()
        assert set(answer) == {"error", "code"} and answer["code"] == 400
        assert "Unicode" in answer["error"] and "Traceback" not in answer["error"]
    assert snapshot(r) == before


@pytest.mark.parametrize("payload", PY_POISON + [_deep(100_000)],
                         ids=["surrogate", "surrogate-key", "nan", "inf", "huge-int", "bytes", "set", "deep"])
def test_python_api_refuses_every_poison_payload(rig, snapshot, r, payload):
    rig.add_accounts(1, 1)
    before = snapshot(r)
    with pytest.raises(ValidationError) as info:
        rig.d.submit("runwayml", "gen3a_turbo", payload)
    assert info.value.status == 400
    assert snapshot(r) == before


def test_poison_names_are_refused(rig, snapshot, r):
    rig.add_accounts(1, 1)
    before = snapshot(r)
    for kwargs in ({"account": "a\ud83d"}, {"reply_ref": "ref \udfff"}):
        with pytest.raises(ValidationError, match="not valid Unicode"):
            rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "ok"}, **kwargs)
    assert snapshot(r) == before


def test_a_step_that_keeps_raising_fails_and_frees_the_slot(rig, fleet, settings):
    """A record that got past submit (an older version wrote it) and makes its start step raise
    on every try: after max_resumes retries it fails with the reason, and its slot runs the next."""
    fleet.settings = settings.with_(max_resumes=2)
    [account] = rig.add_accounts(1, 1, duration=0.5)
    poison = rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "placeholder"}).id
    # the payload an older version stored: JSON text whose escape decodes to a lone surrogate
    rig.d.core.r.hset(keys.generation("runwayml", poison), "payload", json.dumps({"promptText": "x \ud83d"}))
    normal = rig.submit(1, start=1)
    fleet.start(1)
    states = rig.wait_finished([poison, *normal], timeout=90)
    assert states[poison] == FAILED, states
    gen = rig.d.get(poison)
    assert gen.error.startswith("internal error, 3 attempts: UnicodeEncodeError"), gen.error
    assert gen.error_code == 500
    assert states[normal[0]] == "completed", states
    assert rig.leftover_capacity()["executing"] == {}
    assert rig.upstream()["violations"] == 0
    # every try is on RQ's Failed list with its traceback (rq-dashboard shows them)
    from rq import Queue

    failed = Queue("dispatcher.runwayml", connection=rig.d.core.rq).failed_job_registry.get_job_ids()
    assert sum(job_id.startswith(poison) for job_id in failed) == 3, failed


def test_a_start_step_fault_before_an_upstream_id_keeps_the_generation_on_its_account(rig, monkeypatch):
    """A start step that raises after the upstream may have taken the job (say, an answer the
    adapter cannot read) is retried on the same account, never rerouted: the idempotency key
    then returns the job the upstream already holds instead of a second one elsewhere."""
    from workers import context, faults

    [account] = rig.add_accounts(1, 1)
    gen = rig.d.submit("runwayml", "gen3a_turbo", {"promptText": "maybe taken"})
    monkeypatch.setattr(context, "_core", rig.d.core)
    assert faults.fault(gen.id, rig.d.get(gen.id).step, ValueError("unreadable answer")) == "retrying"
    assert rig.d.get(gen.id).maybe_on == account
