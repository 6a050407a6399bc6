"""A backend's own RQ job functions, run by a plain `rq worker` in the tests (imported as `backend_jobs`).

Each records what it saw in the Redis list `bk:ran` (JSON entries), so a test counts the runs."""

from __future__ import annotations

import json

from rq import get_current_job

from dispatcher.backends import generation_result, generation_results

RAN = "bk:ran"


def _log(connection, **entry) -> None:
    connection.rpush(RAN, json.dumps(entry, sort_keys=True))


def process(tag: str) -> str:
    """A post-processing job that depends on one generation."""
    job = get_current_job()
    gen = generation_result()
    _log(job.connection, kind=tag, gen=gen.id, status=gen.status, ok=gen.ok, artifacts=gen.artifacts,
         upstream=gen.upstream_id, account=gen.account, job=job.id)
    return gen.status


def final(tag: str) -> int:
    """A job that depends on many generations."""
    job = get_current_job()
    gens = generation_results()
    _log(job.connection, kind=tag, gens=[g.id for g in gens], statuses=[g.status for g in gens], job=job.id)
    return len(gens)


def on_success(job, connection, result, *args, **kwargs) -> None:
    """An RQ success callback: (job, connection, result)."""
    _log(connection, kind="on_success", gen=job.id, status=result.status, artifacts=result.artifacts,
         upstream=result.upstream_id)


def on_failure(job, connection, kind, value, traceback) -> None:
    """An RQ failure callback: (job, connection, type, value, traceback)."""
    _log(connection, kind="on_failure", gen=job.id, status=value.result.status, error=value.result.error,
         type=kind.__name__)


def event(body: dict) -> None:
    """A replyQueue target: the event is what a replyUrl would receive."""
    _log(get_current_job().connection, kind="event", gen=body.get("id"), status=body.get("status"))
