"""Worker start-up: RQ workers plus the maintenance loop (which also promotes delayed polls).

`--processes 1` runs one worker in this process; more start a small supervisor
that restarts a worker process that dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import redis
from rq import SimpleWorker

from dispatcher import logging as dlog
from dispatcher import metrics, providers
from dispatcher.client import Dispatcher
from dispatcher.connection import url_for
from dispatcher.steps import all_queue_names

from .context import install
from .maintenance import MaintenanceLoop, promote_scheduled

log = dlog.get_logger()


class StepWorker(SimpleWorker):
    """Runs step jobs in-process: each is milliseconds, so forking per job would cost more than the work."""

    max_connection_wait_time = 5.0  # RQ's dequeue backoff while Redis is away (RQ: 60 s after it is back)
    stop_asked = False

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)

    # RQ sends a worker heartbeat (HSET + 2 EXPIRE, one round trip each) before each
    # dequeue, after it and after each job: 9 round trips per millisecond job, about half
    # of RQ's own per-job cost. Here a standalone heartbeat is one pipelined round trip,
    # and is skipped when a full one went out less than HEARTBEAT_EVERY ago — unless a
    # shorter-TTL heartbeat (RQ's job bookkeeping, pipelined) has been sent since, so the
    # worker key always ends up with the full TTL before the worker blocks on dequeue.
    HEARTBEAT_EVERY = 1.0  # seconds
    _full_beat = float("-inf")

    def heartbeat(self, timeout=None, pipeline=None):
        clock = time.monotonic()
        if pipeline is None:
            if timeout is None and clock - self._full_beat < self.HEARTBEAT_EVERY:
                return None
            with self.connection.pipeline(transaction=False) as pipe:
                super().heartbeat(timeout, pipeline=pipe)
                pipe.execute()
        else:
            super().heartbeat(timeout, pipeline=pipeline)
        self._full_beat = clock if timeout is None else float("-inf")  # None: the full TTL
        return None


REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def run_worker(settings, *, burst: bool = False) -> None:
    """One RQ worker in this process, for as long as it is not asked to stop.

    Redis going away never ends the process: RQ's loop quits on some Redis errors
    (and cannot start without Redis), so the loop starts a fresh RQ worker after a
    backoff (0.5 s doubling to 5 s, one log line each) instead of a crash loop."""
    d = Dispatcher.from_url(settings=settings)
    d.deferred_metrics = metrics.Deferred()  # samples ride on the steps' round trips (see metrics)
    install(d)
    loop = MaintenanceLoop(d, settings.maintenance_interval)
    loop.start()
    queues = all_queue_names(sorted(providers.REGISTRY))
    pause = 0.5
    try:
        while True:
            began, worker = time.monotonic(), None
            try:
                worker = StepWorker(queues, connection=d.rq, name=f"dispatcher-{os.getpid()}-{os.urandom(3).hex()}")
                log.info("worker started", queues=queues, pid=os.getpid())
                # no RQ scheduler: its forked child outlives a SIGKILLed worker; maintenance promotes delayed steps
                if burst:
                    promote_scheduled(d, queues)
                worker.work(with_scheduler=False, burst=burst, logging_level="WARNING")
                if burst or worker.stop_asked:
                    return
                reason = "loop ended"  # RQ quits its loop on a Redis timeout or an unexpected error
            except REDIS_DOWN as exc:
                if worker is not None and worker.stop_asked:
                    return
                reason = type(exc).__name__
            if time.monotonic() - began > 60:  # it ran fine for a while: start the backoff afresh
                pause = 0.5
            log.warning("worker loop ended; restarting it", reason=reason, retry_in=pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
    finally:
        loop.stop()
        metrics.flush(d)


def _child(settings, burst):
    dlog.configure(settings.log_format, settings.log_level)
    run_worker(settings, burst=burst)


def run_pool(settings, *, processes: int = 2, burst: bool = False) -> None:
    settings = settings.with_(redis_url=url_for(settings))  # resolve the embedded server once
    if processes <= 1:
        run_worker(settings, burst=burst)
        return
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def spawn():
        p = ctx.Process(target=_child, args=(settings, burst), daemon=False)
        p.start()
        return p

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [spawn() for _ in range(processes)]
    while not stopping:
        time.sleep(0.5)
        for i, p in enumerate(children):
            if not p.is_alive():
                if burst:
                    continue
                log.warning("worker process died; restarting", pid=p.pid, exitcode=p.exitcode)
                children[i] = spawn()
        if burst and not any(p.is_alive() for p in children):
            break
    for p in children:
        if p.is_alive():
            p.terminate()
    for p in children:
        p.join(timeout=10)
