"""Worker start-up: RQ workers (with RQ's scheduler for delayed polls) plus the maintenance loop.

`--processes 1` runs one worker in this process; more start a small supervisor
that restarts a worker process that dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from rq import SimpleWorker

from dispatcher import logging as dlog
from dispatcher import providers
from dispatcher.client import Dispatcher
from dispatcher.connection import url_for
from dispatcher.steps import all_queue_names

from .context import install
from .maintenance import MaintenanceLoop

log = dlog.get_logger()


class StepWorker(SimpleWorker):
    """Runs step jobs in-process: each is milliseconds, so forking per job would cost more than the work."""


def run_worker(settings, *, burst: bool = False) -> None:
    d = Dispatcher.from_url(settings=settings)
    install(d)
    loop = MaintenanceLoop(d, settings.maintenance_interval)
    loop.start()
    queues = all_queue_names(sorted(providers.REGISTRY))
    worker = StepWorker(queues, connection=d.rq, name=f"dispatcher-{os.getpid()}-{os.urandom(3).hex()}")
    log.info("worker started", queues=queues, pid=os.getpid())
    try:
        worker.work(with_scheduler=True, burst=burst, logging_level="WARNING")
    finally:
        loop.stop()


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
