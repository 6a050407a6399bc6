"""Chained starts (workers/chain.py): the step whose release admits a waiter runs that
waiter's start step itself, within bounds, and a chain that breaks loses nothing.

Real Redis, real RQ jobs, the sandbox upstream over loopback; the steps run in this
process as a worker runs them (the `steps` fixture).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.utils import now as rq_now

from dispatcher.errors import ConfigurationError
from dispatcher.generations import ADMITTED, COMPLETED
from dispatcher.settings import Settings
from dispatcher.steps import queue_name
from workers import chain, maintenance

PROVIDER, OPERATION = "riffusion", "music/generate"
QUEUE = queue_name(PROVIDER)


def _setup(dispatcher, sandbox, n: int, cookie: str) -> list[str]:
    """One account with maxJobs 1 and an instant upstream, and n generations: the first
    admitted, the others waiting. The scripts are loaded first by a generation of its own."""
    sandbox.post("/_sandbox/users", json={"provider": PROVIDER, "cookie": cookie, "concurrency": 1,
                                          "duration": 0}).raise_for_status()
    dispatcher.upsert_account(PROVIDER, {"cookie": cookie, "maxJobs": 1})
    return [dispatcher.submit(PROVIDER, OPERATION, {"prompt": f"p{i}", "sandbox_duration": 0}).id for i in range(n)]


def _queued(dispatcher) -> list[str]:
    return [j.decode() for j in dispatcher.core.rq.lrange(f"rq:queue:{QUEUE}", 0, -1)]


def _run_queue(dispatcher) -> None:
    """Perform every queued step job, as a worker would, until the queue is empty."""
    while (job_id := dispatcher.core.rq.lpop(f"rq:queue:{QUEUE}")) is not None:
        Job.fetch(job_id.decode(), connection=dispatcher.core.rq).perform()


@pytest.fixture(autouse=True)
def unhurried(monkeypatch):
    """Claims counted here do not depend on how fast this machine runs a step (the time
    bound has tests of its own)."""
    monkeypatch.setattr(chain, "BUDGET_S", 60.0)


def test_a_chain_stops_claiming_at_its_bound_and_the_rest_goes_through_rq(dispatcher, sandbox, steps, monkeypatch):
    monkeypatch.setattr(dispatcher.core, "settings", dispatcher.settings.with_(chain_starts=2))
    ids = _setup(dispatcher, sandbox, 5, "ch-cookie-000001")
    first = dispatcher.get(ids[0]).step
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)  # run here, as the worker that dequeued it
    assert steps.start(ids[0], first) == COMPLETED
    states = [dispatcher.get(g).state for g in ids]
    # the first step ran two claimed starts; the third admission went onto RQ's queue
    assert states == [COMPLETED, COMPLETED, COMPLETED, ADMITTED, "waiting"]
    assert _queued(dispatcher) == [dispatcher.get(ids[3]).step]
    assert Job.fetch(dispatcher.get(ids[3]).step, connection=dispatcher.core.rq).get_status() == "queued"
    _run_queue(dispatcher)  # that job chains the last one
    assert [dispatcher.get(g).state for g in ids] == [COMPLETED] * 5
    finished = set(FinishedJobRegistry(QUEUE, connection=dispatcher.core.rq).get_job_ids())
    assert {dispatcher.get(g).step for g in (ids[1], ids[2], ids[4])} <= finished
    chained = Job.fetch(dispatcher.get(ids[1]).step, connection=dispatcher.core.rq)
    assert chained.latest_result().return_value == COMPLETED, "its result recorded as RQ records one"
    assert sandbox.get("/_sandbox/stats").json()["duplicates"] == 0


def test_a_chained_start_that_raises_is_shown_failed_and_retried(dispatcher, sandbox, steps, monkeypatch):
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000002")
    real_token = steps._token

    def broken(d, gen, account=None):
        if gen.id == ids[1]:
            raise RuntimeError("chained start blew up")
        return real_token(d, gen, account)

    monkeypatch.setattr(steps, "_token", broken)
    first = dispatcher.get(ids[0]).step
    parked = dispatcher.get(ids[1]).parked  # the start job the release will claim
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)
    assert steps.start(ids[0], first) == COMPLETED, "the releasing step is not failed by the chained one"
    claimed = dispatcher.get(ids[1])
    assert claimed.state == ADMITTED and not claimed.upstream_id
    job = Job.fetch(parked, connection=dispatcher.core.rq)
    assert job.get_status() == "failed" and job.id in FailedJobRegistry(QUEUE, connection=dispatcher.core.rq)
    assert "chained start blew up" in job.latest_result().exc_string
    # an unexpected raise is retried after a short backoff (workers/faults.py), its lease held meanwhile
    retry = Job.fetch(claimed.step, connection=dispatcher.core.rq)
    assert retry.id != parked and retry.get_status() == "scheduled"
    assert maintenance.resume_orphans(dispatcher.core, PROVIDER) == 0, "its lease still runs"
    monkeypatch.setattr(steps, "_token", real_token)
    time.sleep(0.6)  # backoff(1) is at most 0.5 s
    assert maintenance.promote_scheduled(dispatcher.core, [QUEUE]) == 1
    _run_queue(dispatcher)
    assert dispatcher.get(ids[1]).state == COMPLETED
    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["duplicates"] == 0 and stats["violations"] == 0


def test_a_worker_that_dies_after_claiming_leaves_a_generation_maintenance_resumes(dispatcher, sandbox, steps):
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000003")
    cap = dispatcher.core.capacity(PROVIDER)
    # the release a finishing step makes, claiming the waiter's start; then the worker dies
    pipe = dispatcher.core.r.pipeline(transaction=False)
    read = cap.release_in(pipe, ids[0], claim_ttl=60)
    admissions = read(pipe.execute()[0])
    claimed = dispatcher.get(ids[1])
    assert [(a.generation_id, a.claimed) for a in admissions] == [(ids[1], claimed.step)]
    assert claimed.state == ADMITTED and claimed.step not in _queued(dispatcher)
    job = Job.fetch(claimed.step, connection=dispatcher.core.rq)
    assert job.get_status() == "started" and 0 < dispatcher.core.rq.ttl(job.key) <= 60
    dispatcher.core.generations.move(ids[0], {ADMITTED}, "canceled")  # the released one is out of the way
    cap.renew(ids[1], ttl_ms=0)
    assert maintenance.resume_orphans(dispatcher.core, PROVIDER) == 1
    _run_queue(dispatcher)
    assert dispatcher.get(ids[1]).state == COMPLETED
    assert sandbox.get("/_sandbox/stats").json()["duplicates"] == 0


def test_a_release_that_is_not_asked_to_claim_enqueues_as_before(dispatcher, sandbox):
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000004")
    admissions = dispatcher.core.capacity(PROVIDER).release(ids[0])
    assert [(a.generation_id, a.enqueued, a.claimed) for a in admissions] == [(ids[1], True, None)]
    assert dispatcher.get(ids[1]).step in _queued(dispatcher)


@pytest.mark.parametrize("raw", ["-1", "many", "1.5"])
def test_a_bad_chain_starts_setting_is_refused_clearly(monkeypatch, raw):
    monkeypatch.setenv("DISPATCHER_CHAIN_STARTS", raw)
    with pytest.raises(ConfigurationError, match="DISPATCHER_CHAIN_STARTS"):
        Settings.from_env()


def test_chain_starts_zero_runs_every_start_as_its_own_rq_job(dispatcher, sandbox, steps, monkeypatch):
    monkeypatch.setattr(dispatcher.core, "settings", dispatcher.settings.with_(chain_starts=0))
    ids = _setup(dispatcher, sandbox, 3, "ch-cookie-000005")
    first = dispatcher.get(ids[0]).step
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)
    assert steps.start(ids[0], first) == COMPLETED
    assert [dispatcher.get(g).state for g in ids] == [COMPLETED, ADMITTED, "waiting"]
    assert _queued(dispatcher) == [dispatcher.get(ids[1]).step]


def test_a_step_job_that_started_longer_ago_than_the_budget_claims_nothing(dispatcher, sandbox, steps, monkeypatch):
    """A slow step (timeouts, a token refresh) never runs another start inside its RQ job's
    timeout: its release enqueues the waiter's start as before."""
    monkeypatch.setattr(chain, "BUDGET_S", 0.25)
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000006")
    job = Job.fetch(dispatcher.get(ids[0]).step, connection=dispatcher.core.rq)
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, job.id)
    job.started_at = rq_now() - timedelta(seconds=10)  # as RQ set it when the job began
    assert job.perform() == COMPLETED
    assert dispatcher.get(ids[1]).state == ADMITTED
    assert _queued(dispatcher) == [dispatcher.get(ids[1]).step]


def test_with_no_budget_nothing_is_claimed(dispatcher, sandbox, steps, monkeypatch):
    monkeypatch.setattr(chain, "BUDGET_S", 0.0)
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000007")
    first = dispatcher.get(ids[0]).step
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)
    assert steps.start(ids[0], first) == COMPLETED
    assert _queued(dispatcher) == [dispatcher.get(ids[1]).step]


def test_a_step_that_raises_after_its_release_claimed_still_runs_the_claimed_start(dispatcher, sandbox, steps,
                                                                                   monkeypatch):
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000008")
    real_finished = dispatcher.core.finished

    def finished(generation_id, gen=None):
        if generation_id == ids[0]:
            raise RuntimeError("bookkeeping failed after the release")
        return real_finished(generation_id, gen)

    monkeypatch.setattr(dispatcher.core, "finished", finished)
    first = dispatcher.get(ids[0]).step
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)
    with pytest.raises(RuntimeError, match="bookkeeping failed"):
        steps.start(ids[0], first)
    # the claimed waiter did not wait for its lease to lapse
    assert dispatcher.get(ids[1]).state == COMPLETED
    assert Job.fetch(dispatcher.get(ids[1]).step, connection=dispatcher.core.rq).get_status() == "finished"


def test_a_step_run_outside_a_step_job_entry_point_claims_nothing(dispatcher, sandbox, steps):
    """Only a step job's entry point runs claims, so a step called any other way never makes
    one (its waiter would sit claimed until its lease lapsed)."""
    ids = _setup(dispatcher, sandbox, 2, "ch-cookie-000009")
    assert chain.claim_ttl(dispatcher.core) == 0
    first = dispatcher.get(ids[0]).step
    dispatcher.core.rq.lrem(f"rq:queue:{QUEUE}", 0, first)
    assert steps._start(ids[0], first) == COMPLETED  # the timed step itself, not the entry point
    assert _queued(dispatcher) == [dispatcher.get(ids[1]).step]


def _no_line(dispatcher, sandbox, n: int, cookie: str) -> list[str]:
    """One account with room for all n (no line): every start job is queued at submit."""
    sandbox.post("/_sandbox/users", json={"provider": PROVIDER, "cookie": cookie, "concurrency": n,
                                          "duration": 0}).raise_for_status()
    dispatcher.upsert_account(PROVIDER, {"cookie": cookie, "maxJobs": n})
    return [dispatcher.submit(PROVIDER, OPERATION, {"prompt": f"q{i}", "sandbox_duration": 0}).id for i in range(n)]


def test_with_no_line_a_start_job_runs_the_starts_queued_behind_it_up_to_its_bound(dispatcher, sandbox, steps,
                                                                                   monkeypatch):
    monkeypatch.setattr(dispatcher.core, "settings", dispatcher.settings.with_(chain_starts=5))
    ids = _no_line(dispatcher, sandbox, 8, "ch-cookie-000010")
    first = dispatcher.core.rq.lpop(f"rq:queue:{QUEUE}").decode()  # dequeued, as a worker does
    assert Job.fetch(first, connection=dispatcher.core.rq).perform() == COMPLETED
    states = [dispatcher.get(g).state for g in ids]
    assert states == [COMPLETED] * 6 + [ADMITTED] * 2, "its own start, then 5 claimed from the queue's head"
    assert _queued(dispatcher) == [dispatcher.get(g).step for g in ids[6:]]
    finished = FinishedJobRegistry(QUEUE, connection=dispatcher.core.rq)
    for gen_id in ids[1:6]:  # each claimed start shows as a finished RQ job under its own name
        job = Job.fetch(dispatcher.get(gen_id).step, connection=dispatcher.core.rq)
        assert job.get_status() == "finished" and job.id in finished.get_job_ids()
    assert sandbox.get("/_sandbox/stats").json()["duplicates"] == 0


def test_a_queued_claim_never_takes_a_job_past_a_poll_batch(dispatcher, sandbox, steps):
    ids = _no_line(dispatcher, sandbox, 3, "ch-cookie-000011")
    first = dispatcher.core.rq.lpop(f"rq:queue:{QUEUE}").decode()
    dispatcher.core.rq.lpush(f"rq:queue:{QUEUE}", "riffusion_polls_0000")  # a batch at the head
    assert Job.fetch(first, connection=dispatcher.core.rq).perform() == COMPLETED
    assert [dispatcher.get(g).state for g in ids] == [COMPLETED, ADMITTED, ADMITTED]
    assert _queued(dispatcher)[0] == "riffusion_polls_0000" and len(_queued(dispatcher)) == 3
