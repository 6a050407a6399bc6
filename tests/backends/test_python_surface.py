"""The Python surface of RQ-native backends, in-process: bad input changes nothing; a generation's
RQ job is written once, on first use, deferred while it runs and queued at once when it ended."""

from __future__ import annotations

import pytest
from rq import Callback, Queue
from rq.job import Job

from dispatcher import NotFound, ValidationError
from dispatcher.steps import CALLBACK_QUEUE


def _local():
    return None


@pytest.mark.parametrize("bad", [
    dict(on_success=Callback(lambda job, connection, result: None)),  # the backend's worker cannot import it
    dict(on_failure=Callback(_local), callback_queue="dispatcher.callbacks"),  # our own queue
    dict(on_success="backend_jobs.on_success", callback_queue="bad queue"),
    dict(on_success=Callback("__main__.ready")),
    dict(on_success=42),
])
def test_bad_hooks_are_refused_and_change_nothing(dispatcher, accounts, r, snapshot, bad):
    accounts(1, 1)
    before = snapshot(r)
    with pytest.raises(ValidationError):
        dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "x"}, **bad)
    assert snapshot(r) == before


def test_a_refused_submission_leaves_no_rq_job(dispatcher, accounts, r):
    accounts(1, 1)
    dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "runs"})
    keys = set(r.keys())
    with pytest.raises(Exception):  # busy, and asked not to wait: 429
        dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "x"}, wait=False, rq=True)
    assert set(r.keys()) == keys


def test_the_rq_job_is_written_once_and_follows_the_generation(dispatcher, accounts, r):
    accounts(1, 1)
    running = dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "a"})
    waiting = dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "b"})
    job = waiting.rq_dependency
    assert job.id == waiting.id and job.get_status() == "deferred" and job.origin == CALLBACK_QUEUE
    assert waiting.rq_job.id == job.id and Job.fetch(job.id, connection=dispatcher.core.rq).created_at == job.created_at
    assert waiting.id in Queue(CALLBACK_QUEUE, connection=dispatcher.core.rq).deferred_job_registry.get_job_ids()
    waiting.cancel()  # Core.finished releases it: on the callback queue, for settle
    assert Job.fetch(job.id, connection=dispatcher.core.rq).get_status() == "queued"
    running.cancel()
    late = running.rq_job  # first asked for after its end: queued at once
    assert late.get_status() == "queued"
    assert Queue(CALLBACK_QUEUE, connection=dispatcher.core.rq).job_ids == [waiting.id, running.id]
    with pytest.raises(NotFound):
        dispatcher.rq_job("runwayml-" + "0" * 32)
    with pytest.raises(NotFound):
        dispatcher.rq_job("nonsense")
