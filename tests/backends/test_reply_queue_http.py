"""`replyQueue` over HTTP: a backend in another language that shares the Redis gets a generation's
end as an RQ job on its queue (the replyUrl body as the argument), only for the queue and function
pairs DISPATCHER_REPLY_QUEUES allows; anything else is a 400 `{"error", "code"}` that changes nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from dispatcher import ValidationError
from dispatcher.client import Dispatcher

ALLOWED = {"queue": "videos", "function": "backend_jobs.event"}  # conftest: videos=backend_jobs.event, events=backend_jobs.*
REFUSED = [
    {"queue": "other", "function": "backend_jobs.event"},  # a queue not listed
    {"queue": "videos", "function": "os.system"},  # a function not listed for it
    {"queue": "videos", "function": "backend_jobs.process"},  # listed exactly, not as a prefix
    {"queue": "dispatcher.runwayml", "function": "backend_jobs.event"},  # our own queues: never
    {"queue": "videos"},  # no function
    {"queue": "videos", "function": "backend_jobs.event", "serializer": "yaml"},
    {"queue": "videos", "function": "backend_jobs.event", "priority": 1},  # an unknown field
    {"queue": "vid eos", "function": "backend_jobs.event"},
    {"queue": "videos", "function": "not a path"},
    "videos:backend_jobs.event", 42, ["videos", "backend_jobs.event"],
]


@pytest.mark.parametrize("path", ["/v1/runwayml/gen3a_turbo", "/v1/runwayml/gen3turbo/create"])
def test_refused_reply_queues_answer_400_and_change_nothing(api, accounts, r, snapshot, path):
    accounts(1, 2)
    before = snapshot(r)
    for reply in REFUSED:
        res = api.post(path, json={"promptText": "a fox", "replyQueue": reply})
        assert res.status_code == 400, (reply, res.status_code, res.text)
        body = res.json()
        assert set(body) == {"error", "code"} and body["code"] == 400 and body["error"], body
        assert snapshot(r) == before, f"{reply!r} changed Redis"


def test_without_an_allow_list_reply_queue_is_refused(settings, r, sandbox, snapshot):
    with Dispatcher(settings.redis_url, settings.with_(reply_queues=())) as d:
        before = snapshot(r)
        with pytest.raises(ValidationError, match="DISPATCHER_REPLY_QUEUES"):
            d.submit("runwayml", "gen3a_turbo", {"promptText": "x"}, reply_queue=ALLOWED)
        assert snapshot(r) == before


def test_reply_queue_events_reach_plain_rq_workers_once(api, dispatcher, accounts, procs, ran, until, payload):
    accounts(1, 3)
    made = []
    for i, (reply, fail) in enumerate([(ALLOWED, False), (ALLOWED, True),
                                       ({"queue": "events", "function": "backend_jobs.event", "serializer": "json"},
                                        False)]):
        res = api.post("/v1/runwayml/gen3a_turbo", json={**payload(i, fail=fail), "replyQueue": reply,
                                                         "replyRef": f"order-{i}"})
        assert res.status_code == 200, res.text
        made.append(res.json()["id"])
    form = api.post("/v1/runwayml/gen3a_turbo", data={"promptText": "form",
                                                      "replyQueue": '{"queue": "videos", "function": "backend_jobs.event"}'})
    assert form.status_code == 200, form.text  # a form field carries the object as JSON
    made.append(form.json()["id"])
    procs.start_ours(1)
    procs.start_backend(queues=("videos",))
    procs.start_backend(queues=("events",), serializer="rq.serializers.JSONSerializer")  # any RQ-speaking worker
    until(lambda: len(ran()) == len(made), 90, "every generation's event ran")
    runs = Counter(e["gen"] for e in ran())
    assert runs == Counter(made)
    states = {e["gen"]: e["status"] for e in ran()}
    assert states == {gid: dispatcher.get(gid).state for gid in made}
    assert sorted(states.values()) == ["completed", "completed", "completed", "failed"]
