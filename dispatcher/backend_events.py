"""RQ-native backends: each generation an RQ job that backends' jobs depend on, and its end as RQ jobs.

**The generation's RQ job** (`gate`): id = the generation's id, function
`workers.backend_events.settle`, on the callback queue (`dispatcher.callbacks`, which the callback
worker serves), written with status *deferred* (rq-dashboard lists it, and every backend job that
`depends_on` it, under Deferred) either with the generation at submit (one MULTI, when callbacks
or a replyQueue are asked for, or `rq=True`) or on first use (`Dispatcher.rq_job`). When the
generation ends, `release` puts it on its queue (`Core.finished`); `settle` then runs it:

1. it enqueues what the end fires (the `on_success` or `on_failure` callback on the backend's queue,
   the replyQueue event) in one MULTI with a `fired` mark: a second run finds the mark, so each
   fires exactly once (`fire`);
2. it returns the generation's result (RQ: *finished*, dependents enqueued by RQ itself) or, for a
   failed or canceled generation, raises `GenerationFailed` with its retries cleared (RQ: *failed*;
   only dependents with `allow_failure` are enqueued). RQ moves the dependents in one WATCHed
   transaction, so each runs once.

**When a worker dies.** `Core.finished` runs after the terminal move, in another round trip: a
worker killed in between leaves the gate deferred. Every gated generation is therefore listed in
`dsp:{p}:rq:pending` (score: when to look at it next), and maintenance (`sweep`) releases the gates
of generations found ended, looking at live ones again with a growing interval (1 s to 15 s). A
gate whose callback worker died mid-run is retried by maintenance's callback take-over (the gate
carries RQ retries; the `fired` mark keeps the callbacks single).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import re
import time
from dataclasses import dataclass

from redis.exceptions import WatchError
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import resolve_function_reference

from . import keys
from .backends import GATE_FUNC, result_dict
from .errors import NotFound, StoreUnavailable, ValidationError
from .generations import COMPLETED, Generation, internal_id, provider_of, public_id
from .logging import get_logger
from .settings import REPLY_FUNCTION, REPLY_QUEUE
from .steps import CALLBACK_QUEUE

if TYPE_CHECKING:
    from .core import Core

log = get_logger()
CALLBACK_FUNC = "dispatcher.backends.run_callback"  # run by the backend's worker
META = "dispatcher"  # the hooks, in the gate's RQ meta
GATE_TIMEOUT = 60  # seconds; a settle is a few round trips
GATE_RETRY = (10, [1, 2, 5, 10, 30])  # runs a dead callback worker left (maintenance retries them)
FIRED_TTL = 7 * 24 * 3600
FIRST_LOOK, LOOK_MIN, LOOK_MAX = 1.0, 1.0, 15.0  # seconds until the sweep looks at a live generation
SERIALIZERS = ("pickle", "json")
_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def pending_key(provider: str) -> str:
    """zset: generation id -> when the sweep looks at it next (epoch s), while its gate is deferred."""
    return f"{keys.tag(provider)}:rq:pending"


def fired_key(generation_id: str) -> str:
    """string: set once the generation's end was handed to the backend's queues."""
    return f"{keys.tag(provider_of(generation_id))}:rq:fired:{generation_id}"


@dataclass(frozen=True)
class Hooks:
    """What a generation's end fires: callbacks on `queue` (function path, timeout) and a replyQueue
    event (queue, function, serializer)."""

    queue: str = "default"
    on_success: tuple[str, int] | None = None
    on_failure: tuple[str, int] | None = None
    reply: tuple[str, str, str] | None = None

    @property
    def any(self) -> bool:
        return bool(self.on_success or self.on_failure or self.reply)

    def to_meta(self) -> dict:
        return {"queue": self.queue, "on_success": self.on_success, "on_failure": self.on_failure,
                "reply": self.reply}

    @classmethod
    def from_meta(cls, meta: dict | None) -> "Hooks":
        m = (meta or {}).get(META) or {}
        tup = (lambda v: tuple(v) if v else None)
        return cls(queue=m.get("queue") or "default", on_success=tup(m.get("on_success")),
                   on_failure=tup(m.get("on_failure")), reply=tup(m.get("reply")))


# -- checks at submit (nothing is written before them) ------------------------------------------
def check_queue_name(name, what: str) -> str:
    if isinstance(name, Queue):
        name = name.name
    if not isinstance(name, str) or not REPLY_QUEUE.fullmatch(name):
        raise ValidationError(f"{what} must be an RQ queue name (letters, digits, _ . : -; at most 128)")
    if name.startswith("dispatcher."):
        raise ValidationError(f"{what} may not be one of the dispatcher's own queues (dispatcher.*)")
    return name


def check_callback(callback, what: str) -> tuple[str, int] | None:
    """An `rq.Callback` (or a function) as (importable function path, timeout)."""
    if callback is None:
        return None
    if not isinstance(callback, Callback):
        try:
            callback = Callback(callback)
        except (ValueError, TypeError):
            raise ValidationError(f"{what} must be an rq.Callback or a function") from None
    try:
        name = callback.func if isinstance(callback.func, str) else resolve_function_reference(callback.func)[1]
    except Exception:
        name = ""
    if not _FUNCTION.fullmatch(name or "") or name.startswith("__main__."):
        raise ValidationError(f"{what} must name a module-level function the backend's worker can import "
                              f"(module.function), not {name or 'this callable'!r}")
    return name, int(callback.timeout)


def parse_reply_queue(value, allow: tuple[str, ...]) -> tuple[str, str, str] | None:
    """A replyQueue (`{"queue", "function", "serializer"?}`, or that object as a JSON string, as a
    form field carries it), checked against DISPATCHER_REPLY_QUEUES; returns (queue, function, serializer)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or set(value) - {"queue", "function", "serializer"}:
        raise ValidationError('replyQueue must be an object {"queue": …, "function": …, "serializer": '
                              '"pickle"|"json"}')
    queue = check_queue_name(value.get("queue"), "replyQueue.queue")
    function, serializer = value.get("function"), value.get("serializer", "pickle")
    if not isinstance(function, str) or not _FUNCTION.fullmatch(function) or len(function) > 200:
        raise ValidationError("replyQueue.function must be a dotted function path (module.function)")
    if serializer not in SERIALIZERS:
        raise ValidationError('replyQueue.serializer must be "pickle" (RQ\'s default) or "json"')
    if not allow:
        raise ValidationError("replyQueue is not enabled here: DISPATCHER_REPLY_QUEUES lists none")
    if not any(_allows(pair, queue, function) for pair in allow):
        raise ValidationError(f"replyQueue {queue} / {function} is not allowed by DISPATCHER_REPLY_QUEUES")
    return queue, function, serializer


def _allows(pair: str, queue: str, function: str) -> bool:
    q, _, f = pair.partition("=")
    if q != queue or not REPLY_FUNCTION.fullmatch(f):
        return False
    return function.startswith(f[:-1]) if f.endswith(".*") else function == f


# -- the gate -------------------------------------------------------------------------------------
def _gate_queue(core: Core) -> Queue:
    return core.steps.queue(CALLBACK_QUEUE)


def gate_in(pipe, core: Core, gen: Generation, hooks: Hooks | None = None, *, now: bool = False) -> None:
    """Write the generation's RQ job on `pipe` (a MULTI): deferred and listed for the sweep, or,
    `now` (the generation already ended), straight onto its queue."""
    queue = _gate_queue(core)
    s = core.settings
    description = f"generation {_public(gen)} ({gen.provider} {gen.operation})"
    job = queue.create_job(GATE_FUNC, args=(gen.id,), job_id=gen.id, timeout=GATE_TIMEOUT, description=description,
                           result_ttl=s.result_ttl, failure_ttl=s.failure_ttl,
                           meta={META: (hooks or Hooks()).to_meta()},
                           status=JobStatus.QUEUED if now else JobStatus.DEFERRED,
                           retry=Retry(max=GATE_RETRY[0], interval=GATE_RETRY[1]))
    job.origin = queue.name
    if now:
        queue.enqueue_job(job, pipeline=pipe)
        return
    job.save(pipeline=pipe)
    queue.deferred_job_registry.add(job, pipeline=pipe)
    pipe.zadd(pending_key(gen.provider), {gen.id: time.time() + FIRST_LOOK})


def _public(gen: Generation) -> str:
    from . import providers  # the registry, for the provider's public id shape

    spec = providers.REGISTRY.get(gen.provider)
    return public_id(gen.id, spec.shape.kind, gen.pinned) if spec is not None else gen.id


def discard_in(pipe, core: Core, gen: Generation) -> None:
    """Delete a gate written with a submission that was refused (on `pipe`)."""
    pipe.zrem(_gate_queue(core).deferred_job_registry.key, gen.id)
    pipe.delete(Job.key_for(gen.id))
    pipe.zrem(pending_key(gen.provider), gen.id)


def ensure(core: Core, generation_id: str) -> Job:
    """The generation's RQ job, written now if it has none (deferred while the generation runs,
    queued at once when it already ended). NotFound for an unknown or expired generation."""
    gid = internal_id(generation_id)
    provider = provider_of(gid)
    record, job_key = keys.generation(provider, gid), Job.key_for(gid)
    with core.r.pipeline(transaction=True) as pipe:
        for _ in range(50):  # a poll writing the record meanwhile makes EXEC fail: read again
            try:
                pipe.watch(record, job_key)
                if not pipe.exists(job_key):
                    gen = core.generations.find(gid)  # read after WATCH: any later write aborts the EXEC
                    if gen is None:
                        raise NotFound(f"Job {generation_id} not found")
                    pipe.multi()
                    if not gen.terminal:
                        pipe.hset(record, "extra", json.dumps({**gen.extra, "rq": 1}, separators=(",", ":")))
                    gate_in(pipe, core, gen, now=gen.terminal)
                    pipe.execute()
                else:
                    pipe.reset()
                return Job.fetch(gid, connection=core.rq)
            except WatchError:
                continue
    raise StoreUnavailable(f"could not write the RQ job of {gid}: its record kept changing")


def release(core: Core, generation_id: str) -> bool:
    """Put a deferred gate on its queue (its generation ended); False when it is not deferred
    (released already, or none). WATCHed: of two callers, one releases."""
    queue, key = _gate_queue(core), Job.key_for(generation_id)
    pending = pending_key(provider_of(generation_id))
    with core.rq.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                if pipe.hget(key, "status") != JobStatus.DEFERRED.value.encode():
                    pipe.reset()
                    core.r.zrem(pending, generation_id)
                    return False
                job = Job.fetch(generation_id, connection=core.rq)
                pipe.multi()
                pipe.zrem(pending, generation_id)
                queue.deferred_job_registry.remove(job, pipeline=pipe)
                job.set_status(JobStatus.QUEUED, pipeline=pipe)
                queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()
                return True
            except WatchError:
                continue


def sweep(core: Core, provider: str, limit: int = 200) -> int:
    """Release the gates of ended generations whose end was not handed over (a worker died between
    the terminal move and `Core.finished`); returns how many. Live ones are looked at again later."""
    key, now = pending_key(provider), time.time()
    ids = core.r.zrangebyscore(key, "-inf", now, start=0, num=limit)
    if not ids:
        return 0
    released, later = 0, {}
    for gid, gen in zip(ids, core.generations.many(ids)):
        if gen is None or gen.terminal:
            if release(core, gid):
                released += 1
                log.warning("generation end handed to RQ by maintenance", generation_id=gid,
                            state=gen.state if gen else None)
        else:
            later[gid] = now + min(max(LOOK_MIN, (now - gen.created) / 4), LOOK_MAX)
    if later:
        core.r.zadd(key, later, xx=True)  # XX: one released meanwhile stays out
    return released


# -- what the end fires (run by settle, on the callback worker) -----------------------------------
def fire(core: Core, generation_id: str, gen: Generation | None, hooks: Hooks) -> bool:
    """Enqueue the callback and the replyQueue event of an ended generation, once: False when they
    were enqueued before (or there is nothing to fire)."""
    jobs = _planned(core, generation_id, gen, hooks)
    if not jobs:
        return False
    key = fired_key(generation_id)
    with core.rq.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    pipe.reset()
                    return False
                pipe.multi()
                pipe.set(key, 1, ex=FIRED_TTL)
                for queue, job in jobs:
                    queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()
                return True
            except WatchError:
                continue


def _planned(core: Core, generation_id: str, gen: Generation | None, hooks: Hooks) -> list[tuple[Queue, Job]]:
    completed = gen is not None and gen.state == COMPLETED
    status = gen.state if gen is not None else "gone"
    planned = []
    callback = hooks.on_success if completed else hooks.on_failure
    if callback:
        kind = "success" if completed else "failure"
        queue = Queue(hooks.queue, connection=core.rq)
        planned.append((queue, queue.create_job(
            CALLBACK_FUNC, args=(kind, callback[0], generation_id), job_id=f"{generation_id}_on_{kind}",
            timeout=callback[1], description=f"on_{kind} {callback[0]} of generation {generation_id} ({status})")))
    if hooks.reply:
        name, function, serializer = hooks.reply
        queue = Queue(name, connection=core.rq, serializer=JSONSerializer if serializer == "json" else None)
        event = core.callback_body(gen) if gen is not None else result_dict(generation_id, None)
        planned.append((queue, queue.create_job(function, args=(event,), job_id=f"{generation_id}_reply",
                                                description=f"{function} for generation {generation_id} ({status})")))
    return planned
