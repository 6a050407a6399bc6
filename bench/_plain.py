"""The baseline of the benchmarks: a plain RQ job that calls the upstream directly.

`plain_job` submits one generation to the sandbox and polls its status until it
ends — the same create + status calls, over the same adapter and httpx, that a
dispatcher generation makes, but with no balancing, no capacity, no record and
no lease: one RQ job holds one worker for the whole generation.

    python -m bench._plain --queue bench.plain

runs one `workers.pool.StepWorker` (the dispatcher's worker class) on that
queue, connected like the dispatcher's workers (`DISPATCHER_REDIS_URL`).
"""

from __future__ import annotations

import argparse
import os
import time

import httpx

_client: httpx.Client | None = None


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=30)
    return _client


def plain_job(base_url: str, token: str, operation: str, payload: dict, key: str, poll_interval: float = 1.0) -> str:
    """Create upstream, then poll until done; returns the final state."""
    from dispatcher.providers.riffusion import RiffusionAdapter

    adapter = RiffusionAdapter(_http(), base_url)
    upstream_id = adapter.create(token, operation, payload, key)
    while True:
        result = adapter.poll(token, upstream_id)
        if result.done:
            return result.state
        time.sleep(poll_interval)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._plain")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)

    from dispatcher import logging as dlog
    from dispatcher.connection import connect_rq
    from workers.pool import StepWorker

    dlog.configure("json", "warning")
    worker = StepWorker([args.queue], connection=connect_rq(os.environ["DISPATCHER_REDIS_URL"]),
                        name=f"plain-{os.getpid()}-{os.urandom(3).hex()}")
    worker.work(burst=args.burst, logging_level="WARNING")


if __name__ == "__main__":
    main()
