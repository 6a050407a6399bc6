"""What RQ records of a generation's steps, as rq-dashboard and `rq info` read it.

Real Redis, the real sandbox upstream, real worker processes (`fleet`) where the worker's
handling is what is checked:
- the step that fails its generation lands in RQ's FailedJobRegistry, with what happened as its
  exception text (moderated, out of credits, failed upstream), the account and the public id;
  the generation's own bookkeeping (slot, next waiter) is what it always was;
- the step that ends a generation stays listed for `step_history_ttl`, past the 60 s the
  intermediate steps keep; RQ's `count` (what `rq info` prints) equals the ids it lists;
- descriptions carry the public id and the account; a waiting generation's parked start says
  it waits for a slot.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from rq.job import Job
from rq.registry import DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry

from dispatcher import metric_store, providers, rq_glue
from dispatcher.generations import public_id
from dispatcher.shapes import job_id as shaped_id
from dispatcher.steps import RESULT_TTL, StepHistory, queue_name

RUNWAY = "runwayml"
QUEUE = queue_name(RUNWAY)


def _registries(d, queue=QUEUE):
    return FinishedJobRegistry(queue, connection=d.core.rq), FailedJobRegistry(queue, connection=d.core.rq)


def _ended(dispatcher, gen_id, wait):
    return wait(lambda: (g := dispatcher.get(gen_id)).terminal and g, 60, what=f"{gen_id} to end")


def _listed_job(dispatcher, registry, job_id, wait):
    wait(lambda: job_id in registry.get_job_ids(), 30, what=f"step {job_id} in {registry.key}")
    return Job.fetch(job_id, connection=dispatcher.core.rq)


def _exc_text(job) -> str:
    return job.latest_result().exc_string


def test_a_moderated_generation_ends_in_the_failed_registry_with_its_reason(dispatcher, add_account, fleet, submit,
                                                                            wait):
    account = add_account(RUNWAY, 1)
    fleet.start(1)
    moderated = dispatcher.submit(RUNWAY, "gen3turbo/create", {"promptText": "a [moderated] prompt"},
                                  reply_url="http://127.0.0.1:9/hook").id  # nothing listens: a callback is enqueued
    behind = submit(RUNWAY, 1, 0.5)[0]
    gen = _ended(dispatcher, moderated, wait)
    assert gen.state == "failed" and gen.error_code == 422

    finished, failed = _registries(dispatcher)
    job = _listed_job(dispatcher, failed, gen.step, wait)
    public = shaped_id(gen)
    assert job.get_status() == "failed" and job.func_name == "workers.steps.start"
    assert _exc_text(job) == f"moderated (422): Prompt rejected by moderation — account {account}, taskId {public}"
    assert job.id not in finished.get_job_ids()
    assert job.description == f"{RUNWAY} start {public} on {account}"

    # the generation's bookkeeping is untouched: the slot came back and the next waiter ran in it,
    # its callback was enqueued, its outcome counted
    assert _ended(dispatcher, behind, wait).state == "completed"
    assert dispatcher.available(RUNWAY)["accounts"][account]["executing"] == 0
    assert any(k.startswith(f"rq:job:{moderated}_callback_".encode()) for k in dispatcher.core.rq.keys("rq:job:*"))
    wait(lambda: metric_store.outcomes(dispatcher.core.r).get(RUNWAY, {}).get("failed") == 1, 30,
         what="the failed outcome counted")
    assert "could not read how a step ended" not in fleet.logs()
    # the failed step is kept as long as the ending steps, not RQ's default year or the old week
    ttl = dispatcher.core.rq.ttl(job.key)
    assert dispatcher.settings.step_history_ttl - 60 < ttl <= dispatcher.settings.step_history_ttl


def test_an_out_of_credits_generation_ends_in_the_failed_registry_with_its_reason(dispatcher, add_account, fleet,
                                                                                  wait):
    """useapi semantics (`fail_fast`, as the provider-shaped endpoints submit): the only account
    answers 412, leaves rotation, and the generation fails instead of waiting for it."""
    account = add_account(RUNWAY, 1, credits=0)
    fleet.start(1)
    handle = dispatcher.submit(RUNWAY, "gen3turbo/create", {"promptText": "no credits left"},
                               extra={"shape": RUNWAY, "fail_fast": True})
    gen = _ended(dispatcher, handle.id, wait)
    assert gen.state == "failed" and gen.error_code == 412

    _, failed = _registries(dispatcher)
    job = _listed_job(dispatcher, failed, gen.step, wait)
    assert _exc_text(job) == (f"Out of credits (412): Insufficient credits — account {account}, "
                              f"taskId {shaped_id(gen)}")
    assert dispatcher.available(RUNWAY)["accounts"][account]["error"].startswith("Out of credits (412)")


def test_a_generation_that_fails_upstream_while_polled_fails_its_ending_poll(dispatcher, add_account, fleet, submit,
                                                                            wait):
    account = add_account(RUNWAY, 1)
    fleet.start(1)
    (gen_id,) = submit(RUNWAY, 1, 1.5, promptText="[fail] half way")
    gen = _ended(dispatcher, gen_id, wait)
    assert gen.state == "failed"
    _, failed = _registries(dispatcher)
    job = _listed_job(dispatcher, failed, gen.step, wait)
    assert job.func_name == "workers.steps.poll"
    assert _exc_text(job).startswith("upstream failure (500): upstream generation failed — ")
    assert _exc_text(job).endswith(f"— account {account}, taskId {shaped_id(gen)}")


def test_the_ending_step_outlives_the_intermediate_ones_and_counts_match_lists(dispatcher, add_account, fleet,
                                                                              submit, wait):
    account = add_account(RUNWAY, 2)
    fleet.start(1)
    ids = submit(RUNWAY, 3, 2.5) + submit(RUNWAY, 1, 1.0, promptText="[moderated]")
    gens = [_ended(dispatcher, gen_id, wait) for gen_id in ids]
    finished, failed = _registries(dispatcher)
    history = dispatcher.settings.step_history_ttl
    now = time.time()

    endings = {g.id: g.step for g in gens}
    wait(lambda: set(endings.values()) <= set(finished.get_job_ids()) | set(failed.get_job_ids()), 30,
         what="every ending step listed")
    polls = [j for j in finished.get_job_ids() if j not in endings.values()]  # the latest intermediate ones
    for gen in gens:
        job = Job.fetch(gen.step, connection=dispatcher.core.rq)
        registry = failed if gen.state == "failed" else finished
        score = dispatcher.core.rq.zscore(registry.key, job.id)
        assert now + history - 60 < score <= now + history + 1, (gen.state, score - now)
        assert history - 60 < dispatcher.core.rq.ttl(job.key) <= history
        assert job.description == f"{RUNWAY} {job.func_name.rsplit('.', 1)[1]} {public_id(gen.id, 'task')} on {account}"
    for job_id in polls:
        assert dispatcher.core.rq.ttl(Job.key_for(job_id)) <= RESULT_TTL

    # `rq info` counts with RQ's `count` (which first drops expired entries): the same ids the lists
    # show, every one a job that is still there (retried: an intermediate step may expire in between)
    def agree(registry) -> bool:
        ids = registry.get_job_ids()
        jobs = [j for j in Job.fetch_many(ids, connection=dispatcher.core.rq) if j is not None]
        return registry.count == len(jobs) == len(ids)

    for registry in (finished, failed):
        wait(lambda: agree(registry), 5, what=f"{registry.key}: count and list agree")

    # 61 s on, past the 60 s steps used to be kept (RQ's own clean-up with the clock moved; the
    # hashes' TTLs were checked above): the intermediate steps are gone, every ending step is listed
    finished.cleanup(timestamp=now + 61)
    failed.cleanup(timestamp=now + 61)
    assert set(finished.get_job_ids()) | set(failed.get_job_ids()) == set(endings.values())
    assert {g.step for g in gens if g.state == "failed"} == set(failed.get_job_ids())
    done = subprocess.run([sys.executable, "-m", "rq.cli", "info", "--raw", "--only-queues", "-u",
                           dispatcher.core.redis_url, QUEUE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"0 executing, {len(finished.get_job_ids())} finished, {len(failed.get_job_ids())} failed" in done.stdout, \
        done.stdout


def test_a_waiting_generation_says_it_waits_for_a_slot(dispatcher, add_account, submit):
    account = add_account(RUNWAY, 1)
    running, waiting = submit(RUNWAY, 2, 30.0)
    parked = dispatcher.get(waiting).parked
    deferred = DeferredJobRegistry(QUEUE, connection=dispatcher.core.rq)
    assert deferred.get_job_ids() == [parked]
    public = public_id(waiting, providers.get(RUNWAY).shape.kind)
    assert Job.fetch(parked, connection=dispatcher.core.rq).description == \
        f"{RUNWAY} start {public}, waiting for a slot"
    dispatcher.core.dispatch(dispatcher.core.capacity(RUNWAY).release(running))  # the waiter's admission
    assert dispatcher.get(waiting).state == "admitted"
    assert Job.fetch(parked, connection=dispatcher.core.rq).description == f"{RUNWAY} start {public} on {account}"


@pytest.fixture
def history(dispatcher):
    """The worker's StepHistory, installed in this process as a worker installs it."""
    installed = StepHistory(dispatcher.core.generations, dispatcher.settings.step_history_ttl)
    rq_glue.install_history(installed)
    yield installed
    rq_glue.install_history(None)


def test_a_claimed_start_that_fails_its_generation_is_recorded_failed(dispatcher, sandbox, steps, history,
                                                                      monkeypatch):
    """A start that the step freeing its slot ran itself (workers/chain.py) is recorded by
    `rq_glue.record_claimed_in`: failed with the reason when it failed its generation, and
    kept as long as an ending step when it completed one."""
    from workers import chain

    monkeypatch.setattr(chain, "BUDGET_S", 60.0)
    sandbox.post("/_sandbox/users", json={"provider": "riffusion", "cookie": "sh-cookie-000001", "concurrency": 1,
                                          "duration": 0}).raise_for_status()
    account = dispatcher.upsert_account("riffusion", {"cookie": "sh-cookie-000001", "maxJobs": 1})["user_id"]
    # each release claims the next waiter: first → instant (completes at once) → moderated (refused)
    first, instant, moderated = [dispatcher.submit("riffusion", "music/generate", {"prompt": p, "sandbox_duration": 0}).id
                                 for p in ("first", "claimed and instant", "[moderated] claimed")]
    assert steps.start(first, dispatcher.get(first).step) == "completed"

    finished, failed = _registries(dispatcher, queue_name("riffusion"))
    gen = dispatcher.get(moderated)
    assert gen.state == "failed" and gen.step in failed.get_job_ids()
    job = Job.fetch(gen.step, connection=dispatcher.core.rq)
    assert _exc_text(job) == (f"moderated (422): Prompt rejected by moderation — account {account}, "
                              f"job_id {shaped_id(gen)}")
    done = dispatcher.get(instant)
    assert done.state == "completed" and done.step in finished.get_job_ids()
    assert dispatcher.core.rq.ttl(Job.key_for(done.step)) > RESULT_TTL
    assert dispatcher.available("riffusion")["accounts"][account]["executing"] == 0


def test_the_dashboard_counts_what_it_lists_even_with_expired_entries(dispatcher, redis_url, settings):
    """rq-dashboard counts registries without cleaning them; the dashboard cleans them first."""
    from dispatcher.ops.dashboard import build_app

    finished, failed = _registries(dispatcher)
    dispatcher.core.rq.sadd("rq:queues", f"rq:queue:{QUEUE}")
    past = int(time.time()) - 5
    for registry in (finished, failed):  # entries whose jobs expired, not yet cleaned by anyone
        dispatcher.core.rq.zadd(registry.key, {"gone-1": past, "gone-2": past})
    client = build_app(redis_url, settings=settings).test_client()
    (row,) = [q for q in client.get("/0/data/queues.json").json["queues"] if q["name"] == QUEUE]
    for name in ("finished", "failed"):
        listed = client.get(f"/0/data/jobs/{QUEUE}/{name}/100/asc/1.json").json["jobs"]
        assert row[f"{name}_job_registry_count"] == len(listed) == 0
