"""Worker start-up: RQ workers, the maintenance loop (which also promotes delayed starts) and the
pump that claims due polls in batches (workers/polls.py).

`--processes 1` runs one step worker in this process; more start a small supervisor
that restarts a worker process that dies. Either way one more process runs the
`replyUrl` callbacks (their own queue, `dispatcher.callbacks`): a slow or hostile
receiver then holds that process only, never a step worker. It is supervised like
the others, and the kernel stops it when the process that started it dies.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

import redis
from rq import SimpleWorker

from dispatcher import logging as dlog
from dispatcher import keys, metrics, providers, rq_glue
from dispatcher import useapi_accounts
from dispatcher.core import Core
from dispatcher.connection import url_for
from dispatcher.errors import ConfigurationError
from dispatcher.secrets import check_key, check_settings_key
from dispatcher.steps import CALLBACK_QUEUE, STEP_FUNCTIONS, StepHistory, all_queue_names

from .context import install
from .maintenance import MaintenanceLoop, promote_scheduled
from .polls import DuePump, pump_due

log = dlog.get_logger()
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class StepWorker(SimpleWorker):
    """Runs step jobs in-process: each is milliseconds, so forking per job would cost more than the work.

    What RQ records of a step (rq-dashboard, `rq info`) follows its generation (`history`, a
    `dispatcher.steps.StepHistory`): the step that ended it is kept `step_history_ttl` seconds,
    and one that failed it is handled as a failed RQ job, in the failed registry with the reason
    as its exception text (`moderated (422): … — account …, taskId …`). The step never raises
    for that (faults.py would count the raise and retry): it returns its outcome, the
    generation's bookkeeping (slot, callback, metrics) is done, and only RQ's record differs."""

    max_connection_wait_time = 5.0  # RQ's dequeue backoff while Redis is away (RQ: 60 s after it is back)
    stop_asked = False
    history: StepHistory | None = None  # set by run_worker

    def handle_job_success(self, job, queue, started_job_registry, execution):
        ending = self._ending(job)
        if ending is not None:
            job.result_ttl = job.failure_ttl = ending.ttl
            reason = ending.reason(job.description)
            if reason is not None:
                self.handle_job_failure(job, queue, started_job_registry, exc_string=reason, execution=execution)
                return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        if self.history is not None and job.func_name in STEP_FUNCTIONS:
            job.failure_ttl = self.history.ttl  # a failed step is kept as long as an ending one
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string,
                                   execution=execution)

    def _ending(self, job):
        """The step's Ending (`StepHistory.judge`), from its return value (RQ keeps it in `_result`
        until it saves it), or None: not a step, or it did not end its generation."""
        if self.history is None or job.func_name not in STEP_FUNCTIONS:
            return None
        try:
            return self.history.judge([(job.id, getattr(job, "_result", None))])[0]
        except Exception as exc:  # Redis away, say: RQ's own bookkeeping goes on, with the step's defaults
            log.warning("could not read how a step ended its generation", step=job.id, error=type(exc).__name__)
            return None

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


def run_worker(settings, *, burst: bool = False, callbacks: bool = False) -> None:
    """One RQ worker in this process, for as long as it is not asked to stop: a step worker, or
    with `callbacks` the callback worker (only the callback queue, no maintenance loop).

    Redis going away never ends the process: RQ's loop quits on some Redis errors
    (and cannot start without Redis), so the loop starts a fresh RQ worker after a
    backoff (0.5 s doubling to 5 s, one log line each) instead of a crash loop."""
    d = Core.from_settings(settings)
    check_key(d.vault, d.r, wait=True)  # a wrong DISPATCHER_SECRET_KEY stops here, before any job
    d.deferred_metrics = metrics.Deferred()  # samples ride on the steps' round trips (see metrics)
    install(d)
    history = StepHistory(d.generations, settings.step_history_ttl)
    rq_glue.install_history(history)  # for the claimed starts a step runs after itself (chain.py)
    loop, pump = MaintenanceLoop(d, settings.maintenance_interval), DuePump(d)
    if callbacks:
        queues, role = [CALLBACK_QUEUE], "callbacks"
    else:  # step workers never take a callback: a receiver must not delay a generation's steps
        loop.start()
        pump.start()  # due polls, claimed in batches (workers/polls.py)
        queues, role = [q for q in all_queue_names(sorted(providers.REGISTRY)) if q != CALLBACK_QUEUE], "steps"
    pause = 0.5
    try:
        while True:
            began, worker = time.monotonic(), None
            try:
                name = f"dispatcher-{'callbacks-' if callbacks else ''}{os.getpid()}-{os.urandom(3).hex()}"
                worker = StepWorker(queues, connection=d.rq, name=name)
                worker.history = history
                log.info("worker started", queues=queues, pid=os.getpid(), role=role)
                # no RQ scheduler: its forked child outlives a SIGKILLed worker; maintenance promotes delayed steps
                if burst:
                    promote_scheduled(d, queues)
                    pump_due(d, sorted(d.r.smembers(keys.providers_seen())))
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
        pump.stop()
        metrics.flush(d)


CONFIG_EXIT = 78  # EX_CONFIG: a child that cannot run as configured; restarting it cannot help


def _die_with_parent(parent: int) -> bool:
    """Linux: have the kernel SIGTERM this process when its parent (the thread that started it) dies,
    so a SIGKILLed worker never leaves its callback worker behind. False: the parent is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's terminate() is all there is
        pass
    return os.getppid() == parent


def _child(settings, burst, callbacks=False, parent=None):
    if parent is not None and not _die_with_parent(parent):
        return
    dlog.configure(settings.log_format, settings.log_level)
    try:
        run_worker(settings, burst=burst, callbacks=callbacks)
    except ConfigurationError as exc:
        log.error("worker stopped: configuration error", error=exc.message)
        raise SystemExit(CONFIG_EXIT) from None


class CallbackProcess(threading.Thread):
    """With `--processes 1`: the callback worker as a child process of this one, restarted when it
    dies (unless on a configuration error), stopped with `stop`. Started and restarted from this
    thread, which lives as long as the process: the child's parent-death signal is tied to it."""

    def __init__(self, settings, burst: bool):
        super().__init__(name="dispatcher-callback-supervisor", daemon=True)
        self.settings, self.burst = settings, burst
        self.ctx = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.child = None

    def run(self) -> None:
        while True:
            with self.lock:
                if self.stopping.is_set():
                    return
                try:
                    self._keep_alive()
                except Exception as exc:  # e.g. out of processes: try again, never leave the thread
                    log.error("callback worker process could not start", error=type(exc).__name__)
            self.stopping.wait(0.5)

    def _keep_alive(self) -> None:
        child = self.child
        if child is None or (not child.is_alive() and not self.burst and child.exitcode != CONFIG_EXIT):
            if child is not None:
                log.warning("callback worker process died; restarting", pid=child.pid, exitcode=child.exitcode)
            self.child = self.ctx.Process(target=_child, args=(self.settings, self.burst, True, os.getpid()),
                                          name="dispatcher-callbacks", daemon=False)
            self.child.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            child = self.child
        if child is None:
            return
        if self.burst:
            child.join(timeout=60)  # a burst callback worker ends by itself once its queue is empty
        self.join(timeout=5)  # on Linux this thread's end SIGTERMs the child (its parent-death signal)
        if child.is_alive() and not sys.platform.startswith("linux"):
            child.terminate()  # one SIGTERM only: a second one would cut a delivery in flight short
        child.join(timeout=self.settings.callback_deadline + 10)  # warm shutdown: a delivery ends by its deadline
        if child.is_alive():
            child.kill()
            child.join(timeout=5)


def run_pool(settings, *, processes: int = 2, burst: bool = False) -> None:
    settings = settings.with_(redis_url=url_for(settings))  # resolve the embedded server once
    if processes <= 1:
        callbacks = CallbackProcess(settings, burst)
        callbacks.start()
        try:
            run_worker(settings, burst=burst)
        finally:
            callbacks.stop()
        return
    check_settings_key(settings)  # a wrong key stops the pool here, with the message, before any child
    useapi_accounts.check_settings(settings)  # so does a missing or refused useapi token
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def spawn(callbacks=False):
        p = ctx.Process(target=_child, args=(settings, burst, callbacks, os.getpid()), daemon=False)
        p.start()
        return p

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    roles = [False] * processes + [True]  # the step workers, then the one callback worker
    children = [spawn(callbacks) for callbacks in roles]
    while not stopping:
        time.sleep(0.5)
        for i, p in enumerate(children):
            if not p.is_alive():
                if p.exitcode == CONFIG_EXIT:  # stop the pool instead of restarting it forever
                    stopping = "a worker process stopped on a configuration error (logged above)"
                if burst or stopping:
                    continue
                log.warning("worker process died; restarting", pid=p.pid, exitcode=p.exitcode)
                children[i] = spawn(roles[i])
        if burst and not any(p.is_alive() for p in children):
            break
    for p in children:
        if p.is_alive():
            p.terminate()
    for p in children:
        p.join(timeout=10)
    if isinstance(stopping, str):
        raise ConfigurationError(stopping)
