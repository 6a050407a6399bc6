"""`depends_on` a list of 20 generations: the job runs once, after the last of them ended. Runs
examples/rq_backend.py's own `submit_batch` (the README's example) on real workers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rq import Queue
from rq.job import Job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rq_backend.py"


def _example():
    spec = importlib.util.spec_from_file_location("rq_backend", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_job_depending_on_20_generations_runs_once_after_the_last(dispatcher, accounts, procs, until):
    example = _example()
    accounts(2, 4)
    rq = dispatcher.core.rq
    queue = Queue(example.QUEUE, connection=rq)
    prompts = [f"take {i}{' [fail]' if i in (3, 11) else ''}" for i in range(20)]
    handles, posts, final = example.submit_batch(dispatcher, queue, prompts, operation="gen3a_turbo",
                                                 extra_payload={"sandbox_duration": 0.4})
    assert final.get_status() == "deferred"
    procs.start_ours(1)
    procs.start_backend(queues=(example.QUEUE,))
    until(lambda: final.get_status() == "finished", 120, "the report job ran")
    until(lambda: queue.count == 0 and all(p.get_status() in ("finished", "deferred") for p in posts), 30,
          "the post-processing jobs ran")

    assert len(final.results()) == 1  # one execution
    report = final.return_value()
    failed = {handles[3].id, handles[11].id}
    assert set(report["failed"]) == failed and all(report["failed"].values())
    assert report["completed"] == [h.id for h in handles if h.id not in failed]  # depends_on order
    # it ran after the last generation's RQ job ended (RQ's own timestamps)
    ends = [Job.fetch(h.id, connection=rq).ended_at for h in handles]
    final.refresh()
    assert final.started_at >= max(ends)
    for handle, post in zip(handles, posts):
        if handle.id in failed:
            assert post.get_status() == "deferred" and handle.status == "failed"
        else:
            assert post.get_status() == "finished" and len(post.results()) == 1
            value = post.return_value()
            gen = dispatcher.get(handle.id)
            assert value["generation"] == gen.id and value["artifact"] == gen.result["artifacts"][0]
            assert value["upstream_id"] == gen.upstream_id and value["account"] == gen.account
