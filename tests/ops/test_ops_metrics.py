"""`/metrics`: counters kept in Redis across processes, gauges read live at scrape time."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import exposition, metrics
from dispatcher.generations import LIVE
from dispatcher.metric_store import AccountLabels
from dispatcher.tokens import AccountUnusable, ensure_token


def scrape(api) -> dict:
    """{sample name: [(labels, value)]} of one /metrics answer."""
    res = api.get("/metrics")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain")
    out: dict = {}
    for family in text_string_to_metric_families(res.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels) -> float:
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == str(x) for k, x in labels.items())]
    return sum(found)


def test_slot_gauges_move_and_counters_add_up_during_a_run(api, dispatcher, add_account, submit, fleet, wait):
    a = add_account("runwayml", 2)
    b = add_account("runwayml", 1, creds={"email": "ops-runway-b@example.com", "password": "Runway-b-Pw-0044"})
    acct = AccountLabels.of(dispatcher)  # the default: a keyed digest, the same in the API and the worker
    first = scrape(api)
    assert value(first, "dispatcher_account_slots_max", provider="runwayml", account=acct(a)) == 2
    assert value(first, "dispatcher_account_slots_max", provider="runwayml", account=acct(b)) == 1
    assert value(first, "dispatcher_account_slots_used", provider="runwayml", account=acct(a)) == 0
    assert value(first, "dispatcher_account_token_seconds_to_expiry", provider="runwayml", account=acct(a)) > 60

    ids = submit("runwayml", 6, 1.5)
    fleet.start(1)
    seen = {a: set(), b: set()}
    waiting = set()

    def observe_until_done():
        samples = scrape(api)
        for account in (a, b):
            seen[account].add(value(samples, "dispatcher_account_slots_used", provider="runwayml",
                                    account=acct(account)))
        waiting.add(value(samples, "dispatcher_waiting", provider="runwayml"))
        return all(g.state not in LIVE for g in dispatcher.core.generations.many(ids))

    wait(observe_until_done, 120, interval=0.15, what="six generations to finish")

    # a worker defers its samples to a round trip it makes anyway or to its next maintenance
    # tick (0.2 s here): the counters catch up within a tick or two of the last step
    scrapes = []

    def counted() -> bool:
        scrapes.append(scrape(api))
        return value(scrapes[-1], "dispatcher_generations_total", provider="runwayml", outcome="completed",
                     reason="ok") == 6

    wait(counted, 10, interval=0.1, what="the worker's deferred counters to reach Redis")
    last = scrapes[-1]

    # the gauges moved: busy during the run, idle at the end, never past maxJobs
    assert max(seen[a]) > 0 and max(seen[b]) > 0, seen
    assert max(seen[a]) <= 2 and max(seen[b]) <= 1, seen
    assert value(last, "dispatcher_account_slots_used", provider="runwayml", account=acct(a)) == 0
    assert max(waiting) > 0 and value(last, "dispatcher_waiting", provider="runwayml") == 0
    # counters written by the worker process, read by the API process
    admissions = (value(last, "dispatcher_admissions_total", provider="runwayml", account=acct(a))
                  + value(last, "dispatcher_admissions_total", provider="runwayml", account=acct(b)))
    assert admissions == 6
    assert value(last, "dispatcher_generations_total", provider="runwayml", outcome="completed", reason="ok") == 6
    assert value(last, "dispatcher_generation_duration_seconds_count", provider="runwayml", outcome="completed") == 6
    assert value(last, "dispatcher_generation_duration_seconds_bucket", provider="runwayml", outcome="completed",
                 le="+Inf") == 6
    assert value(last, "dispatcher_generation_duration_seconds_bucket", provider="runwayml", outcome="completed",
                 le="1.0") == 0  # every sandbox job lasted 1.5 s
    assert value(last, "dispatcher_generation_wait_seconds_count", provider="runwayml") == 6
    assert value(last, "dispatcher_step_duration_seconds_count", provider="runwayml", step="start") >= 6
    assert value(last, "dispatcher_step_duration_seconds_count", provider="runwayml", step="poll") >= 6
    assert value(last, "dispatcher_steps_total", provider="runwayml", step="start", result="submitted") == 6
    assert value(last, "dispatcher_step_queue_delay_seconds_count", provider="runwayml", step="start") >= 6
    assert value(last, "dispatcher_workers") >= 1


def test_metrics_needs_the_api_token(api):
    res = api.get("/metrics", headers={"Authorization": "Bearer wrong-token"})
    assert res.status_code == 401 and res.json() == {"error": "Unauthorized", "code": 401}


def test_metrics_disabled(dispatcher, r, settings):
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher

    off = Dispatcher(settings.redis_url, settings.with_(metrics=False))
    try:
        metrics.cooldown(off, "runwayml", "someone@example.com")
        assert not r.exists(metrics.METRICS_KEY), "a disabled hook wrote to Redis"
        with TestClient(create_app(off)) as client:
            res = client.get("/metrics", headers={"Authorization": f"Bearer {settings.api_tokens[0]}"})
        assert res.status_code == 404
        assert res.json() == {"error": "Metrics are disabled (DISPATCHER_METRICS=false)", "code": 404}
    finally:
        off.close()


def test_cooldown_flag_and_refresh_failure_are_counted(api, dispatcher, add_account, sandbox):
    a = add_account("runwayml", 2)
    acct = AccountLabels.of(dispatcher)
    dispatcher.core.cooldown_account("runwayml", a, 30)
    samples = scrape(api)
    assert value(samples, "dispatcher_cooldowns_total", provider="runwayml", account=acct(a)) == 1
    assert value(samples, "dispatcher_account_cooldown_active", provider="runwayml", account=acct(a)) == 1
    assert value(samples, "dispatcher_account_eligible", provider="runwayml", account=acct(a)) == 0

    sandbox.patch(f"/_sandbox/users/runwayml/{a}", json={"suspended": True}).raise_for_status()
    with pytest.raises(AccountUnusable):
        ensure_token(dispatcher.core, "runwayml", a, force=True, stale_token=dispatcher.core.token_for("runwayml", a))
    samples = scrape(api)
    assert value(samples, "dispatcher_token_refresh_failures_total", provider="runwayml", account=acct(a),
                 kind="refused") == 1
    assert value(samples, "dispatcher_account_flags_total", provider="runwayml", account=acct(a)) == 1
    assert value(samples, "dispatcher_account_flagged", provider="runwayml", account=acct(a)) == 1


def test_outcome_reasons_are_few_and_named():
    assert metrics.reason_of("completed", None) == "ok"
    assert metrics.reason_of("canceled", None) == "canceled"
    assert metrics.reason_of("failed", 422) == "moderated"
    assert metrics.reason_of("failed", 596) == "account_on_hold"
    assert metrics.reason_of("failed", 418) == "code_418"
    assert metrics.reason_of("failed", None) == "unknown"


@pytest.mark.parametrize("labels", [
    {"provider": "runwayml", "account": "a|b=c#d%e@x.io"},
    {"provider": "minimax", "account": "ünïcode 账户"},
    {},
])
def test_field_encoding_round_trips(labels):
    raw = metrics.field("h", "dispatcher_x", labels, "le=0.5")
    assert metrics.parse_field(raw) == ("h", "dispatcher_x", labels, "le=0.5")


def test_histogram_buckets_are_cumulative(r, dispatcher):
    r.delete(metrics.METRICS_KEY)
    batch = metrics.Batch()
    for seconds in (0.004, 0.005, 0.3, 0.3, 99.0):
        batch.observe("dispatcher_step_duration_seconds", seconds, provider="pixverse", step="poll")
    batch.send(dispatcher.core.r)
    family = exposition._histogram(metrics.STORED["dispatcher_step_duration_seconds"],
                                   metrics.stored(dispatcher.core.r)["dispatcher_step_duration_seconds"])
    got = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert got["0.005"] == 2 and got["0.25"] == 2 and got["0.5"] == 4 and got["60"] == 4 and got["+Inf"] == 5
    count = [s.value for s in family.samples if s.name.endswith("_count")]
    total = [s.value for s in family.samples if s.name.endswith("_sum")]
    assert count == [5] and total == [pytest.approx(99.609)]


def test_a_failing_step_is_counted_and_still_raises(dispatcher, r):
    @metrics.timed_step("poll", lambda: dispatcher.core)
    def broken(generation_id, step_id=None):
        raise RuntimeError("upstream adapter bug")

    r.delete(metrics.METRICS_KEY)
    with pytest.raises(RuntimeError, match="adapter bug"):
        broken("pixverse-" + "0" * 32)
    rows = metrics.stored(dispatcher.core.r)["dispatcher_steps"]
    assert rows == [({"provider": "pixverse", "result": "error", "step": "poll"}, "", 1.0)]


def test_hooks_never_fail_the_work_when_redis_is_away(settings):
    from dispatcher.client import Dispatcher
    from dispatcher.generations import Generation
    from dispatcher.ops.redis_server import free_port

    away = Dispatcher(f"redis://127.0.0.1:{free_port()}/0", settings).core
    try:
        metrics.cooldown(away, "runwayml", "a@example.com")  # logged, not raised
        gen = Generation(id="runwayml-" + "1" * 32, provider="runwayml", operation="x", payload={},
                         state="completed", created=1.0, finished_at=3.0)
        metrics.finished(away, gen)
    finally:
        away.close()


def test_openapi_is_open_and_lists_metrics(api):
    res = api.get("/openapi.json", headers={"Authorization": ""})
    assert res.status_code == 200 and "/metrics" in res.json()["paths"]
    assert api.get("/docs", headers={"Authorization": ""}).status_code == 200
