"""A complete RQ backend on the dispatcher: 20 generations, a post-processing job per generation,
and one report job that runs once all 20 have ended.

Run it next to the dispatcher's workers, on the same Redis:

    export DISPATCHER_REDIS_URL=redis://127.0.0.1:6379/0
    dispatcher worker &                                          # the dispatcher's workers
    rq worker videos --url "$DISPATCHER_REDIS_URL" --path examples &   # the backend's own worker
    python examples/rq_backend.py runwayml gen3turbo/create

Everything below is plain RQ: the generations are RQ jobs (`handle.rq_dependency`) that the
backend's jobs `depends_on`; the callbacks are `rq.Callback`s, run by the backend's worker.
"""

from __future__ import annotations

import os
import sys

from redis import Redis
from rq import Callback, Queue
from rq.job import Dependency

from dispatcher import Dispatcher
from dispatcher.backends import generation_result, generation_results

QUEUE = "videos"
HERE = "rq_backend"  # this module as the backend's worker imports it (`--path examples`), not __main__


# -- the backend's jobs (run by `rq worker videos`) -------------------------------------------
def post_process(index: int) -> dict:
    """Runs once its generation completed (never when it failed: see `report` for those)."""
    gen = generation_result()  # the generation this job depends on
    # e.g. download gen.artifacts[0], transcode it, store it with the order...
    return {"index": index, "generation": gen.id, "artifact": gen.artifacts[0] if gen.artifacts else None,
            "upstream_id": gen.upstream_id, "account": gen.account}


def report() -> dict:
    """Runs once, after the last of the generations it depends on ended, however each ended."""
    gens = generation_results()  # one per generation, in depends_on order
    return {"completed": [g.id for g in gens if g.ok],
            "failed": {g.id: g.error for g in gens if not g.ok}}


def video_ready(job, connection, result, *args, **kwargs) -> None:
    """An RQ success callback: `job` is the generation's RQ job, `result` how it ended."""
    print(f"ready: {result.id} -> {result.artifacts}")


def video_failed(job, connection, kind, value, traceback) -> None:
    """An RQ failure callback: `value` is a GenerationFailed, `value.result` how it ended."""
    print(f"failed: {value.result.id}: {value.result.error} ({value.result.code})")


# -- the backend's request handler --------------------------------------------------------------
def submit_batch(d: Dispatcher, queue: Queue, prompts: list[str], provider: str = "runwayml",
                 operation: str = "gen3turbo/create", extra_payload: dict | None = None):
    """Submit one generation per prompt, a post-processing job per generation and a report job
    that depends on all of them. Returns (handles, post-processing jobs, report job)."""
    handles, posts = [], []
    for i, text in enumerate(prompts):
        handle = d.submit(provider, operation, {"promptText": text, **(extra_payload or {})},
                          on_success=Callback(f"{HERE}.video_ready"), on_failure=Callback(f"{HERE}.video_failed"),
                          callback_queue=queue)
        handles.append(handle)
        posts.append(queue.enqueue(f"{HERE}.post_process", i, depends_on=handle.rq_dependency))
    # allow_failure: the report runs once every generation ended, completed or not
    final = queue.enqueue(f"{HERE}.report", depends_on=Dependency(jobs=[h.rq_job for h in handles],
                                                                 allow_failure=True))
    return handles, posts, final


def main(argv: list[str]) -> None:
    provider = argv[0] if argv else "runwayml"
    operation = argv[1] if len(argv) > 1 else "gen3turbo/create"
    redis_url = os.environ["DISPATCHER_REDIS_URL"]  # the backend's worker needs the same Redis
    with Dispatcher.from_url(redis_url) as d:
        queue = Queue(QUEUE, connection=Redis.from_url(redis_url))
        prompts = [f"a lighthouse at dawn, take {i}" for i in range(20)]
        handles, posts, final = submit_batch(d, queue, prompts, provider, operation)
        print(f"submitted {len(handles)} generations; report job {final.id} (deferred: {final.get_status()})")


if __name__ == "__main__":
    main(sys.argv[1:])
