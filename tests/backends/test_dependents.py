"""A generation is something RQ jobs `depends_on`: its dependents run once when it completed, never
when it failed or was canceled unless they allow failure; rq-dashboard lists them as deferred until
it ends. Real processes: our workers and a plain `rq worker` on the backend's queue."""

from __future__ import annotations

from collections import Counter

from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry

from dispatcher.ops.dashboard import build_app
from dispatcher.steps import CALLBACK_QUEUE

BACKEND_QUEUE = "videos"  # as conftest.BACKEND_QUEUE (test files cannot import it)


def test_dependents_run_once_per_completed_generation_and_never_for_failed_ones(
        dispatcher, accounts, procs, ran, until, payload):
    accounts(2, 3)
    q = Queue(BACKEND_QUEUE, connection=dispatcher.core.rq)
    good = [dispatcher.submit("runwayml", "gen3a_turbo", payload(i)) for i in range(4)]
    bad = [dispatcher.submit("runwayml", "gen3a_turbo", payload(10 + i, fail=True)) for i in range(2)]
    moderated = dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "[moderated] no"})
    canceled = dispatcher.submit("runwayml", "gen3a_turbo", payload(20, duration=60))
    every = good + bad + [moderated, canceled]
    plain = {h.id: q.enqueue("backend_jobs.process", "plain", depends_on=h.rq_dependency) for h in every}
    lenient = {h.id: q.enqueue("backend_jobs.process", "lenient", depends_on=h.dependency(allow_failure=True))
               for h in every}
    assert all(j.get_status() == JobStatus.DEFERRED for j in [*plain.values(), *lenient.values()])
    procs.start_ours(1)
    procs.start_backend()
    until(lambda: canceled.status == "submitted", 60, "the long generation accepted upstream")
    canceled.cancel()

    def done():
        return all(h.status not in ("waiting", "admitted", "submitted") for h in every) and \
            len(ran()) == len(good) * 2 + len(bad) + 2

    until(done, 90, "every generation ended and its dependents ran")
    until(lambda: all(Job.fetch(h.id, connection=dispatcher.core.rq).get_status() in ("finished", "failed")
                      for h in every), 30, "every generation's RQ job ended")
    entries = ran()
    runs = Counter((e["kind"], e["gen"]) for e in entries)
    assert all(n == 1 for n in runs.values()), runs
    assert {g for k, g in runs if k == "plain"} == {h.id for h in good}
    assert {g for k, g in runs if k == "lenient"} == {h.id for h in every}
    for e in entries:
        gen = dispatcher.get(e["gen"])
        assert e["status"] == gen.state and e["ok"] == (gen.state == "completed")
        if e["ok"]:  # what the dependent read: artifacts, the upstream id, the account
            assert e["artifacts"] and e["artifacts"] == gen.result["artifacts"]
            assert e["upstream"] == gen.upstream_id and e["account"] == gen.account
    assert {dispatcher.get(h.id).state for h in bad + [moderated]} == {"failed"}
    assert dispatcher.get(canceled.id).state == "canceled"
    # RQ's own states: the generation's job finished / failed; a dependent of a failed one stays
    # deferred (RQ's rule for dependencies that failed), never run
    rq = dispatcher.core.rq
    for h in every:
        completed = h in good
        assert Job.fetch(h.id, connection=rq).get_status() == ("finished" if completed else "failed")
        assert plain[h.id].get_status() == ("finished" if completed else "deferred")
        assert lenient[h.id].get_status() == "finished"
    assert Job.fetch(good[0].id, connection=rq).return_value()["artifacts"] == dispatcher.get(good[0].id).result[
        "artifacts"]


def test_rq_dashboard_lists_dependents_as_deferred_until_their_generation_ends(
        dispatcher, settings, accounts, procs, ran, until, payload):
    accounts(1, 1)
    busy = dispatcher.submit("runwayml", "gen3a_turbo", payload(0, duration=2.0))
    waiting = dispatcher.submit("runwayml", "gen3a_turbo", payload(1))
    q = Queue(BACKEND_QUEUE, connection=dispatcher.core.rq)
    deps = [q.enqueue("backend_jobs.process", "plain", depends_on=h.rq_dependency) for h in (busy, waiting)]
    dashboard = build_app(settings.redis_url, settings=settings).test_client()

    def listed(queue: str) -> list[str]:
        res = dashboard.get(f"/0/data/jobs/{queue}/deferred/20/asc/1.json")
        assert res.status_code == 200, res.data[:300]
        return [j["id"] for j in res.get_json()["jobs"]]

    # no worker yet: both generations wait; their jobs and the dependents show as deferred
    assert set(listed(BACKEND_QUEUE)) == {d.id for d in deps}
    assert {busy.id, waiting.id} <= set(listed(CALLBACK_QUEUE))
    # (rq-dashboard 0.9's job-details JSON fails for any job with dependencies under rq 3.0: it
    # calls .decode() on rq 3's already-decoded `dependency_ids`; its lists, read here, work)
    assert [d.get_status() for d in deps] == ["deferred", "deferred"]
    procs.start_ours(1)
    procs.start_backend()
    until(lambda: busy.status == "submitted", 60, "the first generation accepted upstream")
    assert waiting.status == "waiting"  # its account's one slot is taken
    assert set(listed(BACKEND_QUEUE)) == {d.id for d in deps}
    until(lambda: len(ran()) == 2, 90, "both dependents ran")
    assert listed(BACKEND_QUEUE) == [] and not {busy.id, waiting.id} & set(listed(CALLBACK_QUEUE))
    assert DeferredJobRegistry(BACKEND_QUEUE, connection=dispatcher.core.rq).get_job_ids() == []
    assert [e["gen"] for e in ran()] == [busy.id, waiting.id]
