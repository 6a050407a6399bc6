"""Redis goes away and comes back: restart (AOF everysec), a crash, and a longer outage.

Each test gets its own embedded Redis in a tmp dir on a fixed port (the session
server is shared by other tests and must stay up): overriding `redis_url` here
points `r`, `settings`, `dispatcher`, `api` and `fleet` at it. The API runs
in-process (TestClient) on the same `Dispatcher` the test submits through; the
workers are real processes. Nobody restarts anything: the API and the workers
reconnect by themselves.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from dispatcher import keys
from dispatcher.ops.redis_server import EmbeddedRedis, free_port

OUTAGE_BODY = {"error", "code"}


@pytest.fixture
def own_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "own", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url


def api_submit(api, i: int, duration: float) -> str:
    res = api.post("/v1/runwayml/gen3a_turbo",
                   json={"promptText": f"outage {i}", "sandbox_duration": duration})
    assert res.status_code == 200, res.text
    return res.json()["id"]


def assert_fails_closed(res, *, where: str) -> None:
    assert res.status_code == 503, (where, res.status_code, res.text)
    body = res.json()
    assert set(body) >= OUTAGE_BODY and body["code"] == 503, body
    assert "Traceback" not in res.text and "redis.exceptions" not in res.text


def generation_keys(r) -> int:
    return sum(1 for _ in r.scan_iter(match=keys.generation("runwayml", "*"), count=1000))


def test_redis_restart_mid_run_loses_nothing(own_redis, rig, api, fleet, r):
    """Graceful stop (SHUTDOWN: the AOF is flushed) and start on the same port, mid-run."""
    rig.add_accounts(3, 4)
    fleet.start(2)
    rig.wait_workers(2)
    ids = [api_submit(api, i, (0.5, 1.0, 2.0)[i % 3]) for i in range(45)]
    time.sleep(2.0)  # some done, some running upstream, most waiting
    pids = [p.pid for p in fleet.procs]

    own_redis.stop()
    assert not own_redis.is_running()
    assert_fails_closed(api.get(f"/v1/jobs/{ids[0]}"), where="read while down")
    time.sleep(1.0)
    own_redis.start()
    assert own_redis.url == rig.d.core.redis_url  # same port: clients find it again

    ids += [api_submit(api, i, 1.0) for i in range(45, 60)]  # the API reconnected by itself
    states = rig.wait_finished(ids, timeout=120)
    rig.assert_clean_finish(ids, states)
    assert sorted(api.get("/v1/runwayml/accounts").json()) == sorted(rig.accounts)
    assert [p.pid for p in fleet.procs] == pids and all(p.poll() is None for p in fleet.procs), \
        "a worker process died instead of reconnecting"


def test_redis_killed_mid_run_loses_nothing_acknowledged(own_redis, rig, api, fleet, r):
    """SIGKILL Redis mid-run (no SHUTDOWN, no final fsync). Redis writes the AOF (write(2)) before it
    answers, so what it acknowledged is in the OS and survives a crash of the Redis process; only a
    crash of the machine can lose the last second (docs/reliability.md). Nothing may be lost here."""
    rig.add_accounts(3, 4)
    fleet.start(2)
    rig.wait_workers(2)
    ids = [api_submit(api, i, (0.5, 1.0, 2.0)[i % 3]) for i in range(45)]
    time.sleep(1.0)  # workers are mid-flight: creating, polling, finishing, admitting the next

    os.kill(own_redis.pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while own_redis.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_fails_closed(api.get(f"/v1/jobs/{ids[0]}"), where="read while down")
    own_redis.start()  # replays the AOF

    assert sorted(api.get("/v1/runwayml/accounts").json()) == sorted(rig.accounts)
    ids += [api_submit(api, i, 1.0) for i in range(45, 55)]
    states = rig.wait_finished(ids, timeout=120)
    rig.assert_clean_finish(ids, states)
    assert all(p.poll() is None for p in fleet.procs), "a worker process died instead of reconnecting"


def test_redis_down_fails_closed_and_workers_wait(own_redis, rig, api, fleet, r, snapshot, events):
    rig.add_accounts(2, 3)
    fleet.start(2)
    rig.wait_workers(2)
    ids = [api_submit(api, i, 1.0) for i in range(12)]
    time.sleep(1.5)
    lines_before = len(fleet.logs().splitlines())

    own_redis.stop()
    fleet.kill(1)
    fleet.restart(1)  # a worker that starts while Redis is away waits for it
    pids = [p.pid for p in fleet.procs]
    down_for = 6.0
    deadline = time.monotonic() + down_for
    account = next(iter(rig.accounts))
    attempts = 0
    while time.monotonic() < deadline:
        assert_fails_closed(api.post("/v1/runwayml/gen3a_turbo", json={"promptText": "refused"}),
                            where="create")
        assert_fails_closed(api.get(f"/v1/jobs/{ids[0]}"), where="read")
        assert_fails_closed(api.delete(f"/v1/jobs/{ids[-1]}"), where="cancel")
        assert_fails_closed(api.get("/v1/runwayml/accounts"), where="accounts")
        assert_fails_closed(api.get(f"/v1/runwayml/accounts/{account}"), where="account")
        assert_fails_closed(api.get("/v1/runwayml/scheduler/available"), where="scheduler")
        assert_fails_closed(api.post(f"/v1/runwayml/accounts/{account}", json={
            "email": account, "password": rig.passwords()[0], "maxJobs": 2}), where="account update")
        attempts += 1
    assert api.get("/health").status_code == 200  # the process itself is up
    outage_lines = fleet.logs().splitlines()[lines_before:]

    own_redis.start()
    after = [api_submit(api, 100 + i, 1.0) for i in range(6)]
    states = rig.wait_finished(ids + after, timeout=120)
    rig.assert_clean_finish(ids + after, states)
    # fail closed: nothing refused during the outage exists now (only the accepted generations)
    assert generation_keys(r) == len(ids) + len(after)
    assert rig.d.available("runwayml")["accounts"][account]["maxJobs"] == 3  # the refused update changed nothing
    # workers waited: the same processes, a bounded number of log lines (backoff, not a tight loop)
    assert [p.pid for p in fleet.procs] == pids and all(p.poll() is None for p in fleet.procs)
    per_second = len(outage_lines) / down_for / len(pids)
    print(f"\nredis down {down_for:.0f}s: {attempts} rounds of 7 API calls all 503; worker log lines "
          f"{len(outage_lines)} ({per_second:.1f}/s per worker); worker process restarts 0")
    assert per_second < 5, outage_lines[-20:]
    assert "Traceback" not in "\n".join(outage_lines), outage_lines[-40:]
