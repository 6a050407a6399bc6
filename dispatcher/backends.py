"""What a backend's own RQ jobs call: the result of the generation they depend on.

A generation is an RQ job (see `dispatcher.backend_events`): its id is the generation's id, it
stays *deferred* while the generation runs, and it ends *finished* when the generation completed,
*failed* when it failed or was canceled. So a backend's job that `depends_on` it runs once the
generation completed (or, with `Dependency(..., allow_failure=True)`, once it ended either way),
and reads what came of it here:

    from dispatcher.backends import generation_result

    def process_video(name):                 # enqueued with depends_on=handle.rq_dependency
        gen = generation_result()            # the generation this job depends on
        gen.ok, gen.artifacts, gen.upstream_id, gen.account, gen.error, gen.code

`generation_results()` gives one per generation a job depends on (in `depends_on` order). RQ's own
`job.dependency.return_value()` gives the same fields as a dict, for a completed generation.

`run_callback` is the job `Dispatcher.submit(on_success=Callback(fn), on_failure=Callback(fn))`
enqueues on the backend's queue when the generation ends: it calls `fn` as RQ calls its own
callbacks, `fn(job, connection, result)` on success and `fn(job, connection, type, value,
traceback)` on failure, where `job` is the generation's RQ job, `result` a `GenerationResult` and
`value` a `GenerationFailed` carrying it. The backend's worker runs it, so the backend must be able
to import this package (it submitted through it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.utils import import_attribute

from . import keys
from .errors import NotFound
from .generations import COMPLETED, _decode, provider_of

GATE_FUNC = "workers.backend_events.settle"  # what a generation's RQ job runs when it ends
RESULT_META = "generation"  # the generation's result in its RQ job's meta, once it ended


@dataclass(frozen=True)
class GenerationResult:
    """How a generation ended: `status` completed | failed | canceled (| gone: its record expired)."""

    id: str
    status: str
    provider: str | None = None
    operation: str | None = None
    account: str | None = None
    upstream_id: str | None = None
    artifacts: list = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    code: int | None = None
    reply_ref: str | None = None
    record: dict = field(default_factory=dict)  # the generation as GET /v1/jobs/{id} answers it

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    @classmethod
    def from_dict(cls, values: dict) -> "GenerationResult":
        result = values.get("result") if isinstance(values.get("result"), dict) else None
        return cls(id=values["id"], status=values.get("status") or "gone", provider=values.get("provider"),
                   operation=values.get("operation"), account=values.get("account"),
                   upstream_id=values.get("upstreamId"), artifacts=list((result or {}).get("artifacts") or []),
                   result=result, error=values.get("error"), code=values.get("code"),
                   reply_ref=values.get("replyRef"), record=dict(values))


class GenerationFailed(Exception):
    """A generation that failed or was canceled: `.result` says how (a `GenerationResult`)."""

    def __init__(self, result: GenerationResult):
        self.result = result
        code = f" ({result.code})" if result.code else ""
        super().__init__(f"generation {result.id} {result.status}{code}: {result.error or result.status}")


def result_dict(generation_id: str, gen) -> dict:
    """The result a generation's RQ job keeps (its `to_dict()`, with `artifacts`); `gen` None: gone."""
    if gen is None:
        return {"id": generation_id, "status": "gone", "error": "the generation's record expired or was deleted"}
    return {**gen.to_dict(), "artifacts": list((gen.result or {}).get("artifacts") or [])}


def is_generation_job(job: Job) -> bool:
    return job.func_name == GATE_FUNC


def read(connection, generation_id: str) -> GenerationResult:
    """The generation's result: kept on its RQ job once it ended, else read from its record."""
    try:
        gate = Job.fetch(generation_id, connection=connection)
        kept = gate.meta.get(RESULT_META)
        if kept:
            return GenerationResult.from_dict(kept)
    except NoSuchJobError:
        pass
    raw = connection.hgetall(keys.generation(provider_of(generation_id), generation_id))
    if not raw:
        return GenerationResult.from_dict(result_dict(generation_id, None))
    text = {_text(k): _text(v) for k, v in raw.items()}
    return GenerationResult.from_dict(result_dict(generation_id, _decode(text)))


def generation_results(job: Job | None = None) -> list[GenerationResult]:
    """One result per generation `job` (the current job by default) depends on, in `depends_on`
    order; the generation itself when `job` is a generation's RQ job."""
    job = job or get_current_job()
    if job is None:
        raise RuntimeError("generation_results() needs a job: call it inside an RQ job, or pass one")
    if is_generation_job(job):
        return [read(job.connection, job.id)]
    out = []
    for dependency_id in job._dependency_ids:  # RQ keeps them in depends_on order
        try:
            provider_of(dependency_id)
        except NotFound:
            continue  # a dependency that is no generation
        out.append(read(job.connection, dependency_id))
    return out


def generation_result(job: Job | None = None) -> GenerationResult:
    """The result of the (first) generation `job` depends on; see `generation_results`."""
    found = generation_results(job)
    if not found:
        raise LookupError("this job depends on no generation")
    return found[0]


def run_callback(kind: str, func: str, generation_id: str) -> Any:
    """Run on the backend's queue by its worker: a generation's on_success / on_failure callback,
    called as RQ calls its own (see the module docstring)."""
    current = get_current_job()
    connection = current.connection if current is not None else None
    try:
        gate = Job.fetch(generation_id, connection=connection)
    except NoSuchJobError:
        gate = None
    result = read(connection, generation_id)
    fn = import_attribute(func)
    if kind == "success":
        return fn(gate, connection, result)
    failure = GenerationFailed(result)
    return fn(gate, connection, GenerationFailed, failure, None)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
