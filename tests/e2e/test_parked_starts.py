"""A generation's start job is written at submit, parked (RQ `deferred`), and the capacity
script that admits the generation enqueues it in the same atomic step.

Real Redis, real RQ jobs; the scripts' own date formatting is checked against Python's.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from rq.job import Job
from rq.registry import DeferredJobRegistry

from dispatcher import keys
from dispatcher.capacity.semaphore import SCRIPTS
from dispatcher.generations import ADMITTED, CANCELED, WAITING, public_id
from dispatcher.steps import queue_name

PROVIDER, OPERATION = "riffusion", "music/generate"
QUEUE = queue_name(PROVIDER)


def _account(dispatcher, sandbox, max_jobs=1, cookie="pk-cookie-000001") -> str:
    sandbox.post("/_sandbox/users", json={"provider": PROVIDER, "cookie": cookie, "concurrency": max_jobs,
                                          "duration": 30}).raise_for_status()
    return dispatcher.upsert_account(PROVIDER, {"cookie": cookie, "maxJobs": max_jobs})["user_id"]


def _submit(dispatcher, n=1, **kw):
    return [dispatcher.submit(PROVIDER, OPERATION, {"prompt": f"p{i}"}, **kw).id for i in range(n)]


def _deferred(dispatcher) -> list[str]:
    return DeferredJobRegistry(QUEUE, connection=dispatcher.core.rq).get_job_ids()


def _queued(dispatcher) -> list[str]:
    return [j.decode() for j in dispatcher.core.rq.lrange(f"rq:queue:{QUEUE}", 0, -1)]


def test_a_waiting_generation_shows_as_a_deferred_job_and_its_admission_enqueues_it(dispatcher, sandbox):
    account = _account(dispatcher, sandbox)
    first, second = _submit(dispatcher, 2)
    running, waiting = dispatcher.get(first), dispatcher.get(second)
    # admitted at submit: its parked job was enqueued by acquire itself, nothing left parked
    assert running.state == ADMITTED and running.parked is None and _queued(dispatcher) == [running.step]
    assert waiting.state == WAITING and waiting.parked and _deferred(dispatcher) == [waiting.parked]
    job = Job.fetch(waiting.parked, connection=dispatcher.core.rq)
    assert job.get_status() == "deferred" and job.args == (second, waiting.parked)
    public = public_id(second, "job")  # riffusion's public ids: user:dispatcher-riffusion-job:<hex>
    assert job.description == f"{PROVIDER} start {public}, waiting for a slot"

    before = datetime.now(timezone.utc)
    admitted = dispatcher.core.capacity(PROVIDER).release(first)
    assert [(a.generation_id, a.account, a.enqueued) for a in admitted] == [(second, account, True)]
    gen = dispatcher.get(second)
    assert (gen.state, gen.account, gen.step, gen.parked) == (ADMITTED, account, waiting.parked, None)
    assert gen.admitted_at is not None and gen.due == gen.admitted_at
    job = Job.fetch(waiting.parked, connection=dispatcher.core.rq)
    assert job.get_status() == "queued" and job.description == f"{PROVIDER} start {public} on {account}"
    assert abs(job.enqueued_at.replace(tzinfo=timezone.utc) - before) < timedelta(seconds=5)
    assert waiting.parked in _queued(dispatcher) and _deferred(dispatcher) == []
    assert dispatcher.core.rq.sismember("rq:queues", f"rq:queue:{QUEUE}")
    # dispatch has nothing left to enqueue: the queue holds exactly the two start jobs
    dispatcher.core.dispatch(admitted)
    assert _queued(dispatcher) == [running.step, waiting.parked]


@pytest.mark.parametrize("skew", [0.0, 0.0004, 3.0])
def test_an_admission_is_never_recorded_before_its_creation(dispatcher, sandbox, monkeypatch, skew):
    """The script's clock is Redis' TIME in whole ms; `created` is the submitter's clock, to the
    µs and possibly ahead: admitted_at (and so submit→slot waits) never goes below created."""
    import dispatcher.client as client

    _account(dispatcher, sandbox, max_jobs=2)
    real = client.time.time
    monkeypatch.setattr(client.time, "time", lambda: real() + skew)
    ids = _submit(dispatcher, 5)  # two admitted at submit, three by the releases below
    monkeypatch.setattr(client.time, "time", real)
    for gid in ids[:3]:
        dispatcher.core.capacity(PROVIDER).release(gid)
    gens = [dispatcher.get(gid) for gid in ids]
    assert all(g.state == ADMITTED for g in gens)
    assert all(g.admitted_at >= g.created and g.due == g.admitted_at for g in gens), \
        [(g.created, g.admitted_at) for g in gens]


def test_canceling_a_waiting_generation_deletes_its_parked_job(dispatcher, sandbox):
    _account(dispatcher, sandbox)
    first, second = _submit(dispatcher, 2)
    parked = dispatcher.get(second).parked
    assert dispatcher.cancel(second).state == CANCELED
    assert not dispatcher.core.rq.exists(Job.key_for(parked)) and _deferred(dispatcher) == []
    assert dispatcher.core.capacity(PROVIDER).release(first) == []  # nobody left to admit
    assert _queued(dispatcher) == [dispatcher.get(first).step]


def test_a_refused_submission_leaves_no_parked_job(dispatcher, sandbox, r, snapshot):
    from dispatcher.errors import NoCapacity

    _account(dispatcher, sandbox)
    _submit(dispatcher, 1)
    before = snapshot(r)
    with pytest.raises(NoCapacity):
        dispatcher.submit(PROVIDER, OPERATION, {"prompt": "no room"}, wait=False)
    assert snapshot(r) == before


@pytest.mark.parametrize("older", ["record without a parked job", "parked job deleted by hand"])
def test_an_admission_without_its_parked_job_is_enqueued_by_dispatch(dispatcher, sandbox, older):
    """Generations submitted by an older version (no `parked` field), or whose parked job someone
    deleted in rq-dashboard, still start: the script leaves them to `Core.dispatch`."""
    account = _account(dispatcher, sandbox)
    first, second = _submit(dispatcher, 2)
    parked = dispatcher.get(second).parked
    if older == "record without a parked job":
        dispatcher.core.r.hdel(keys.generation(PROVIDER, second), "parked")
    dispatcher.core.rq.delete(Job.key_for(parked))
    dispatcher.core.rq.zrem(DeferredJobRegistry(QUEUE, connection=dispatcher.core.rq).key, parked)

    admitted = dispatcher.core.capacity(PROVIDER).release(first)
    assert [(a.generation_id, a.enqueued) for a in admitted] == [(second, False)]
    assert dispatcher.get(second).state == WAITING  # the script did not touch the record
    dispatcher.core.dispatch(admitted)
    gen = dispatcher.get(second)
    assert gen.state == ADMITTED and gen.account == account and gen.step not in (None, parked)
    assert Job.fetch(gen.step, connection=dispatcher.core.rq).get_status() == "queued"
    assert dispatcher.get(second).parked is None


def test_a_requeued_generation_gets_a_fresh_parked_job(dispatcher, sandbox):
    """A reroute puts an admitted generation back in line: a new start job is parked with it
    (the old one already ran), and admitting it again enqueues that one."""
    _account(dispatcher, sandbox)
    (gen_id,) = _submit(dispatcher, 1)
    old_step = dispatcher.get(gen_id).step
    dispatcher.core.requeue(gen_id)  # the slot it gives back is free: admitted again at once
    gen = dispatcher.get(gen_id)
    assert gen.state == ADMITTED and gen.step != old_step and gen.parked is None
    assert Job.fetch(gen.step, connection=dispatcher.core.rq).get_status() == "queued"
    assert _queued(dispatcher) == [old_step, gen.step]


# -- the script's RQ timestamps ------------------------------------------------------------
@given(st.integers(min_value=0, max_value=253402300799999))  # 1970 .. 9999-12-31T23:59:59.999
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_scripts_write_rq_timestamps_as_rq_does(r, ms):
    """`rq_time` of scripts/_pump.lua (read-only here: the prelude alone writes nothing)."""
    rq_time = r.register_script(SCRIPTS.text("_pump") + "\nreturn rq_time(tonumber(ARGV[3]))")
    expected = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    got = rq_time(keys=[keys.cap("p")], args=[1, 0, ms]).decode()
    assert got == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- races and leaks ------------------------------------------------------------------------
def test_a_release_made_for_a_canceled_waiter_does_not_enqueue_the_next_one_twice(dispatcher, sandbox):
    """The pump admits a waiter whose cancel is half done (record canceled, still in line):
    dispatch gives its slot back, and the waiter that release admits is already enqueued."""
    _account(dispatcher, sandbox)
    running, canceling, waiting = _submit(dispatcher, 3)
    parked = dispatcher.get(waiting).parked
    assert dispatcher.core.generations.move(canceling, {WAITING}, CANCELED, error="canceled")
    admitted = dispatcher.core.capacity(PROVIDER).release(running)
    assert [(a.generation_id, a.enqueued) for a in admitted] == [(canceling, False)]
    dispatcher.core.dispatch(admitted)
    gen = dispatcher.get(waiting)
    assert gen.state == ADMITTED and dispatcher.core.capacity(PROVIDER).holder(waiting) == gen.account
    # its parked job, once (the canceled one's start, enqueued with the failed move, exits at once)
    assert gen.step == parked and [j for j in _queued(dispatcher) if j.startswith(waiting)] == [parked]


def test_a_cancel_that_reads_a_waiting_record_cancels_it_once_admitted(dispatcher, sandbox, monkeypatch):
    _account(dispatcher, sandbox)
    running, waiting = _submit(dispatcher, 2)
    stale = dispatcher.get(waiting)
    dispatcher.core.dispatch(dispatcher.core.capacity(PROVIDER).release(running))  # admitted after the read
    reads = iter([stale])
    real_get = dispatcher.core.generations.get
    monkeypatch.setattr(dispatcher.core.generations, "get", lambda gid: next(reads, None) or real_get(gid))
    assert dispatcher.cancel(waiting).state == CANCELED


def test_maintenance_sweeps_parked_jobs_nobody_waits_for(dispatcher, sandbox):
    """A record moved to admitted outside the admitting script (a worker of an older version,
    a crash mid-requeue) leaves its parked job behind; the sweep deletes it, and only it."""
    _account(dispatcher, sandbox)
    _, left_behind, still_waiting = _submit(dispatcher, 3)
    orphan, kept = dispatcher.get(left_behind).parked, dispatcher.get(still_waiting).parked
    assert dispatcher.core.generations.move(left_behind, {WAITING}, ADMITTED, account="elsewhere")
    assert dispatcher.core.steps.sweep_parked(PROVIDER) == 1
    assert _deferred(dispatcher) == [kept] and not dispatcher.core.rq.exists(Job.key_for(orphan))
    assert Job.fetch(kept, connection=dispatcher.core.rq).get_status() == "deferred"
    assert dispatcher.core.steps.sweep_parked(PROVIDER) == 0


def test_the_maintenance_tick_sweeps_each_provider_at_most_every_sweep_interval(dispatcher, sandbox, monkeypatch):
    from workers import maintenance

    monkeypatch.setattr(maintenance, "_swept", {})
    _account(dispatcher, sandbox)
    _, first, second = _submit(dispatcher, 3)
    assert dispatcher.core.generations.move(first, {WAITING}, ADMITTED, account="elsewhere")
    assert maintenance.tick(dispatcher.core)["unparked"] == 1
    assert dispatcher.core.generations.move(second, {WAITING}, ADMITTED, account="elsewhere")
    assert maintenance.tick(dispatcher.core)["unparked"] == 0  # swept a moment ago: not yet
    assert len(_deferred(dispatcher)) == 1
    assert maintenance.sweep_parked(dispatcher.core, PROVIDER, force=True) == 1
    assert _deferred(dispatcher) == []
