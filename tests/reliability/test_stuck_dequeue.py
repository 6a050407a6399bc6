"""A callback job its worker took (RQ's BLMOVE to `<queue>:intermediate`) and died with before
starting it goes back on its queue (workers/maintenance.py `requeue_stuck_callbacks`); RQ alone
would leave it there until a worker's start a minute later or its 10-minute pass.

The callback worker dies with the step worker that started it, at whatever point it is: the
SIGKILL test of tests/backends/ met this case (a backend event stuck for minutes)."""

from __future__ import annotations

from rq import Queue

from dispatcher import rq_glue
from dispatcher.steps import CALLBACK_QUEUE
from workers import maintenance


def _taken(conn, func: str) -> tuple[str, str]:
    """A job enqueued, then taken as a worker serving one queue takes it (and nothing more)."""
    queue = Queue(CALLBACK_QUEUE, connection=conn)
    job = queue.enqueue(func)
    intermediate = f"rq:queue:{CALLBACK_QUEUE}:intermediate"
    assert conn.blmove(f"rq:queue:{CALLBACK_QUEUE}", intermediate, 1) == job.id.encode()
    return job.id, intermediate


def test_a_job_taken_by_a_worker_that_died_is_put_back_on_its_queue_once(dispatcher):
    conn = dispatcher.core.rq
    job_id, intermediate = _taken(conn, "builtins.print")
    assert rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=0) == [], "first seen: wait a tick"
    assert rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=3600) == [], "not old enough yet"
    assert rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=0) == [job_id]
    assert conn.lrange(f"rq:queue:{CALLBACK_QUEUE}", 0, -1) == [job_id.encode()]
    assert conn.llen(intermediate) == 0
    assert rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=0) == []  # never twice


def test_a_job_its_worker_started_stays_with_that_worker(dispatcher):
    conn = dispatcher.core.rq
    job_id, intermediate = _taken(conn, "builtins.print")
    conn.hset(f"rq:job:{job_id}", "status", "started")  # the live worker's bookkeeping
    rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=0)
    assert rq_glue.requeue_stuck_dequeues(conn, CALLBACK_QUEUE, older_than=0) == []
    assert conn.llen(f"rq:queue:{CALLBACK_QUEUE}") == 0


def test_the_maintenance_tick_puts_stuck_callbacks_back(dispatcher, monkeypatch):
    conn = dispatcher.core.rq
    job_id, _ = _taken(conn, "builtins.print")
    monkeypatch.setattr(maintenance, "STUCK_AFTER", 0.0)
    first = maintenance.tick(dispatcher.core)
    second = maintenance.tick(dispatcher.core)
    assert (first["callbacks"], second["callbacks"]) == (0, 1)
    assert conn.lrange(f"rq:queue:{CALLBACK_QUEUE}", 0, -1) == [job_id.encode()]
