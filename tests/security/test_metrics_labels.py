"""`/metrics` label values (issue 15, finding 4): whatever a label holds (an account id written by a
version that did not check ids, a step result, any stored counter), the exposition keeps each
sample on one line: `\\`, `"` and a line feed escaped as the text format says, CR, NUL and every
other control character (and the Unicode line separators) written as `%XX`, never raw.

Validation now refuses such account ids, so the test writes what an older version could have
written: an account record and capacity entry with such an id, and counters with such labels."""

from __future__ import annotations

import io
import json
import re

import pytest
from prometheus_client.parser import text_fd_to_metric_families, text_string_to_metric_families

from dispatcher import keys, metrics

RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
ODD_ACCOUNT = "odd\r\x00id\x1b[31m\u2028@example.com"
SHOWN_ACCOUNT = "odd%0D%00id%1B[31m%u2028@example.com"
QUOTED = 'quo"te\\back\nslash'  # the three characters the text format escapes itself


def write_old_account(d, account_id: str) -> None:
    """An account record as a version that did not check ids left it (no secrets needed here)."""
    d.core.r.hset(keys.account("runwayml", account_id), mapping={
        "id": account_id, "maxJobs": 2, "error": "flag\r\ntext\x00", "expires_at": 4102444800, "issued_at": 1,
        "refreshes": 3, "extra": json.dumps({})})
    d.core.r.sadd(keys.accounts("runwayml"), account_id)
    d.core.r.sadd(keys.providers_seen(), "runwayml")
    d.core.capacity("runwayml").set_account(account_id, 2)


@pytest.fixture
def raw_api(dispatcher, settings):
    """The API with `DISPATCHER_METRICS_ACCOUNT_LABELS=raw`: the account id itself in the label (the
    default, a keyed digest, never carries such characters), so its escaping is what is tested."""
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher

    raw = Dispatcher(settings.redis_url, settings.with_(metrics_account_labels="raw"))
    with TestClient(create_app(raw)) as client:
        client.headers["Authorization"] = f"Bearer {settings.api_tokens[0]}"
        yield client
    raw.close()


def samples(text: str) -> dict:
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s.labels)
    return out


def test_metrics_labels_never_carry_raw_control_characters(dispatcher, raw_api):
    write_old_account(dispatcher, ODD_ACCOUNT)
    metrics.Batch().inc("dispatcher_admissions", provider="runwayml", account=ODD_ACCOUNT) \
        .inc("dispatcher_admissions", provider="runwayml", account=QUOTED) \
        .inc("dispatcher_steps", provider="runwayml", step="start", result="bad\r\nresult\x00\x85") \
        .observe("dispatcher_step_duration_seconds", 0.2, provider="runwayml", step="poll\x00\r") \
        .send(dispatcher.core.r)

    res = raw_api.get("/metrics")
    assert res.status_code == 200
    text = res.text
    assert RAW_CONTROL.search(text) is None, repr(RAW_CONTROL.search(text))

    parsed = samples(text)
    # a reader that splits lines on CR and the other line separators (universal newlines) reads the same
    universal = [s.labels for f in text_fd_to_metric_families(io.StringIO(text, newline=None)) for s in f.samples]
    assert universal == [labels for rows in parsed.values() for labels in rows]

    accounts = {lab["account"] for lab in parsed["dispatcher_admissions_total"]}
    assert accounts == {SHOWN_ACCOUNT, QUOTED}  # `"`, `\` and LF round-trip exactly
    for gauge in ("dispatcher_account_slots_max", "dispatcher_account_flagged", "dispatcher_token_refreshes_total"):
        assert {lab["account"] for lab in parsed[gauge]} == {SHOWN_ACCOUNT}, gauge
    assert {lab["result"] for lab in parsed["dispatcher_steps_total"]} == {"bad%0D\nresult%00%85"}
    assert {lab["step"] for lab in parsed["dispatcher_step_duration_seconds_count"]} == {"poll%00%0D"}


def test_labels_that_become_equal_are_summed_not_duplicated(dispatcher, raw_api):
    metrics.Batch().inc("dispatcher_cooldowns", 2, provider="runwayml", account="a\rb@example.com") \
        .inc("dispatcher_cooldowns", 3, provider="runwayml", account="a%0Db@example.com") \
        .send(dispatcher.core.r)
    text = raw_api.get("/metrics").text
    assert RAW_CONTROL.search(text) is None
    rows = [s for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "dispatcher_cooldowns_total"]
    assert [(s.labels["account"], s.value) for s in rows] == [("a%0Db@example.com", 5.0)]
