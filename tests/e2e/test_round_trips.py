"""What the hot path costs in Redis round trips, and that saving them loses nothing.

A round trip is counted where redis-py writes a request to the socket
(`Connection.send_packed_command`): one per command, one per pipeline.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import redis.connection

from dispatcher import keys, metrics
from dispatcher.errors import NotFound
from dispatcher.generations import WAITING, public_id



@contextmanager
def round_trips():
    """Count the requests this thread sends to Redis inside the block."""
    counted = []
    real = redis.connection.AbstractConnection.send_packed_command
    me = threading.get_ident()

    def send(self, command, check_health=True):
        if threading.get_ident() == me:
            counted.append(command)
        return real(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = send
    try:
        yield counted
    finally:
        redis.connection.AbstractConnection.send_packed_command = real


def _names(packed) -> str:
    """The command names in one packed request (for a readable failure)."""
    import re

    raw = b"".join(packed) if isinstance(packed, (list, tuple)) else packed
    return " ".join(m.decode() for m in re.findall(rb"\*\d+\r\n\$\d+\r\n([A-Z]+)\r\n", raw))


def test_a_submission_that_waits_is_one_round_trip(dispatcher, sandbox):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "a@example.com", "password": "pw-a-0001",
                                          "concurrency": 1, "duration": 30}).raise_for_status()
    dispatcher.upsert_account("runwayml", {"email": "a@example.com", "password": "pw-a-0001", "maxJobs": 1})
    first = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "takes the slot"})
    with round_trips() as sent:
        second = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "waits"})
    assert len(sent) == 1, "existence check, record and admission go in one round trip"
    assert dispatcher.get(second.id).state == WAITING
    assert dispatcher.core.capacity("runwayml").position(second.id) == 1
    assert dispatcher.get(first.id).state != WAITING


@pytest.mark.parametrize("pin", [None, "ghost@example.com"], ids=["no account at all", "unknown pinned account"])
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no wait"])
def test_a_submission_for_a_missing_account_changes_nothing(dispatcher, r, snapshot, pin, wait):
    if pin is not None:  # a provider with accounts, pinned to one it does not have
        r.sadd(keys.accounts("runwayml"), "someone-else@example.com")
    before = snapshot(r)
    with pytest.raises(NotFound, match="not configured" if pin else "^Configuration not found"):
        dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "x"}, account=pin, wait=wait)
    assert snapshot(r) == before


def test_an_empty_pinned_account_is_not_found(dispatcher, r, snapshot):
    before = snapshot(r)
    with pytest.raises(NotFound):
        dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "x"}, account="")
    assert snapshot(r) == before


# -- a worker's deferred metrics --------------------------------------------------------
def _count(r) -> float:
    rows = metrics.stored(r).get("dispatcher_cooldowns", [])
    return sum(v for labels, _, v in rows if labels.get("account") == "a@example.com")


def test_deferred_samples_wait_for_a_ride_or_a_flush(dispatcher, r):
    dispatcher.core.deferred_metrics = metrics.Deferred()
    metrics.cooldown(dispatcher.core, "runwayml", "a@example.com")
    metrics.cooldown(dispatcher.core, "runwayml", "a@example.com")
    assert _count(r) == 0, "a worker's samples are not sent on their own"

    pipe = r.pipeline(transaction=False)
    pipe.ping()
    assert metrics.ride(dispatcher.core, pipe) is None, "samples younger than RIDE_AGE wait for more"
    dispatcher.core.deferred_metrics.RIDE_AGE = 0.0
    riding = metrics.ride(dispatcher.core, pipe)
    assert len(riding.ints) + len(riding.floats) == 1  # two increments of one field: merged into one command
    assert pipe.execute()[0] is True
    assert _count(r) == 2

    metrics.cooldown(dispatcher.core, "runwayml", "a@example.com")
    metrics.flush(dispatcher.core)
    assert _count(r) == 3
    metrics.flush(dispatcher.core)  # nothing left: nothing sent twice
    assert _count(r) == 3


def test_samples_of_a_failed_round_trip_wait_for_the_next(settings):
    from dispatcher.client import Dispatcher
    from dispatcher.ops.redis_server import free_port

    away = Dispatcher(f"redis://127.0.0.1:{free_port()}/0", settings).core  # nothing listens there
    try:
        away.deferred_metrics = metrics.Deferred()
        metrics.cooldown(away, "runwayml", "a@example.com")
        metrics.flush(away)  # fails: logged, and the samples are kept
        kept = away.deferred_metrics.take()
        assert kept.ints == {metrics.field("c", "dispatcher_cooldowns", {"provider": "runwayml",
                                                                         "account": "a@example.com"}): 1}
    finally:
        away.close()


def test_overdue_deferred_samples_go_out_with_the_next_hook(dispatcher, r, monkeypatch):
    dispatcher.core.deferred_metrics = deferred = metrics.Deferred()
    metrics.cooldown(dispatcher.core, "runwayml", "a@example.com")
    assert _count(r) == 0
    monkeypatch.setattr(deferred, "MAX_AGE", -1.0)  # the kept samples are now overdue
    metrics.cooldown(dispatcher.core, "runwayml", "a@example.com")
    assert _count(r) == 2


def test_closing_a_dispatcher_flushes_its_deferred_samples(settings, r, sandbox):
    from dispatcher.client import Dispatcher

    d = Dispatcher(settings.redis_url, settings)
    d.core.deferred_metrics = metrics.Deferred()
    metrics.cooldown(d.core, "runwayml", "a@example.com")
    d.close()
    assert _count(r) == 1


# -- a worker's step (the `steps` fixture: tests/e2e/conftest.py) ---------------------
def test_an_instant_generation_is_three_round_trips_of_its_step(dispatcher, sandbox, steps, monkeypatch):
    """load (record + its account + lease) → save the upstream id → finish + release, whose
    admission of the next waiter enqueues that waiter's parked start job in the same script
    (chained starts off: the next test counts those). Health records and metrics ride along;
    the account's token is not read again."""
    from rq.job import Job

    monkeypatch.setattr(dispatcher.core, "settings", dispatcher.settings.with_(chain_starts=0))

    sandbox.post("/_sandbox/users", json={"provider": "riffusion", "cookie": "rt-cookie-000001", "concurrency": 1,
                                          "duration": 0}).raise_for_status()
    dispatcher.upsert_account("riffusion", {"cookie": "rt-cookie-000001", "maxJobs": 1})
    ids = [dispatcher.submit("riffusion", "music/generate", {"prompt": f"p{i}", "sandbox_duration": 0}).id
           for i in range(3)]
    # the first one loads every script into Redis (a fresh server's cache is empty)
    assert steps.start(ids[0], dispatcher.get(ids[0]).step) == "completed"
    # the queued step job itself, run as a worker runs it: the one its submission parked
    job = Job.fetch(dispatcher.get(ids[1]).step, connection=dispatcher.core.rq)
    assert job.args == (ids[1], job.id) and job.get_status() == "queued"
    waiter = dispatcher.get(ids[2])
    assert waiter.state == WAITING and Job.fetch(waiter.parked, connection=dispatcher.core.rq).get_status() == "deferred"
    with round_trips() as sent:
        assert job.perform() == "completed"
    assert len(sent) == 3, [_names(c) for c in sent]
    admitted = dispatcher.get(ids[2])
    assert admitted.state == "admitted" and admitted.step == waiter.parked and admitted.parked is None
    assert dispatcher.core.rq.lpos(f"rq:queue:dispatcher.riffusion", waiter.parked) is not None
    metrics.flush(dispatcher.core)
    counted = {tuple(sorted(labels.items())): v for labels, _, v in metrics.stored(dispatcher.core.r)["dispatcher_steps"]}
    assert counted == {(("provider", "riffusion"), ("result", "completed"), ("step", "start")): 2.0}


def test_a_chain_of_instant_generations_is_three_round_trips_each_and_one_to_record_it(dispatcher, sandbox, steps,
                                                                                      monkeypatch):
    """The step whose release admits a waiter runs that waiter's start itself (workers/chain.py):
    each chained generation costs its own three round trips, and the chain one more, which
    marks the claimed start jobs finished as RQ would."""
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    from workers import chain

    monkeypatch.setattr(chain, "BUDGET_S", 60.0)  # claims here do not depend on this machine's speed
    sandbox.post("/_sandbox/users", json={"provider": "riffusion", "cookie": "rt-cookie-000003", "concurrency": 1,
                                          "duration": 0}).raise_for_status()
    account = dispatcher.upsert_account("riffusion", {"cookie": "rt-cookie-000003", "maxJobs": 1})["user_id"]
    warm = dispatcher.submit("riffusion", "music/generate", {"prompt": "loads the scripts", "sandbox_duration": 0})
    assert steps.start(warm.id, dispatcher.get(warm.id).step) == "completed"
    ids = [dispatcher.submit("riffusion", "music/generate", {"prompt": f"p{i}", "sandbox_duration": 0}).id
           for i in range(3)]
    step = dispatcher.get(ids[0]).step
    dispatcher.core.rq.ping()  # RQ's connection is open in a worker: its handshake is not the chain's
    with round_trips() as sent:
        assert steps.start(ids[0], step) == "completed"
    assert len(sent) == 3 * 3 + 1, "\n".join(_names(c) for c in sent)
    finished = FinishedJobRegistry("dispatcher.riffusion", connection=dispatcher.core.rq).get_job_ids()
    for gen_id in ids[1:]:
        gen = dispatcher.get(gen_id)
        job = Job.fetch(gen.step, connection=dispatcher.core.rq)
        assert gen.state == "completed" and job.get_status() == "finished" and job.id in finished
        assert job.description == f"riffusion start {public_id(gen_id, 'job')} on {account}"
        assert dispatcher.core.rq.lpos("rq:queue:dispatcher.riffusion", job.id) is None, "not left for another worker"
    assert sandbox.get("/_sandbox/stats").json()["duplicates"] == 0


def test_a_poll_batch_that_finds_the_upstream_busy_is_two_round_trips_however_many_it_polls(dispatcher, sandbox,
                                                                                            steps):
    """load (every record + lease + account) → every next due time, the health records riding along."""
    from rq.job import Job

    from workers import polls

    sandbox.post("/_sandbox/users", json={"provider": "riffusion", "cookie": "rt-cookie-000002", "concurrency": 6,
                                          "duration": 60}).raise_for_status()
    account = dispatcher.upsert_account("riffusion", {"cookie": "rt-cookie-000002", "maxJobs": 6})["user_id"]
    ids = [dispatcher.submit("riffusion", "music/generate", {"prompt": f"p{i}"}).id for i in range(6)]
    for gen_id in ids:  # start each (the first also runs the starts queued behind it: chain.py)
        step = dispatcher.get(gen_id).step
        if "_start_" in step:
            assert Job.fetch(step, connection=dispatcher.core.rq).perform() == "submitted"
    assert {dispatcher.get(g).state for g in ids} == {"submitted"}
    due = dispatcher.core.r.zrange(keys.due("riffusion"), 0, -1)
    assert sorted(due) == sorted(ids), "every running generation waits in the due index, with no RQ job"
    assert polls.pump_due(dispatcher.core, ["riffusion"], now=10 ** 10) == 1, "six due polls make one batch job"
    queued = [j.decode() for j in dispatcher.core.rq.lrange("rq:queue:dispatcher.riffusion", 0, -1)]
    [batch_id] = [j for j in queued if "_polls_" in j]
    assert queued[0] == batch_id, "a poll batch goes ahead of queued starts"
    batch = Job.fetch(batch_id, connection=dispatcher.core.rq)
    assert batch.func_name == "workers.polls.poll_batch" and sorted(batch.args[1]) == sorted(ids)
    assert batch.description.startswith("riffusion poll 6: ") and public_id(ids[0], "job") in batch.description
    with round_trips() as sent:
        assert batch.perform() == "6 polled: 6 polling"
    assert len(sent) == 2, [_names(c) for c in sent]
    packed = b"".join(sent[1]) if isinstance(sent[1], (list, tuple)) else sent[1]
    assert keys.failures("riffusion", account).encode() in packed, \
        "the good status calls are recorded in the scheduling round trip"
    assert all(dispatcher.get(g).polls == 1 for g in ids)
    assert dispatcher.core.r.zcard(keys.due("riffusion")) == 6
