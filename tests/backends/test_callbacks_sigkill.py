"""`on_success` / `on_failure` (rq.Callback) run on the backend's queue exactly once per generation,
while our workers are SIGKILLed at the moment of completion: after the terminal move but before the
end is handed over (`Core.finished`), right after it, and in the callback worker between firing the
callbacks and RQ recording the generation's job ended. Fault injection: killing_worker.py."""

from __future__ import annotations

import json
from collections import Counter

from rq import Callback, Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from dispatcher.steps import CALLBACK_QUEUE

BACKEND_QUEUE = "videos"  # as conftest.BACKEND_QUEUE


def test_callbacks_fire_exactly_once_while_workers_are_killed_at_completion(
        dispatcher, r, accounts, procs, ran, until, payload):
    accounts(2, 3)
    r.set("bk:kill:before-finished", 3)  # three ends lost by a dying step worker: maintenance hands them over
    r.set("bk:kill:after-finished", 1)
    r.set("bk:kill:after-fire", 1)  # the callback worker dies with the callbacks enqueued
    hooks = dict(on_success=Callback("backend_jobs.on_success"), on_failure=Callback("backend_jobs.on_failure"),
                 callback_queue=BACKEND_QUEUE)
    good = [dispatcher.submit("runwayml", "gen3a_turbo", payload(i), **hooks) for i in range(8)]
    bad = [dispatcher.submit("runwayml", "gen3a_turbo", payload(100 + i, fail=True), **hooks) for i in range(3)]
    every = good + bad
    q = Queue(BACKEND_QUEUE, connection=dispatcher.core.rq)
    deps = {h.id: q.enqueue("backend_jobs.process", "plain", depends_on=h.rq_dependency) for h in every}
    procs.start_ours(1)
    procs.start_backend()
    rq = dispatcher.core.rq

    def settled():
        if any(h.status in ("waiting", "admitted", "submitted") for h in every):
            return False
        gates = [Job.fetch(h.id, connection=rq).get_status() for h in every]
        return all(s in ("finished", "failed") for s in gates) and len(ran()) == len(every) + len(good) \
            and q.count == 0

    until(settled, 150, "every generation ended, its RQ job ended and the backend's jobs ran", tick=procs.revive)
    assert ScheduledJobRegistry(CALLBACK_QUEUE, connection=rq).count == 0
    for point in ("before-finished", "after-finished", "after-fire"):
        assert int(r.get(f"bk:kill:{point}")) < 0, f"the kill at {point} never happened"
    assert procs.restarts >= 4, procs.restarts  # the step worker died 4 times (the callback worker restarts itself)

    entries = ran()
    runs = Counter((e["kind"], e["gen"]) for e in entries)
    assert all(n == 1 for n in runs.values()), [k for k, n in runs.items() if n > 1]
    assert {g for k, g in runs if k == "on_success"} == {h.id for h in good}
    assert {g for k, g in runs if k == "on_failure"} == {h.id for h in bad}
    assert {g for k, g in runs if k == "plain"} == {h.id for h in good}
    for e in entries:
        if e["kind"] == "on_success":
            gen = dispatcher.get(e["gen"])
            assert e["status"] == "completed" and e["artifacts"] == gen.result["artifacts"]
            assert e["upstream"] == gen.upstream_id
        elif e["kind"] == "on_failure":
            assert e["status"] == "failed" and e["type"] == "GenerationFailed" and e["error"]
    for h in bad:
        assert deps[h.id].get_status() == "deferred"  # a plain dependent of a failed generation never runs
    # each callback job ran once (RQ keeps one result per execution)
    for h in every:
        kind = "success" if h in good else "failure"
        assert len(Job.fetch(f"{h.id}_on_{kind}", connection=rq).results()) == 1
    log = [json.loads(line) for line in procs.logs().splitlines() if line.startswith("{")]
    handed = [e for e in log if e.get("event") == "generation end handed to RQ by maintenance"]
    assert len(handed) >= 3, "the ends the killed workers did not hand over were not recovered by maintenance"
